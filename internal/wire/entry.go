package wire

import (
	"encoding/hex"
	"fmt"
)

// EntryKind is the kind of a log entry's data (the byte after its version byte).
type EntryKind uint8

// Log entry kinds. A kind, like an item kind or a change to how one is applied, belongs to a
// cluster version: it is proposed only once the cluster version allows it (container.doc.go),
// and a member that meets one it does not know stops at that index (never skips it).
const (
	EntryBatch           EntryKind = 1 // client items behind a leader timestamp (Batch)
	EntryClusterVersion  EntryKind = 2 // raises the cluster version (cluster version 1 and up)
	EntryClusterIdentity EntryKind = 3 // the cluster's identity (cluster version 3 and up)
	EntryControl         EntryKind = 4 // an operator's control of the cluster (Control; cluster version 5 and up)
)

const entryKindBatch = uint8(EntryBatch)

// EntryKindOf returns the kind of a log entry's data, checking its version byte. An unknown kind
// is not an error here: the caller names it with the entry's index.
func EntryKindOf(data []byte) (EntryKind, error) {
	r := &reader{b: data, what: "log entry"}
	r.version()
	k := EntryKind(r.u8())
	return k, r.err
}

// AppendClusterVersion appends the encoding of an entry that raises the cluster version to v:
// version u8 | kind u8 = 2 | cluster version u16.
func AppendClusterVersion(dst []byte, v uint16) []byte {
	dst = append(dst, Version, uint8(EntryClusterVersion))
	return append(dst, byte(v), byte(v>>8))
}

// DecodeClusterVersion decodes an entry that raises the cluster version.
func DecodeClusterVersion(data []byte) (uint16, error) {
	r := &reader{b: data, what: "cluster version entry"}
	r.version()
	if k := EntryKind(r.u8()); r.err == nil && k != EntryClusterVersion {
		r.fail("entry kind %d", k)
	}
	lo, hi := r.u8(), r.u8()
	v := uint16(lo) | uint16(hi)<<8
	if r.err == nil && v == 0 {
		r.fail("cluster version 0")
	}
	if err := r.end(); err != nil {
		return 0, err
	}
	return v, nil
}

// ClusterUUID is a cluster's identity: 16 random bytes a leader draws once, when the cluster is
// new, and commits in the log (EntryClusterIdentity). Unlike the human cluster name (--cluster-id,
// "tandem" by default), two clusters never share one, so a member that meets another cluster's
// member, or a client that meets another cluster's endpoint, can tell. The zero value is "not
// known yet".
type ClusterUUID [16]byte

// IsZero reports whether u is the zero value: no identity known.
func (u ClusterUUID) IsZero() bool { return u == ClusterUUID{} }

// String is the id in lowercase hex (32 digits), "none" for the zero value.
func (u ClusterUUID) String() string {
	if u.IsZero() {
		return "none"
	}
	return hex.EncodeToString(u[:])
}

// ParseClusterUUID parses the 32 hex digits String writes.
func ParseClusterUUID(s string) (ClusterUUID, error) {
	var u ClusterUUID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(u) {
		return ClusterUUID{}, fmt.Errorf("%w: cluster uuid %q: want %d hex digits", ErrMalformed, s, 2*len(u))
	}
	copy(u[:], b)
	return u, nil
}

// AppendClusterIdentity appends the encoding of the entry that records the cluster's identity:
// version u8 | kind u8 = 3 | uuid [16]. The zero uuid is not an identity: the caller never
// proposes it.
func AppendClusterIdentity(dst []byte, u ClusterUUID) []byte {
	dst = append(dst, Version, uint8(EntryClusterIdentity))
	return append(dst, u[:]...)
}

// DecodeClusterIdentity decodes an entry that records the cluster's identity. The zero uuid is
// refused.
func DecodeClusterIdentity(data []byte) (ClusterUUID, error) {
	r := &reader{b: data, what: "cluster identity entry"}
	r.version()
	if k := EntryKind(r.u8()); r.err == nil && k != EntryClusterIdentity {
		r.fail("entry kind %d", k)
	}
	u := ClusterUUID(r.session())
	if r.err == nil && u.IsZero() {
		r.fail("zero cluster uuid")
	}
	if err := r.end(); err != nil {
		return ClusterUUID{}, err
	}
	return u, nil
}

// String names the kind.
func (k EntryKind) String() string {
	switch k {
	case EntryBatch:
		return "batch"
	case EntryClusterVersion:
		return "cluster version"
	case EntryClusterIdentity:
		return "cluster identity"
	case EntryControl:
		return "control"
	}
	return fmt.Sprintf("unknown kind %d", uint8(k))
}
