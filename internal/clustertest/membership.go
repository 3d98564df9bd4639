package clustertest

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Membership changes in the simulator: joins, removals and rebuilds in place, asked of the leader
// on the admin channel as an operator (tandem cluster) or a joining member (tandem node --join)
// asks, amid every other fault.
//
//	join MODE     a new member (the next id) asks to join; MODE 1: it crashes before it keeps the
//	              answer, and asks again a second later: it must be given the same raft id (a
//	              crash anywhere in joining adds at most one member)
//	remove SEL    the member SEL % n of the leader's membership (the leader itself included: it
//	              hands over first) is removed; it stops once it applies that, or, if no leader
//	              talks to it any more, when it learns it from the others (stopRemoved)
//	rebuild SEL   the member SEL % n of the founders is stopped and rebuilt in place: it asks to
//	              join with its id and addresses, and on the answer starts on an empty disk under
//	              the new raft id, which replaces the old one once caught up (a joint change)
//	replace SEL   a new member joins as a learner that stays one, then takes the place of voter
//	              SEL % n of the leader's membership (replace-member: one joint change; asked
//	              again while the learner is not caught up)
//
// One change at a time, as the leader takes them: each is asked again (to the leader of the
// moment) until it is answered, for up to membershipPatience.
const membershipPatience = 15 * time.Second

type membershipOp struct {
	op        string
	arg, mode int
	start     time.Duration // when it was first asked
	id        int           // the member it is about, once chosen
	reqID     uint64        // the request in flight (0: none)
	sentAt    time.Duration
	nextAt    time.Duration // not before (a crashed joiner asks again later)
	firstRaft uint64        // join mode 1: the raft id of the answer the joiner lost
	learner   int           // replace: the learner's id, once it joined (-1 before)
}

type membershipDriver struct {
	c       *Cluster
	rep     *SimReport
	violate func(string, ...any)
	queue   []*membershipOp
	seq     uint64
	seen    int // AdminAnswers read
	// leaderOf is the run's record of who led each term (controls.go checks transfers by it).
	leaderOf map[uint64]int
}

func (d *membershipDriver) add(f Fault) {
	op := &membershipOp{op: f.Op, id: -1, learner: -1}
	if len(f.Args) > 0 {
		op.arg = f.Args[0]
	}
	if len(f.Args) > 1 {
		op.mode = f.Args[1]
	}
	d.queue = append(d.queue, op)
}

// step answers what came back and sends what is due; called after every step of the run.
func (d *membershipDriver) step() {
	c := d.c
	for ; d.seen < len(c.AdminAnswers); d.seen++ {
		a := c.AdminAnswers[d.seen]
		if len(d.queue) == 0 || a.Msg.RequestID != d.queue[0].reqID || a.Msg.RequestID == 0 {
			continue // an answer to a request asked again since
		}
		d.answered(d.queue[0], &a.Msg)
	}
	if len(d.queue) == 0 {
		return
	}
	op := d.queue[0]
	now := c.Elapsed()
	if op.start == 0 {
		op.start = now
	}
	if now-op.start > membershipPatience {
		d.rep.MembershipGaveUp++
		d.done(op, false)
		return
	}
	if op.reqID != 0 && now-op.sentAt < 3*time.Second {
		return // waiting for the answer (a leader that crashed never gives one: asked again)
	}
	if now < op.nextAt {
		return
	}
	l := c.Leader()
	if l < 0 {
		return
	}
	if op.op == "remove" && op.id < 0 && removalWaits(c.Nodes[l].R.Members(), op.arg) {
		return // asked once the joiner is a voter
	}
	req, ok := d.request(op, l)
	if !ok {
		d.done(op, false)
		return
	}
	d.seq++
	op.reqID, op.sentAt = d.seq, now
	c.Admin(l, op.reqID, req)
}

// removalWaits reports whether the removal of member sel % n of the leader's membership ms waits:
// it is a voter, three voters or fewer are left, and a joiner that is still a learner will be
// promoted. The simulator keeps three voters, so that one member's fault (its disk losing synced
// data, a wipe) leaves a quorum: counting the joiner before it was a voter, a removal left two
// voters and a learner that had not caught up, and the wipe of the leader then left a
// configuration no member could ever elect in (soak seed 396 111 — by design: the wiped member
// must not vote until a leader has repaired it, and two voters need both votes).
// membershipPatience bounds the wait.
func removalWaits(ms []replica.Member, sel int) bool {
	if len(ms) <= 3 || ms[sel%len(ms)].Learner {
		return false
	}
	joining := slices.ContainsFunc(ms, func(m replica.Member) bool { return m.Learner && !m.StayLearner })
	return joining && voterCount(ms) <= 3
}

