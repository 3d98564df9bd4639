package replica

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// whoSvc records who it sees: the principal of each session at its open, and of each command.
type whoSvc struct {
	service.Base
	c     service.Cluster
	opens map[service.SessionID]string
	cmds  []string // "principal:payload"
}

func newWho() *whoSvc { return &whoSvc{opens: map[service.SessionID]string{}} }

func (w *whoSvc) OnStart(c service.Cluster, snap io.Reader) error {
	w.c, w.opens, w.cmds = c, map[service.SessionID]string{}, nil
	return nil
}
func (w *whoSvc) OnSessionOpen(s service.Session, _ time.Time) { w.opens[s.ID()] = s.Principal() }
func (w *whoSvc) OnSessionMessage(s service.Session, _ time.Time, msg []byte) []byte {
	w.cmds = append(w.cmds, s.Principal()+":"+string(msg))
	return []byte("ok")
}
func (w *whoSvc) OnQuery([]byte) []byte { return []byte(fmt.Sprint(len(w.cmds))) }
func (w *whoSvc) OnTakeSnapshot(wr io.Writer) error {
	_, err := fmt.Fprint(wr, len(w.cmds))
	return err
}

var (
	writer  = &wire.Grant{Principal: "writer", Commands: true}
	reader  = &wire.Grant{Principal: "reader", Queries: true}
	mallory = &wire.Grant{Principal: "mallory", Commands: true, Queries: true}
)

// as returns m from a connection authenticated as g.
func as(g *wire.Grant, m wire.ClientMsg) wire.ClientMsg {
	m.Grant = g
	return m
}

// raiseTo has the other members report that they apply cluster version v, and drives the leader
// until it raised the version to v and applied the raise.
func (h *harness) raiseTo(v uint16) {
	h.t.Helper()
	for i := range len(h.r.Members()) {
		if i != 0 {
			h.r.PeerClusterVersion(RaftID(i), v)
		}
	}
	h.tickUntil(100, func() bool {
		h.ackAll()
		return h.r.Summary().ClusterVersion == v
	})
}

