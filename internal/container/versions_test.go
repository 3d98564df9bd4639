package container

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

func (h *harness) raise(v uint16) error {
	h.t.Helper()
	h.ix++
	_, err := h.c.ApplyClusterVersion(h.ix, v)
	return err
}

// closeAndReopen closes s1 for reason, then opens it again, and returns the reason the refusal
// of the reopening names.
func closeAndReopen(h *harness, reason service.CloseReason) service.CloseReason {
	h.apply(1, open(s1))
	h.apply(2, wire.Item{Kind: wire.ItemClose, Session: s1, Reason: uint8(reason)})
	h.apply(3, open(s1))
	m := h.last()
	if m.Kind != wire.CSessionEvent || m.Status != wire.StatusSessionExpired {
		h.t.Fatalf("reopening a closed session was answered %+v", m)
	}
	return service.CloseReason(m.Reason)
}

// Cluster version 1 applies as every build up to 045a031 did: a closed session's reason is not
// kept (every answer says "timed out"), and snapshots are of format 1, byte for byte what those
// builds wrote. Version 2 keeps the reason, in snapshot format 2.
func TestClusterVersionGatesCloseReasons(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	if v := h.c.ClusterVersion(); v != 1 {
		t.Fatalf("an empty state is at cluster version %d, want 1", v)
	}
	if got := closeAndReopen(h, service.CloseClient); got != service.CloseTimeout {
		t.Fatalf("at cluster version 1 the refusal says %v, want %v (as before versions)", got, service.CloseTimeout)
	}
	snap1, err := h.c.TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if snap1[4] != snapshotFormat1 {
		t.Fatalf("at cluster version 1 the snapshot is of format %d", snap1[4])
	}

	h2 := newHarness(t, DefaultConfig())
	if err := h2.raise(2); err != nil {
		t.Fatal(err)
	}
	if got := closeAndReopen(h2, service.CloseClient); got != service.CloseClient {
		t.Fatalf("at cluster version 2 the refusal says %v, want %v", got, service.CloseClient)
	}
	snap2, err := h2.c.TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if snap2[4] != snapshotFormat2 {
		t.Fatalf("at cluster version 2 the snapshot is of format %d", snap2[4])
	}
	// Both formats read back, with the version and the reasons.
	for _, tc := range []struct {
		snap    []byte
		version uint16
		reason  service.CloseReason
	}{{snap1, 1, service.CloseTimeout}, {snap2, 2, service.CloseClient}} {
		h3 := newHarness(t, DefaultConfig())
		if err := h3.c.Start(tc.snap, 0); err != nil {
			t.Fatal(err)
		}
		if h3.c.ClusterVersion() != tc.version || h3.c.ClosedReason(s1) != tc.reason {
			t.Fatalf("format %d read back as version %d, reason %v", tc.snap[4], h3.c.ClusterVersion(), h3.c.ClosedReason(s1))
		}
		again, err := h3.c.TakeSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, tc.snap) {
			t.Fatalf("format %d: a snapshot of the restored state differs from the one restored", tc.snap[4])
		}
	}
}

// A session closed at version 1 keeps "no reason recorded" after the raise; one closed after it
// has its reason.
func TestRaiseKeepsEarlierClosesAsTheyWere(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.apply(1, open(s1), wire.Item{Kind: wire.ItemClose, Session: s1, Reason: uint8(service.CloseService)})
	if err := h.raise(2); err != nil {
		t.Fatal(err)
	}
	h.apply(2, open(s2), wire.Item{Kind: wire.ItemClose, Session: s2, Reason: uint8(service.CloseService)})
	if h.c.ClosedReason(s1) != service.CloseTimeout || h.c.ClosedReason(s2) != service.CloseService {
		t.Fatalf("reasons %v, %v", h.c.ClosedReason(s1), h.c.ClosedReason(s2))
	}
}

