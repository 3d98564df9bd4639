package container

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// rec is a test service that records every callback and tries a mutation from each.
type rec struct {
	c        service.Cluster
	calls    []string
	state    int
	mutErrs  map[string]error
	onMsg    func(s service.Session, msg []byte) []byte
	snapshot []byte
}

func newRec() *rec { return &rec{mutErrs: map[string]error{}} }

func (r *rec) tryMutate(where string) {
	r.mutErrs[where] = r.c.ScheduleTimer(999, r.c.Time())
}

func (r *rec) OnStart(c service.Cluster, snap io.Reader) error {
	r.c = c
	r.state = 0
	if snap != nil {
		b, _ := io.ReadAll(snap)
		fmt.Sscanf(string(b), "%d", &r.state)
	}
	r.tryMutate("OnStart")
	return nil
}
func (r *rec) OnSessionOpen(s service.Session, t time.Time) {
	r.calls = append(r.calls, "open")
}
func (r *rec) OnSessionClose(s service.Session, t time.Time, reason service.CloseReason) {
	r.calls = append(r.calls, "close:"+reason.String())
}
func (r *rec) OnSessionMessage(s service.Session, t time.Time, msg []byte) []byte {
	r.calls = append(r.calls, "msg:"+string(msg))
	if r.onMsg != nil {
		return r.onMsg(s, msg)
	}
	r.state++
	return []byte(fmt.Sprint(r.state))
}
func (r *rec) OnTimerEvent(id int64, t time.Time) {
	r.calls = append(r.calls, fmt.Sprintf("timer:%d@%d", id, t.UnixNano()))
}
func (r *rec) OnTakeSnapshot(w io.Writer) error {
	r.tryMutate("OnTakeSnapshot")
	_, err := fmt.Fprint(w, r.state)
	return err
}
func (r *rec) OnRoleChange(role service.Role) { r.tryMutate("OnRoleChange") }
func (r *rec) OnTerminate()                   { r.tryMutate("OnTerminate") }
func (r *rec) OnQuery(q []byte) []byte {
	r.tryMutate("OnQuery")
	return []byte(fmt.Sprint(r.state))
}

type harness struct {
	t   *testing.T
	c   *Container
	svc *rec
	out []wire.ClientMsg
	ix  uint64
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, svc: newRec()}
	c, err := New(cfg, h.svc, func(m *wire.ClientMsg) { h.out = append(h.out, *m) })
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	if err := c.Start(nil, 0); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) apply(ts int64, items ...wire.Item) bool {
	h.t.Helper()
	h.ix++
	due, err := h.c.ApplyBatch(h.ix, &wire.Batch{TimestampNanos: ts, Items: items})
	if err != nil {
		h.t.Fatal(err)
	}
	return due
}

var s1 = wire.SessionID{1}
var s2 = wire.SessionID{2}

func open(id wire.SessionID) wire.Item { return wire.Item{Kind: wire.ItemOpen, Session: id} }
func cmd(id wire.SessionID, seq, low wire.Seq, p string) wire.Item {
	return wire.Item{Kind: wire.ItemCommand, Session: id, Seq: seq, LowestUnacked: low, Payload: []byte(p)}
}

func (h *harness) last() wire.ClientMsg { return h.out[len(h.out)-1] }

func TestClusterTimeNeverMovesBack(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.apply(100)
	h.apply(50) // a new leader with a slower clock
	if got := h.c.ClusterTime(); got != 100 {
		t.Fatalf("cluster time %d after stamps 100, 50", got)
	}
	h.apply(150)
	if got := h.c.ClusterTime(); got != 150 {
		t.Fatalf("cluster time %d after stamp 150", got)
	}
}