// A grant decides what its principal may do, on any member: a command needs Commands, a query
// Queries, an admin operation what Admin says (list-members excepted); what it may not do is
// answered "denied", naming the principal and what, and nothing is proposed. Opening a session
// needs nothing. A connection without a grant (a port without authentication) may do anything.
func TestGrantsDecideWhatAPrincipalMayDo(t *testing.T) {
	who := newWho()
	h := newHarnessOf(t, 3, nil, who)
	suspend := wire.EncodeAdmin(wire.AdminRequest{Op: wire.AdminSuspend})

	// A follower answers what the principal may not do itself: it does not redirect it.
	h.request(1, as(reader, command(sessionID(1), 1)))
	if m := h.only(1); m.Kind != wire.CResponse || m.Status != wire.StatusDenied || m.Seq != 1 ||
		!strings.Contains(string(m.Payload), `"reader" may not send commands`) {
		t.Fatalf("a follower answered a reader's command with %+v", m)
	}
	h.request(1, as(writer, wire.ClientMsg{Kind: wire.CQuery, RequestID: 5, Payload: []byte("q")}))
	if m := h.only(1); m.Kind != wire.CQueryResponse || m.Status != wire.StatusDenied || m.RequestID != 5 ||
		!strings.Contains(string(m.Payload), `"writer" may not run queries`) {
		t.Fatalf("a follower answered a writer's query with %+v", m)
	}
	h.request(1, as(writer, wire.ClientMsg{Kind: wire.CAdmin, RequestID: 6, Payload: suspend}))
	if st, resp, ok := h.adminAnswer(1); !ok || st != wire.StatusDenied || !strings.Contains(resp.Error, `"writer" may not run suspend`) {
		t.Fatalf("a follower answered a writer's suspend with %v %+v", st, resp)
	}

	h.lead()
	h.raiseTo(container.ClusterVersionPrincipal)
	before := h.r.Summary().Applied

	// Any principal opens a session; the reader's commands are denied and never proposed.
	h.openAs(1, as(reader, wire.ClientMsg{Kind: wire.COpen, Session: sessionID(1)}))
	applied := h.r.Summary().Applied
	for seq := wire.Seq(1); seq <= 3; seq++ {
		h.request(1, as(reader, command(sessionID(1), seq)))
		if m := h.only(1); m.Status != wire.StatusDenied || m.Seq != seq {
			t.Fatalf("the reader's command %d: %+v", seq, m)
		}
	}
	h.ackAll()
	if got := h.r.Summary().Applied; got != applied || len(who.cmds) != 0 {
		t.Fatalf("denied commands moved the log from %d to %d, applied %q", applied, got, who.cmds)
	}
	// The reader's query is served; the writer's command is applied.
	h.request(1, as(reader, wire.ClientMsg{Kind: wire.CQuery, RequestID: 7, Payload: []byte("q")}))
	if !h.confirmRound(1) {
		t.Fatal("no read round for the reader's query")
	}
	if m := h.only(1); m.Kind != wire.CQueryResponse || m.Status != wire.StatusOK {
		t.Fatalf("the reader's query: %+v", m)
	}
	h.openAs(2, as(writer, wire.ClientMsg{Kind: wire.COpen, Session: sessionID(2)}))
	h.request(2, as(writer, command(sessionID(2), 1)))
	h.ackAll()
	if m := h.only(2); m.Status != wire.StatusOK || strings.Join(who.cmds, ",") != "writer:"+string(inc) {
		t.Fatalf("the writer's command: %+v, the service saw %q", m, who.cmds)
	}
	if h.r.Summary().Applied <= before {
		t.Fatal("nothing applied")
	}

	// Admin: denied without Admin (JSON error, status denied); allowed as Admin says; list-members
	// for anyone; anything for a connection without a grant.
	ops := &wire.Grant{Principal: "ops", Admin: func(op string) error {
		if op == wire.AdminStatus {
			return nil
		}
		return errors.New("ops only reads status")
	}}
	for _, tc := range []struct {
		g    *wire.Grant
		op   string
		want wire.Status
		text string
	}{
		{reader, wire.AdminShutdown, wire.StatusDenied, `principal "reader" may not run shutdown: the principal may run no admin operation`},
		{ops, wire.AdminStatus, wire.StatusOK, ""},
		{ops, wire.AdminSuspend, wire.StatusDenied, `principal "ops" may not run suspend: ops only reads status`},
		{reader, wire.AdminListMembers, wire.StatusOK, ""},
		{nil, wire.AdminStatus, wire.StatusOK, ""},
	} {
		h.request(3, as(tc.g, wire.ClientMsg{Kind: wire.CAdmin, RequestID: 9, Payload: wire.EncodeAdmin(wire.AdminRequest{Op: tc.op})}))
		st, resp, ok := h.adminAnswer(3)
		if !ok || st != tc.want || resp.Error != tc.text {
			t.Fatalf("%v asking %s: %v %+v, want %v %q", tc.g, tc.op, st, resp, tc.want, tc.text)
		}
	}
	// An unknown operation is refused by name before the grant is asked.
	h.request(3, as(reader, wire.ClientMsg{Kind: wire.CAdmin, RequestID: 9, Payload: []byte(`{"op":"frobnicate"}`)}))
	if st, _, _ := h.adminAnswer(3); st != wire.StatusBadRequest {
		t.Fatalf("an unknown operation: %v", st)
	}
	// An admin request that is denied costs nothing: the cluster is not suspended.
	h.request(3, as(reader, wire.ClientMsg{Kind: wire.CAdmin, RequestID: 10, Payload: suspend}))
	h.adminAnswer(3)
	h.ackAll()
	if h.r.Summary().Suspended {
		t.Fatal("a denied suspend suspended the cluster")
	}
}

