package replica

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/vfs"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// These tests drive one replica by hand, as the node's loop and the simulator do: inputs, then
// Process and the syncs it leaves (drive), over the archive on the disk model. Peers are played
// by the test: it answers the raft messages the replica sends with messages of its own.

// recorder is an Outbox that keeps everything the replica sends.
type recorder struct {
	raft    []*pb.Message
	client  []sentClient
	changes []Change
}

type sentClient struct {
	conn ConnID
	m    wire.ClientMsg
}

func (o *recorder) SendRaft(msgs []*pb.Message) { o.raft = append(o.raft, msgs...) }
func (o *recorder) SendClient(conn ConnID, m *wire.ClientMsg) {
	cp := *m
	cp.Payload = slices.Clone(m.Payload) // the container reuses its answers
	o.client = append(o.client, sentClient{conn, cp})
}
func (o *recorder) Changed(ch Change) { o.changes = append(o.changes, ch) }

// take returns, and forgets, what was sent to conn.
func (o *recorder) take(conn ConnID) []wire.ClientMsg {
	var got []wire.ClientMsg
	kept := o.client[:0]
	for _, s := range o.client {
		if s.conn == conn {
			got = append(got, s.m)
		} else {
			kept = append(kept, s)
		}
	}
	o.client = kept
	return got
}

// takeRaft returns, and forgets, the raft messages sent.
func (o *recorder) takeRaft() []*pb.Message {
	got := o.raft
	o.raft = nil
	return got
}

// fixedClock is a clock the test moves.
type fixedClock struct{ now int64 }

func (c *fixedClock) Now() int64 { return c.now }

type harness struct {
	t     *testing.T
	r     *Replica
	out   *recorder
	clock *fixedClock
	svc   *counter.Service
	term  uint64 // the term the harness's peers are in
}

// newHarness starts member 0 of a cluster of members on an empty archive, with tune applied to
// the configuration, and drives it until it applied the bootstrap (so it knows its peers).
func newHarness(t *testing.T, members int, tune func(*Config)) *harness {
	t.Helper()
	svc := counter.New()
	h := newHarnessOf(t, members, tune, svc)
	h.svc = svc
	return h
}

// newHarnessOf is newHarness with another service than the counter (h.svc is then nil).
func newHarnessOf(t *testing.T, members int, tune func(*Config), svc service.Service) *harness {
	t.Helper()
	cfg := DefaultConfig()
	for i := range members {
		cfg.Members = append(cfg.Members, Member{ID: i, ClientAddr: fmt.Sprintf("client-%d", i), MemberAddr: fmt.Sprintf("member-%d", i)})
	}
	if tune != nil {
		tune(&cfg)
	}
	st, err := archive.Open(vfs.NewMem(), "/data", archive.Options{ClusterID: "test", MemberID: 0})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, out: &recorder{}, clock: &fixedClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}}
	h.r, err = New(cfg, svc, st, h.clock, h.out)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < members; i++ { // the others' handshakes: founders too (consensus/verify.go)
		h.r.PeerStanding(RaftID(i), wire.Standing{Term: 1, Blank: true})
	}
	t.Cleanup(func() { _ = h.r.Close() })
	h.drive()
	return h
}

func (h *harness) drive() {
	h.t.Helper()
	if err := drive(h.r); err != nil {
		h.t.Fatal(err)
	}
}

// step delivers a raft message from member from (a member id) and drives.
func (h *harness) step(typ pb.MessageType, from int, m *pb.Message) {
	h.t.Helper()
	m.Type, m.From, m.To = typ.Enum(), new(RaftID(from)), new(RaftID(0))
	if m.Term == nil {
		m.Term = new(h.term)
	}
	if err := h.r.Step(m); err != nil {
		h.t.Fatal(err)
	}
	h.drive()
}

// request delivers a client message on conn and drives.
func (h *harness) request(conn ConnID, m wire.ClientMsg) {
	h.t.Helper()
	h.r.ClientRequest(conn, &m)
	h.drive()
}

// tickUntil ticks (and drives) until cond holds, at most limit ticks.
func (h *harness) tickUntil(limit int, cond func() bool) {
	h.t.Helper()
	for range limit {
		if cond() {
			return
		}
		h.r.Tick()
		h.drive()
	}
	if !cond() {
		h.t.Fatalf("not reached in %d ticks: %+v", limit, h.r.Summary())
	}
}

