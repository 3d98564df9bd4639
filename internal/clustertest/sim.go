package clustertest

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/tandem-cluster/tandem/internal/clientcore"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// SimReport is what one simulated run did and found. A run that did little is visible in it.
type SimReport struct {
	Seed                             uint64
	Nodes                            int
	Ops, Acked, Unknown, Queries     int
	Crashes, Partitions, LeaderTerms int
	// CrashesInSync counts the crashes of a member with a sync under way (of any fault),
	// ArmedInSync the crash-in-sync faults that struck inside a sync; MajorityCrashes the
	// crashes of a majority of the members at once (AllCrashes: of all of them); Stalls the
	// syncs that stalled (Disk; stalled snapshot writes and segment preparations are not
	// counted).
	CrashesInSync, ArmedInSync, MajorityCrashes, AllCrashes, Stalls int
	Syncs                                                           int // syncs of all members
	Pauses, Expiries                                                int // clients silenced past the session timeout; sessions found expired
	Final                                                           int64
	// Upgrades counts the members upgraded from an older build; ClusterVersion is the cluster
	// version at the end; LostData the members whose disk lost synced data (and that refused to
	// start on it).
	Upgrades int
	LostData int
	// Wipes counts the members whose data directory was wiped (and that started on the empty
	// one), WipedStopped those of them a leader stopped for lost data (the others rejoined).
	Wipes, WipedStopped int
	// Joins, Removals and Rebuilds count the membership changes made (membership.go);
	// MembershipRefused those the leader refused, MembershipGaveUp those not done in time.
	Joins, Removals, Rebuilds, Replacements int
	MembershipRefused, MembershipGaveUp     int
	// Suspensions, Snapshots, Preferences and Transfers count the operator's controls applied
	// and the leadership transfers asked (controls.go).
	Suspensions, Snapshots, Preferences, Transfers int
	TransfersNotNow                                int // answered "not now" or "outcome unknown"
	// Denials counts the answers "denied" (principals.go), Thefts the thief's requests about
	// other principals' sessions.
	Denials, Thefts int
	ClusterVersion  uint16
	Violations      []string
}

func (r SimReport) String() string {
	return fmt.Sprintf("seed %d: %d members, %d ops (%d acked increments, %d unknown, %d queries), %d crashes (%d during a sync, %d armed ones in a sync, %d of a majority, %d of all), %d disk stalls, %d partitions, %d client pauses, %d sessions expired, %d leader terms, %d upgrades, cluster version %d, %d members lost synced data, %d wiped (%d stopped), %d denials, %d thefts tried, final %d",
		r.Seed, r.Nodes, r.Ops, r.Acked, r.Unknown, r.Queries, r.Crashes, r.CrashesInSync, r.ArmedInSync, r.MajorityCrashes, r.AllCrashes,
		r.Stalls, r.Partitions, r.Pauses, r.Expiries, r.LeaderTerms, r.Upgrades, r.ClusterVersion, r.LostData, r.Wipes, r.WipedStopped,
		r.Denials, r.Thefts, r.Final)
}

type simOp struct {
	client     int
	query      bool
	call, ret  int64
	value      int64
	known      bool
	cl         *Client
	seq        wire.Seq
	queryID    uint64
	resultSeen bool
	// denied: the client's grant does not allow it (principals.go): it must never be answered,
	// and stays out of the history.
	denied bool
}

// simAbort carries a member's or the harness's failure out of the run.
type simAbort struct{ msg string }

// Simulate runs one seed of the swarm simulation: GenerateSchedule, then RunSchedule. A seed is a
// 3- or 5-member cluster of the real replica on the archive over the disk model, simulated
// clients issuing increments and queries, and faults at rates drawn from the seed: message loss,
// duplication and reordering, partitions (one-way ones too), disks with heavy-tailed sync times
// and stalls, crashes that drop, cut or tear unsynced data — of one member, of a majority or of
// all of them at once, at random or inside a sync — and clients paused past the session timeout.
func Simulate(t *testing.T, seed uint64, simTime time.Duration) SimReport {
	return RunSchedule(t, GenerateSchedule(seed, simTime))
}

