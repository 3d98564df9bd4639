package clustertest

import (
	"maps"
	"math/rand/v2"
	"slices"

	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// Principals in the simulator (issue 22). The harness plays the client port: it sets each
// simulated client's Grant on every request of its connections (toNode), as the port does for an
// authenticated connection.
//
//	client 0  no grant: a port without authentication (anonymous, may do anything)
//	client 1  "writer": commands, no queries (its queries must all be denied)
//	client 2  "reader": queries, no commands (it opens a session, as a client library does when it
//	          connects; its commands must all be denied and never applied)
//	thief     "mallory": commands and queries, but no session of its own: it sends opens,
//	          attaches, "steal" commands, keep-alives and closes on the other clients' sessions
//	          (which a stolen session id would let it do), and an admin shutdown, on raw
//	          connections to the leader of the moment; every answer must be a refusal.
//	operator  the membership changes and controls: every admin operation.
//
// Below cluster version 6 the writer's and the reader's sessions wait (their opens are answered
// "unavailable"; the reader's queries are served meanwhile): in a seed that never reaches
// version 6 (a member never upgraded, or one down for good with the older build's word) the
// writer's commands are given up at the end, and must be "not applied".
//
// Checked: at every applied index every member's service state (the probe counts sessions
// opened and increments applied by principal) is the same — a member that saw another principal
// for a session, from a snapshot that lost it say, differs; at the end, on every member, no
// increment of the reader and nothing of the thief was applied, no steal, and every member that
// holds a session holds it for the same principal; no command of the reader and no query of the
// writer was answered; no answer to the thief let it do anything.

// simGrants are the simulated clients' grants, by index (see above).
var simGrants = [simClients]*wire.Grant{
	nil,
	{Principal: "writer", Commands: true},
	{Principal: "reader", Queries: true},
}

// operatorGrant is the admin requests' connection's: every operation.
var operatorGrant = &wire.Grant{Principal: "operator", Commands: true, Queries: true, Admin: func(string) error { return nil }}

// deniedCommandWait is how long the reader's commands, which the cluster denies, are waited for.
// The client library resends a refused command whose earlier attempt went unanswered on a lost
// connection (it may have been applied), until its deadline; a denial is final whatever the
// library does with it.
const deniedCommandWait = 2e9 // nanoseconds

// thief tries to act on other principals' sessions.
type thief struct {
	c        *Cluster
	cl       *Client
	rng      *rand.Rand
	violate  func(string, ...any)
	attempts int
	nextID   uint64
}

func newThief(c *Cluster, seed uint64, violate func(string, ...any)) *thief {
	th := &thief{c: c, cl: c.NewClient(), rng: rand.New(rand.NewPCG(seed, 0x7411ef)), violate: violate}
	th.cl.Grant = &wire.Grant{Principal: "mallory", Commands: true, Queries: true}
	th.cl.onRaw = th.answer
	return th
}

// try, at a tenth of the steps, sends one request about a session of one of victims that is
// open on the leader of the moment, to that leader. lastSeq is each victim's highest command
// number so far: a steal takes a number just above it (one the victim will use next), so that a
// steal that went through would also spoil the victim's own answer.
func (th *thief) try(victims []*Client, lastSeq []wire.Seq) {
	if th.rng.IntN(10) != 0 {
		return
	}
	l := th.c.Leader()
	if l < 0 {
		return
	}
	i := th.rng.IntN(len(victims))
	v := victims[i]
	s := v.Session
	if !th.c.Nodes[l].R.Container().SessionOpen(s) {
		return // a session that is not open: nothing to steal (and an id no thief could know)
	}
	th.attempts++
	var m wire.ClientMsg
	switch th.rng.IntN(6) {
	case 0:
		m = wire.ClientMsg{Kind: wire.COpen, Session: s}
	case 1:
		m = wire.ClientMsg{Kind: wire.CAttach, Session: s}
	case 2:
		m = wire.ClientMsg{Kind: wire.CKeepAlive, Session: s}
	case 3:
		m = wire.ClientMsg{Kind: wire.CClose, Session: s}
	case 4:
		th.nextID++
		m = wire.ClientMsg{Kind: wire.CAdmin, RequestID: th.nextID, Protocol: wire.ClientProtocol,
			Payload: wire.EncodeAdmin(wire.AdminRequest{Op: wire.AdminShutdown})}
	default:
		m = wire.ClientMsg{Kind: wire.CCommand, Session: s, Seq: lastSeq[i] + 1 + wire.Seq(th.rng.IntN(3)), Payload: []byte("steal")}
	}
	th.cl.SendRaw(l, &m)
}

// answer checks what a member answered the thief: never a grant of what it asked.
func (th *thief) answer(m *wire.ClientMsg) {
	bad := false
	switch m.Kind {
	case wire.CAttached, wire.CPush:
		bad = true
	case wire.CResponse, wire.CKeepAliveAck:
		bad = m.Status == wire.StatusOK || m.Status == wire.StatusEvicted
	case wire.CSessionEvent:
		bad = m.Status == wire.StatusOK // the session closed at its request
	case wire.CAdminResponse:
		bad = m.Status != wire.StatusDenied
	}
	if bad {
		th.violate("the thief (principal mallory) was answered %s status %d (%q) about another principal's session %x",
			kindNames[m.Kind], m.Status, m.Payload, m.Session[:4])
	}
}

var kindNames = map[wire.ClientKind]string{wire.CAttached: "attached", wire.CPush: "a push", wire.CResponse: "a response",
	wire.CKeepAliveAck: "a keep-alive ack", wire.CSessionEvent: "a session event", wire.CAdminResponse: "an admin response"}

// principalsExpected reports whether the writer's and the reader's sessions must open by the
// end: the cluster version reaches 6 for sure (checkClusterVersion's reasoning).
func principalsExpected(c *Cluster) bool {
	want, lost := expectedClusterVersion(c)
	return !lost && want >= container.ClusterVersionPrincipal
}

// checkPrincipals checks, once the members converged, what the principals did and that every
// member holds the same principal for each session.
func checkPrincipals(c *Cluster, violate func(string, ...any)) {
	type who struct {
		member int
		p      string
	}
	owners := map[wire.SessionID]who{}
	for _, n := range c.Nodes {
		if n.R == nil {
			continue
		}
		p := probe0(c, n.ID)
		if _, incs := p.Principal("reader"); incs != 0 {
			violate("member %d applied %d increments of the reader, which may not send commands", n.ID, incs)
		}
		if opens, incs := p.Principal("mallory"); opens+incs != 0 {
			violate("member %d applied %d opens and %d increments of the thief", n.ID, opens, incs)
		}
		if k := p.Stolen(); k != 0 {
			violate("member %d applied %d commands the thief sent on other principals' sessions", n.ID, k)
		}
		ctr := n.R.Container()
		for _, id := range ctr.SessionIDs() {
			sess, ok := p.cluster.Session(service.SessionID(id))
			pr, _ := ctr.SessionPrincipal(id)
			if !ok || sess.Principal() != pr {
				violate("member %d: the service sees session %x's principal otherwise than the container (%q)", n.ID, id[:4], pr)
			}
			if o, seen := owners[id]; seen && o.p != pr {
				violate("session %x is member %d's principal %q's and member %d's %q", id[:4], o.member, o.p, n.ID, pr)
			}
			owners[id] = who{n.ID, pr}
		}
	}
}

// checkGrantsHeld checks the restricted clients' outcomes: no command of a client that may not
// send commands, and no query of one that may not run queries, was answered.
func checkGrantsHeld(clients []*Client, violate func(string, ...any)) {
	for _, cl := range clients {
		g := cl.Grant
		if g == nil {
			continue
		}
		for _, seq := range slices.Sorted(maps.Keys(cl.Results)) {
			if r := cl.Results[seq]; !g.Commands && r.Err == nil {
				violate("command %d of %q, which may not send commands, was answered %q", seq, g.Principal, r.Reply)
			}
		}
		for _, id := range slices.Sorted(maps.Keys(cl.QueryResults)) {
			if r := cl.QueryResults[id]; !g.Queries && r.Err == nil {
				violate("query %d of %q, which may not run queries, was answered %q", id, g.Principal, r.Reply)
			}
		}
	}
}
