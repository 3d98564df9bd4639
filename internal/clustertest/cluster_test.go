package clustertest

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/clientcore"
	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// electionTimeout is the longest randomised election timeout of the default configuration.
const electionTimeout = 2 * time.Second

func newProbeCluster(t *testing.T, nodes int, seed uint64, tune func(*replica.Config)) *Cluster {
	return New(t, Options{
		Nodes:      nodes,
		Seed:       seed,
		NewService: func(int) service.Service { return NewProbe() },
		Tune:       tune,
	})
}

func probe(c *Cluster, id int) *Probe { return c.Nodes[id].Svc.(*Probe) }

func value(t *testing.T, r Result) int64 {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("error: %v", r.Err)
	}
	v, err := strconv.ParseInt(string(r.Reply), 10, 64)
	if err != nil {
		t.Fatalf("reply %q: %v", r.Reply, err)
	}
	return v
}

// assertConverged checks that every running member applied the same index and holds the same
// state.
func assertConverged(t *testing.T, c *Cluster) {
	t.Helper()
	if !c.WaitConverged(10 * electionTimeout) {
		t.Fatalf("members did not converge: %s", c.Describe())
	}
	var ref []byte
	var refID int
	for _, n := range c.Nodes {
		if n.R == nil {
			continue
		}
		st := probe(c, n.ID).State()
		if ref == nil {
			ref, refID = st, n.ID
			continue
		}
		if !bytes.Equal(st, ref) {
			t.Fatalf("member %d state %q differs from member %d state %q", n.ID, st, refID, ref)
		}
	}
}

func TestOneOfThreeHasNoLeaderTwoElectThirdCatchesUp(t *testing.T) {
	c := newProbeCluster(t, 3, 1, nil)
	c.Crash(1)
	c.Crash(2)
	c.Run(5 * electionTimeout)
	if l := c.Leader(); l >= 0 {
		t.Fatalf("a lone member of three became leader: %s", c.Describe())
	}
	// A request on the lone member fails at once with a redirect that knows no leader.
	cl := c.NewClient()
	cl.Stop() // drive it by hand
	var got []wire.ClientMsg
	cl.onRaw = func(m *wire.ClientMsg) { got = append(got, *m) }
	cl.SendRaw(0, &wire.ClientMsg{Kind: wire.COpen, Session: cl.Session})
	c.RunUntil(func() bool { return len(got) > 0 }, time.Second)
	if len(got) != 1 || got[0].Kind != wire.CRedirect || got[0].LeaderID != -1 || got[0].Status != wire.StatusNotLeader {
		t.Fatalf("lone member answered %+v, want a redirect with no leader", got)
	}

	c.Start(1)
	l := c.WaitLeader(5 * electionTimeout)
	if l != 0 && l != 1 {
		t.Fatalf("leader %d is not one of the running members", l)
	}
	cl2 := c.NewClient()
	for i := 1; i <= 20; i++ {
		if v := value(t, c.Do(cl2, "inc", 10*electionTimeout)); v != int64(i) {
			t.Fatalf("increment %d returned %d", i, v)
		}
	}
	c.Start(2)
	assertConverged(t, c)
	if got := probe(c, 2).Counter(); got != 20 {
		t.Fatalf("third member caught up to %d, want 20", got)
	}
}