// voterCount is how many of ms are voters.
func voterCount(ms []replica.Member) int {
	n := 0
	for _, m := range ms {
		if !m.Learner {
			n++
		}
	}
	return n
}

// request is the admin request for op, asked of leader l; false: there is nothing to ask.
func (d *membershipDriver) request(op *membershipOp, l int) (wire.AdminRequest, bool) {
	c := d.c
	switch op.op {
	case "join":
		if op.id < 0 {
			op.id = len(c.Nodes)
		}
		return wire.AdminRequest{Op: wire.AdminJoin, Member: &wire.AdminMember{ID: op.id, ClientAddr: clientAddr(op.id),
			MemberAddr: fmt.Sprintf("sim:%d", 9100+op.id)}}, true
	case "remove":
		if op.id < 0 {
			ms := c.Nodes[l].R.Members()
			if len(ms) <= 3 {
				return wire.AdminRequest{}, false // the simulator keeps three members at least
			}
			if m := ms[op.arg%len(ms)]; !m.Learner && voterCount(ms) <= 3 {
				return wire.AdminRequest{}, false // … and three voters (removalWaits)
			}
			op.id = ms[op.arg%len(ms)].ID
		}
		return wire.AdminRequest{Op: wire.AdminRemoveMember, ID: op.id}, true
	case "replace":
		if op.learner < 0 {
			if op.id < 0 {
				op.id = len(c.Nodes)
			}
			return wire.AdminRequest{Op: wire.AdminJoin, Learner: true, Member: &wire.AdminMember{ID: op.id,
				ClientAddr: clientAddr(op.id), MemberAddr: fmt.Sprintf("sim:%d", 9100+op.id)}}, true
		}
		var voters []int
		for _, m := range c.Nodes[l].R.Members() {
			if !m.Learner && m.ID != op.learner {
				voters = append(voters, m.ID)
			}
		}
		if len(voters) == 0 {
			return wire.AdminRequest{}, false
		}
		old := voters[op.arg%len(voters)]
		return wire.AdminRequest{Op: wire.AdminReplaceMember, ID: old, Member: &wire.AdminMember{ID: op.learner}}, true
	case "suspend", "resume-cluster", "snapshot", "prefer", "transfer":
		return d.controlRequest(op, l)
	case "rebuild":
		if op.id < 0 {
			op.id = op.arg % c.opts.Nodes
			n := c.Nodes[op.id]
			if n.Lost != "" || !c.inMembership(l, op.id) {
				return wire.AdminRequest{}, false
			}
			c.CrashGroup(op.id) // down (its directory is wiped once the cluster takes it back)
		}
		return wire.AdminRequest{Op: wire.AdminJoin, Member: &wire.AdminMember{ID: op.id, ClientAddr: clientAddr(op.id),
			MemberAddr: fmt.Sprintf("sim:%d", 9100+op.id)}}, true
	}
	return wire.AdminRequest{}, false
}

func (d *membershipDriver) answered(op *membershipOp, m *wire.ClientMsg) {
	op.reqID = 0
	if m.Kind != wire.CAdminResponse {
		return // a redirect: asked again of the leader of the moment
	}
	resp, err := wire.DecodeAdminResponse(m.Payload)
	if err != nil {
		d.violate("an admin answer does not decode: %v", err)
		d.done(op, false)
		return
	}
	switch m.Status {
	case wire.StatusOK:
	case wire.StatusUnavailable:
		if op.op == "transfer" {
			// Not now (the target is down or behind, another transfer is under way) or
			// outcome unknown: an operator would look again; the simulator moves on, so that
			// the changes queued behind are not held up.
			d.rep.TransfersNotNow++
			d.done(op, false)
		}
		return // not now: asked again
	default:
		d.rep.MembershipRefused++
		d.done(op, false)
		return
	}
	c := d.c
	if d.controlAnswered(op, &resp) {
		d.done(op, true)
		return
	}
	switch op.op {
	case "join":
		if op.firstRaft != 0 && resp.RaftID != op.firstRaft {
			d.violate("member %d asked to join again after losing the answer and was given raft id %d, then %d: "+
				"a crash in joining added two members", op.id, op.firstRaft, resp.RaftID)
		}
		if op.mode == 1 && op.firstRaft == 0 {
			op.firstRaft, op.nextAt = resp.RaftID, c.Elapsed()+time.Second // it crashed before keeping it
			return
		}
		c.AddNode(op.id, resp.RaftID)
		d.rep.Joins++
	case "remove":
		d.rep.Removals++
	case "replace":
		if op.learner < 0 {
			c.AddNode(op.id, resp.RaftID)
			d.rep.Joins++
			op.learner = op.id
			return // then the replacement, asked of the leader of the moment
		}
		d.rep.Replacements++
	case "rebuild":
		c.Rebuild(op.id, resp.RaftID)
		d.rep.Rebuilds++
	}
	d.done(op, true)
}