func TestExactlyOnceWindow(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ResponseWindowMax = 3
	h := newHarness(t, cfg)
	h.apply(1, open(s1), cmd(s1, 1, 1, "a"))
	if m := h.last(); m.Kind != wire.CResponse || string(m.Payload) != "1" {
		t.Fatalf("first command answered %+v", m)
	}
	// Duplicate: the recorded reply, the service not called again.
	h.apply(2, cmd(s1, 1, 1, "a"))
	if m := h.last(); m.Status != wire.StatusOK || string(m.Payload) != "1" || h.svc.state != 1 {
		t.Fatalf("duplicate answered %+v, state %d", m, h.svc.state)
	}
	// Pipelined 2, 3 then all retried.
	h.apply(3, cmd(s1, 2, 1, "b"), cmd(s1, 3, 1, "c"))
	h.apply(4, cmd(s1, 1, 1, "a"), cmd(s1, 2, 1, "b"), cmd(s1, 3, 1, "c"))
	if h.svc.state != 3 {
		t.Fatalf("three commands retried applied %d times in all", h.svc.state)
	}
	// Window full (1, 2, 3 unacknowledged): 4 is refused, not applied.
	h.apply(5, cmd(s1, 4, 1, "d"))
	if m := h.last(); m.Status != wire.StatusRejected || h.svc.state != 3 {
		t.Fatalf("command over the window: %+v, state %d", m, h.svc.state)
	}
	if h.c.Admit(s1, 4, 1, false) != wire.StatusRejected {
		t.Fatalf("Admit accepted a command over the window")
	}
	// A client that acknowledged 1 (its answer arrived) may send 4: applying it evicts 1 first.
	// Refusing it because the window still holds 1 would refuse every command of a client
	// keeping as many in flight as the window holds, for ever.
	if h.c.Admit(s1, 4, 2, false) != wire.StatusOK {
		t.Fatalf("Admit refused a command whose acknowledgements make room")
	}
	if h.c.Admit(s1, 5, 2, false) != wire.StatusRejected {
		t.Fatalf("Admit accepted 5 with 2, 3, 4 still in flight in a window of 3")
	}
	// The client acknowledges 1..3: the window trims; 4 now applies; 2 is evicted.
	h.apply(6, cmd(s1, 4, 4, "d"))
	if m := h.last(); m.Status != wire.StatusOK || h.svc.state != 4 {
		t.Fatalf("command after acknowledging: %+v", m)
	}
	h.apply(7, cmd(s1, 2, 4, "b"))
	if m := h.last(); m.Status != wire.StatusEvicted || h.svc.state != 4 {
		t.Fatalf("a retry below the floor must be evicted, never applied again: %+v state %d", m, h.svc.state)
	}
	// Unknown session.
	h.apply(8, cmd(s2, 1, 1, "x"))
	if m := h.last(); m.Status != wire.StatusSessionExpired {
		t.Fatalf("command on an unknown session: %+v", m)
	}
	if h.c.Admit(s2, 1, 1, false) != wire.StatusSessionExpired || h.c.Admit(s2, 1, 1, true) != wire.StatusOK {
		t.Fatalf("Admit on an unknown session")
	}
}

func TestByteBudget(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ResponseBytesMax = sessionOverheadBytes + entryOverheadBytes + 10 + 5
	h := newHarness(t, cfg)
	h.svc.onMsg = func(service.Session, []byte) []byte { return make([]byte, 10) }
	h.apply(1, open(s1), cmd(s1, 1, 1, "a"))
	h.apply(2, cmd(s1, 2, 1, "b"))
	if m := h.last(); m.Status != wire.StatusRejected {
		t.Fatalf("a command over the byte budget was %+v", m)
	}
	h.apply(3, open(s2), open(wire.SessionID{3}))
	if m := h.last(); m.Kind != wire.CSessionEvent || m.Status != wire.StatusRejected || !strings.Contains(string(m.Payload), "ResponseBytesMax") {
		t.Fatalf("a session over the byte budget: %+v", m)
	}
}