// RunSchedule runs a fault schedule against a simulated cluster with simulated clients whose
// operations are drawn from the schedule's seed. Invariants are checked after every event, and
// every promise a member makes against what its disk holds (durableLog); the history is checked
// for linearizability at the end.
func RunSchedule(t *testing.T, sch Schedule) (rep SimReport) {
	rep.Seed = sch.Seed
	defer func() {
		// A member that stops (a storage error, raft's own panic on an impossible log) is a
		// finding of the run, reported with its seed like any other violation.
		if r := recover(); r != nil {
			msg := fmt.Sprint(r)
			if a, ok := r.(simAbort); ok {
				msg = a.msg
			}
			rep.Violations = append(rep.Violations, "a member or the harness stopped: "+msg)
		}
	}()
	rng := rand.New(rand.NewPCG(sch.Seed, 0xc11e)) // the clients' choices
	nodes := sch.Nodes
	modes := sch.CrashModes
	if len(modes) == 0 {
		modes = legacyCrashModes
	}
	versions := make([]uint16, nodes)
	for _, id := range sch.OldBuild {
		versions[id] = 1 // an older build: applies cluster version 1 only
	}
	c := New(t, Options{
		Nodes: nodes, Seed: sch.Seed, MarginEntries: sch.Margin, SegmentBytes: 2 << 10,
		Disks: sch.Disks, CrashModes: modes, ClusterVersionMax: versions,
		NewService: func(int) service.Service { return NewProbe() },
		Tune: func(cfg *replica.Config) {
			cfg.Container.SnapshotIntervalEntries = sch.SnapEvery
			if sch.HeartbeatTicks != 0 {
				cfg.HeartbeatTicks, cfg.ElectionTicks = sch.HeartbeatTicks, sch.ElectionTicks
			}
		},
	})
	c.Fatalf = func(format string, args ...any) { panic(simAbort{fmt.Sprintf(format, args...)}) }
	c.AdminGrant = operatorGrant
	defer func() {
		rep.Crashes, rep.CrashesInSync, rep.ArmedInSync = c.Stats.Crashes, c.Stats.CrashesInSync, c.Stats.ArmedInSync
		rep.MajorityCrashes, rep.AllCrashes, rep.Stalls = c.Stats.MajorityCrashes, c.Stats.AllCrashes, c.Stats.Stalls
		rep.Syncs, rep.Denials = c.Stats.Syncs, c.Stats.Denials
	}()
	c.DropRate, c.DupRate, c.Reorder = sch.Drop, sch.Dup, sch.Reorder
	for i, n := range c.Nodes {
		n.Skew = sch.Skews[i]
	}
	var leaderSkew time.Duration = -1 // the largest skew of any member that led so far
	rep.Nodes = nodes
	var last string
	violate := func(format string, args ...any) {
		if v := fmt.Sprintf(format, args...); len(rep.Violations) < 20 && v != last {
			last = v // a broken invariant is seen again at every event until it holds again
			rep.Violations = append(rep.Violations, fmt.Sprintf("t=%s ", c.Elapsed())+v)
		}
	}
	c.Violation = violate

	// Invariants checked after every event.
	leaderOf := map[uint64]int{}
	lastCommit := map[int]uint64{}
	lastStart := map[int]int{}
	lastApplied := map[int]uint64{}
	stateAt := map[uint64]uint64{} // applied index → hash of the service state there
	confs := newConfCheck()
	c.AfterEvent = func() {
		for _, n := range c.Nodes {
			if n.R == nil {
				continue
			}
			if lastStart[n.ID] != n.Starts {
				lastStart[n.ID], lastCommit[n.ID], lastApplied[n.ID] = n.Starts, 0, 0
			}
			role, term, commit, applied := n.R.Progress()
			if role == service.Leader {
				leaderSkew = max(leaderSkew, n.Skew)
				if l, ok := leaderOf[term]; ok && l != n.ID {
					violate("two leaders in term %d: %d and %d", term, l, n.ID)
				}
				leaderOf[term] = n.ID
			}
			if commit < lastCommit[n.ID] {
				violate("member %d's commit index went back from %d to %d", n.ID, lastCommit[n.ID], commit)
			}
			lastCommit[n.ID] = commit
			// Cluster time comes from leaders' stamps only: it never runs ahead of the fastest
			// leader clock so far.
			if leaderSkew >= 0 {
				if ct := n.R.Container().ClusterTime(); ct > c.now+int64(leaderSkew) {
					violate("member %d's cluster time is %s ahead of every leader's clock", n.ID, time.Duration(ct-c.now-int64(leaderSkew)))
				}
			}
			if applied != lastApplied[n.ID] {
				lastApplied[n.ID] = applied
				h := fnv.New64a()
				h.Write(probe0(c, n.ID).State())
				sum := h.Sum64()
				if prev, ok := stateAt[applied]; ok && prev != sum {
					violate("member %d's state at applied index %d differs from another member's", n.ID, applied)
				}
				stateAt[applied] = sum
				confs.check(n, applied, violate)
			}
		}
	}

	var ops []*simOp
	clients := make([]*Client, simClients)
	everyClient := make([]*Client, 0, simClients) // replaced ones too
	newClient := func(i int) {
		clients[i] = c.NewClient()
		clients[i].Grant = simGrants[i]
		everyClient = append(everyClient, clients[i])
	}
	for i := range clients {
		newClient(i)
	}
	th := newThief(c, sch.Seed, violate)
	lastSeq := make([]wire.Seq, simClients)
	paused := make([]bool, simClients)
	issue := func(i int) {
		if paused[i] {
			return
		}
		cl := clients[i]
		if cl.Expired() {
			newClient(i) // a fresh session; the old one's unknown outcomes stay unknown
			cl = clients[i]
			lastSeq[i] = 0
			rep.Expiries++
		}
		if cl.Unanswered() >= 3 {
			return
		}
		op := &simOp{client: i, call: c.Now(), cl: cl}
		query := rng.IntN(3) == 0
		if g := cl.Grant; g != nil && !g.Commands {
			query = !query // a reader reads mostly, and tries a command now and then
		}
		switch g := cl.Grant; {
		case query:
			op.query, op.queryID = true, cl.Query([]byte("get"))
			op.denied = g != nil && !g.Queries
		case g != nil && !g.Commands:
			seq, err := cl.TrySubmitBy([]byte("inc"), c.Now()+deniedCommandWait)
			if err != nil {
				c.fatalf("client %d: submit: %v", i, err)
			}
			op.seq, op.denied = seq, true
		default:
			op.seq = cl.Submit([]byte("inc"))
		}
		if !op.query {
			lastSeq[i] = op.seq
		}
		ops = append(ops, op)
	}

	step := 100 * time.Millisecond
	next := 0
	changes := &membershipDriver{c: c, rep: &rep, violate: violate, leaderOf: leaderOf}
	for c.Elapsed() < sch.Run {
		for i := range clients {
			if rng.IntN(2) == 0 {
				issue(i)
			}
		}
		th.try(clients, lastSeq)
		for next < len(sch.Faults) && sch.Faults[next].At <= c.Elapsed() {
			f := sch.Faults[next]
			next++
			switch f.Op {
			case "crash":
				c.CrashGroup(f.Args...)
			case "crash-in-sync":
				c.CrashInSync(syncCrashWindow, f.Args...)
			case "restart":
				ids := f.Args
				if len(ids) == nodes {
					// "Every member comes back": the members that joined since too.
					ids = nil
					for id := range c.Nodes {
						ids = append(ids, id)
					}
				}
				for _, id := range ids {
					if !c.Up(id) && c.Nodes[id].Lost == "" {
						c.Start(id)
					}
				}
			case "lose":
				mode := loseModes[f.Args[1]%len(loseModes)]
				if _, done := c.LoseSyncedData(f.Args[0], mode); done && strings.HasPrefix(mode, "wipe") {
					rep.Wipes++
				} else if done {
					rep.LostData++
				}
			case "partition":
				c.Partition(f.Args...)
				rep.Partitions++
			case "cut":
				c.CutOneWay(f.Args[0], f.Args[1])
				rep.Partitions++
			case "heal":
				c.Heal()
			case "upgrade":
				id := f.Args[0]
				c.Nodes[id].ClusterVersionMax = 0
				if c.Up(id) && c.Nodes[id].Lost == "" {
					c.Stop(id)
					c.Start(id)
				}
				rep.Upgrades++
			case "pause":
				clients[f.Args[0]].Stop()
				paused[f.Args[0]] = true
				rep.Pauses++
			case "resume":
				clients[f.Args[0]].Resume()
				paused[f.Args[0]] = false
			case "join", "remove", "rebuild", "replace", "suspend", "resume-cluster", "snapshot", "prefer", "transfer":
				changes.add(f)
			}
		}
		c.Run(step)
		changes.step()
		learnMembership(c)
	}
	changes.finish()

	// Quiesce: heal, restart everything, and let every client finish what it started.
	c.Heal()
	for i, p := range paused {
		if p {
			clients[i].Resume()
		}
	}
	c.DropRate, c.DupRate = 0, 0
	c.Disarm()
	for id := range c.Nodes {
		if !c.Up(id) && c.Nodes[id].Lost == "" {
			c.Start(id) // a member that lost synced data stays down: it waits to be rebuilt
		}
	}
	c.RunUntil(learning(c, c.LeaderAgreed), 10*time.Second)
	stopRemoved(c)
	// A client with a principal waits for cluster version 6 (principals.go): in a seed that
	// cannot reach it, its commands are given up once the others are done.
	waits := func(cl *Client) bool { return cl.Grant != nil && cl.Grant.Principal != "" && !principalsExpected(c) }
	done := func() bool {
		for _, cl := range clients {
			if !cl.Expired() && cl.Unanswered() > 0 && !waits(cl) {
				return false
			}
		}
		return true
	}
	if !c.RunUntil(learning(c, done), 120*time.Second) {
		var waiting []string
		for i, cl := range clients {
			if !cl.Expired() && cl.Unanswered() > 0 && !waits(cl) {
				p := "anonymous"
				if cl.Grant != nil {
					p = cl.Grant.Principal
				}
				waiting = append(waiting, fmt.Sprintf("client %d (%s): %d unanswered %v, %s", i, p, cl.Unanswered(),
					cl.Outstanding(), cl.core.Waiting()))
			}
		}
		violate("clients still waiting 120 s after the faults stopped: %s; %s", strings.Join(waiting, "; "), c.Describe())
	}
	for _, cl := range clients {
		if waits(cl) {
			cl.GiveUp(errors.New("the cluster version never reached 6: the session waited for ever"))
		}
	}
	if !c.RunUntil(learning(c, c.Converged), 60*time.Second) {
		violate("members did not converge after the faults stopped: %s", c.Describe())
	}
	checkClusterVersion(c, violate)
	checkClusterIdentity(c, violate)
	checkPrincipals(c, violate)
	checkGrantsHeld(everyClient, violate)
	rep.Thefts = th.attempts
	for _, n := range c.Nodes {
		if strings.HasPrefix(n.Lost, "wiped") {
			rep.WipedStopped++
		}
	}
	if l := c.Leader(); l >= 0 {
		rep.ClusterVersion = c.Nodes[l].R.Summary().ClusterVersion
	}

	// Collect the history.
	var hist, unknown []porcupine.Operation
	seen := map[int64]bool{}
	var attempted int64
	for _, op := range ops {
		if op.denied {
			continue // never answered (checkGrantsHeld), never applied (checkPrincipals)
		}
		if op.query {
			r, ok := op.cl.QueryResults[op.queryID]
			if !ok || r.Err != nil {
				continue // a read that never returned constrains nothing
			}
			v, _ := strconv.ParseInt(string(r.Reply), 10, 64)
			rep.Queries++
			hist = append(hist, porcupine.Operation{ClientId: op.client, Input: false, Call: op.call, Output: v, Return: r.At})
			continue
		}
		r, ok := op.cl.Results[op.seq]
		if ok && errors.Is(r.Err, clientcore.ErrNotApplied) {
			// The client library says the cluster did not apply it: held to that, the command
			// never happened (if it did, the counter shows it and the checks below fail).
			continue
		}
		attempted++
		if !ok || r.Err != nil {
			rep.Unknown++
			unknown = append(unknown, porcupine.Operation{ClientId: op.client, Input: true, Call: op.call, Output: nil, Return: math.MaxInt64})
			continue
		}
		v, err := strconv.ParseInt(string(r.Reply), 10, 64)
		if err != nil {
			violate("increment reply %q", r.Reply)
			continue
		}
		if seen[v] {
			violate("increment result %d returned twice", v)
		}
		seen[v] = true
		rep.Acked++
		hist = append(hist, porcupine.Operation{ClientId: op.client, Input: true, Call: op.call, Output: v, Return: r.At})
	}
	rep.Ops = len(ops)
	rep.LeaderTerms = len(leaderOf)
	final := false
	if l := c.Leader(); l >= 0 {
		rep.Final = probe0(c, l).Counter()
		final = true
	}
	if rep.Final < int64(rep.Acked) || rep.Final > attempted {
		violate("acked %d ≤ final %d ≤ attempted %d does not hold", rep.Acked, rep.Final, attempted)
	}
	switch res, n := checkCounterHistory(hist, unknown, final, rep.Final, int64(rep.Acked), c.Now()); res {
	case porcupine.Illegal:
		violate("the history of %d operations is not linearizable", n)
	case porcupine.Unknown:
		violate("the linearizability check timed out on %d operations", n)
	}
	return rep
}