func TestClusterVersionNeverGoesDownAndStopsAboveTheMax(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	if err := h.raise(2); err != nil {
		t.Fatal(err)
	}
	if err := h.raise(1); err != nil || h.c.ClusterVersion() != 2 {
		t.Fatalf("a raise to 1 at version 2: %v, version %d", err, h.c.ClusterVersion())
	}
	err := h.raise(ClusterVersionMax + 1)
	var cve *ClusterVersionError
	if !errors.As(err, &cve) || !errors.Is(err, ErrClusterVersion) || cve.Index != h.ix || cve.Version != ClusterVersionMax+1 {
		t.Fatalf("a raise above what this build applies: %v", err)
	}

	// A member configured to apply version 1 only acts as a build that can do no more: it
	// stops at a raise to 2, and at a snapshot of version 2.
	cfg := DefaultConfig()
	cfg.ClusterVersionMax = 1
	old := newHarness(t, cfg)
	if err := old.raise(2); !errors.Is(err, ErrClusterVersion) {
		t.Fatalf("a member that applies version 1 applied a raise to 2: %v", err)
	}
	snap, err := h.c.TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := old.c.Start(snap, 0); !errors.As(err, &cve) || !cve.Snapshot {
		t.Fatalf("a member that applies version 1 started from a version-2 snapshot: %v", err)
	}
	cfg.ClusterVersionMax = ClusterVersionMax + 1
	if err := cfg.Validate(); err == nil {
		t.Fatalf("a ClusterVersionMax above the build's was accepted")
	}
}

// A snapshot of a format newer than this build reads is a newer build's (ErrNewerFormat, which
// the member turns into a stop that names it), not a damaged one only.
func TestNewerSnapshotFormatIsNamed(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	snap, err := h.c.TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	snap[4] = SnapshotFormatMax + 1
	err = newHarness(t, DefaultConfig()).c.Start(snap, 0)
	if !errors.Is(err, ErrNewerFormat) || !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("a snapshot of format %d: %v", snap[4], err)
	}
	snap[4] = 0
	if err := newHarness(t, DefaultConfig()).c.Start(snap, 0); errors.Is(err, ErrNewerFormat) || !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("a snapshot of format 0: %v", err)
	}
}

func (h *harness) identify(u wire.ClusterUUID) (bool, error) {
	h.t.Helper()
	h.ix++
	_, recorded, err := h.c.ApplyClusterIdentity(h.ix, u)
	return recorded, err
}

var (
	uuidA = wire.ClusterUUID{0x3f, 0x2a, 15: 1}
	uuidB = wire.ClusterUUID{0x9c, 0x1d, 15: 2}
)

// Cluster version 3: the identity entry records the cluster's id once; a second one with another
// id changes nothing (the first in the log wins, on every member alike).
func TestClusterIdentityAppliedOnceFirstWins(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	if err := h.raise(3); err != nil {
		t.Fatal(err)
	}
	if !h.c.ClusterUUID().IsZero() {
		t.Fatalf("a new state holds identity %v", h.c.ClusterUUID())
	}
	if rec, err := h.identify(uuidA); err != nil || !rec || h.c.ClusterUUID() != uuidA {
		t.Fatalf("the first identity entry: recorded %v, %v, identity %v", rec, err, h.c.ClusterUUID())
	}
	if rec, err := h.identify(uuidB); err != nil || rec || h.c.ClusterUUID() != uuidA {
		t.Fatalf("a second identity entry: recorded %v, %v, identity %v (want the first kept)", rec, err, h.c.ClusterUUID())
	}
	if h.c.Applied() != h.ix {
		t.Fatalf("applied %d, want %d", h.c.Applied(), h.ix)
	}
}

// An identity entry below cluster version 3 is never proposed: a member meeting one stops.
func TestClusterIdentityBelowVersion3Stops(t *testing.T) {
	for _, v := range []uint16{1, 2} {
		h := newHarness(t, DefaultConfig())
		if err := h.raise(v); err != nil {
			t.Fatal(err)
		}
		if _, err := h.identify(uuidA); !errors.Is(err, ErrIdentityBeforeVersion) {
			t.Fatalf("an identity entry at cluster version %d: %v", v, err)
		}
		if !h.c.ClusterUUID().IsZero() {
			t.Fatalf("at version %d the identity was recorded", v)
		}
	}
	h := newHarness(t, DefaultConfig())
	_ = h.raise(3)
	if _, err := h.identify(wire.ClusterUUID{}); err == nil {
		t.Fatalf("a zero identity was applied")
	}
}

