package clustertest

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// The operator's controls and leadership transfers in the simulator, asked of the leader of the
// moment on the admin channel (as tandem cluster does), amid every other fault, one request at a
// time with the membership changes (membership.go's queue):
//
//	suspend       tandem cluster suspend: commands are refused until the resume (the clients'
//	              refused commands are "not applied" and held to it: if any member applied one,
//	              the counter's history shows it)
//	resume-cluster  tandem cluster resume ("resume" resumes a paused client)
//	snapshot      tandem cluster snapshot: every member snapshots at the answer's index
//	prefer SEL    tandem cluster set-preferred-leader with member SEL % n of the leader's voters;
//	              the leader then hands over to it when it is ready (replica/preferred.go)
//	transfer SEL  tandem cluster transfer-leader with voter SEL % n of the leader's: answered done,
//	              the target must have led in the answer's term (checked against every
//	              member's role, event by event)
//
// A shutdown is not simulated: it stops every member, which the run's checks would take for a
// failure; the node tests cover it.

// controlRequest is the admin request for a control op, asked of leader l.
func (d *membershipDriver) controlRequest(op *membershipOp, l int) (wire.AdminRequest, bool) {
	switch op.op {
	case "suspend":
		return wire.AdminRequest{Op: wire.AdminSuspend}, true
	case "resume-cluster":
		return wire.AdminRequest{Op: wire.AdminResume}, true
	case "snapshot":
		return wire.AdminRequest{Op: wire.AdminSnapshot}, true
	case "transfer":
		voters := d.voters(l)
		if len(voters) == 0 {
			return wire.AdminRequest{}, false
		}
		op.id = voters[op.arg%len(voters)]
		return wire.AdminRequest{Op: wire.AdminTransferLeader, ID: op.id}, true
	case "prefer":
		voters := d.voters(l)
		if len(voters) == 0 {
			return wire.AdminRequest{}, false
		}
		return wire.AdminRequest{Op: wire.AdminSetPreferred, IDs: []int{voters[op.arg%len(voters)]}}, true
	}
	return wire.AdminRequest{}, false
}

// voters are the member ids of leader l's voters, in order.
func (d *membershipDriver) voters(l int) []int {
	var ids []int
	for _, m := range d.c.Nodes[l].R.Members() {
		if !m.Learner {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

// controlAnswered counts an answered control; false: op is not a control.
func (d *membershipDriver) controlAnswered(op *membershipOp, resp *wire.AdminResponse) bool {
	switch op.op {
	case "suspend":
		if resp.Already == "" {
			d.rep.Suspensions++
		}
	case "resume-cluster":
	case "snapshot":
		d.rep.Snapshots++
	case "prefer":
		d.rep.Preferences++
	case "transfer":
		if resp.Already != "" {
			break
		}
		d.rep.Transfers++
		if resp.Status == nil {
			d.violate("a transfer to member %d was answered done without the member's status", op.id)
			break
		}
		if led, ok := d.leaderOf[resp.Status.Term]; !ok || led != op.id {
			d.violate("a transfer to member %d was answered done in term %d, which member %d has not led (leader: %d, %v)",
				op.id, resp.Status.Term, op.id, led, ok)
		}
	default:
		return false
	}
	return true
}

// drawControls makes a third of the seeds use the controls, between a sixth and five sixths of
// the run: a suspension of 0.5–3 s, a snapshot, a preferred leader, and one to three transfers,
// at times of their own. A stream of its own, as drawUpgrade's.
func drawControls(sch *Schedule, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0xc7a1))
	if rng.IntN(3) != 0 {
		return
	}
	at := func() time.Duration {
		return (sch.Run/6 + time.Duration(rng.Int64N(int64(sch.Run*2/3)))).Round(100 * time.Millisecond)
	}
	if rng.IntN(2) == 0 {
		s := at()
		sch.Faults = append(sch.Faults, Fault{At: s, Op: "suspend"},
			Fault{At: s + (500*time.Millisecond + time.Duration(rng.Int64N(int64(2500*time.Millisecond)))).Round(100*time.Millisecond), Op: "resume-cluster"})
	}
	if rng.IntN(2) == 0 {
		sch.Faults = append(sch.Faults, Fault{At: at(), Op: "snapshot"})
	}
	if rng.IntN(2) == 0 {
		sch.Faults = append(sch.Faults, Fault{At: at(), Op: "prefer", Args: []int{rng.IntN(5)}})
	}
	for range 1 + rng.IntN(3) {
		sch.Faults = append(sch.Faults, Fault{At: at(), Op: "transfer", Args: []int{rng.IntN(5)}})
	}
	slices.SortStableFunc(sch.Faults, func(a, b Fault) int { return int(a.At - b.At) })
}
