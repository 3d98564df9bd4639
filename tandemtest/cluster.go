package tandemtest

import (
	"fmt"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/tandem-cluster/tandem/internal/clientcore"
	"github.com/tandem-cluster/tandem/internal/clustertest"
	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/service"
)

// TB is what a Cluster needs of the test that runs it. *testing.T, *testing.B and *testing.F
// have it; so can an Example's stand-in. If it also has Logf, the simulator's notes go there.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Options configures a Cluster. NewService is required; the zero value of every other field
// means its default.
type Options struct {
	// Members is the number of members (default 3).
	Members int
	// Seed decides everything random in the run (see the package documentation).
	Seed uint64
	// NewService returns a new, empty service. It is called at every start of a member (a
	// restarted member begins with a fresh value, as a new process would), for the snapshot
	// round trips of the determinism check, and once by New, which refuses a nil service.
	NewService func() service.Service
	// CallTimeout bounds, in simulated time, how long Send, Query, WaitLeader and Check run the
	// simulation, and New the first election (default 10 s).
	CallTimeout time.Duration
	// SnapshotEntries: the members take a snapshot every this many log entries (default 16),
	// so that restarted and lagging members start from snapshots and the snapshot contract is
	// exercised; the determinism check's round trips come at the same pace.
	SnapshotEntries uint64
}

// Defaults of Options.
const (
	membersDefault         = 3
	callTimeoutDefault     = 10 * time.Second
	snapshotEntriesDefault = 16
	// logMarginEntries is the log kept behind the oldest snapshot: short, so that a member that
	// was down for a few dozen commands catches up by a snapshot, and OnStart is exercised on a
	// live service.
	logMarginEntries = 16
)

// Cluster is a simulated cluster of Options.Members members of one service. Its methods must be
// called from the test's goroutine; those that run the simulation (Send, Query, Run, RunUntil,
// WaitLeader, Check) not from a callback of SendAsync or QueryAsync.
type Cluster struct {
	t       TB
	sim     *clustertest.Cluster
	opts    Options
	check   *checker
	clients []*Client
	// running: the simulation is advancing (a call must not run it again from a callback).
	running bool
	// completions are outcomes of SendAsync and QueryAsync calls that arrived during the event
	// being simulated, handed to their callbacks after it.
	completions []completion
	// failed is the first failure reported to t, for a TB whose Fatalf returns; every later call
	// that runs the simulation returns it.
	failed error
}

// New starts a cluster of opts.Members members of opts.NewService, all up, and runs it until a
// leader is elected. It fails t if the options are invalid or no leader is elected within
// CallTimeout.
func New(t TB, opts Options) *Cluster {
	t.Helper()
	if opts.NewService == nil {
		t.Fatalf("tandemtest: Options.NewService is nil")
		return nil
	}
	if opts.NewService() == nil {
		t.Fatalf("tandemtest: Options.NewService returned nil")
		return nil
	}
	if opts.Members < 0 {
		t.Fatalf("tandemtest: Options.Members (%d) must be positive", opts.Members)
		return nil
	}
	if opts.Members == 0 {
		opts.Members = membersDefault
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = callTimeoutDefault
	}
	if opts.SnapshotEntries == 0 {
		opts.SnapshotEntries = snapshotEntriesDefault
	}
	if tt, ok := t.(*testing.T); ok {
		cryptotest.SetGlobalRandom(tt, opts.Seed)
	}
	c := &Cluster{t: t, opts: opts}
	c.check = newChecker(c)
	c.sim = clustertest.New(simTB{c}, clustertest.Options{
		Nodes:         opts.Members,
		Seed:          opts.Seed,
		NewService:    func(member int) service.Service { return c.check.wrap(member, opts.NewService()) },
		MarginEntries: logMarginEntries,
		Tune: func(cfg *replica.Config) {
			cfg.Container.SnapshotIntervalEntries = opts.SnapshotEntries
		},
	})
	c.sim.Fatalf = c.fail
	c.sim.AfterEvent = c.afterEvent
	c.WaitLeader()
	return c
}

// simTB hands the simulator's reports to the Cluster.
type simTB struct{ c *Cluster }

func (s simTB) Helper()                           { s.c.t.Helper() }
func (s simTB) Fatalf(format string, args ...any) { s.c.fail(format, args...) }
func (s simTB) Logf(format string, args ...any) {
	if l, ok := s.c.t.(interface{ Logf(string, ...any) }); ok {
		l.Logf(format, args...)
	}
}

// fail reports a failure to t (once: what follows the first is its consequence) and stops the
// simulation.
func (c *Cluster) fail(format string, args ...any) {
	c.t.Helper()
	if c.failed != nil {
		return
	}
	c.failed = fmt.Errorf("tandemtest: "+format, args...)
	c.t.Fatalf("%v", c.failed)
}

// afterEvent runs after every simulated event: the determinism check, then the callbacks of the
// outcomes the event brought.
func (c *Cluster) afterEvent() {
	c.check.afterEvent()
	for len(c.completions) > 0 && c.failed == nil {
		cp := c.completions[0]
		c.completions = c.completions[1:]
		cp.done(cp.reply, cp.err)
	}
}

// runUntil runs the simulation until cond holds, d passed, or a failure was reported; it reports
// whether cond held.
func (c *Cluster) runUntil(what string, cond func() bool, d time.Duration) bool {
	c.t.Helper()
	if c.running {
		c.fail("%s called while the simulation runs (from a SendAsync or QueryAsync callback?)", what)
		return false
	}
	if c.failed != nil {
		return false
	}
	c.running = true
	defer func() { c.running = false }()
	return c.sim.RunUntil(func() bool { return c.failed != nil || cond() }, d) && c.failed == nil
}

