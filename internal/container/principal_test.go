package container

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

func openAs(id wire.SessionID, principal string) wire.Item {
	return wire.Item{Kind: wire.ItemOpenPrincipal, Session: id, Principal: principal}
}

// principalOf is what the service sees of session id's principal (false: not open).
func principalOf(h *harness, id wire.SessionID) (string, bool) {
	s, ok := h.svc.c.Session(service.SessionID(id))
	if !ok {
		return "", false
	}
	return s.Principal(), true
}

// Below cluster version 6 no build proposes an open for a principal: one committed there stops
// the member (members of older builds could not decode it), and opens nothing.
func TestOpenForAPrincipalNeedsClusterVersion6(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	if err := h.raise(5); err != nil {
		t.Fatal(err)
	}
	h.ix++
	_, err := h.c.ApplyBatch(h.ix, &wire.Batch{TimestampNanos: 1, Items: []wire.Item{openAs(s1, "alice")}})
	if !errors.Is(err, ErrPrincipalBeforeVersion) {
		t.Fatalf("an open for a principal at cluster version 5: %v, want ErrPrincipalBeforeVersion", err)
	}
	if h.c.SessionOpen(s1) {
		t.Fatal("the refused entry opened the session")
	}
}

// From cluster version 6 the open records its principal: the service sees it on the session
// (in every callback, and after the session closed), an open of the open session by another
// principal changes nothing, an ItemOpen opens an anonymous session, and the principal counts
// against the response byte budget.
func TestOpenRecordsThePrincipal(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	if err := h.raise(ClusterVersionPrincipal); err != nil {
		t.Fatal(err)
	}
	var seen []string
	h.svc.onMsg = func(s service.Session, msg []byte) []byte {
		seen = append(seen, s.Principal())
		return []byte("ok")
	}
	before := h.c.bytesUsed
	h.apply(1, openAs(s1, "alice"), open(s2), cmd(s1, 1, 1, "x"), cmd(s2, 1, 1, "y"))
	if got := h.c.bytesUsed - before; got != 2*sessionOverheadBytes+int64(len("alice"))+2*(entryOverheadBytes+2+slotBytes) {
		t.Fatalf("two sessions and two replies cost %d bytes", got)
	}
	if p, ok := principalOf(h, s1); !ok || p != "alice" {
		t.Fatalf("session 1's principal %q (open %v)", p, ok)
	}
	if p, ok := principalOf(h, s2); !ok || p != "" {
		t.Fatalf("an anonymous open's principal %q (open %v)", p, ok)
	}
	if strings.Join(seen, ",") != "alice," {
		t.Fatalf("OnSessionMessage saw principals %q", seen)
	}
	if p, ok := h.c.SessionPrincipal(s1); !ok || p != "alice" {
		t.Fatalf("SessionPrincipal: %q, %v", p, ok)
	}
	// The first open applied decides; the session's handle keeps its principal after the close.
	h.apply(2, openAs(s1, "mallory"))
	s, _ := h.svc.c.Session(service.SessionID(s1))
	if s.Principal() != "alice" {
		t.Fatalf("a second open by another principal made it %q", s.Principal())
	}
	h.apply(3, wire.Item{Kind: wire.ItemClose, Session: s1, Reason: uint8(service.CloseClient)})
	if s.Principal() != "alice" {
		t.Fatalf("after the close the handle says %q", s.Principal())
	}
	if _, ok := h.c.SessionPrincipal(s1); ok {
		t.Fatal("SessionPrincipal of a closed session")
	}
}