// A session belongs to the principal that opened it: an open, attach, command, keep-alive or
// close of it from another principal's connection is denied, whether the session is open or its
// open only proposed; the owner, from another connection (a failover), goes on. An anonymous
// session belongs to no authenticated principal.
func TestSessionOfAnotherPrincipalIsDenied(t *testing.T) {
	who := newWho()
	h := newHarnessOf(t, 3, nil, who)
	h.lead()
	h.raiseTo(container.ClusterVersionPrincipal)
	s := sessionID(1)

	// While the writer's open is proposed and not applied.
	h.request(1, as(writer, wire.ClientMsg{Kind: wire.COpen, Session: s}))
	h.request(2, as(mallory, wire.ClientMsg{Kind: wire.COpen, Session: s}))
	if m := h.only(2); m.Kind != wire.CSessionEvent || m.Status != wire.StatusDenied {
		t.Fatalf("mallory's open of the writer's opening session: %+v", m)
	}
	h.ackAll()
	if m := h.only(1); m.Kind != wire.CAttached {
		t.Fatalf("the writer's open: %+v", m)
	}
	h.request(1, as(writer, command(s, 1)))
	h.ackAll()
	h.only(1)

	applied := h.r.Summary().Applied
	denied := `the session belongs to another principal: "mallory" may not use it`
	for _, req := range []wire.ClientMsg{
		{Kind: wire.COpen, Session: s},
		{Kind: wire.CAttach, Session: s},
		command(s, 1), // recorded: its reply is the writer's
		command(s, 2),
		{Kind: wire.CKeepAlive, Session: s},
		{Kind: wire.CClose, Session: s},
	} {
		h.request(2, as(mallory, req))
		m := h.only(2)
		want := map[wire.ClientKind]wire.ClientKind{wire.COpen: wire.CSessionEvent, wire.CAttach: wire.CSessionEvent,
			wire.CCommand: wire.CResponse, wire.CKeepAlive: wire.CKeepAliveAck, wire.CClose: wire.CSessionEvent}[req.Kind]
		if m.Kind != want || m.Status != wire.StatusDenied || m.Session != s || req.Kind != wire.CKeepAlive && string(m.Payload) != denied {
			t.Fatalf("mallory's %v of the writer's session: %+v, want %v denied", req.Kind, m, want)
		}
	}
	h.ackAll()
	if got := h.r.Summary().Applied; got != applied || !h.r.Container().SessionOpen(s) || len(who.cmds) != 1 {
		t.Fatalf("mallory's requests moved the log from %d to %d (session open %v, commands %q)", applied, got,
			h.r.Container().SessionOpen(s), who.cmds)
	}
	// Nothing of the session goes to mallory's connection: the writer's next answer is the writer's.
	h.request(1, as(writer, command(s, 2)))
	h.ackAll()
	if m := h.only(1); m.Status != wire.StatusOK || m.Seq != 2 {
		t.Fatalf("the writer's command after mallory's tries: %+v", m)
	}
	if got := h.out.take(2); len(got) != 0 {
		t.Fatalf("mallory's connection received %+v", got)
	}
	// The writer fails over to another connection with the same credential: it goes on.
	h.request(3, as(writer, wire.ClientMsg{Kind: wire.CAttach, Session: s}))
	if m := h.only(3); m.Kind != wire.CAttached {
		t.Fatalf("the writer's attach from another connection: %+v", m)
	}
	// An anonymous session (opened without a grant) is no authenticated principal's; a
	// connection without a grant (no authentication) may use any.
	a := sessionID(2)
	h.openAs(4, wire.ClientMsg{Kind: wire.COpen, Session: a})
	h.request(5, as(writer, wire.ClientMsg{Kind: wire.CAttach, Session: a}))
	if m := h.only(5); m.Status != wire.StatusDenied {
		t.Fatalf("the writer's attach of an anonymous session: %+v", m)
	}
	h.request(6, wire.ClientMsg{Kind: wire.CAttach, Session: s})
	if m := h.only(6); m.Kind != wire.CAttached {
		t.Fatalf("an attach without a grant: %+v", m)
	}
}