func TestSessionsOpenIdempotentCloseReasonsLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SessionsMax = 1
	h := newHarness(t, cfg)
	h.apply(1, open(s1), open(s1))
	h.apply(2, open(s2))
	if m := h.last(); m.Status != wire.StatusRejected || h.c.SessionOpen(s2) || string(m.Payload) != "session limit reached: 1 sessions open (SessionsMax 1)" {
		t.Fatalf("second session over SessionsMax: %+v (%q)", m, m.Payload)
	}
	h.svc.onMsg = func(s service.Session, msg []byte) []byte {
		if err := h.svc.c.CloseSession(s.ID()); err != nil {
			return []byte(err.Error())
		}
		return []byte("bye")
	}
	h.apply(3, cmd(s1, 1, 1, "close me"))
	h.apply(4, wire.Item{Kind: wire.ItemClose, Session: s1, Reason: uint8(service.CloseTimeout)}) // already closed: nothing
	want := []string{"open", "msg:close me", "close:SERVICE_ACTION"}
	if fmt.Sprint(h.svc.calls) != fmt.Sprint(want) {
		t.Fatalf("calls %v, want %v", h.svc.calls, want)
	}
	h.apply(5, open(s2), wire.Item{Kind: wire.ItemClose, Session: s2, Reason: uint8(service.CloseTimeout)})
	if got := h.svc.calls[len(h.svc.calls)-1]; got != "close:TIMEOUT" {
		t.Fatalf("timeout close recorded as %q", got)
	}
	// Counted as applied: s1 and s2 opened (the refused open and the repeated one are not),
	// closed by the service and by expiry; the close of a closed session counts nothing.
	if o, c, e := h.c.SessionCounts(); o != 2 || c != 2 || e != 1 {
		t.Fatalf("SessionCounts: opened %d closed %d expired %d, want 2 2 1", o, c, e)
	}
}

func TestTimers(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.svc.onMsg = func(s service.Session, msg []byte) []byte {
		var id, at int64
		var verb string
		fmt.Sscanf(string(msg), "%s %d %d", &verb, &id, &at)
		switch verb {
		case "set":
			_ = h.svc.c.ScheduleTimer(id, time.Unix(0, at))
		case "cancel":
			_, _ = h.svc.c.CancelTimer(id)
		}
		return nil
	}
	h.apply(10, open(s1), cmd(s1, 1, 1, "set 5 100"), cmd(s1, 2, 1, "set 3 100"), cmd(s1, 3, 1, "set 9 50"),
		cmd(s1, 4, 1, "set 7 200"), cmd(s1, 5, 1, "cancel 7 0"), cmd(s1, 6, 1, "set 1 5"))
	h.svc.calls = nil
	if d, ok := h.c.NextTimerDeadline(); !ok || d != 5 {
		t.Fatalf("next deadline %d %v, want 5 (a past deadline fires on a later entry)", d, ok)
	}
	h.apply(120)
	want := "[timer:1@120 timer:9@120 timer:3@120 timer:5@120]"
	if fmt.Sprint(h.svc.calls) != want {
		t.Fatalf("fired %v, want %s (by deadline, then id)", h.svc.calls, want)
	}
	h.svc.calls = nil
	h.apply(1000)
	if len(h.svc.calls) != 0 {
		t.Fatalf("fired again or a cancelled timer fired: %v", h.svc.calls)
	}
	// Restored from a snapshot, a timer still fires, once.
	h.apply(1001, cmd(s1, 7, 7, "set 4 2000"))
	snap, err := h.c.TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t, DefaultConfig())
	if err := h2.c.Start(snap, h.ix); err != nil {
		t.Fatal(err)
	}
	h2.ix = h.ix
	h2.apply(2500)
	h2.apply(3000)
	if fmt.Sprint(h2.svc.calls) != "[timer:4@2500]" {
		t.Fatalf("restored timer fired %v", h2.svc.calls)
	}
}

