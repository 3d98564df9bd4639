package clientcore

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/admin"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// attachAt answers the open with an attached message in client protocol v.
func (h *harness) attachAt(conn ConnID, v uint16) {
	h.recv(conn, wire.ClientMsg{Version: v, Kind: wire.CAttached, Session: h.s.Session()})
}

// asked returns the list-members requests among ms, checking each one's form.
func (h *harness) asked(ms []wire.ClientMsg) []wire.ClientMsg {
	h.t.Helper()
	var out []wire.ClientMsg
	for _, m := range ms {
		if m.Kind != wire.CAdmin {
			continue
		}
		req, err := wire.DecodeAdminRequest(m.Payload)
		if err != nil || req.Op != wire.AdminListMembers || m.Version < admin.Version ||
			m.Protocol != (wire.Range{Min: admin.Version, Max: wire.ClientProtocolMax}) || !m.Protocol.Contains(m.Version) ||
			m.Session != (wire.SessionID{}) || m.RequestID == 0 {
			h.t.Fatalf("a membership request %+v (%s, %v)", m, m.Payload, err)
		}
		out = append(out, m)
	}
	return out
}

// membersAnswer is the leader's answer to request id listing ms.
func membersAnswer(id uint64, ms ...wire.AdminMember) wire.ClientMsg {
	return wire.ClientMsg{Version: 4, Kind: wire.CAdminResponse, RequestID: id, Status: wire.StatusOK,
		Payload: wire.EncodeAdmin(&wire.AdminResponse{Members: ms})}
}

func voter(id int, addr string) wire.AdminMember {
	return wire.AdminMember{ID: id, RaftID: uint64(id + 1), ClientAddr: addr, MemberAddr: "m-" + addr, Role: "voter"}
}

func learner(id int, addr string) wire.AdminMember {
	m := voter(id, addr)
	m.Role = "learner"
	return m
}

// A client configured with one endpoint asks the leader it attaches to (client protocol 4) for
// the membership, behind the commands it resends, and tries the members' addresses it learns
// (voters, then learners), the configured one kept last: when that member is gone, the session
// fails over to the others.
func TestMembersLearnedFromTheLeader(t *testing.T) {
	if membersVersion != admin.Version {
		t.Fatalf("membersVersion %d, admin.Version %d", membersVersion, admin.Version)
	}
	cfg := testConfig()
	cfg.Endpoints = []string{"a"}
	h := newHarness(t, cfg)
	h.s.Start(h.now)
	h.submit("x1", "p1")
	c := h.connect()
	if got := kinds(h.out.take()); got != "open cmd1/1" {
		t.Fatalf("before the attach: %q (nothing is asked before the version is known)", got)
	}
	h.attachAt(c, 4)
	ms := h.out.take()
	q := h.asked(ms)
	if len(q) != 1 || len(ms) != 1 {
		t.Fatalf("after an attach at version 4 the core wrote %q, want one membership request", kinds(ms))
	}
	if got := h.s.Endpoints(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("before the answer: endpoints %v", got)
	}
	h.recv(c, membersAnswer(q[0].RequestID, voter(0, "a"), learner(3, "d"), voter(1, "b"), voter(2, "c")))
	if got := h.s.Endpoints(); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("after the answer: endpoints %v, want the voters a b c, then the learner d", got)
	}
	if w := h.s.Waiting(); w != (Waiting{Attached: true, Leader: "a", Reachable: 1, Members: 3, Need: 2}) {
		t.Fatalf("Waiting counts the learned voters: %+v", w)
	}
	// a is gone: the core tries the members it learned, in turn.
	h.s.Failed(c, h.at(time.Millisecond))
	for _, want := range []string{"b", "c", "d", "a", "b"} {
		d := h.out.lastDial()
		if d.endpoint != want {
			t.Fatalf("dialled %q, want %q", d.endpoint, want)
		}
		h.s.Failed(h.connect(), h.at(time.Millisecond))
	}
	h.out.take()
	c = h.connect() // c
	if got := kinds(h.out.take()); got != "attach cmd1/1" {
		t.Fatalf("on %s: %q", h.out.lastDial().endpoint, got)
	}
	h.attachAt(c, 4)
	q = h.asked(h.out.take())
	if len(q) != 1 {
		t.Fatal("not asked again on the new leader")
	}
	h.recv(c, wire.ClientMsg{Version: 4, Kind: wire.CResponse, Session: h.s.Session(), Seq: 1, Payload: []byte("r1")})
	if o := h.out.done["x1"]; o.err != nil || o.reply != "r1" {
		t.Fatalf("x1: %+v", o)
	}
	// The new leader's membership no longer lists a: a stays, last, as configured.
	h.recv(c, membersAnswer(q[0].RequestID, voter(1, "b"), voter(2, "c")))
	if got := h.s.Endpoints(); !slices.Equal(got, []string{"b", "c", "a"}) {
		t.Fatalf("a removed: endpoints %v, want b c, then the configured a", got)
	}
	if w := h.s.Waiting(); w.Members != 2 || w.Need != 2 || w.Reachable != 1 {
		t.Fatalf("Waiting after a's removal: %+v", w)
	}
}