// checkClusterVersion checks, once the faults stopped and every member is up, that the cluster
// version is what the members' builds allow: the highest all of them apply, reached by the
// leader's raise (liveness: every member reported), and never more (safety: a member of an
// older build would have stopped at the raise, which the run reports as a member that stopped).
func checkClusterVersion(c *Cluster, violate func(string, ...any)) {
	want, lost := expectedClusterVersion(c)
	agreed := func() bool {
		for _, n := range c.Nodes {
			if n.Lost != "" {
				continue
			}
			if v := n.R.Summary().ClusterVersion; v > want || (!lost && v != want) {
				return false
			}
		}
		return true
	}
	if !c.RunUntil(agreed, 30*time.Second) {
		var got []string
		for _, n := range c.Nodes {
			if n.R != nil {
				sum := n.R.Summary()
				got = append(got, fmt.Sprintf("member %d at %d (applies up to %d)", n.ID, sum.ClusterVersion, sum.ClusterVersionMax))
			}
		}
		what := "not %d, the highest every member applies,"
		if lost {
			what = "above %d, the highest every member applies (one lost its data and is down),"
		}
		violate("the cluster version is "+what+" 30 s after the faults stopped: %s", want, strings.Join(got, ", "))
	}
}

// expectedClusterVersion is checkClusterVersion's expectation, from the members' builds: the
// cluster version must reach want, or (lost: a member is down for good) may stay below it.
func expectedClusterVersion(c *Cluster) (want uint16, lost bool) {
	want = container.ClusterVersionMax
	for _, n := range c.Nodes {
		switch {
		case n.Lost != "":
			// Down for good, it holds the version back with what it said when it last started —
			// it is in the configuration, and may come back as it was — and only a leader that
			// heard that may count on it: a leader elected since knows nothing of it, and waits.
			want, lost = min(want, n.reported), true
		case n.ClusterVersionMax != 0:
			want = min(want, n.ClusterVersionMax)
		}
	}
	return want, lost
}