func TestMutationsRefusedOutsideTheLog(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.apply(1, open(s1))
	h.c.SetRole(service.Leader)
	h.c.Query(nil)
	if _, err := h.c.TakeSnapshot(); err != nil {
		t.Fatal(err)
	}
	h.c.Terminate()
	for _, where := range []string{"OnStart", "OnQuery", "OnTakeSnapshot", "OnRoleChange", "OnTerminate"} {
		if err, ok := h.svc.mutErrs[where]; !ok || !errors.Is(err, service.ErrNotAllowed) {
			t.Fatalf("a mutation from %s returned %v, want ErrNotAllowed", where, err)
		}
	}
}

func TestSnapshotPointsAreIndexAligned(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SnapshotIntervalEntries = 4
	cfg.SnapshotIntervalTime = time.Second
	h := newHarness(t, cfg)
	var due []uint64
	for i := range 9 {
		if h.apply(int64(i+1) * int64(100*time.Millisecond)) {
			due = append(due, h.ix)
		}
	}
	if fmt.Sprint(due) != "[4 8]" {
		t.Fatalf("snapshot points %v, want [4 8]", due)
	}
	if !h.apply(int64(1500 * time.Millisecond)) {
		t.Fatalf("crossing a multiple of SnapshotIntervalTime in cluster time is a snapshot point")
	}
}

func TestSnapshotDeterministicAndRoundTrip(t *testing.T) {
	feed := func(h *harness, order []wire.SessionID) {
		var items []wire.Item
		for _, id := range order {
			items = append(items, open(id))
		}
		h.apply(5, items...)
		for i, id := range order {
			h.apply(int64(10+i), cmd(id, 1, 1, "x"), cmd(id, 2, 1, "y"))
		}
	}
	ids := []wire.SessionID{{9}, {1}, {5}, {3}, {7}}
	a := newHarness(t, DefaultConfig())
	b := newHarness(t, DefaultConfig())
	feed(a, ids)
	feed(b, ids)
	sa, _ := a.c.TakeSnapshot()
	sb, _ := b.c.TakeSnapshot()
	if !bytes.Equal(sa, sb) {
		t.Fatalf("same log, different snapshot bytes")
	}
	c := newHarness(t, DefaultConfig())
	if err := c.c.Start(sa, a.ix); err != nil {
		t.Fatal(err)
	}
	c.ix = a.ix
	a.apply(100, cmd(ids[0], 3, 1, "z"))
	c.apply(100, cmd(ids[0], 3, 1, "z"))
	s1, _ := a.c.TakeSnapshot()
	s2, _ := c.c.TakeSnapshot()
	if !bytes.Equal(s1, s2) {
		t.Fatalf("a container restored from a snapshot diverged from the original")
	}
	for i := range len(sa) {
		bad := bytes.Clone(sa)
		bad[i] ^= 0x40
		if err := c.c.Start(bad, 0); err == nil {
			t.Fatalf("a snapshot with byte %d flipped was accepted", i)
		}
	}
}

func FuzzDecodeSnapshot(f *testing.F) {
	h := &harness{svc: newRec()}
	c, _ := New(DefaultConfig(), h.svc, nil)
	_ = c.Start(nil, 0)
	c.ApplyBatch(1, &wire.Batch{TimestampNanos: 5, Items: []wire.Item{open(s1), cmd(s1, 1, 1, "a")}})
	snap, _ := c.TakeSnapshot()
	f.Add(snap)
	// Format 4: the controls.
	_, _ = c.ApplyClusterVersion(2, ClusterVersionControl)
	_, _ = c.ApplyControl(3, &wire.Control{Op: wire.ControlPreferred, Preferred: []int{1, 0}})
	_, _ = c.ApplyControl(4, &wire.Control{Op: wire.ControlSuspend})
	_, _ = c.ApplyControl(5, &wire.Control{Op: wire.ControlShutdown, Abort: true})
	snap4, _ := c.TakeSnapshot()
	f.Add(snap4)
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeSnapshot(b)
		if err != nil {
			return
		}
		_ = st
	})
}