// The membership is asked once per attach and then every MembersInterval while attached, with a
// fresh request id each time; only the answer to the latest request counts; nothing is asked
// while closing.
func TestMembersAskedAgainEveryInterval(t *testing.T) {
	cfg := testConfig()
	cfg.MembersInterval = 5 * time.Second
	h := newHarness(t, cfg)
	h.s.Start(h.now)
	c := h.connect()
	h.attachAt(c, 4)
	first := h.asked(h.out.take())
	if len(first) != 1 {
		t.Fatal("not asked on attaching")
	}
	ids := []uint64{first[0].RequestID}
	for range 3 {
		h.s.Tick(h.at(4900 * time.Millisecond))
		h.recv(c, wire.ClientMsg{Version: 4, Kind: wire.CKeepAliveAck, Session: h.s.Session()})
		if q := h.asked(h.out.take()); len(q) != 0 {
			t.Fatal("asked again before the interval")
		}
		h.s.Tick(h.at(200 * time.Millisecond))
		q := h.asked(h.out.take())
		if len(q) != 1 || slices.Contains(ids, q[0].RequestID) {
			t.Fatalf("after the interval: %+v (earlier ids %v)", q, ids)
		}
		ids = append(ids, q[0].RequestID)
	}
	// An answer to an older request, or to none, is ignored.
	h.recv(c, membersAnswer(ids[0], voter(0, "x"), voter(1, "y")))
	h.recv(c, membersAnswer(ids[len(ids)-1]+1, voter(0, "x"), voter(1, "y")))
	if got := h.s.Endpoints(); !slices.Equal(got, cfg.Endpoints) {
		t.Fatalf("a stale answer was taken: %v", got)
	}
	h.recv(c, membersAnswer(ids[len(ids)-1], voter(0, "x"), voter(1, "y")))
	if got := h.s.Endpoints(); !slices.Equal(got, []string{"x", "y", "a", "b", "c"}) {
		t.Fatalf("endpoints %v", got)
	}
	// An answer on a connection the core left is ignored, and a new connection asks anew.
	h.s.Tick(h.at(5100 * time.Millisecond))
	last := h.asked(h.out.take())
	h.s.Failed(c, h.at(time.Millisecond))
	h.recv(c, membersAnswer(last[0].RequestID, voter(0, "z")))
	c = h.connect()
	h.out.take()
	h.s.Tick(h.at(500 * time.Millisecond))
	if q := h.asked(h.out.take()); len(q) != 0 {
		t.Fatal("asked before the session attached")
	}
	h.attachAt(c, 4)
	q := h.asked(h.out.take())
	if len(q) != 1 || q[0].RequestID == last[0].RequestID {
		t.Fatalf("on the new connection: %+v", q)
	}
	if got := h.s.Endpoints(); !slices.Equal(got, []string{"x", "y", "a", "b", "c"}) {
		t.Fatalf("an answer on a connection the core left was taken: %v", got)
	}
	// Closing: nothing more is asked, on this connection or on the next.
	if !h.s.CloseSession(h.now, ErrClosed) {
		t.Fatal("CloseSession")
	}
	h.out.take()
	h.s.Tick(h.at(6 * time.Second)) // (the close unanswered: the member is abandoned)
	c = h.connect()
	h.attachAt(c, 4)
	if ms := h.out.take(); len(h.asked(ms)) != 0 || kinds(ms) != "attach close" {
		t.Fatalf("while closing: %q", kinds(ms))
	}
}

