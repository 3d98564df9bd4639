package replica

import (
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// fakeMeter is a Meter whose clock the test sets.
type fakeMeter struct {
	now  int64
	cmds []int64
	qs   []int64
}

func (m *fakeMeter) Now() int64              { return m.now }
func (m *fakeMeter) CommandDone(nanos int64) { m.cmds = append(m.cmds, nanos) }
func (m *fakeMeter) QueryDone(nanos int64)   { m.qs = append(m.qs, nanos) }

// A command is timed from the round that took it: a clock read in an earlier round (the apply
// of the command before) is not its stamp, or a client's think time would count as latency.
func TestMeterStampsEachRoundAfresh(t *testing.T) {
	fm := &fakeMeter{now: 1}
	h := newHarness(t, 1, func(c *Config) { c.Meter = fm })
	h.lead()
	h.open(1, sessionID(1))
	h.request(1, command(sessionID(1), 1))
	h.out.take(1)
	fm.now += int64(10 * time.Second) // the client thinks, then sends its next command
	h.request(1, command(sessionID(1), 2))
	h.out.take(1)
	if len(fm.cmds) != 2 {
		t.Fatalf("%d commands timed, want 2", len(fm.cmds))
	}
	if fm.cmds[1] != 0 {
		t.Fatalf("command 2, taken and applied at one clock reading, measured %v", time.Duration(fm.cmds[1]))
	}
}

// Under steady load (the next batch proposed while the last is synced, so the FIFOs never
// empty) the meter's slices stay as short as what is in flight, and every command is timed.
func TestMeterFIFOsStayBoundedUnderSustainedLoad(t *testing.T) {
	fm := &fakeMeter{now: 1}
	h := newHarness(t, 1, func(c *Config) { c.Meter = fm })
	h.lead()
	h.open(1, sessionID(1))
	var job func() error
	const n = 5000
	for i := 1; i <= n; i++ {
		fm.now++
		h.r.ClientRequest(1, &wire.ClientMsg{Kind: wire.CCommand, Session: sessionID(1), Seq: wire.Seq(i), LowestUnacked: wire.Seq(i), Payload: inc})
		if job != nil {
			h.r.SyncDone(job())
			job = nil
		}
		if err := h.r.Process(); err != nil {
			t.Fatal(err)
		}
		job = h.r.TakeSync()
		h.out.take(1)
	}
	if got := len(fm.cmds); got < n-2 {
		t.Fatalf("%d of %d commands timed", got, n)
	}
	if len(h.r.cmdRecv) > 2*meterCompactAt || len(h.r.batchCmds) > 2*meterCompactAt {
		t.Fatalf("after %d commands the FIFOs hold %d stamps and %d batches (heads %d, %d): they grow with the load",
			n, len(h.r.cmdRecv), len(h.r.batchCmds), h.r.cmdHead, h.r.batchHead)
	}
	for i, d := range fm.cmds {
		if d < 0 || d > 3 {
			t.Fatalf("command %d measured %d ns on a clock that moves 1 a round", i+1, d)
		}
	}
}