// A snapshot whose recorded replies lie below their session's floor or out of order is refused:
// the window holds only numbers at or above the floor, in order.
func TestSnapshotWithRepliesBelowTheFloorIsRefused(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.apply(1, open(s1), cmd(s1, 1, 1, "a"))
	snap, err := h.c.TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	const floorAt = 4 + 1 + 8 + 8 + 4 + 16 // magic, version, applied, cluster time, count, id
	if got := binary.LittleEndian.Uint64(snap[floorAt:]); got != 1 {
		t.Fatalf("the layout moved: floor field holds %d", got)
	}
	binary.LittleEndian.PutUint64(snap[floorAt:], 2) // the reply of 1 is now below the floor
	body := snap[:len(snap)-4]
	binary.LittleEndian.PutUint32(snap[len(snap)-4:], crc32.Checksum(body, castagnoli))
	if _, err := decodeSnapshot(snap); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("decoding a reply below the floor: %v", err)
	}
}

func TestClosedSessionIsNeverReopened(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.apply(1, open(s1), cmd(s1, 1, 1, "a"))
	h.apply(2, wire.Item{Kind: wire.ItemClose, Session: s1, Reason: uint8(service.CloseTimeout)})
	h.apply(3, open(s1), cmd(s1, 1, 1, "a")) // the client's late retry of its first open and command
	if h.c.SessionOpen(s1) || h.svc.state != 1 {
		t.Fatalf("an expired session was reopened (open %v) and its command applied again (state %d)", h.c.SessionOpen(s1), h.svc.state)
	}
	if m := h.last(); m.Kind != wire.CResponse || m.Status != wire.StatusSessionExpired {
		t.Fatalf("the retried command was answered %+v", m)
	}
	// Remembered across a snapshot.
	snap, _ := h.c.TakeSnapshot()
	h2 := newHarness(t, DefaultConfig())
	if err := h2.c.Start(snap, h.ix); err != nil {
		t.Fatal(err)
	}
	if !h2.c.SessionClosed(s1) {
		t.Fatalf("the closed session id was forgotten by the snapshot")
	}
	// Bounded: the oldest ids are forgotten first.
	cfg := DefaultConfig()
	cfg.ClosedSessionsMax = 2
	h3 := newHarness(t, cfg)
	for i := byte(1); i <= 3; i++ {
		id := wire.SessionID{i}
		h3.apply(int64(i), open(id), wire.Item{Kind: wire.ItemClose, Session: id, Reason: uint8(service.CloseClient)})
	}
	if h3.c.SessionClosed(wire.SessionID{1}) || !h3.c.SessionClosed(wire.SessionID{3}) {
		t.Fatalf("ClosedSessionsMax is not kept oldest-first")
	}
}

// The floor evicts answers below it whether it moves by a step or jumps past everything the
// window holds; the byte accounting ends the same either way.
func TestWindowEvictionStepAndJump(t *testing.T) {
	for _, jump := range []bool{false, true} {
		h := newHarness(t, DefaultConfig())
		h.apply(1, open(s1))
		base := h.c.bytesUsed
		for seq := wire.Seq(1); seq <= 10; seq++ {
			h.apply(int64(seq+1), cmd(s1, seq, 1, "x"))
		}
		if n := h.c.sessions[s1].win.count; n != 10 {
			t.Fatalf("window holds %d answers, want 10", n)
		}
		next, low := wire.Seq(11), wire.Seq(6)
		if jump {
			next, low = 1000, 1000
		}
		h.apply(20, cmd(s1, next, low, "y"))
		s := h.c.sessions[s1]
		want, n := base+slotBytes*int64(s.win.span), 0
		s.win.each(func(seq wire.Seq, r []byte) {
			if seq < low {
				t.Fatalf("jump=%v: answer %d kept below the floor %d", jump, seq, low)
			}
			want += entryOverheadBytes + int64(len(r))
			n++
		})
		if wantN := int(next - low + 1); n != wantN || s.win.count != wantN {
			t.Fatalf("jump=%v: %d answers (count %d) after the floor moved to %d, want %d", jump, n, s.win.count, low, wantN)
		}
		if h.c.bytesUsed != want || s.bytes+base-sessionOverheadBytes != want {
			t.Fatalf("jump=%v: bytes used %d (session %d), want %d", jump, h.c.bytesUsed, s.bytes, want)
		}
	}
}