// lead makes member 0 the leader: alone, by its own election; with peers, with member 1's
// votes, and member 1's acknowledgement of the leader's first entry so that the leader has
// committed in its term (raft serves reads only then).
func (h *harness) lead() {
	h.t.Helper()
	if len(h.r.Members()) == 1 {
		h.tickUntil(100, func() bool { return h.r.Summary().Role == service.Leader })
		return
	}
	var ask *pb.Message
	h.tickUntil(100, func() bool {
		for _, m := range h.out.takeRaft() {
			if m.GetType() == pb.MsgPreVote && m.GetTo() == RaftID(1) {
				ask = m
			}
		}
		return ask != nil
	})
	h.step(pb.MsgPreVoteResp, 1, &pb.Message{Term: new(ask.GetTerm())})
	ask = nil
	for _, m := range h.out.takeRaft() {
		if m.GetType() == pb.MsgVote && m.GetTo() == RaftID(1) {
			ask = m
		}
	}
	if ask == nil {
		h.t.Fatalf("no vote asked after a granted pre-vote: %+v", h.r.Summary())
	}
	h.term = ask.GetTerm()
	h.step(pb.MsgVoteResp, 1, &pb.Message{})
	if h.r.Summary().Role != service.Leader {
		h.t.Fatalf("not leader with two votes of three: %+v", h.r.Summary())
	}
	h.ackAll()
}

// confirmRound has member from answer the leader's read round (the heartbeat carrying a read
// context), and reports whether there was one.
func (h *harness) confirmRound(from int) bool {
	h.t.Helper()
	var ctx []byte
	for _, m := range h.out.takeRaft() {
		if m.GetType() == pb.MsgHeartbeat && len(m.GetContext()) > 0 && m.GetTo() == RaftID(from) {
			ctx = m.GetContext()
		}
	}
	if ctx == nil {
		return false
	}
	h.step(pb.MsgHeartbeatResp, from, &pb.Message{Context: ctx})
	return true
}

// ackAll has member 1 acknowledge every entry the leader sent it.
func (h *harness) ackAll() {
	h.t.Helper()
	var last uint64
	found := false
	for _, m := range h.out.takeRaft() {
		if m.GetType() == pb.MsgApp && m.GetTo() == RaftID(1) {
			last, found = max(last, m.GetIndex()+uint64(len(m.GetEntries()))), true
		}
	}
	if found {
		h.step(pb.MsgAppResp, 1, &pb.Message{Index: new(last)})
	}
}

func sessionID(b byte) wire.SessionID {
	var id wire.SessionID
	id[0] = b
	return id
}

var inc = counter.EncodeRequest(counter.Request{Op: counter.OpIncrement, Delta: 1})

func command(id wire.SessionID, seq wire.Seq) wire.ClientMsg {
	return wire.ClientMsg{Kind: wire.CCommand, Session: id, Seq: seq, LowestUnacked: seq, Payload: inc}
}

// only asserts that exactly one message went to conn, and returns it.
func (h *harness) only(conn ConnID) wire.ClientMsg {
	h.t.Helper()
	got := h.out.take(conn)
	if len(got) != 1 {
		h.t.Fatalf("%d messages to connection %d, want 1: %+v", len(got), conn, got)
	}
	return got[0]
}

// open opens session id from conn on the leader and checks that it is attached.
func (h *harness) open(conn ConnID, id wire.SessionID) {
	h.t.Helper()
	h.request(conn, wire.ClientMsg{Kind: wire.COpen, Session: id})
	h.ackAll()
	if m := h.only(conn); m.Kind != wire.CAttached || m.Session != id {
		h.t.Fatalf("open answered %+v", m)
	}
}

func TestFollowerRedirects(t *testing.T) {
	h := newHarness(t, 3, nil)
	// No leader known: a redirect that names none.
	h.request(7, command(sessionID(1), 1))
	m := h.only(7)
	if m.Kind != wire.CRedirect || m.LeaderID != -1 || m.LeaderAddr != "" || m.Status != wire.StatusNotLeader || m.Seq != 1 {
		t.Fatalf("without a leader: %+v", m)
	}
	// Member 2 leads in term 5 (its heartbeat says so): commands, opens and queries are sent
	// there, with the term of the hint and the leader's client address; nothing is proposed.
	h.term = 5
	h.step(pb.MsgHeartbeat, 2, &pb.Message{Commit: new(uint64(0))})
	h.out.takeRaft()
	for _, req := range []wire.ClientMsg{
		command(sessionID(1), 3),
		{Kind: wire.COpen, Session: sessionID(2)},
		{Kind: wire.CQuery, RequestID: 42},
	} {
		h.request(7, req)
		m := h.only(7)
		if m.Kind != wire.CRedirect || m.LeaderID != 2 || m.Term != 5 || m.LeaderAddr != "client-2" ||
			m.Session != req.Session || m.Seq != req.Seq || m.RequestID != req.RequestID {
			t.Fatalf("%+v redirected as %+v", req, m)
		}
	}
	for _, m := range h.out.takeRaft() {
		if m.GetType() == pb.MsgApp || m.GetType() == pb.MsgProp {
			t.Fatalf("a follower sent %s", m.GetType())
		}
	}
}