// done ends op; a rebuild not done leaves the member as it was, and it is started again.
func (d *membershipDriver) done(op *membershipOp, ok bool) {
	if op.op == "rebuild" && !ok && op.id >= 0 {
		if n := d.c.Nodes[op.id]; n.R == nil && n.Lost == "" {
			d.c.Start(op.id)
		}
	}
	d.queue = d.queue[1:]
}

// finish gives up what is left when the run's faults end.
func (d *membershipDriver) finish() {
	for len(d.queue) > 0 {
		d.rep.MembershipGaveUp++
		d.done(d.queue[0], false)
	}
}

// learnMembership does what a member that knows no leader does every few seconds (node's
// watchMembership): it asks the others for the membership, and stops if it was removed, or takes
// the answer as a hint of whose terms to hear (Replica.HintMembership).
func learnMembership(c *Cluster) {
	l := c.Leader()
	if l < 0 {
		return
	}
	ms := c.Nodes[l].R.Members()
	for _, n := range c.Nodes {
		if n.R == nil || n.ID == l || c.lost(l, n.ID) {
			continue
		}
		if st := n.R.Summary(); st.Leader >= 0 && !st.Unverified {
			continue
		}
		if c.Nodes[l].R.Removed(n.RaftID()) {
			// (listed as removed: never inferred from an absence, as the node does)
			c.Crash(n.ID)
			n.Lost = "removed (learnt from the others)"
			continue
		}
		n.R.HintMembership(ms)
	}
}

// learning wraps a condition of RunUntil so that learnMembership runs every 100 ms of simulated
// time meanwhile, as node's watchMembership runs beside everything.
func learning(c *Cluster, cond func() bool) func() bool {
	next := c.now
	return func() bool {
		if c.now >= next {
			next = c.now + int64(100*time.Millisecond)
			learnMembership(c)
		}
		return cond()
	}
}

// stopRemoved stops the members that are not in the leader's membership: removed members that
// never applied their removal learn it from the others and stop (node's watchRemoval).
func stopRemoved(c *Cluster) {
	l := c.Leader()
	if l < 0 {
		return
	}
	for _, n := range c.Nodes {
		if n.R != nil && c.Nodes[l].R.Removed(n.RaftID()) {
			c.Crash(n.ID)
			n.Lost = "removed (learnt from the others)"
		}
	}
}

// confCheck checks the configurations members apply: the same one at the same index on every
// member, and no raft id back in one after it was removed (raft ids are never reused).
type confCheck struct {
	at        map[uint64]string // applied index → the configuration there
	removedAt map[uint64]uint64 // raft id → the first index whose configuration lacks it after it held it
	prev      map[int][]uint64  // member → the raft ids of the configuration it applied last
	prevAt    map[int]uint64    // … at this index
}

func newConfCheck() *confCheck {
	return &confCheck{at: map[uint64]string{}, removedAt: map[uint64]uint64{}, prev: map[int][]uint64{}, prevAt: map[int]uint64{}}
}

func (k *confCheck) check(n *Node, applied uint64, violate func(string, ...any)) {
	cs := n.R.ConfState()
	ids := slices.Concat(cs.GetVoters(), cs.GetLearners(), cs.GetVotersOutgoing())
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var b strings.Builder
	fmt.Fprintf(&b, "v%v l%v o%v", cs.GetVoters(), cs.GetLearners(), cs.GetVotersOutgoing())
	for _, m := range n.R.Members() {
		fmt.Fprintf(&b, " %d/%d/%s/%s", m.ID, m.RaftID, m.ClientAddr, m.MemberAddr)
	}
	conf := b.String()
	if prev, ok := k.at[applied]; ok && prev != conf {
		violate("member %d's configuration at applied index %d is %s; another member's there is %s", n.ID, applied, conf, prev)
	}
	k.at[applied] = conf
	if applied <= k.prevAt[n.ID] {
		k.prev[n.ID] = nil // restarted (or rebuilt), replaying from an earlier index
	}
	for _, id := range k.prev[n.ID] {
		if !slices.Contains(ids, id) {
			if at, ok := k.removedAt[id]; !ok || applied < at {
				k.removedAt[id] = applied
			}
		}
	}
	for _, id := range ids {
		if at, ok := k.removedAt[id]; ok && applied > at {
			violate("raft id %d is in member %d's configuration at index %d, after it was removed at index %d: "+
				"a raft id was reused", id, n.ID, applied, at)
		}
	}
	k.prev[n.ID], k.prevAt[n.ID] = ids, applied
}