// The byte budget charges every number a window spans, recorded or not, alike on every member
// however it got its state; the ring behind it shrinks when the floor passes most of it, and a
// number whose slots would pass the budget is refused at ingress and at apply.
func TestWindowChargesItsSpanAndItsRingShrinks(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.svc.onMsg = func(service.Session, []byte) []byte { return []byte("r") }
	h.apply(1, open(s1))
	s := h.c.sessions[s1]
	check := func(what string, span int) {
		t.Helper()
		want := sessionOverheadBytes + int64(span)*slotBytes + int64(s.win.count)*(entryOverheadBytes+1)
		if s.win.span != span || s.bytes != want || h.c.bytesUsed != want {
			t.Fatalf("%s: span %d, session bytes %d, total %d; want span %d, %d bytes", what, s.win.span, s.bytes, h.c.bytesUsed, span, want)
		}
		if len(s.win.ring) > max(minRing, 4*span) {
			t.Fatalf("%s: a ring of %d slots for a span of %d", what, len(s.win.ring), span)
		}
	}
	for seq := wire.Seq(1); seq <= 100; seq++ {
		h.apply(int64(seq+1), cmd(s1, seq, 1, "x"))
	}
	check("100 in flight", 100)
	h.apply(200, cmd(s1, 101, 100, "x"))
	check("all but two acknowledged", 2)
	h.apply(201, cmd(s1, 600, 101, "x")) // a gap of 498 unrecorded numbers
	check("a gap", 500)
	snap, err := h.c.TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t, DefaultConfig())
	if err := h2.c.Start(snap, h.ix); err != nil {
		t.Fatal(err)
	}
	if s2 := h2.c.sessions[s1]; h2.c.bytesUsed != h.c.bytesUsed || s2.bytes != s.bytes || s2.win.span != s.win.span {
		t.Fatalf("restored from a snapshot: %d bytes (session %d, span %d), the member that applied the log has %d (%d, %d)",
			h2.c.bytesUsed, s2.bytes, s2.win.span, h.c.bytesUsed, s.bytes, s.win.span)
	}

	cfg := DefaultConfig()
	cfg.ResponseBytesMax = sessionOverheadBytes + 2*(entryOverheadBytes+1) + 50*slotBytes
	h = newHarness(t, cfg)
	h.svc.onMsg = func(service.Session, []byte) []byte { return []byte("r") }
	h.apply(1, open(s1))
	h.svc.calls = nil
	if st := h.c.Admit(s1, 60, 1, false); st != wire.StatusRejected {
		t.Fatalf("ingress admitted a number whose 60 slots pass the budget: %v", st)
	}
	h.apply(2, cmd(s1, 60, 1, "x"))
	if m := h.last(); m.Status != wire.StatusRejected || len(h.svc.calls) != 0 {
		t.Fatalf("apply took a number whose 60 slots pass the budget: %+v, calls %v", m, h.svc.calls)
	}
	if st := h.c.Admit(s1, 40, 1, false); st != wire.StatusOK {
		t.Fatalf("ingress refused a number within the budget: %v", st)
	}
	h.apply(3, cmd(s1, 40, 1, "x"))
	if m := h.last(); m.Status != wire.StatusOK {
		t.Fatalf("apply refused a number within the budget: %+v", m)
	}
}