func TestLeaderStoppedNewLeaderNoAckedLoss(t *testing.T) {
	c := newProbeCluster(t, 3, 2, nil)
	old := c.WaitLeader(10 * electionTimeout)
	cl := c.NewClient()
	var acked, attempted int64
	for range 10 {
		attempted++
		value(t, c.Do(cl, "inc", 10*electionTimeout))
		acked++
	}
	// Keep a window of increments in flight while the leader dies.
	for range 5 {
		cl.Submit([]byte("inc"))
		attempted++
	}
	c.Run(2 * time.Millisecond)
	c.Crash(old)
	start := c.Now()
	var newLeader int
	if !c.RunUntil(func() bool { newLeader = c.Leader(); return newLeader >= 0 && newLeader != old }, 5*electionTimeout) {
		t.Fatalf("no new leader within 5 election timeouts: %s", c.Describe())
	}
	t.Logf("new leader %d after %s", newLeader, time.Duration(c.Now()-start))
	for range 10 {
		attempted++
		value(t, c.Do(cl, "inc", 10*electionTimeout))
	}
	if !c.RunUntil(func() bool { return len(cl.Outstanding()) == 0 }, 10*electionTimeout) {
		t.Fatalf("in-flight increments never answered: %v", cl.Outstanding())
	}
	for _, r := range cl.Results {
		if r.Err != nil {
			t.Fatalf("a command failed: %v", r.Err)
		}
	}
	acked = int64(len(cl.Results))
	final := probe(c, newLeader).Counter()
	if final < acked || final > attempted {
		t.Fatalf("acked %d ≤ final %d ≤ attempted %d does not hold", acked, final, attempted)
	}
	// Every increment was answered, so exactly-once makes final == acked.
	if final != acked {
		t.Fatalf("final %d != acked %d although every command was answered", final, acked)
	}
	seen := map[string]wire.Seq{}
	for seq, r := range cl.Results {
		if prev, dup := seen[string(r.Reply)]; dup {
			t.Fatalf("increments %d and %d both returned %s", prev, seq, r.Reply)
		}
		seen[string(r.Reply)] = seq
	}

	c.Start(old)
	assertConverged(t, c)
	if st := c.Nodes[old].R.Summary(); st.Role != service.Follower {
		t.Fatalf("old leader rejoined as %s, want follower", st.Role)
	}
}

func TestLaggingFollowerRejoinsBySnapshot(t *testing.T) {
	c := New(t, Options{
		Nodes: 3, Seed: 3, MarginEntries: 10, SegmentBytes: 2 << 10,
		NewService: func(int) service.Service { return NewProbe() },
		Tune:       func(cfg *replica.Config) { cfg.Container.SnapshotIntervalEntries = 20 },
	})
	l := c.WaitLeader(10 * electionTimeout)
	follower := (l + 1) % 3
	c.Crash(follower)
	cl := c.NewClient()
	for range 100 {
		value(t, c.Do(cl, "inc", 10*electionTimeout))
	}
	if c.Nodes[l].R.Summary().SnapshotIndex == 0 {
		t.Fatalf("leader took no snapshot: %s", c.Describe())
	}
	sent := c.SnapshotsSent
	c.Start(follower)
	assertConverged(t, c)
	if c.SnapshotsSent == sent {
		t.Fatalf("the lagging follower caught up without a snapshot")
	}
	installed := false
	for _, ev := range c.Nodes[follower].Changes {
		installed = installed || ev.Kind == replica.ChangeSnapshotInstalled
	}
	if !installed {
		t.Fatalf("member %d reported no snapshot installed", follower)
	}
	if !probe(c, follower).SnapshotSeen {
		t.Fatalf("the service was not started from the installed snapshot")
	}
	// And then the log: more commands reach it.
	value(t, c.Do(cl, "inc", 10*electionTimeout))
	assertConverged(t, c)
	if got := probe(c, follower).Counter(); got != 101 {
		t.Fatalf("follower counter %d, want 101", got)
	}
}

func TestWholeClusterRestartFromSnapshotAndLog(t *testing.T) {
	c := New(t, Options{
		Nodes: 3, Seed: 4,
		NewService: func(int) service.Service { return NewProbe() },
		Tune:       func(cfg *replica.Config) { cfg.Container.SnapshotIntervalEntries = 25 },
	})
	c.WaitLeader(10 * electionTimeout)
	cl := c.NewClient()
	for range 60 {
		value(t, c.Do(cl, "inc", 10*electionTimeout))
	}
	assertConverged(t, c)
	for i := range c.Nodes {
		c.Crash(i) // no final snapshot: what was synced is all there is
	}
	for i := range c.Nodes {
		c.Start(i)
		n := c.Nodes[i]
		snap, err := n.Store.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		si := snap.GetMetadata().GetIndex()
		if si == 0 || !probe(c, i).SnapshotSeen {
			t.Fatalf("member %d restarted without a snapshot", i)
		}
		if last, _ := n.Store.LastIndex(); last <= si {
			t.Fatalf("member %d has no log after its snapshot at %d", i, si)
		}
	}
	c.WaitLeader(10 * electionTimeout)
	assertConverged(t, c)
	for i := range c.Nodes {
		si, _ := c.Nodes[i].Store.Snapshot()
		if c.Nodes[i].R.Summary().Applied <= si.GetMetadata().GetIndex() {
			t.Fatalf("member %d did not replay the log after its snapshot", i)
		}
		for _, ev := range c.Nodes[i].Changes {
			if ev.Kind == replica.ChangeSnapshotInstalled {
				t.Fatalf("member %d needed a snapshot from the leader after a full restart", i)
			}
		}
		if got := probe(c, i).Counter(); got != 60 {
			t.Fatalf("member %d counter %d after restart, want 60", i, got)
		}
	}
}