func TestSessionPaths(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.lead()
	a, b := sessionID(1), sessionID(2)

	// Attach never opens: an unknown session is expired.
	h.request(1, wire.ClientMsg{Kind: wire.CAttach, Session: a})
	if m := h.only(1); m.Kind != wire.CSessionEvent || m.Status != wire.StatusSessionExpired {
		t.Fatalf("attach to an unknown session: %+v", m)
	}
	// A command of a session that is neither open nor opening is refused as expired.
	h.request(1, command(a, 1))
	if m := h.only(1); m.Kind != wire.CResponse || m.Status != wire.StatusSessionExpired || m.Seq != 1 {
		t.Fatalf("command of an unknown session: %+v", m)
	}
	// Open, then open again (idempotent) and attach from another connection.
	h.open(1, a)
	h.open(2, a)
	h.request(3, wire.ClientMsg{Kind: wire.CAttach, Session: a})
	if m := h.only(3); m.Kind != wire.CAttached {
		t.Fatalf("attach to an open session: %+v", m)
	}
	// Commands may ride with the open, in the same round.
	h.r.ClientRequest(4, &wire.ClientMsg{Kind: wire.COpen, Session: b})
	h.r.ClientRequest(4, &wire.ClientMsg{Kind: wire.CCommand, Session: b, Seq: 1, LowestUnacked: 1, Payload: inc})
	h.drive()
	got := h.out.take(4)
	if len(got) != 2 || got[0].Kind != wire.CAttached || got[1].Kind != wire.CResponse || got[1].Status != wire.StatusOK {
		t.Fatalf("open with a command: %+v", got)
	}
	// Keep-alives: fine for an open session, expired for an unknown one.
	h.request(3, wire.ClientMsg{Kind: wire.CKeepAlive, Session: a})
	h.request(5, wire.ClientMsg{Kind: wire.CKeepAlive, Session: sessionID(9)})
	if m := h.only(3); m.Kind != wire.CKeepAliveAck || m.Status != wire.StatusOK {
		t.Fatalf("keep-alive of an open session: %+v", m)
	}
	if m := h.only(5); m.Kind != wire.CKeepAliveAck || m.Status != wire.StatusSessionExpired {
		t.Fatalf("keep-alive of an unknown session: %+v", m)
	}
	// Close: the session event goes to the connection attached last; a second close, and
	// any later open, attach or command of that id, is told the session is gone.
	h.request(3, wire.ClientMsg{Kind: wire.CClose, Session: a})
	if m := h.only(3); m.Kind != wire.CSessionEvent || m.Reason != uint8(service.CloseClient) {
		t.Fatalf("close: %+v", m)
	}
	for _, req := range []wire.ClientMsg{
		{Kind: wire.CClose, Session: a},
		{Kind: wire.COpen, Session: a},
		{Kind: wire.CAttach, Session: a},
	} {
		h.request(6, req)
		if m := h.only(6); m.Kind != wire.CSessionEvent || m.Status != wire.StatusSessionExpired {
			t.Fatalf("%+v after the close: %+v", req, m)
		}
	}
	h.request(6, command(a, 2))
	if m := h.only(6); m.Kind != wire.CResponse || m.Status != wire.StatusSessionExpired {
		t.Fatalf("command after the close: %+v", m)
	}
	if h.svc.Value() != 1 {
		t.Fatalf("counter %d, want 1 (one command applied)", h.svc.Value())
	}
	// An unknown request kind is a bad request, answered without a proposal.
	h.request(6, wire.ClientMsg{Kind: wire.CPush, Session: b})
	if m := h.only(6); m.Kind != wire.CResponse || m.Status != wire.StatusBadRequest {
		t.Fatalf("a push from a client: %+v", m)
	}
}