// A session spans at most ResponseWindowMax numbers from its floor, gaps included (a client
// that gave up on a command moves its lowest unacknowledged number past it): a number that far
// ahead is refused, at ingress and at apply alike, and nothing is applied.
func TestWindowSpanIsBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ResponseWindowMax = 4
	h := newHarness(t, cfg)
	h.apply(1, open(s1), cmd(s1, 1, 1, "a"), cmd(s1, 3, 1, "c")) // 2 never came
	if h.c.Admit(s1, 5, 1, false) != wire.StatusRejected {
		t.Fatalf("Admit accepted 5 with the floor at 1 in a window of 4")
	}
	h.apply(2, cmd(s1, 5, 1, "e"))
	if m := h.last(); m.Status != wire.StatusRejected || h.svc.state != 2 {
		t.Fatalf("a number beyond the window: %+v, state %d", m, h.svc.state)
	}
	if h.c.Admit(s1, 5, 2, false) != wire.StatusOK {
		t.Fatalf("Admit refused 5 once the floor may move to 2")
	}
	h.apply(3, cmd(s1, 5, 2, "e"))
	if m := h.last(); m.Status != wire.StatusOK || h.svc.state != 3 {
		t.Fatalf("5 with the floor at 2: %+v, state %d", m, h.svc.state)
	}
	// 3 is still answered from the record, 1 is evicted.
	h.apply(4, cmd(s1, 3, 2, "c"), cmd(s1, 1, 2, "a"))
	if m := h.out[len(h.out)-2]; m.Status != wire.StatusOK || string(m.Payload) != "2" {
		t.Fatalf("retry of 3: %+v", m)
	}
	if m := h.last(); m.Status != wire.StatusEvicted || h.svc.state != 3 {
		t.Fatalf("retry of 1 below the floor: %+v, state %d", m, h.svc.state)
	}
}

// The ring keeps every reply at its number through growth and wrap-around, and evicts exactly
// the numbers the floor passes.
func TestWindowRing(t *testing.T) {
	var w window
	reply := func(seq wire.Seq) []byte { return []byte(fmt.Sprint(seq)) }
	recorded := map[wire.Seq]bool{}
	evicted := 0
	floor, next := wire.Seq(1), wire.Seq(1)
	w.floor = floor
	for step := range 5000 {
		// Record a few (skipping some numbers), then move the floor a little.
		for range 1 + step%5 {
			if next%7 != 3 {
				w.put(next, reply(next))
				recorded[next] = true
			}
			next++
		}
		if step%3 != 0 {
			to := min(floor+wire.Seq(1+step%4), next)
			if next > 40 {
				to = max(to, next-40) // a client keeps a bounded window in flight
			}
			w.advance(to, func(r []byte) { evicted++ })
			for s := floor; s < to; s++ {
				delete(recorded, s)
			}
			floor = to
		}
		if w.floor != floor || w.count != len(recorded) {
			t.Fatalf("step %d: floor %d count %d, want %d and %d", step, w.floor, w.count, floor, len(recorded))
		}
		for s := floor; s < next; s++ {
			r, ok := w.get(s)
			if ok != recorded[s] || (ok && string(r) != string(reply(s))) {
				t.Fatalf("step %d: get(%d) = %q, %v", step, s, r, ok)
			}
		}
		if _, ok := w.get(floor - 1); ok && floor > 1 {
			t.Fatalf("step %d: a number below the floor is still answered", step)
		}
	}
	if evicted == 0 || len(w.ring) > 64 {
		t.Fatalf("evicted %d, ring of %d slots: the floor should keep the ring small", evicted, len(w.ring))
	}
	w.advance(next+100, func([]byte) {})
	if w.count != 0 || w.span != 0 || w.floor != next+100 {
		t.Fatalf("a jump past everything left count %d span %d floor %d", w.count, w.span, w.floor)
	}
}
