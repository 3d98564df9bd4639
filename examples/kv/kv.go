// Package kv is the "write your own service" example of the README: a tiny replicated key-value
// store. Commands are "key=value"; a query is a key. It shows the whole contract in a few lines:
// deterministic callbacks, a reply per command, and a snapshot that replaces all state.
package kv

import (
	"encoding/json"
	"io"
	"strings"
	"time"

	"github.com/tandem-cluster/tandem/service"
)

// Store is the service.
type Store struct {
	service.Base // no-op OnSessionOpen, OnSessionClose, OnTimerEvent, OnRoleChange, OnTerminate
	m            map[string]string
}

var _ service.Service = (*Store)(nil)

// New returns an empty store.
func New() *Store { return &Store{m: map[string]string{}} }

// OnStart replaces all state with the snapshot's (or empties it).
func (s *Store) OnStart(_ service.Cluster, snap io.Reader) error {
	s.m = map[string]string{}
	if snap == nil {
		return nil
	}
	return json.NewDecoder(snap).Decode(&s.m)
}

// OnSessionMessage sets key=value and replies "OK".
func (s *Store) OnSessionMessage(_ service.Session, _ time.Time, msg []byte) []byte {
	k, v, ok := strings.Cut(string(msg), "=")
	if !ok || k == "" {
		return []byte("ERROR: want key=value")
	}
	s.m[k] = v // deterministic: same log, same state, on every member
	return []byte("OK")
}

// OnQuery returns the value of a key.
func (s *Store) OnQuery(q []byte) []byte { return []byte(s.m[string(q)]) }

// OnTakeSnapshot writes all state. encoding/json sorts map keys, so equal states give equal bytes.
func (s *Store) OnTakeSnapshot(w io.Writer) error { return json.NewEncoder(w).Encode(s.m) }