func TestAdmissionRefusals(t *testing.T) {
	h := newHarness(t, 1, func(c *Config) {
		c.MaxPendingItems = 2
		c.MaxPendingReads = 2
		c.Container.ResponseWindowMax = 4
	})
	h.lead()
	a := sessionID(1)
	h.open(1, a)

	// The ingress queue holds MaxPendingItems items a round: the third is refused, not applied.
	for seq := wire.Seq(1); seq <= 3; seq++ {
		h.r.ClientRequest(1, &wire.ClientMsg{Kind: wire.CCommand, Session: a, Seq: seq, LowestUnacked: 1, Payload: inc})
	}
	h.drive()
	got := h.out.take(1)
	if len(got) != 3 {
		t.Fatalf("%d answers, want 3: %+v", len(got), got)
	}
	if m := got[0]; m.Seq != 3 || m.Status != wire.StatusRejected || !bytes.Contains(m.Payload, []byte("queue full")) {
		t.Fatalf("the third command of a round: %+v", m)
	}
	if got[1].Status != wire.StatusOK || got[2].Status != wire.StatusOK || h.svc.Value() != 2 {
		t.Fatalf("the first two: %+v, counter %d", got[1:], h.svc.Value())
	}
	// The response window spans ResponseWindowMax numbers from the lowest unacknowledged one.
	h.request(1, wire.ClientMsg{Kind: wire.CCommand, Session: a, Seq: 7, LowestUnacked: 3, Payload: inc})
	if m := h.only(1); m.Status != wire.StatusRejected || string(m.Payload) == "" {
		t.Fatalf("a number beyond the window: %+v", m)
	}
	h.request(1, wire.ClientMsg{Kind: wire.CCommand, Session: a, Seq: 6, LowestUnacked: 3, Payload: inc})
	if m := h.only(1); m.Status != wire.StatusOK {
		t.Fatalf("the last number of the window: %+v", m)
	}
	// Queries: MaxPendingReads unanswered at a time.
	for id := uint64(1); id <= 3; id++ {
		h.r.ClientRequest(2, &wire.ClientMsg{Kind: wire.CQuery, RequestID: id, Payload: counter.EncodeRequest(counter.Request{Op: counter.OpGet})})
	}
	h.drive()
	got = h.out.take(2)
	if len(got) != 3 || got[0].RequestID != 3 || got[0].Status != wire.StatusRejected ||
		got[1].Status != wire.StatusOK || got[2].Status != wire.StatusOK {
		t.Fatalf("three queries with room for two: %+v", got)
	}
}

func TestQueriesShareOneReadIndexRoundAndFailOnStepDown(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.lead()
	h.out.takeRaft()
	get := counter.EncodeRequest(counter.Request{Op: counter.OpGet})
	for id := uint64(1); id <= 3; id++ {
		h.r.ClientRequest(ConnID(id), &wire.ClientMsg{Kind: wire.CQuery, RequestID: id, Payload: get})
	}
	h.drive()
	// One round: one heartbeat carrying a read context to each follower.
	var ctx []byte
	for _, m := range h.out.takeRaft() {
		if m.GetType() != pb.MsgHeartbeat || len(m.GetContext()) == 0 {
			continue
		}
		if m.GetTo() == RaftID(1) {
			if ctx != nil {
				t.Fatalf("a second read round to member 1")
			}
			ctx = m.GetContext()
		}
	}
	if ctx == nil {
		t.Fatalf("no read round")
	}
	if len(h.out.client) != 0 {
		t.Fatalf("queries answered before a quorum confirmed the leader: %+v", h.out.client)
	}
	h.step(pb.MsgHeartbeatResp, 1, &pb.Message{Context: ctx})
	for id := ConnID(1); id <= 3; id++ {
		if m := h.only(id); m.Kind != wire.CQueryResponse || m.Status != wire.StatusOK || m.RequestID != uint64(id) {
			t.Fatalf("query %d: %+v", id, m)
		}
	}

	// Queries waiting for their round when a newer term appears are redirected.
	for id := uint64(4); id <= 5; id++ {
		h.r.ClientRequest(9, &wire.ClientMsg{Kind: wire.CQuery, RequestID: id, Payload: get})
	}
	h.drive()
	h.term++
	h.step(pb.MsgHeartbeat, 2, &pb.Message{Commit: new(uint64(0))})
	got := h.out.take(9)
	if len(got) != 2 {
		t.Fatalf("%d answers to two queries after the step-down: %+v", len(got), got)
	}
	for i, m := range got {
		if m.Kind != wire.CRedirect || m.RequestID != uint64(4+i) || m.LeaderID != 2 || m.Term != h.term {
			t.Fatalf("a query after the step-down: %+v", m)
		}
	}
}