func TestRetryAfterLeaderChangeAppliedOnce(t *testing.T) {
	c := newProbeCluster(t, 3, 5, nil)
	l := c.WaitLeader(10 * electionTimeout)
	cl := c.NewClient()
	first := c.Do(cl, "inc", 10*electionTimeout)
	seq := wire.Seq(1)
	// Change the leader, then resend seq 1 by hand to the new one.
	c.Crash(l)
	nl := c.WaitLeader(10 * electionTimeout)
	var got []wire.ClientMsg
	cl.Stop()
	cl.onRaw = func(m *wire.ClientMsg) { got = append(got, *m) }
	cl.SendRaw(nl, &wire.ClientMsg{Kind: wire.CAttach, Session: cl.Session})
	cl.SendRaw(nl, &wire.ClientMsg{Kind: wire.CCommand, Session: cl.Session, Seq: seq, LowestUnacked: seq, Payload: []byte("inc")})
	if !c.RunUntil(func() bool { return len(got) >= 2 }, electionTimeout) {
		t.Fatalf("no answer to the retry: %+v", got)
	}
	resp := got[1]
	if resp.Kind != wire.CResponse || resp.Status != wire.StatusOK || !bytes.Equal(resp.Payload, first.Reply) {
		t.Fatalf("retry answered %+v, want the original reply %q", resp, first.Reply)
	}
	if n := probe(c, nl).Counter(); n != 1 {
		t.Fatalf("counter %d after a retried increment, want 1", n)
	}
}

func TestPipelinedCommandsAcrossFailoverAppliedOnce(t *testing.T) {
	c := newProbeCluster(t, 3, 6, nil)
	l := c.WaitLeader(10 * electionTimeout)
	cl := c.NewClient()
	for range 4 {
		value(t, c.Do(cl, "inc", 10*electionTimeout))
	}
	// 5, 6, 7 in flight: the leader may or may not have replicated them when it dies.
	for range 3 {
		cl.Submit([]byte("inc"))
	}
	c.Run(3 * time.Millisecond)
	c.Crash(l)
	if !c.RunUntil(func() bool { return len(cl.Outstanding()) == 0 }, 10*electionTimeout) {
		t.Fatalf("commands 5-7 unanswered: %v %s", cl.Outstanding(), c.Describe())
	}
	for seq := wire.Seq(5); seq <= 7; seq++ {
		if v := value(t, cl.Results[seq]); v != int64(seq) {
			t.Fatalf("command %d returned %d", seq, v)
		}
	}
	c.Start(l)
	assertConverged(t, c)
	for i := range c.Nodes {
		if got := probe(c, i).Counter(); got != 7 {
			t.Fatalf("member %d counter %d, want 7 (each command once)", i, got)
		}
	}
}

func TestSessionSurvivesLeaderChangeAndFullRestart(t *testing.T) {
	c := newProbeCluster(t, 3, 7, nil)
	l := c.WaitLeader(10 * electionTimeout)
	cl := c.NewClient()
	value(t, c.Do(cl, "inc", 10*electionTimeout))
	c.Crash(l)
	c.WaitLeader(10 * electionTimeout)
	value(t, c.Do(cl, "inc", 10*electionTimeout))
	c.Start(l)
	assertConverged(t, c)
	for i := range c.Nodes {
		c.Crash(i)
	}
	// Down for longer than the session timeout.
	c.Run(3 * replica.DefaultConfig().SessionTimeout)
	for i := range c.Nodes {
		c.Start(i)
	}
	c.WaitLeader(10 * electionTimeout)
	if v := value(t, c.Do(cl, "inc", 10*electionTimeout)); v != 3 {
		t.Fatalf("after the restart the counter is %d, want 3", v)
	}
	if cl.Expired() {
		t.Fatalf("the session expired across a full restart")
	}
	if opens := c.Ask(cl, "opens", 10*electionTimeout); opens != "1" {
		t.Fatalf("%s sessions opened, want 1 (the same session throughout)", opens)
	}
}