// open opens a session with m (which may carry a grant) and checks that it is attached.
func (h *harness) openAs(conn ConnID, m wire.ClientMsg) {
	h.t.Helper()
	h.request(conn, m)
	h.ackAll()
	if got := h.only(conn); got.Kind != wire.CAttached || got.Session != m.Session {
		h.t.Fatalf("open answered %+v", got)
	}
}

// The principal is recorded in the log: every member that applies it, from the log or from a
// snapshot, shows the service the same principal for the session, and the leader's own service
// sees it at the open and at each command.
func TestPrincipalIsTheSameOnEveryMember(t *testing.T) {
	who := newWho()
	h := newHarnessOf(t, 3, nil, who)
	h.lead()
	h.raiseTo(container.ClusterVersionPrincipal)
	s, a := sessionID(1), sessionID(2)
	h.openAs(1, as(writer, wire.ClientMsg{Kind: wire.COpen, Session: s}))
	h.openAs(2, wire.ClientMsg{Kind: wire.COpen, Session: a})
	h.request(1, as(writer, command(s, 1)))
	h.ackAll()
	h.only(1)
	want := map[service.SessionID]string{service.SessionID(s): "writer", service.SessionID(a): ""}
	check := func(what string, w *whoSvc) {
		t.Helper()
		for id, p := range want {
			sess, ok := w.c.Session(id)
			if !ok || sess.Principal() != p {
				t.Fatalf("%s: session %x open %v, principal %q; want %q", what, id[0], ok, principalOf(sess), p)
			}
		}
	}
	check("the leader", who)
	if who.opens[service.SessionID(s)] != "writer" || strings.Join(who.cmds, ",") != "writer:"+string(inc) {
		t.Fatalf("the leader's service saw opens %q, commands %q", who.opens, who.cmds)
	}

	// Another member applying the same log.
	follower := newWho()
	ctr, err := container.New(container.DefaultConfig(), follower, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctr.Start(nil, 0); err != nil {
		t.Fatal(err)
	}
	applied := h.r.Summary().Applied
	first, _ := h.r.store.FirstIndex()
	ents, err := h.r.store.Entries(first, applied+1, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := applyOn(ctr, e); err != nil {
			t.Fatal(err)
		}
	}
	check("a member applying the log", follower)
	if strings.Join(follower.cmds, ",") != strings.Join(who.cmds, ",") {
		t.Fatalf("the other member's service saw commands %q, the leader's %q", follower.cmds, who.cmds)
	}

	// A member starting from the leader's snapshot.
	snap, err := h.r.Container().TakeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored := newWho()
	ctr2, err := container.New(container.DefaultConfig(), restored, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctr2.Start(snap, applied); err != nil {
		t.Fatal(err)
	}
	check("a member started from a snapshot", restored)
}

func principalOf(s service.Session) string {
	if s == nil {
		return ""
	}
	return s.Principal()
}

// applyOn applies a committed entry to c as a member does (the kinds these tests write).
func applyOn(c *container.Container, e *pb.Entry) error {
	ix := e.GetIndex()
	if e.GetType() != pb.EntryNormal || len(e.GetData()) == 0 {
		c.ApplyEmpty(ix)
		return nil
	}
	kind, err := wire.EntryKindOf(e.GetData())
	if err != nil {
		return err
	}
	switch kind {
	case wire.EntryBatch:
		b, err := wire.DecodeBatch(e.GetData())
		if err != nil {
			return err
		}
		_, err = c.ApplyBatch(ix, &b)
		return err
	case wire.EntryClusterVersion:
		v, err := wire.DecodeClusterVersion(e.GetData())
		if err != nil {
			return err
		}
		_, err = c.ApplyClusterVersion(ix, v)
		return err
	case wire.EntryClusterIdentity:
		u, err := wire.DecodeClusterIdentity(e.GetData())
		if err != nil {
			return err
		}
		_, _, err = c.ApplyClusterIdentity(ix, u)
		return err
	}
	return fmt.Errorf("entry %d of %v", ix, kind)
}

// Below cluster version 6 an open cannot carry a principal: a request about a session from a
// connection with one is answered "unavailable", naming the version (the client retries), and
// nothing is proposed; anonymous opens, queries and admin requests are served. Once every member
// reports version 6 the leader raises it, and the same client goes on.
func TestPrincipalsWaitForClusterVersion6(t *testing.T) {
	who := newWho()
	h := newHarnessOf(t, 3, nil, who)
	h.lead()
	h.raiseTo(container.ClusterVersionControl)
	s := sessionID(1)
	applied := h.r.Summary().Applied
	for _, req := range []wire.ClientMsg{{Kind: wire.COpen, Session: s}, command(s, 1), {Kind: wire.CAttach, Session: s}} {
		h.request(1, as(writer, req))
		m := h.only(1)
		if m.Kind != wire.CResponse || m.Status != wire.StatusUnavailable || m.Seq != req.Seq ||
			!strings.Contains(string(m.Payload), "cluster version 5 is in force; they need 6") {
			t.Fatalf("the writer's %v below cluster version 6: %+v", req.Kind, m)
		}
	}
	h.request(1, as(writer, wire.ClientMsg{Kind: wire.CKeepAlive, Session: s}))
	if m := h.only(1); m.Kind != wire.CKeepAliveAck || m.Status != wire.StatusUnavailable {
		t.Fatalf("the writer's keep-alive below cluster version 6: %+v", m)
	}
	h.ackAll()
	if got := h.r.Summary().Applied; got != applied {
		t.Fatalf("the refused requests moved the log from %d to %d", applied, got)
	}
	// An anonymous principal's open (a grant without a name) and a query are served.
	anon := &wire.Grant{Queries: true, Commands: true}
	h.openAs(2, as(anon, wire.ClientMsg{Kind: wire.COpen, Session: sessionID(2)}))
	h.request(2, as(reader, wire.ClientMsg{Kind: wire.CQuery, RequestID: 1, Payload: []byte("q")}))
	h.confirmRound(1)
	if m := h.only(2); m.Status != wire.StatusOK {
		t.Fatalf("a reader's query below cluster version 6: %+v", m)
	}
	// The raise: the writer's open now records it.
	h.raiseTo(container.ClusterVersionPrincipal)
	h.openAs(1, as(writer, wire.ClientMsg{Kind: wire.COpen, Session: s}))
	if who.opens[service.SessionID(s)] != "writer" || who.opens[service.SessionID(sessionID(2))] != "" {
		t.Fatalf("opens seen by the service: %q", who.opens)
	}
}

// A principal longer than the log records is refused at the open (final), never proposed.
func TestOverlongPrincipalIsRefused(t *testing.T) {
	h := newHarnessOf(t, 1, nil, newWho())
	h.lead()
	h.raiseTo(container.ClusterVersionPrincipal)
	long := &wire.Grant{Principal: strings.Repeat("p", wire.MaxPrincipalBytes+1), Commands: true}
	h.request(1, as(long, wire.ClientMsg{Kind: wire.COpen, Session: sessionID(1)}))
	if m := h.only(1); m.Kind != wire.CSessionEvent || m.Status != wire.StatusRejected || !strings.Contains(string(m.Payload), "at most 256") {
		t.Fatalf("an open for a principal of %d bytes: %+v", wire.MaxPrincipalBytes+1, m)
	}
	if h.r.Container().SessionOpen(sessionID(1)) || h.r.isOpening(sessionID(1)) {
		t.Fatal("the session is open or opening")
	}
}

// A new leader that has not applied its predecessor's log cannot tell whose a session it does
// not know yet is: an authenticated open of it is refused as unavailable (not proposed behind
// the predecessor's open, which would attach the second opener here); once applied, the owner
// attaches and another principal is denied.
func TestNewLeaderDoesNotOpenASessionItHasNotApplied(t *testing.T) {
	h := newHarnessOf(t, 3, nil, newWho())
	s := sessionID(7)
	// Member 1 leads term 2: it raised the cluster version to 6 (committed) and appended the
	// writer's open of s (not committed).
	h.term = 2
	raise := wire.AppendClusterVersion(nil, container.ClusterVersionPrincipal)
	open := wire.AppendBatch(nil, &wire.Batch{TimestampNanos: h.clock.now,
		Items: []wire.Item{{Kind: wire.ItemOpenPrincipal, Session: s, Principal: "writer"}}})
	h.step(pb.MsgApp, 1, &pb.Message{Index: new(uint64(3)), LogTerm: new(uint64(1)), Commit: new(uint64(5)),
		Entries: []*pb.Entry{{Term: new(uint64(2)), Index: new(uint64(4))},
			{Term: new(uint64(2)), Index: new(uint64(5)), Data: raise},
			{Term: new(uint64(2)), Index: new(uint64(6)), Data: open}}})
	if st := h.r.Summary(); st.Applied != 5 || st.ClusterVersion != container.ClusterVersionPrincipal {
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
	if st := h.r.Summary(); st.Role != service.Leader || st.Applied != 5 {
		t.Fatalf("not a leader that has yet to apply its predecessor's entries: %+v", st)
	}
	h.request(1, as(mallory, wire.ClientMsg{Kind: wire.COpen, Session: s}))
	if m := h.only(1); m.Kind != wire.CResponse || m.Status != wire.StatusUnavailable {
		t.Fatalf("an authenticated open of a session the new leader has not applied yet: %+v", m)
	}
	// Member 2 acknowledges: the writer's open is applied; mallory is denied, the writer attached.
	var last uint64
	for _, m := range h.out.takeRaft() {
		if m.GetType() == pb.MsgApp && m.GetTo() == RaftID(2) {
			last = max(last, m.GetIndex()+uint64(len(m.GetEntries())))
		}
	}
	h.step(pb.MsgAppResp, 2, &pb.Message{Index: new(last)})
	if p, ok := h.r.Container().SessionPrincipal(s); !ok || p != "writer" {
		t.Fatalf("after the commit: session open %v for %q", ok, p)
	}
	h.request(1, as(mallory, wire.ClientMsg{Kind: wire.COpen, Session: s}))
	if m := h.only(1); m.Status != wire.StatusDenied {
		t.Fatalf("mallory's open once the writer's is applied: %+v", m)
	}
	h.request(2, as(writer, wire.ClientMsg{Kind: wire.COpen, Session: s}))
	if m := h.only(2); m.Kind != wire.CAttached {
		t.Fatalf("the writer's open once applied: %+v", m)
	}
}

// An open for a principal committed below cluster version 6 (no build proposes one) stops the
// member at its index: it cannot apply it as the others did.
func TestOpenForAPrincipalBelowVersion6StopsTheMember(t *testing.T) {
	h := newHarnessOf(t, 3, nil, newWho())
	h.term = 2
	open := wire.AppendBatch(nil, &wire.Batch{Items: []wire.Item{{Kind: wire.ItemOpenPrincipal, Session: sessionID(1), Principal: "w"}}})
	m := &pb.Message{Type: pb.MsgApp.Enum(), From: new(RaftID(1)), To: new(RaftID(0)), Term: new(uint64(2)),
		Index: new(uint64(3)), LogTerm: new(uint64(1)), Commit: new(uint64(4)),
		Entries: []*pb.Entry{{Term: new(uint64(2)), Index: new(uint64(4)), Data: open}}}
	if err := h.r.Step(m); err != nil {
		t.Fatal(err)
	}
	err := drive(h.r)
	if !errors.Is(err, ErrCannotApply) || !errors.Is(err, container.ErrPrincipalBeforeVersion) {
		t.Fatalf("an open for a principal at cluster version 1: %v", err)
	}
}