// Snapshot format 3 carries the identity and reads back byte for byte; formats 1 and 2 are still
// what versions 1 and 2 write; every format reads back with its version.
func TestSnapshotFormat3RoundTrip(t *testing.T) {
	for _, tc := range []struct {
		version uint16
		format  uint8
		uuid    wire.ClusterUUID
	}{{1, snapshotFormat1, wire.ClusterUUID{}}, {2, snapshotFormat2, wire.ClusterUUID{}},
		{3, snapshotFormat3, wire.ClusterUUID{}}, {3, snapshotFormat3, uuidA}} {
		h := newHarness(t, DefaultConfig())
		h.apply(1, open(s1))
		if tc.version > 1 {
			if err := h.raise(tc.version); err != nil {
				t.Fatal(err)
			}
		}
		if !tc.uuid.IsZero() {
			if _, err := h.identify(tc.uuid); err != nil {
				t.Fatal(err)
			}
		}
		snap, err := h.c.TakeSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		if snap[4] != tc.format {
			t.Fatalf("at cluster version %d the snapshot is of format %d, want %d", tc.version, snap[4], tc.format)
		}
		h2 := newHarness(t, DefaultConfig())
		if err := h2.c.Start(snap, 0); err != nil {
			t.Fatal(err)
		}
		if h2.c.ClusterVersion() != tc.version || h2.c.ClusterUUID() != tc.uuid || !h2.c.SessionOpen(s1) {
			t.Fatalf("format %d read back as version %d, identity %v", tc.format, h2.c.ClusterVersion(), h2.c.ClusterUUID())
		}
		again, err := h2.c.TakeSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, snap) {
			t.Fatalf("format %d: a snapshot of the restored state differs from the one restored", tc.format)
		}
		// An identity entry after a restore from format 3 still finds the first one kept.
		if tc.version == 3 && !tc.uuid.IsZero() {
			h2.ix = h2.c.Applied()
			if rec, err := h2.identify(uuidB); err != nil || rec || h2.c.ClusterUUID() != tc.uuid {
				t.Fatalf("after a restore, a second identity: recorded %v, %v, identity %v", rec, err, h2.c.ClusterUUID())
			}
		}
	}
}

// A member that applies up to 2 stops at a snapshot of version 3 (format 3).
func TestSnapshotFormat3RefusedBelowVersion3(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	_ = h.raise(3)
	_, _ = h.identify(uuidA)
	snap, err := h.c.TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.ClusterVersionMax = 2
	var cve *ClusterVersionError
	if err := newHarness(t, cfg).c.Start(snap, 0); !errors.As(err, &cve) || !cve.Snapshot || cve.Version != 3 {
		t.Fatalf("a member that applies version 2 started from a version-3 snapshot: %v", err)
	}
}

// A close item of a session that is not open (its open failed to commit, or it closed already)
// is answered with a session event, so that the leader that proposed it, and its client, stop
// waiting; nothing else happens.
func TestCloseOfASessionNotOpenIsAnswered(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.apply(1, wire.Item{Kind: wire.ItemClose, Session: s1, Reason: uint8(service.CloseClient)})
	m := h.last()
	if m.Kind != wire.CSessionEvent || m.Session != s1 || m.Status != wire.StatusSessionExpired {
		t.Fatalf("a close of a session never opened was answered %+v", m)
	}
	if h.c.SessionClosed(s1) || len(h.svc.calls) != 0 {
		t.Fatalf("a close of a session never opened changed state: closed %v, calls %v", h.c.SessionClosed(s1), h.svc.calls)
	}
}