func TestIdleSessionExpiresThroughTheLog(t *testing.T) {
	c := newProbeCluster(t, 3, 8, nil)
	c.WaitLeader(10 * electionTimeout)
	cl := c.NewClient()
	value(t, c.Do(cl, "inc", 10*electionTimeout))
	cl.Stop()
	// Cut off too, so that the leader's notice of the expiry is lost: the client learns it
	// from the command it sends when it comes back.
	c.Partition(clientBase + 0)
	timeout := replica.DefaultConfig().SessionTimeout
	ok := c.RunUntil(func() bool {
		for i := range c.Nodes {
			if len(probe(c, i).Closes()) == 0 {
				return false
			}
		}
		return true
	}, 3*timeout)
	if !ok {
		t.Fatalf("idle session did not expire on every member: %s", c.Describe())
	}
	if c.Elapsed() < timeout {
		t.Fatalf("session expired after %s, before the timeout %s", c.Elapsed(), timeout)
	}
	for i := range c.Nodes {
		if got := strings.Join(probe(c, i).Closes(), ","); got != service.CloseTimeout.String() {
			t.Fatalf("member %d saw closes %q, want one %s", i, got, service.CloseTimeout)
		}
	}
	// A silenced client that comes back learns that its session is gone: its command fails with
	// ErrSessionExpired (of unknown outcome to the client, which had sent it) and is not applied.
	c.Heal()
	cl.Resume()
	seq := cl.Submit([]byte("inc"))
	c.RunUntil(func() bool { return cl.Expired() }, 5*electionTimeout)
	if !cl.Expired() {
		t.Fatalf("client was not told its session expired")
	}
	if r, ok := cl.Results[seq]; !ok || !errors.Is(r.Err, clientcore.ErrSessionExpired) {
		t.Fatalf("the command on the expired session completed with %+v", r)
	}
	if got := probe(c, c.Leader()).Counter(); got != 1 {
		t.Fatalf("a command on an expired session was applied: counter %d", got)
	}
}

// A client's close reaches the cluster across a crash of the leader: the client core asks the
// leader, notices it went silent, follows the failover and asks the new one; it reports the
// session closed only once the cluster said so, and every member applies the close once, as the
// client's (CloseClient).
func TestClientCloseAcrossLeaderCrash(t *testing.T) {
	c := newProbeCluster(t, 3, 11, nil)
	l := c.WaitLeader(10 * electionTimeout)
	cl := c.NewClient()
	value(t, c.Do(cl, "inc", 10*electionTimeout))
	c.Crash(l)
	cl.CloseSession()
	if !c.RunUntil(cl.Closed, 20*electionTimeout) {
		t.Fatalf("the close was not confirmed: %s", c.Describe())
	}
	if ld := c.Leader(); ld < 0 || c.Nodes[ld].R.Container().SessionOpen(cl.Session) {
		t.Fatalf("the client was told its session closed, but leader %d has it open", ld)
	}
	c.Restart(l)
	if !c.WaitConverged(20 * electionTimeout) {
		t.Fatalf("no convergence after the restart: %s", c.Describe())
	}
	for i := range c.Nodes {
		if got := strings.Join(probe(c, i).Closes(), ","); got != service.CloseClient.String() {
			t.Fatalf("member %d saw closes %q, want one %s", i, got, service.CloseClient)
		}
	}
}