// Run advances simulated time by d: elections, heartbeats, session expiry and timers happen as
// they would in d of real time.
func (c *Cluster) Run(d time.Duration) {
	c.t.Helper()
	c.runUntil("Run", func() bool { return false }, d)
}

// RunUntil runs the simulation until cond holds (it is checked after every simulated event) or d
// of simulated time passed, and reports whether cond held.
func (c *Cluster) RunUntil(cond func() bool, d time.Duration) bool {
	c.t.Helper()
	return c.runUntil("RunUntil", cond, d)
}

// Now returns the simulated time.
func (c *Cluster) Now() time.Time { return time.Unix(0, c.sim.Now()).UTC() }

// Members returns the number of members.
func (c *Cluster) Members() int { return len(c.sim.Nodes) }

// Leader returns the member that leads in the highest term among the running members, or -1
// while there is none. Right after a crash or a partition it may name a member that is about to
// lose its leadership; WaitLeader waits for one that leads a majority.
func (c *Cluster) Leader() int { return c.sim.Leader() }

// WaitLeader runs the simulation until a leader is elected on the side of a partition that holds
// a majority of the members, and every running member on its side follows it; it returns it. It
// fails t after CallTimeout.
func (c *Cluster) WaitLeader() int {
	c.t.Helper()
	if !c.runUntil("WaitLeader", c.leaderAgreed, c.opts.CallTimeout) {
		c.fail("no leader after %s: %s", c.opts.CallTimeout, c.sim.Describe())
		return -1
	}
	return c.sim.Leader()
}

// leaderAgreed reports whether the leader of the highest term is on a majority's side of every
// partition, with every running member of its side following it.
func (c *Cluster) leaderAgreed() bool {
	l := c.sim.Leader()
	if l < 0 {
		return false
	}
	side := 0
	for id, n := range c.sim.Nodes {
		if n.R == nil || !c.sim.Connected(l, id) {
			continue
		}
		if n.R.Summary().Leader != l {
			return false
		}
		side++
	}
	return side > len(c.sim.Nodes)/2
}

// Up reports whether a member runs.
func (c *Cluster) Up(member int) bool { return c.valid("Up", member) && c.sim.Up(member) }

func (c *Cluster) valid(what string, member int) bool {
	c.t.Helper()
	if member < 0 || member >= len(c.sim.Nodes) {
		c.fail("%s(%d): there are members 0 to %d", what, member, len(c.sim.Nodes)-1)
		return false
	}
	return true
}

// Crash stops a member as a power loss would: what it wrote and never synced is lost (dropped,
// cut short or torn, as the seed decides), and its service is not told. Crashing a member that
// is down does nothing.
func (c *Cluster) Crash(member int) {
	c.t.Helper()
	if c.valid("Crash", member) {
		c.sim.Crash(member)
	}
}

// Stop stops a member cleanly: its service's OnTerminate is called, and its disk keeps
// everything, as when the process exits. Stopping a member that is down does nothing.
func (c *Cluster) Stop(member int) {
	c.t.Helper()
	if c.valid("Stop", member) {
		c.sim.Stop(member)
	}
}

// Start starts a member that is down, with a fresh service (Options.NewService) and what its
// disk holds: its newest snapshot and the log after it. It fails t if the member runs.
func (c *Cluster) Start(member int) {
	c.t.Helper()
	if !c.valid("Start", member) {
		return
	}
	if c.sim.Up(member) {
		c.fail("Start(%d): member %d is running", member, member)
		return
	}
	c.sim.Start(member)
}

// Restart crashes a member (if it runs) and starts it again.
func (c *Cluster) Restart(member int) {
	c.t.Helper()
	c.Crash(member)
	c.Start(member)
}

// Partition cuts the named members off from every other member and from every client, both
// ways, until Heal. Partitions add up: a second call cuts its members off from all others too.
func (c *Cluster) Partition(members ...int) {
	c.t.Helper()
	for _, m := range members {
		if !c.valid("Partition", m) {
			return
		}
	}
	c.sim.Partition(members...)
}

// Heal removes every partition.
func (c *Cluster) Heal() { c.sim.Heal() }

// Service returns the service of a running member (nil while it is down), for a test that looks
// inside it. It may be a new value after a restart and after the determinism check's round
// trips (see the package documentation); only the replicated state is the same.
func (c *Cluster) Service(member int) service.Service {
	c.t.Helper()
	if !c.valid("Service", member) || !c.sim.Up(member) {
		return nil
	}
	return c.check.members[member].svc.inner
}

// Applied returns the index of the last log entry a running member applied (0 while it is
// down).
func (c *Cluster) Applied(member int) uint64 {
	c.t.Helper()
	if !c.valid("Applied", member) || !c.sim.Up(member) {
		return 0
	}
	return c.sim.Nodes[member].R.Container().Applied()
}

// Check runs the simulation until every running member has applied the whole log of the leader
// (for at most CallTimeout), then checks the determinism of every running member there. It
// fails t if there is no leader or the members do not catch up.
func (c *Cluster) Check() {
	c.t.Helper()
	if !c.runUntil("Check", c.sim.Converged, c.opts.CallTimeout) {
		c.fail("Check: the members did not apply the leader's whole log within %s: %s", c.opts.CallTimeout, c.sim.Describe())
		return
	}
	c.check.all()
}

// timeout is the error of a call that had no answer within CallTimeout.
func (c *Cluster) timeout(what string) error {
	if c.failed != nil {
		return c.failed
	}
	return fmt.Errorf("tandemtest: %s: %w: no answer after %s of simulated time (%s)", what, clientcore.ErrTimeout,
		c.opts.CallTimeout, c.sim.Describe())
}