func TestSessionsExpireByTheLeadersClock(t *testing.T) {
	h := newHarness(t, 1, nil)
	timeout := DefaultConfig().SessionTimeout
	h.lead()
	a, b := sessionID(1), sessionID(2)
	h.open(1, a)
	h.open(2, b)
	start := h.clock.now
	tick := func(at time.Duration) {
		h.clock.now = start + int64(at)
		h.r.Tick()
		h.drive()
	}
	tick(timeout / 2)
	h.request(2, wire.ClientMsg{Kind: wire.CKeepAlive, Session: b}) // b speaks at timeout/2
	if m := h.only(2); m.Status != wire.StatusOK {
		t.Fatalf("keep-alive: %+v", m)
	}
	tick(timeout) // exactly the timeout: not yet
	if got := h.out.take(1); len(got) != 0 {
		t.Fatalf("a session closed at its timeout, not after: %+v", got)
	}
	tick(timeout + time.Millisecond)
	if m := h.only(1); m.Kind != wire.CSessionEvent || m.Session != a || m.Reason != uint8(service.CloseTimeout) {
		t.Fatalf("the idle session: %+v", m)
	}
	if got := h.out.take(2); len(got) != 0 {
		t.Fatalf("a session that spoke half a timeout ago closed: %+v", got)
	}
	tick(timeout*3/2 + time.Millisecond)
	if m := h.only(2); m.Kind != wire.CSessionEvent || m.Session != b {
		t.Fatalf("the other session, a timeout after it spoke: %+v", m)
	}
	h.request(1, command(a, 1))
	if m := h.only(1); m.Status != wire.StatusSessionExpired {
		t.Fatalf("command of the expired session: %+v", m)
	}
}

// A proposal that fails (here: over the uncommitted limit) must not take the "opening" mark of
// a session whose open was proposed in an earlier batch, still uncommitted: the client's retry
// would be refused as expired, and a client takes that as final.
func TestFailedProposalKeepsAnEarlierOpen(t *testing.T) {
	h := newHarness(t, 3, func(c *Config) { c.MaxUncommittedBytes = 1 }) // one uncommitted batch at a time
	h.lead()
	a := sessionID(1)
	h.request(1, wire.ClientMsg{Kind: wire.COpen, Session: a}) // proposed, not acknowledged
	if got := h.out.take(1); len(got) != 0 {
		t.Fatalf("open answered before it committed: %+v", got)
	}
	for try := 1; try <= 2; try++ {
		h.request(1, command(a, 1))
		if m := h.only(1); m.Kind != wire.CResponse || m.Status != wire.StatusUnavailable {
			t.Fatalf("try %d, while the open is uncommitted: %+v (want not applied, unavailable)", try, m)
		}
	}
	h.ackAll()
	if m := h.only(1); m.Kind != wire.CAttached {
		t.Fatalf("the open once committed: %+v", m)
	}
	h.request(1, command(a, 1))
	h.ackAll()
	if m := h.only(1); m.Status != wire.StatusOK || h.svc.Value() != 1 {
		t.Fatalf("the command once the session is open: %+v, counter %d", m, h.svc.Value())
	}
}

// A failed batch that carried a close gives the close back (the session is not closing any
// more, and may be closed again); one that carried only a command of a session whose close
// is under way leaves that close alone.
func TestFailedProposalAndCloses(t *testing.T) {
	h := newHarness(t, 3, func(c *Config) { c.MaxUncommittedBytes = 1 })
	h.lead()
	a, b := sessionID(1), sessionID(2)
	h.open(1, a)
	h.open(2, b)
	// b's command is proposed (uncommitted); a's close fails: it may be asked again.
	h.request(2, command(b, 1))
	h.request(1, wire.ClientMsg{Kind: wire.CClose, Session: a})
	if m := h.only(1); m.Status != wire.StatusUnavailable {
		t.Fatalf("close over the uncommitted limit: %+v", m)
	}
	h.ackAll()
	if m := h.only(2); m.Status != wire.StatusOK {
		t.Fatalf("b's command: %+v", m)
	}
	h.request(1, wire.ClientMsg{Kind: wire.CClose, Session: a}) // proposed, uncommitted
	if got := h.out.take(1); len(got) != 0 {
		t.Fatalf("the close answered before it committed: %+v", got)
	}
	// A command of a closes while its close is uncommitted fails; the close stays under way.
	h.request(1, command(a, 1))
	if m := h.only(1); m.Status != wire.StatusUnavailable {
		t.Fatalf("a command during the close: %+v", m)
	}
	// The close asked again (a client that reconnected) is answered when the close commits, on
	// the connection that asked last, not before: the proposal under way may still fail.
	h.request(3, wire.ClientMsg{Kind: wire.CClose, Session: a})
	if got := h.out.take(3); len(got) != 0 {
		t.Fatalf("a second close answered while the first is under way: %+v", got)
	}
	h.ackAll()
	if m := h.only(3); m.Kind != wire.CSessionEvent || m.Reason != uint8(service.CloseClient) {
		t.Fatalf("the close once committed: %+v", m)
	}
	if got := h.out.take(1); len(got) != 0 {
		t.Fatalf("the connection the client left was answered too: %+v", got)
	}
}