func TestTimersFireOnceInClusterTimeEverywhere(t *testing.T) {
	c := New(t, Options{
		Nodes: 3, Seed: 9,
		NewService: func(int) service.Service { return NewProbe() },
		Tune:       func(cfg *replica.Config) { cfg.Container.SnapshotIntervalEntries = 5 },
	})
	l := c.WaitLeader(10 * electionTimeout)
	cl := c.NewClient()
	set := c.Now()
	c.Do(cl, "timer 1 1000", 10*electionTimeout)
	c.Do(cl, "timer 2 8000", 10*electionTimeout)
	c.Do(cl, "timer 3 9000", 10*electionTimeout)
	if r := c.Do(cl, "cancel 3", 10*electionTimeout); string(r.Reply) != "true" {
		t.Fatalf("cancel of a scheduled timer returned %q", r.Reply)
	}
	// Timer 1 fires on an otherwise idle log.
	if !c.RunUntil(func() bool { return len(probe(c, l).Fired()) == 1 }, 5*time.Second) {
		t.Fatalf("timer 1 did not fire: %s", c.Describe())
	}
	// Leader change before timer 2; a member down meanwhile gets timer 2 from a snapshot.
	c.Crash(l)
	nl := c.WaitLeader(10 * electionTimeout)
	for range 12 {
		value(t, c.Do(cl, "inc", 10*electionTimeout)) // pushes snapshots past the crashed member's log
	}
	if !c.RunUntil(func() bool { return len(probe(c, nl).Fired()) == 2 }, 15*time.Second) {
		t.Fatalf("timer 2 did not fire after the leader change: %v %s", probe(c, nl).Fired(), c.Describe())
	}
	c.Start(l)
	assertConverged(t, c)
	c.Run(15 * time.Second) // nothing more may fire: timer 3 was cancelled
	assertConverged(t, c)
	for i := range c.Nodes {
		fired := probe(c, i).Fired()
		if len(fired) != 2 || !strings.HasPrefix(fired[0], "1@") || !strings.HasPrefix(fired[1], "2@") {
			t.Fatalf("member %d fired %v, want timers 1 and 2 once each", i, fired)
		}
		for id, n := range probe(c, i).TimerCalls {
			if n != 1 {
				t.Fatalf("member %d called OnTimerEvent(%d) %d times since its start", i, id, n)
			}
		}
		ms, _ := strconv.ParseInt(strings.TrimPrefix(fired[0], "1@"), 10, 64)
		due := time.Unix(0, set).Add(time.Second).UnixMilli()
		if ms < due {
			t.Fatalf("timer 1 fired at cluster time %d, before its deadline %d", ms, due)
		}
	}
}

func TestEqualIndexEqualSnapshotBytes(t *testing.T) {
	c := newProbeCluster(t, 3, 10, nil)
	c.WaitLeader(10 * electionTimeout)
	var clients []*Client
	for range 5 {
		clients = append(clients, c.NewClient())
	}
	for i := range 30 {
		cl := clients[i%len(clients)]
		c.Do(cl, "inc", 10*electionTimeout)
		if i%7 == 0 {
			c.Do(cl, fmt.Sprintf("timer %d %d", i, 100000+i), 10*electionTimeout)
		}
	}
	assertConverged(t, c)
	var ref []byte
	for i := range c.Nodes {
		snap, err := c.Nodes[i].R.Container().TakeSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		if ref == nil {
			ref = snap
		} else if !bytes.Equal(snap, ref) {
			t.Fatalf("member %d's snapshot differs from member 0's at the same applied index", i)
		}
	}
}

func TestQueryLinearizableAndReadOnly(t *testing.T) {
	c := newProbeCluster(t, 3, 11, nil)
	c.WaitLeader(10 * electionTimeout)
	cl := c.NewClient()
	for i := 1; i <= 5; i++ {
		value(t, c.Do(cl, "inc", 10*electionTimeout))
		if got := c.Ask(cl, "get", 10*electionTimeout); got != strconv.Itoa(i) {
			t.Fatalf("query after %d acknowledged increments returned %s", i, got)
		}
	}
	if got := c.Ask(cl, "mutate", 10*electionTimeout); !strings.Contains(got, service.ErrNotAllowed.Error()) {
		t.Fatalf("a mutation from OnQuery was not refused: %q", got)
	}
}