// Snapshot format 5 (cluster version 6) keeps each session's principal: restored, the service
// sees the same principals and the restored state's snapshot is byte for byte the same. A
// format 4 snapshot (cluster version 5) still loads, its sessions anonymous.
func TestSnapshotKeepsPrincipals(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	if err := h.raise(ClusterVersionControl); err != nil {
		t.Fatal(err)
	}
	h.apply(1, open(s1))
	snap4, err := h.c.TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if snap4[4] != snapshotFormat4 {
		t.Fatalf("at cluster version 5 the snapshot is of format %d", snap4[4])
	}
	if err := h.raise(ClusterVersionPrincipal); err != nil {
		t.Fatal(err)
	}
	h.apply(2, openAs(s2, "bob"), cmd(s2, 1, 1, "x"))
	snap5, err := h.c.TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if snap5[4] != snapshotFormat5 {
		t.Fatalf("at cluster version 6 the snapshot is of format %d", snap5[4])
	}
	for _, tc := range []struct {
		snap []byte
		want map[wire.SessionID]string
	}{{snap4, map[wire.SessionID]string{s1: ""}}, {snap5, map[wire.SessionID]string{s1: "", s2: "bob"}}} {
		h2 := newHarness(t, DefaultConfig())
		if err := h2.c.Start(tc.snap, 0); err != nil {
			t.Fatalf("format %d: %v", tc.snap[4], err)
		}
		if n := h2.c.Sessions(); n != len(tc.want) {
			t.Fatalf("format %d: %d sessions", tc.snap[4], n)
		}
		for id, want := range tc.want {
			if p, ok := principalOf(h2, id); !ok || p != want {
				t.Fatalf("format %d: session %x's principal %q (open %v), want %q", tc.snap[4], id[0], p, ok, want)
			}
		}
		if h2.c.bytesUsed != h.c.bytesUsed && tc.snap[4] == snapshotFormat5 {
			t.Fatalf("restored %d bytes used, the original %d", h2.c.bytesUsed, h.c.bytesUsed)
		}
		again, err := h2.c.TakeSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, tc.snap) {
			t.Fatalf("format %d: a snapshot of the restored state differs", tc.snap[4])
		}
	}
}

// A format 5 snapshot must hold cluster version 6 or more, and a format 4 one version 5; a
// principal over wire.MaxPrincipalBytes is refused.
func TestSnapshotFormat5IsChecked(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	if err := h.raise(ClusterVersionPrincipal); err != nil {
		t.Fatal(err)
	}
	h.apply(1, openAs(s1, strings.Repeat("p", wire.MaxPrincipalBytes)))
	snap, err := h.c.TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeSnapshot(snap); err != nil {
		t.Fatalf("a principal of %d bytes: %v", wire.MaxPrincipalBytes, err)
	}
	for _, tc := range []struct {
		name   string
		format uint8
		off    int // the byte to change, and its new value
		value  byte
	}{
		{"format 5 at cluster version 5", snapshotFormat5, 5 + 8 + 8, byte(ClusterVersionControl)},
		{"format 4 at cluster version 6", snapshotFormat4, 5 + 8 + 8, byte(ClusterVersionPrincipal)},
	} {
		bad := forge(snap, func(b []byte) {
			b[4] = tc.format
			b[tc.off] = tc.value
		})
		if _, err := decodeSnapshot(bad); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	// The principal's length: sessions start after the header (magic, format, applied, time,
	// version, uuid, controls: 4+1+8+8+2+16+3+8) and their count.
	at := 4 + 1 + 8 + 8 + 2 + 16 + 3 + 8 + 4 + 16
	if got := binary.LittleEndian.Uint16(snap[at:]); got != wire.MaxPrincipalBytes {
		t.Fatalf("the layout moved: the principal's length reads %d", got)
	}
	bad := forge(snap, func(b []byte) { binary.LittleEndian.PutUint16(b[at:], wire.MaxPrincipalBytes+1) })
	if _, err := decodeSnapshot(bad); !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), "principal") {
		t.Fatalf("a principal over the limit: %v", err)
	}
}

// forge returns a copy of snap changed by f, with its checksum made right again.
func forge(snap []byte, f func([]byte)) []byte {
	b := bytes.Clone(snap)
	f(b)
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
	return b
}