// A member that does not speak client protocol 4 (an older build), and the simulator's messages,
// which carry no version, are asked nothing, ever.
func TestMembersNotAskedBelowVersion4(t *testing.T) {
	for _, v := range []uint16{0, 1, 2, 3} {
		t.Run(fmt.Sprint("version=", v), func(t *testing.T) {
			h := newHarness(t, testConfig())
			h.s.Start(h.now)
			c := h.connect()
			h.attachAt(c, v)
			for range 5 {
				h.s.Tick(h.at(11 * time.Second))
				h.recv(c, wire.ClientMsg{Version: v, Kind: wire.CKeepAliveAck, Session: h.s.Session()})
			}
			for _, m := range h.out.take() {
				if m.Kind == wire.CAdmin {
					t.Fatalf("asked at version %d: %+v", v, m)
				}
			}
		})
	}
	// Nor a client that does not speak 4 itself.
	cfg := testConfig()
	cfg.Protocol = wire.Range{Min: 1, Max: 3}
	h := newHarness(t, cfg)
	h.s.Start(h.now)
	c := h.connect()
	h.attachAt(c, 3)
	h.s.Tick(h.at(11 * time.Second))
	for _, m := range h.out.take() {
		if m.Kind == wire.CAdmin {
			t.Fatalf("a client of [1,3] asked: %+v", m)
		}
	}
}

// The request does not disturb the session: a member that never answers it is not abandoned
// (nothing awaits it), and it is no keep-alive (the session's keep-alives go on).
func TestMembersRequestDisturbsNothing(t *testing.T) {
	cfg := testConfig() // AttemptTimeout 1 s, keep-alives every 2 s
	cfg.MembersInterval = 500 * time.Millisecond
	h := newHarness(t, cfg)
	h.s.Start(h.now)
	c := h.connect()
	h.attachAt(c, 4)
	keepAlives, asked := 0, 0
	for range 40 { // 10 s, the request unanswered
		h.s.Tick(h.at(250 * time.Millisecond))
		for _, m := range h.out.take() {
			switch m.Kind {
			case wire.CKeepAlive:
				keepAlives++
				h.recv(c, wire.ClientMsg{Version: 4, Kind: wire.CKeepAliveAck, Session: h.s.Session()})
			case wire.CAdmin:
				asked++
			}
		}
	}
	if len(h.out.hangups) != 0 || !h.s.Attached() || h.s.Stats().Timeouts != 0 {
		t.Fatalf("a member that does not answer the membership request was abandoned: hangups %v", h.out.hangups)
	}
	if keepAlives < 4 || asked < 15 {
		t.Fatalf("%d keep-alives and %d requests in 10 s", keepAlives, asked)
	}
}

// A follower's redirect of the request (the leader lost its leadership) is followed as any
// redirect is: to the new leader.
func TestMembersRequestRedirected(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	c := h.connect()
	h.attachAt(c, 4)
	q := h.asked(h.out.take())
	h.recv(c, wire.ClientMsg{Version: 4, Kind: wire.CRedirect, RequestID: q[0].RequestID, Status: wire.StatusNotLeader,
		LeaderID: 2, Term: 3, LeaderAddr: "c"})
	if d := h.out.lastDial(); d.endpoint != "c" || d.after != 0 || !slices.Contains(h.out.hangups, c) {
		t.Fatalf("after the redirect: dial %+v, hangups %v", d, h.out.hangups)
	}
}