// trace runs a scenario and returns a fingerprint of everything observable.
func trace(t *testing.T, seed uint64) string {
	c := newProbeCluster(t, 3, seed, nil)
	c.DropRate = 0.05
	l := c.WaitLeader(10 * electionTimeout)
	cl := c.NewClient()
	for range 10 {
		c.Do(cl, "inc", 10*electionTimeout)
	}
	c.Crash(l)
	c.WaitLeader(10 * electionTimeout)
	for range 10 {
		c.Do(cl, "inc", 10*electionTimeout)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", c.Describe())
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "m%d changes %v\n", n.ID, n.Changes)
	}
	fmt.Fprintf(&b, "delivered %v redirects %d timeouts %d", c.Delivered, cl.Redirects(), cl.Timeouts())
	return b.String()
}

func TestSameSeedSameRun(t *testing.T) {
	a, b := trace(t, 42), trace(t, 42)
	if a != b {
		t.Fatalf("two runs of seed 42 differ:\n%s\n---\n%s", a, b)
	}
	if c := trace(t, 43); c == a {
		t.Fatalf("seeds 42 and 43 produced the same run; the trace sees nothing")
	}
}

func TestCounterServiceAcrossFailover(t *testing.T) {
	c := New(t, Options{Nodes: 3, Seed: 12, NewService: func(int) service.Service { return counter.New() }})
	l := c.WaitLeader(10 * electionTimeout)
	cl := c.NewClient()
	inc := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement, Delta: 2})
	attempted := 0
	for i := range 30 {
		cl.Submit(inc)
		attempted++
		if i == 15 {
			c.Crash(l)
		}
		c.Run(20 * time.Millisecond)
	}
	if !c.RunUntil(func() bool { return len(cl.Outstanding()) == 0 }, 20*electionTimeout) {
		t.Fatalf("increments unanswered: %v", cl.Outstanding())
	}
	values := map[int64]bool{}
	for _, r := range cl.Results {
		resp, err := counter.DecodeResponse(r.Reply)
		if r.Err != nil || err != nil || !resp.OK {
			t.Fatalf("reply %q: %v", r.Reply, err)
		}
		if values[resp.Value] {
			t.Fatalf("value %d returned twice", resp.Value)
		}
		values[resp.Value] = true
	}
	q := c.Ask(cl, string(counter.EncodeRequest(counter.Request{Op: counter.OpGet})), 10*electionTimeout)
	resp, _ := counter.DecodeResponse([]byte(q))
	acked := int64(2 * len(cl.Results))
	if resp.Value != acked || resp.Value > int64(2*attempted) {
		t.Fatalf("acked %d ≤ final %d ≤ attempted %d does not hold exactly (every command answered)", acked, resp.Value, 2*attempted)
	}
	if resp.String() != fmt.Sprintf("VALUE: %d", acked) {
		t.Fatalf("GET rendered %q", resp)
	}
}

func TestPartitionedLeaderStepsDownAndRejoins(t *testing.T) {
	c := newProbeCluster(t, 5, 13, nil)
	old := c.WaitLeader(10 * electionTimeout)
	cl := c.NewClient()
	for range 5 {
		value(t, c.Do(cl, "inc", 10*electionTimeout))
	}
	// The old leader and one follower on the minority side, the client with the majority.
	buddy := (old + 1) % 5
	c.Partition(old, buddy)
	var nl int
	if !c.RunUntil(func() bool {
		nl = c.Leader()
		return nl >= 0 && nl != old && c.Nodes[old].R.Summary().Role != service.Leader
	}, 10*electionTimeout) {
		t.Fatalf("no new leader on the majority side, or the isolated leader did not step down: %s", c.Describe())
	}
	for range 5 {
		value(t, c.Do(cl, "inc", 10*electionTimeout))
	}
	if got := probe(c, old).Counter(); got != 5 {
		t.Fatalf("the isolated old leader applied %d increments, want the 5 from before", got)
	}
	// A one-way cut: the majority hears the old leader, which hears nothing back. Nothing moves.
	c.Heal()
	c.CutOneWay(nl, old)
	c.Run(3 * electionTimeout)
	c.Heal()
	assertConverged(t, c)
	for i := range c.Nodes {
		if got := probe(c, i).Counter(); got != 10 {
			t.Fatalf("member %d counter %d after healing, want 10", i, got)
		}
	}
}