// The leader's own close of an idle session whose client is gone fails like any proposal; the
// session must still expire at a later tick.
func TestFailedExpiryIsProposedAgain(t *testing.T) {
	h := newHarness(t, 3, func(c *Config) { c.MaxUncommittedBytes = 1 })
	h.lead()
	a, b := sessionID(1), sessionID(2)
	h.open(1, a)
	h.open(2, b)
	h.r.ClientGone(1)
	start, timeout := h.clock.now, int64(DefaultConfig().SessionTimeout)
	h.clock.now = start + timeout/2
	h.request(2, command(b, 1)) // proposed, uncommitted: the expiry's batch fails
	h.clock.now = start + timeout + 1
	h.r.Tick()
	h.drive()
	if !h.r.Container().SessionOpen(a) {
		t.Fatalf("the session expired although its close could not be proposed")
	}
	h.ackAll()
	if m := h.only(2); m.Status != wire.StatusOK {
		t.Fatalf("b's command: %+v", m)
	}
	h.request(2, wire.ClientMsg{Kind: wire.CKeepAlive, Session: b})
	h.out.take(2)
	h.r.Tick()
	h.drive()
	h.ackAll()
	if h.r.Container().SessionOpen(a) {
		t.Fatalf("the idle session was not closed at the next tick after its failed expiry")
	}
	if !h.r.Container().SessionOpen(b) {
		t.Fatalf("the session that spoke was closed")
	}
}

// MaxPendingReads bounds queries, not rounds of them: queries waiting for their read round count
// until they are answered.
func TestPendingReadsCountQueriesAcrossRounds(t *testing.T) {
	h := newHarness(t, 3, func(c *Config) { c.MaxPendingReads = 2 })
	h.lead()
	h.out.takeRaft()
	get := counter.EncodeRequest(counter.Request{Op: counter.OpGet})
	for id := uint64(1); id <= 2; id++ {
		h.r.ClientRequest(1, &wire.ClientMsg{Kind: wire.CQuery, RequestID: id, Payload: get})
	}
	h.drive() // one read round under way: no follower has answered it
	h.request(1, wire.ClientMsg{Kind: wire.CQuery, RequestID: 3, Payload: get})
	if m := h.only(1); m.RequestID != 3 || m.Status != wire.StatusRejected {
		t.Fatalf("a third query while two wait for their round: %+v", m)
	}
	var ctx []byte
	for _, m := range h.out.takeRaft() {
		if m.GetType() == pb.MsgHeartbeat && m.GetTo() == RaftID(1) && len(m.GetContext()) > 0 {
			ctx = m.GetContext()
		}
	}
	h.step(pb.MsgHeartbeatResp, 1, &pb.Message{Context: ctx})
	if got := h.out.take(1); len(got) != 2 || got[0].Status != wire.StatusOK || got[1].Status != wire.StatusOK {
		t.Fatalf("the two queries after their round: %+v", got)
	}
	h.request(1, wire.ClientMsg{Kind: wire.CQuery, RequestID: 4, Payload: get})
	h.out.takeRaft()
	if got := h.out.take(1); len(got) != 0 {
		t.Fatalf("a query once the others were answered was refused: %+v", got)
	}
}