// No answer makes the client lose its way back: an answer that is refused, does not decode,
// names another cluster or lists no voter changes nothing; the configured endpoints are always
// tried, last; addresses that are empty, too long or repeated are skipped, and at most
// maxLearned are kept.
func TestMembersBadAnswersKeepTheWayBack(t *testing.T) {
	own := wire.ClusterUUID{1, 15: 1}
	other := wire.ClusterUUID{2, 15: 2}
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	c := h.connect()
	h.recv(c, wire.ClientMsg{Version: 4, Kind: wire.CAttached, Session: h.s.Session(), ClusterUUID: own})
	h.out.take() // (the first request: each answer below is to a later one)
	answer := func(m wire.ClientMsg) {
		h.t.Helper()
		h.s.Tick(h.at(11 * time.Second))
		q := h.asked(h.out.take())
		if len(q) != 1 {
			t.Fatalf("not asked: %d requests", len(q))
		}
		m.RequestID = q[0].RequestID
		h.recv(c, m)
	}
	want := []string{"a", "b", "c"}
	check := func(what string) {
		t.Helper()
		if got := h.s.Endpoints(); !slices.Equal(got, want) {
			t.Fatalf("%s: endpoints %v, want %v", what, got, want)
		}
	}
	answer(wire.ClientMsg{Version: 4, Kind: wire.CAdminResponse, Status: wire.StatusUnavailable,
		Payload: wire.EncodeAdmin(&wire.AdminResponse{Error: "not now", Members: []wire.AdminMember{voter(0, "x")}})})
	check("a refusal")
	answer(wire.ClientMsg{Version: 4, Kind: wire.CAdminResponse, Payload: []byte("{not json")})
	check("an answer that does not decode")
	answer(wire.ClientMsg{Version: 4, Kind: wire.CAdminResponse,
		Payload: wire.EncodeAdmin(&wire.AdminResponse{ClusterUUID: other.String(), Members: []wire.AdminMember{voter(0, "x")}})})
	check("another cluster's membership")
	answer(membersAnswer(0))
	check("no members")
	answer(membersAnswer(0, learner(0, "x"), voter(1, ""), voter(2, string(make([]byte, wire.MaxAddrBytes+1)))))
	check("no voter with an address")

	// A good answer, then the same members (the order of the answer, the configured ones last).
	answer(wire.ClientMsg{Version: 4, Kind: wire.CAdminResponse,
		Payload: wire.EncodeAdmin(&wire.AdminResponse{ClusterUUID: own.String(), Members: []wire.AdminMember{voter(0, "b"), voter(1, "x"), voter(2, "b")}})})
	want = []string{"b", "x", "a", "c"}
	check("a good answer")
	// A refusal afterwards keeps what the good one taught.
	answer(wire.ClientMsg{Version: 4, Kind: wire.CAdminResponse, Status: wire.StatusBadRequest})
	check("a refusal after a good answer")

	// A huge membership: the first maxLearned addresses, then the configured endpoints.
	var many []wire.AdminMember
	for i := range 3 * maxLearned {
		many = append(many, voter(i, fmt.Sprintf("m%d", i)))
	}
	answer(membersAnswer(0, many...))
	got := h.s.Endpoints()
	if len(got) != maxLearned+3 || got[0] != "m0" || got[maxLearned-1] != fmt.Sprintf("m%d", maxLearned-1) ||
		!slices.Equal(got[maxLearned:], []string{"a", "b", "c"}) {
		t.Fatalf("a membership of %d: %d endpoints %v", len(many), len(got), got)
	}
}

// What the core knew of an endpoint stays with its address: a configured member that refused the
// versions still counts as refused once learned; a learned one refusing too ends the core only
// once every endpoint it knows refused.
func TestMembersKeepWhatIsKnownOfAnEndpoint(t *testing.T) {
	cfg := testConfig()
	cfg.Endpoints = []string{"a", "b"}
	h := newHarness(t, cfg)
	h.s.Start(h.now)
	refuse := func(c ConnID) {
		h.recv(c, wire.ClientMsg{Kind: wire.CVersionRefused, Protocol: wire.Range{Min: 9, Max: 9}, Payload: []byte("no")})
	}
	refuse(h.connect()) // a
	c := h.connect()    // b
	h.attachAt(c, 4)
	q := h.asked(h.out.take())
	h.recv(c, membersAnswer(q[0].RequestID, voter(0, "a"), voter(1, "b"), voter(2, "c")))
	if got := h.s.Endpoints(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("endpoints %v", got)
	}
	if w := h.s.Waiting(); w.Reachable != 2 || w.Members != 3 {
		t.Fatalf("Waiting %+v: a and b were reached", w)
	}
	h.s.Failed(c, h.at(time.Millisecond)) // next: c (the rotation goes on)
	if d := h.out.lastDial(); d.endpoint != "c" {
		t.Fatalf("dialled %q, want c", d.endpoint)
	}
	refuse(h.connect()) // c
	refuse(h.connect()) // a again
	if h.s.Err() != nil {
		t.Fatalf("ended although b did not refuse: %v", h.s.Err())
	}
	refuse(h.connect()) // b
	if h.s.Err() == nil {
		t.Fatal("every endpoint refused, and the core goes on")
	}
}