// checkClusterIdentity checks, after checkClusterVersion, that a cluster at version 3 or more has
// one identity, held by every member: the leader proposed it (liveness) and every member applied
// the same one (safety: the first identity entry wins everywhere).
func checkClusterIdentity(c *Cluster, violate func(string, ...any)) {
	for _, n := range c.Nodes {
		if n.R == nil || n.R.Summary().ClusterVersion < 3 {
			return
		}
	}
	agreed := func() bool {
		var first wire.ClusterUUID
		for _, n := range c.Nodes {
			if n.R == nil {
				return false
			}
			u := n.R.Summary().ClusterUUID
			if u.IsZero() || !first.IsZero() && u != first {
				return false
			}
			first = u
		}
		return true
	}
	if !c.RunUntil(agreed, 30*time.Second) {
		var got []string
		for _, n := range c.Nodes {
			if n.R != nil {
				got = append(got, fmt.Sprintf("member %d: %v", n.ID, n.R.Summary().ClusterUUID))
			}
		}
		violate("the members do not hold one cluster identity 30 s after the cluster version reached 3: %s", strings.Join(got, ", "))
	}
}

// checkCounterHistory checks with porcupine the history of acknowledged increments and queries,
// hist, together with the increments of unknown outcome, which may have taken effect or not, and
// returns the result and the number of operations checked.
//
// Kept as they are, unknown increments make porcupine's search explode (a seed with 11 of them
// did not finish in 30 s; one with 14 and 116 queries neither), so the final value, read once
// everything was applied, is used: exactly applied = final − acked of them took effect (each
// applies at most once). The history is linearizable if and only if it is with some set of that
// many of them included (the others never took effect) and the final value read at the end; when
// there are not too many such sets, each is checked on its own — a handful of pending operations
// each, a quick search — instead of all of them at once.
func checkCounterHistory(hist, unknown []porcupine.Operation, final bool, finalValue, acked, end int64) (porcupine.CheckResult, int) {
	if !final {
		all := append(slices.Clone(hist), unknown...)
		return porcupine.CheckOperationsTimeout(counterModel, all, 30*time.Second), len(all)
	}
	applied := finalValue - acked
	last := end // the final read comes after every operation ended
	for _, op := range hist {
		last = max(last, op.Return)
	}
	for _, op := range unknown {
		last = max(last, op.Call)
	}
	last++
	read := porcupine.Operation{ClientId: -1, Input: false, Call: last, Output: finalValue, Return: last + 1}
	sets, ok := combinations(len(unknown), int(applied), maxUnknownSets)
	if !ok {
		all := append(append(slices.Clone(hist), unknown...), read)
		return porcupine.CheckOperationsTimeout(counterModel, all, 30*time.Second), len(all)
	}
	res := porcupine.Illegal
	deadline := time.Now().Add(30 * time.Second) // for all the sets together
	for _, set := range sets {
		h := slices.Clone(hist)
		for _, i := range set {
			h = append(h, unknown[i])
		}
		h = append(h, read)
		left := time.Until(deadline)
		if left <= 0 {
			return porcupine.Unknown, len(h)
		}
		switch porcupine.CheckOperationsTimeout(counterModel, h, left) {
		case porcupine.Ok:
			return porcupine.Ok, len(h)
		case porcupine.Unknown:
			res = porcupine.Unknown
		}
	}
	return res, len(hist) + int(applied) + 1
}