// A new leader that has not yet applied what its predecessor committed does not take a session
// it does not know for an expired one: it refuses the attach, a command and a keep-alive as
// unavailable (the client retries), and attaches once it has applied an entry of its own term.
func TestNewLeaderDoesNotExpireSessionsItHasNotApplied(t *testing.T) {
	h := newHarness(t, 3, nil)
	s := sessionID(7)
	// Member 1 leads term 2 and appends the open of s, committing only the bootstrap.
	h.term = 2
	open := wire.AppendBatch(nil, &wire.Batch{TimestampNanos: h.clock.now, Items: []wire.Item{{Kind: wire.ItemOpen, Session: s}}})
	h.step(pb.MsgApp, 1, &pb.Message{Index: new(uint64(3)), LogTerm: new(uint64(1)), Commit: new(uint64(3)),
		Entries: []*pb.Entry{{Term: new(uint64(2)), Index: new(uint64(4))},
			{Term: new(uint64(2)), Index: new(uint64(5)), Data: open}}})
	if st := h.r.Summary(); st.Applied != 3 || st.Leader != 1 {
		t.Fatalf("after the append: %+v", st)
	}
	// Member 1 goes silent; member 0 is elected with member 2's votes.
	h.out.takeRaft()
	var ask *pb.Message
	h.tickUntil(100, func() bool {
		for _, m := range h.out.takeRaft() {
			if m.GetType() == pb.MsgPreVote && m.GetTo() == RaftID(2) {
				ask = m
			}
		}
		return ask != nil
	})
	h.step(pb.MsgPreVoteResp, 2, &pb.Message{Term: new(ask.GetTerm())})
	for _, m := range h.out.takeRaft() {
		if m.GetType() == pb.MsgVote && m.GetTo() == RaftID(2) {
			h.term = m.GetTerm()
		}
	}
	h.step(pb.MsgVoteResp, 2, &pb.Message{})
	if st := h.r.Summary(); st.Role != service.Leader || st.Applied != 3 {
		t.Fatalf("not a leader that has yet to apply its predecessor's entries: %+v", st)
	}
	h.request(1, wire.ClientMsg{Kind: wire.CAttach, Session: s})
	if m := h.only(1); m.Kind != wire.CResponse || m.Status != wire.StatusUnavailable {
		t.Fatalf("an attach to a session the new leader has not applied yet: %+v", m)
	}
	h.request(1, command(s, 1))
	if m := h.only(1); m.Status != wire.StatusUnavailable {
		t.Fatalf("a command of that session: %+v", m)
	}
	h.request(1, wire.ClientMsg{Kind: wire.CKeepAlive, Session: s})
	if m := h.only(1); m.Kind != wire.CKeepAliveAck || m.Status == wire.StatusSessionExpired {
		t.Fatalf("a keep-alive of that session: %+v", m)
	}
	h.request(1, wire.ClientMsg{Kind: wire.CClose, Session: s})
	if m := h.only(1); m.Kind != wire.CResponse || m.Status != wire.StatusUnavailable {
		t.Fatalf("a close of that session: %+v", m)
	}
	// Member 2 acknowledges the leader's entries: the open is applied, the attach succeeds.
	var last uint64
	for _, m := range h.out.takeRaft() {
		if m.GetType() == pb.MsgApp && m.GetTo() == RaftID(2) {
			last = max(last, m.GetIndex()+uint64(len(m.GetEntries())))
		}
	}
	h.step(pb.MsgAppResp, 2, &pb.Message{Index: new(last)})
	h.request(1, wire.ClientMsg{Kind: wire.CAttach, Session: s})
	if m := h.only(1); m.Kind != wire.CAttached {
		t.Fatalf("an attach once the open is applied: %+v", m)
	}
	// A session nobody opened is expired as before, now that the leader has caught up, once a
	// read round confirmed that it still leads (TestStaleLeaderDoesNotSayASessionIsGone).
	h.request(2, wire.ClientMsg{Kind: wire.CAttach, Session: sessionID(8)})
	if got := h.out.take(2); len(got) != 0 {
		t.Fatalf("an attach to a session never opened was answered before a read round: %+v", got)
	}
	if !h.confirmRound(2) {
		t.Fatalf("no read round for the attach")
	}
	if m := h.only(2); m.Kind != wire.CSessionEvent || m.Status != wire.StatusSessionExpired {
		t.Fatalf("an attach to a session never opened: %+v", m)
	}
}

// A leader deposed without knowing it (cut off from the others, who elected a successor that
// opened the session) must not tell a client its session is gone: its state may lack the open.
// Every such answer waits for a read round that confirms the leadership; the stale leader's
// round never completes, and when it learns of the newer term the client is redirected.
func TestStaleLeaderDoesNotSayASessionIsGone(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.lead()
	s := sessionID(9)
	for conn, m := range map[ConnID]wire.ClientMsg{
		1: {Kind: wire.CAttach, Session: s},
		2: command(s, 1),
		3: {Kind: wire.CKeepAlive, Session: s},
		4: {Kind: wire.CClose, Session: s},
	} {
		h.request(conn, m)
		if got := h.out.take(conn); len(got) != 0 {
			t.Fatalf("%v answered before a read round confirmed the leadership: %+v", m.Kind, got)
		}
	}
	// The successor's term reaches the old leader: the held requests go to the new leader.
	h.term++
	h.step(pb.MsgHeartbeat, 1, &pb.Message{})
	for conn := ConnID(1); conn <= 4; conn++ {
		if m := h.only(conn); m.Kind != wire.CRedirect || m.LeaderID != 1 {
			t.Fatalf("connection %d: a held request was answered %+v, want a redirect to member 1", conn, m)
		}
	}
}

