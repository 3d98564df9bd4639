package container

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

func (h *harness) control(c wire.Control) (bool, error) {
	h.t.Helper()
	h.ix++
	return h.c.ApplyControl(h.ix, &c)
}

func (h *harness) mustControl(c wire.Control) bool {
	h.t.Helper()
	due, err := h.control(c)
	if err != nil {
		h.t.Fatal(err)
	}
	return due
}

// Below cluster version 5 no build proposes a control entry: one committed there stops the
// member, which never applies what the older members could not.
func TestControlNeedsClusterVersion5(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	if err := h.raise(4); err != nil {
		t.Fatal(err)
	}
	if _, err := h.control(wire.Control{Op: wire.ControlSuspend}); !errors.Is(err, ErrControlBeforeVersion) {
		t.Fatalf("a control entry at cluster version 4: %v, want ErrControlBeforeVersion", err)
	}
	if h.c.Suspended() {
		t.Fatal("the refused entry suspended the cluster")
	}
}

// While suspended, a command is refused (not applied, not recorded: a retry after the resume is
// applied once), due timers wait, and a command applied before the suspension is still answered
// from its record. Sessions open and close (a reader must be able to connect).
func TestSuspendStopsTheServicesInput(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	if err := h.raise(5); err != nil {
		t.Fatal(err)
	}
	h.svc.onMsg = func(s service.Session, msg []byte) []byte {
		if string(msg) == "timer" {
			if err := h.svc.c.ScheduleTimer(7, time.Unix(0, 50)); err != nil {
				t.Fatal(err)
			}
		}
		h.svc.state++
		return []byte("ok")
	}
	h.apply(1, open(s1), cmd(s1, 1, 1, "timer"))
	h.mustControl(wire.Control{Op: wire.ControlSuspend})
	if !h.c.Suspended() {
		t.Fatal("not suspended after the entry")
	}
	if !h.c.SuspendRefuses(s1, 2, 1) || h.c.SuspendRefuses(s1, 1, 1) {
		t.Fatal("SuspendRefuses: want a new command refused and a recorded one answered")
	}
	calls := len(h.svc.calls)
	h.apply(100, cmd(s1, 2, 1, "x"))
	if m := h.last(); m.Status != wire.StatusRejected || string(m.Payload) != SuspendedMessage {
		t.Fatalf("a command while suspended was answered %+v", m)
	}
	h.apply(101, cmd(s1, 1, 1, "timer"))
	if m := h.last(); m.Status != wire.StatusOK || string(m.Payload) != "ok" {
		t.Fatalf("a retry of a command applied before the suspension was answered %+v", m)
	}
	if len(h.svc.calls) != calls {
		t.Fatalf("the service was called while suspended: %v", h.svc.calls[calls:])
	}
	h.apply(102, open(s2))
	if m := h.last(); m.Kind != wire.CAttached || !h.c.SessionOpen(s2) {
		t.Fatalf("a new session while suspended was answered %+v", m)
	}
	snap, err := h.c.TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t, DefaultConfig())
	if err := h2.c.Start(snap, 0); err != nil {
		t.Fatal(err)
	}
	if !h2.c.Suspended() || snap[4] != snapshotFormat4 {
		t.Fatalf("the snapshot (format %d) lost the suspension", snap[4])
	}
	h.mustControl(wire.Control{Op: wire.ControlResume})
	h.apply(103, cmd(s1, 2, 1, "x"))
	if m := h.last(); m.Status != wire.StatusOK {
		t.Fatalf("the refused command, sent again after the resume, was answered %+v", m)
	}
	if !slices.Contains(h.svc.calls, "timer:7@103") {
		t.Fatalf("the timer due during the suspension did not fire after it: %v", h.svc.calls)
	}
	h.apply(104, wire.Item{Kind: wire.ItemClose, Session: s1, Reason: uint8(service.CloseClient)})
	if h.c.SessionOpen(s1) {
		t.Fatal("the close did not apply")
	}
}

// A snapshot control, and a shutdown without abort, make the index a snapshot point on every
// member; the preference is replicated and kept in snapshots, "cleared" apart from "never set".
func TestControlSnapshotPointsAndPreference(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	if err := h.raise(5); err != nil {
		t.Fatal(err)
	}
	if !h.mustControl(wire.Control{Op: wire.ControlSnapshot}) {
		t.Fatal("a snapshot control is not a snapshot point")
	}
	if !h.mustControl(wire.Control{Op: wire.ControlShutdown}) || h.mustControl(wire.Control{Op: wire.ControlShutdown, Abort: true}) {
		t.Fatal("shutdown: want a snapshot point without abort, none with it")
	}
	if p, set := h.c.Preferred(); p != nil || set {
		t.Fatalf("a new state prefers %v (set %v)", p, set)
	}
	h.mustControl(wire.Control{Op: wire.ControlPreferred, Preferred: []int{3, 1}})
	for _, tc := range []struct {
		want []int
		set  bool
	}{{[]int{3, 1}, true}, {nil, true}} {
		if tc.want == nil {
			h.mustControl(wire.Control{Op: wire.ControlPreferred})
		}
		snap, err := h.c.TakeSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		h2 := newHarness(t, DefaultConfig())
		if err := h2.c.Start(snap, 0); err != nil {
			t.Fatal(err)
		}
		p, set := h2.c.Preferred()
		if h2.c.LastShutdown() != 4 {
			t.Fatalf("read back the last shutdown at %d, want 4 (the aborted one)", h2.c.LastShutdown())
		}
		if !slices.Equal(p, tc.want) || set != tc.set {
			t.Fatalf("read back preferred %v set %v, want %v %v", p, set, tc.want, tc.set)
		}
		if again, _ := h2.c.TakeSnapshot(); string(again) != string(snap) {
			t.Fatal("a snapshot read back and written again differs")
		}
	}
}