// maxUnknownSets bounds the sets of unknown increments checked one by one.
const maxUnknownSets = 512

// combinations returns every k-element subset of 0…n-1 (as index lists), or false when there are
// more than limit of them.
func combinations(n, k, limit int) ([][]int, bool) {
	if k < 0 || k > n {
		return nil, k == 0
	}
	var out [][]int
	cur := make([]int, 0, k)
	var rec func(from int) bool
	rec = func(from int) bool {
		if len(cur) == k {
			if len(out) == limit {
				return false
			}
			out = append(out, slices.Clone(cur))
			return true
		}
		for i := from; i <= n-(k-len(cur)); i++ {
			cur = append(cur, i)
			ok := rec(i + 1)
			cur = cur[:len(cur)-1]
			if !ok {
				return false
			}
		}
		return true
	}
	return out, rec(0)
}

func probe0(c *Cluster, id int) *Probe { return c.Nodes[id].Svc.(*Probe) }

// counterModel: an increment returns the new value (nil when its outcome is unknown: it may
// take effect anywhere after its call, or never, which porcupine expresses by placing it last);
// a query returns the current value.
var counterModel = porcupine.Model{
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		s := state.(int64)
		if input.(bool) {
			if output == nil {
				return true, s + 1
			}
			return output.(int64) == s+1, s + 1
		}
		return output.(int64) == s, s
	},
	DescribeOperation: func(input, output any) string {
		if input.(bool) {
			return fmt.Sprintf("inc → %v", output)
		}
		return fmt.Sprintf("get → %v", output)
	},
}

// joinViolations formats violations, in the order they were found, one per line.
func joinViolations(v []string) string { return strings.Join(v, "\n") }