// A close that arrives while the session's open is proposed and not applied follows the open
// into the log, instead of being told the session is gone (it is about to open).
func TestCloseWhileOpeningFollowsTheOpen(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.lead()
	s := sessionID(10)
	h.request(1, wire.ClientMsg{Kind: wire.COpen, Session: s})
	h.request(1, wire.ClientMsg{Kind: wire.CClose, Session: s})
	if got := h.out.take(1); len(got) != 0 {
		t.Fatalf("answered before the open and the close were applied: %+v", got)
	}
	h.ackAll()
	got := h.out.take(1)
	if len(got) != 2 || got[0].Kind != wire.CAttached || got[1].Kind != wire.CSessionEvent || got[1].Reason != uint8(service.CloseClient) {
		t.Fatalf("open then close answered %+v, want attached then closed by the client", got)
	}
}

// A committed entry of a kind this build does not know stops the member at its index: it never
// skips what the others applied.
func TestUnknownEntryKindStopsTheMember(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.term = 2
	m := &pb.Message{Index: new(uint64(3)), LogTerm: new(uint64(1)), Commit: new(uint64(4)),
		Entries: []*pb.Entry{{Term: new(uint64(2)), Index: new(uint64(4)), Data: []byte{wire.Version, 99}}}}
	m.Type, m.From, m.To, m.Term = pb.MsgApp.Enum(), new(RaftID(1)), new(RaftID(0)), new(h.term)
	if err := h.r.Step(m); err != nil {
		t.Fatal(err)
	}
	err := drive(h.r)
	if !errors.Is(err, ErrCannotApply) || !strings.Contains(err.Error(), "index 4") {
		t.Fatalf("applying an entry of an unknown kind: %v", err)
	}
	if st := h.r.Summary(); st.Applied != 3 {
		t.Fatalf("applied %d: the unknown entry was skipped", st.Applied)
	}
}

// A member that applies cluster version 1 only, started on a snapshot of cluster version 2 (its
// data was upgraded, then it was downgraded), stops with ErrCannotApply (tandem node's exit code
// 5) instead of misreading the snapshot.
func TestSnapshotAboveTheClusterVersionStopsTheMember(t *testing.T) {
	ctr, err := container.New(container.DefaultConfig(), counter.New(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctr.Start(nil, 9); err != nil {
		t.Fatal(err)
	}
	if _, err := ctr.ApplyClusterVersion(10, 2); err != nil {
		t.Fatal(err)
	}
	data, err := ctr.TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	fs := vfs.NewMem()
	st, err := archive.Open(fs, "/data", archive.Options{ClusterID: "test", MemberID: 0})
	if err != nil {
		t.Fatal(err)
	}
	snap := &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(uint64(10)), Term: new(uint64(2)),
		ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}
	if err := st.SaveSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	for i := range 3 {
		cfg.Members = append(cfg.Members, Member{ID: i, ClientAddr: fmt.Sprintf("client-%d", i), MemberAddr: fmt.Sprintf("member-%d", i)})
	}
	cfg.Container.ClusterVersionMax = 1
	_, err = New(cfg, counter.New(), st, &fixedClock{}, &recorder{})
	if !errors.Is(err, ErrCannotApply) || !errors.Is(err, container.ErrClusterVersion) {
		t.Fatalf("starting a member that applies version 1 on a version-2 snapshot: %v", err)
	}
}

// MemberOf names the raft ids the member knows (its founders', its own) and no other: raft id 5,
// a member added or rebuilt while this one lagged, is not member 4 (the founding mapping's
// guess), and an operator's error names it by raft id; a known one by member id.
func TestMemberOfUnknownRaftID(t *testing.T) {
	h := newHarness(t, 3, nil)
	for id, want := range map[uint64]int{1: 0, 2: 1, 3: 2} {
		if m, ok := h.r.MemberOf(id); !ok || m != want {
			t.Fatalf("MemberOf(%d) = %d, %v; want %d", id, m, ok, want)
		}
	}
	if m, ok := h.r.MemberOf(5); ok {
		t.Fatalf("MemberOf(5) = member %d, known; want unknown", m)
	}
	if got := h.r.nameID(5); got != "raft id 5" {
		t.Fatalf("nameID(5) = %q", got)
	}
	err := h.r.Step(&pb.Message{Type: pb.MessageType_MsgHeartbeat.Enum(), From: new(uint64(2)), To: new(uint64(9))})
	if err == nil || err.Error() != "replica: message for raft id 9 delivered to member 0 (raft id 1)" {
		t.Fatalf("a misdelivered message: %v", err)
	}
}
