// Package clustertest runs N members of the real replica (consensus core, container, storage) in
// one goroutine over a simulated network and clock, all driven from one seed. It is the first
// form of Tandem's deterministic simulator: tests start, stop, crash, partition and heal members
// and run simulated clients against them; the same seed replays the same run.
//
// Determinism needs the caller's help in one place: raft draws its election timeouts from
// crypto/rand, so a test must call testing/cryptotest.SetGlobalRandom (New does, given a
// *testing.T) and must not run in parallel. Given any other TB, raft's election timeouts do not
// follow the seed; the public tandemtest package passes a TB of its own and seeds for its
// caller's *testing.T itself.
package clustertest

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/consensus"
	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/internal/vfs"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// Epoch is the simulated wall clock at time zero of every run.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// Options configures a simulated cluster.
type Options struct {
	Nodes int
	Seed  uint64
	// NewService creates a member's service (a fresh one at every start).
	NewService func(member int) service.Service
	// Tune adjusts each member's replica configuration.
	Tune func(cfg *replica.Config)
	// LatencyMin/Max bound the one-way delay of a message (default 1–3 ms).
	LatencyMin, LatencyMax time.Duration
	// MarginEntries of log kept behind the oldest retained snapshot (default 100).
	MarginEntries uint64
	// SegmentBytes of the members' archives (default 64 KiB; small ones make compaction visible).
	SegmentBytes int64
	// CrashModes are what a crash may do to unsynced data, one chosen per crash from the seed
	// (default: every mode in crashModes).
	CrashModes []vfs.CrashMode
	// SyncMin/Max bound how long a member's sync takes (default 0.1–2 ms, uniformly) when Disks
	// is empty: the sync runs when it ends, and meanwhile the member takes its inputs as the
	// node's loop does. Snapshot writes take 2×SyncMin to 5×SyncMax, the preparing of the next
	// log segment 5 to 50×SyncMax.
	SyncMin, SyncMax time.Duration
	// Disks, if not empty, has one Disk per member, which its syncs draw their time from
	// instead (a snapshot write takes three draws, the next segment's preparing 5 to 50).
	Disks []Disk
	// ClusterVersionMax, if not empty, has one entry per member: the highest cluster version it
	// applies when it starts (0: this build's), as an older build would (Node.ClusterVersionMax).
	ClusterVersionMax []uint16
}

// Node is one simulated member.
type Node struct {
	ID       int
	R        *replica.Replica // nil while the member is down
	FS       *vfs.Mem         // the member's disk: synced and unsynced data kept apart
	Store    *archive.Archive // nil while the member is down
	Svc      service.Service
	Changes  []replica.Change
	Skew     time.Duration // added to the simulated clock on this member
	cluster  *Cluster
	nextTick int64
	sync     func() error // the sync the member waits for, run when its evSyncDone falls due
	disk     *durableLog  // the archive as the core sees it, and what the disk holds durably
	snap     func() error // the snapshot write under way, run when its evSnapWritten falls due
	spare    func() error // the next segment being prepared, run when its evSparePrepared falls due
	// Starts counts how often the member was started.
	Starts int
	// Lost says what the member's disk lost of what it had made durable (LoseSyncedData) when it
	// refused to start on it, or when it stopped for lost data after a wipe: it stays down (""
	// while it is healthy).
	Lost string
	// Wiped is set while a member whose data directory was wiped (LoseSyncedData, mode wipe) has
	// not yet been repaired: the highest commit index any member had reached when it was wiped.
	// Until its own commit index reaches it, the member must neither vote nor campaign
	// (checkWipedVotes).
	Wiped uint64
	// reported is the highest cluster version the member said it applies when it last started
	// (what the others remember of it while it is down).
	reported uint16
	// ClusterVersionMax is the highest cluster version the member applies from its next start
	// (0: this build's): a member of an older build. Set it to 0 and restart the member to
	// upgrade it.
	ClusterVersionMax uint16
	// JoinedRaftID is the raft id the member was given when it joined a running cluster (0: a
	// founding member, raft id ID+1). A member rebuilt in place keeps its ID under a new one.
	JoinedRaftID uint64
	// fresh: the member was added (or rebuilt) and not started since: its first start's raft id
	// never voted (replica.Config.Joining).
	fresh bool
}

// RaftID is the member's raft id.
func (n *Node) RaftID() uint64 {
	if n.JoinedRaftID != 0 {
		return n.JoinedRaftID
	}
	return replica.RaftID(n.ID)
}

// nodeOf returns the member whose raft id is id (-1: none: a raft id removed, or replaced by a
// member rebuilt in place).
func (c *Cluster) nodeOf(id uint64) int {
	for _, n := range c.Nodes {
		if n.RaftID() == id {
			return n.ID
		}
	}
	return -1
}

// AddNode adds member id (the next one: len(Nodes)), which joined the cluster under raft id
// raftID, and starts it on an empty disk.
func (c *Cluster) AddNode(id int, raftID uint64) {
	if id != len(c.Nodes) {
		c.fatalf("adding member %d to a cluster of %d", id, len(c.Nodes))
	}
	c.Nodes = append(c.Nodes, &Node{ID: id, cluster: c, FS: vfs.NewMem(), JoinedRaftID: raftID, fresh: true})
	c.Start(id)
}

// Rebuild starts member id, which is down, on an empty disk under raft id raftID: a member
// rebuilt in place (its directory wiped, then joined again with its id and addresses).
func (c *Cluster) Rebuild(id int, raftID uint64) {
	n := c.Nodes[id]
	if n.R != nil {
		c.Crash(id) // (a restart fault brought the old one back meanwhile: the operator stops it)
	}
	n.FS, n.JoinedRaftID, n.Lost, n.Wiped, n.fresh = vfs.NewMem(), raftID, "", 0, true
	c.Start(id)
}

// Now implements replica.Clock.
func (n *Node) Now() int64 { return n.cluster.now + int64(n.Skew) }

// TB is what a cluster needs of its test: *testing.T, *testing.B and *testing.F have it.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// Cluster is the simulated cluster.
type Cluster struct {
	T     TB
	Rng   *rand.Rand
	Nodes []*Node
	opts  Options
	now   int64
	queue eventQueue
	seq   uint64
	// cut[a][b]: messages from a to b are lost (one-way partitions are possible). Clients have
	// ids ≥ clientBase.
	cut         map[[2]int]bool
	lastArrival map[[2]int]int64
	clients     []*Client
	// conns are the clients' connections by the id the members know them by (client.go).
	conns map[replica.ConnID]*simConn
	// AdminAnswers are the members' answers to Admin, in order.
	AdminAnswers []AdminAnswer
	// AdminGrant is what the admin requests' connection is authenticated as (nil: a port
	// without authentication).
	AdminGrant *wire.Grant
	nextConn   replica.ConnID
	// stormAt and stormEvents count the events of the current storm window (RunUntil).
	stormAt     int64
	stormEvents int
	// acked is the highest applied index at which a member answered a command: everything up
	// to it was committed and a client was told so. readNeeds holds, for each query a member
	// took and has not answered, acked as it was then: the query must be served at an applied
	// index at least that high (checkRead).
	acked     uint64
	readNeeds map[readKey]uint64
	// Delivered counts raft messages delivered, by type, and SnapshotsSent snapshots.
	Delivered     map[pb.MessageType]int
	SnapshotsSent int
	// DropRate is the probability that a message is lost, DupRate that it is delivered twice.
	DropRate, DupRate float64
	// Reorder lets raft messages overtake each other on a link (client links keep TCP's order).
	Reorder bool
	// AfterEvent, if set, runs after every simulated event (invariant checkers).
	AfterEvent func()
	// Fatalf reports a failure of the harness or a member (default: T.Fatalf). The simulator
	// turns it into a violation of its run.
	Fatalf func(format string, args ...any)
	// Violation reports a member that broke a durability promise (durableLog; default: Fatalf).
	Violation func(format string, args ...any)
	// Stats counts the faults that happened.
	Stats Stats
	armed []*armedCrash // crash-in-sync groups waiting for their moment
}

// Stats counts the disk and crash faults a cluster went through.
type Stats struct {
	Syncs   int // syncs started
	Crashes int // members crashed
	// CrashesInSync counts the crashes of members that had a sync under way (what it was to
	// make durable is lost), ArmedInSync the CrashInSync groups that found their moment inside
	// a sync (the others crashed at the end of their window).
	CrashesInSync, ArmedInSync int
	// MajorityCrashes counts crashes that took down a majority of the members at once (all of
	// them included), AllCrashes those that took down every member.
	MajorityCrashes, AllCrashes int
	// Stalls counts the syncs that stalled (Disk; snapshot writes and segment preparations
	// stall too, uncounted).
	Stalls int
	// Denials counts the answers "denied" sent to clients (the principals may not do it).
	Denials int
}

// armedCrash is a CrashInSync group: its members crash together at a random moment inside the
// next sync one of them starts, or at until if none starts one before.
type armedCrash struct {
	ids   []int
	gens  []int // each member's Starts when armed: a member restarted since is left alone
	until int64
	timed bool // a moment inside a sync was drawn
	done  bool
}

func (c *Cluster) fatalf(format string, args ...any) {
	c.T.Helper()
	if c.Fatalf != nil {
		c.Fatalf(format, args...)
		return
	}
	c.T.Fatalf(format, args...)
}

const clientBase = 1000

// New starts a cluster of opts.Nodes members, all up. Raft's randomness follows the seed only
// when t is a *testing.T (see the package documentation).
func New(t TB, opts Options) *Cluster {
	t.Helper()
	if tt, ok := t.(*testing.T); ok {
		cryptotest.SetGlobalRandom(tt, opts.Seed)
	}
	if opts.LatencyMax == 0 {
		opts.LatencyMin, opts.LatencyMax = time.Millisecond, 3*time.Millisecond
	}
	if opts.MarginEntries == 0 {
		opts.MarginEntries = 100
	}
	if opts.SegmentBytes == 0 {
		opts.SegmentBytes = 64 << 10
	}
	if opts.SyncMax == 0 {
		opts.SyncMin, opts.SyncMax = 100*time.Microsecond, 2*time.Millisecond
	}
	if len(opts.CrashModes) == 0 {
		opts.CrashModes = allCrashModes()
	}
	if len(opts.Disks) != 0 && len(opts.Disks) != opts.Nodes {
		t.Fatalf("clustertest: %d disks for %d members", len(opts.Disks), opts.Nodes)
	}
	c := &Cluster{
		T:           t,
		Rng:         rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		opts:        opts,
		now:         Epoch,
		cut:         map[[2]int]bool{},
		lastArrival: map[[2]int]int64{},
		Delivered:   map[pb.MessageType]int{},
		conns:       map[replica.ConnID]*simConn{},
		readNeeds:   map[readKey]uint64{},
	}
	if len(opts.ClusterVersionMax) != 0 && len(opts.ClusterVersionMax) != opts.Nodes {
		t.Fatalf("clustertest: %d cluster versions for %d members", len(opts.ClusterVersionMax), opts.Nodes)
	}
	for i := 0; i < opts.Nodes; i++ {
		n := &Node{ID: i, cluster: c, FS: vfs.NewMem()}
		if len(opts.ClusterVersionMax) != 0 {
			n.ClusterVersionMax = opts.ClusterVersionMax[i]
		}
		c.Nodes = append(c.Nodes, n)
		c.Start(i)
	}
	return c
}

// Now returns the simulated time as Unix nanoseconds.
func (c *Cluster) Now() int64 { return c.now }

// Elapsed returns the simulated time since the start.
func (c *Cluster) Elapsed() time.Duration { return time.Duration(c.now - Epoch) }

func (c *Cluster) config(id int) replica.Config {
	cfg := replica.DefaultConfig()
	cfg.MemberID = id
	for i := 0; i < c.opts.Nodes; i++ {
		cfg.Members = append(cfg.Members, replica.Member{ID: i,
			ClientAddr: clientAddr(i), MemberAddr: fmt.Sprintf("sim:%d", 9100+i)})
	}
	if c.opts.Tune != nil {
		c.opts.Tune(&cfg)
	}
	return cfg
}

// Start starts member id from what its storage holds.
func (c *Cluster) Start(id int) {
	n := c.Nodes[id]
	if n.R != nil {
		c.fatalf("member %d is already running", id)
	}
	if err := c.TryStart(id); err != nil {
		c.fatalf("opening member %d's archive: %v", id, err)
	}
}

// TryStart starts member id from what its storage holds, and returns the archive's refusal to
// open it (corruption, lost synced data) instead of failing the run; anything else that goes
// wrong still does.
func (c *Cluster) TryStart(id int) error {
	n := c.Nodes[id]
	if n.R != nil {
		c.fatalf("member %d is already running", id)
	}
	n.Svc = c.opts.NewService(id)
	st, err := archive.Open(n.FS, "/data", archive.Options{ClusterID: "sim", MemberID: id, RaftID: n.JoinedRaftID,
		SegmentBytes: c.opts.SegmentBytes, GrowBytes: 16 << 10, LogMarginEntries: c.opts.MarginEntries, SnapshotsRetained: 2})
	if err != nil {
		return err
	}
	n.Store = st
	if n.disk, err = newDurableLog(st, n.FS, "/data/log"); err != nil {
		c.fatalf("reading member %d's archive: %v", id, err)
	}
	cfg := c.config(id)
	cfg.Container.ClusterVersionMax = n.ClusterVersionMax
	cfg.Unverified, cfg.VoteFloor = st.Verification()
	cfg.RaftID, cfg.Joined, cfg.Joining, cfg.ClusterID = n.RaftID(), n.JoinedRaftID != 0, n.fresh, "sim"
	n.fresh = false
	if cfg.Rand == nil {
		// The cluster's identity is drawn from the seed too (a source of its own per member and
		// start, so that the other random choices of a seed stay as they were).
		cfg.Rand = &rngReader{r: rand.New(rand.NewPCG(c.opts.Seed^uint64(id+1)*0x9e3779b97f4a7c15, uint64(n.Starts)))}
	}
	r, err := replica.New(cfg, n.Svc, n.disk, n, &outbox{c: c, n: n})
	if err != nil {
		c.fatalf("starting member %d: %v", id, err)
		return nil // (a test's Fatalf that does not stop the goroutine: the member stays down)
	}
	n.R = r
	n.Starts++
	n.reported = r.Summary().ClusterVersionMax
	// The member handshakes with every member that is up, which learn what it applies and
	// tell it what they do (the transport reports both ways; a partition does not matter: the
	// handshake is modelled as having happened before it).
	for _, o := range c.Nodes {
		if o.ID != id && o.R != nil {
			o.R.PeerClusterVersion(r.SelfRaftID(), r.Summary().ClusterVersionMax)
			r.PeerClusterVersion(o.R.SelfRaftID(), o.R.Summary().ClusterVersionMax)
			o.R.PeerStanding(r.SelfRaftID(), r.Standing())
			r.PeerStanding(o.R.SelfRaftID(), o.R.Standing())
		}
	}
	// Stagger the members' ticks so they are not in lock step.
	n.nextTick = c.now + int64(c.Rng.IntN(int(c.config(id).TickInterval)))
	c.push(event{at: n.nextTick, kind: evTick, node: id, gen: n.Starts})
	c.process(n)
	return nil
}

// Stop stops member id cleanly (OnTerminate); its storage keeps everything, synced or not, as a
// process exit with the page cache intact would.
func (c *Cluster) Stop(id int) {
	n := c.Nodes[id]
	if n.R == nil {
		return
	}
	if err := n.R.Close(); err != nil {
		c.fatalf("closing member %d: %v", id, err)
	}
	n.R, n.Store, n.disk, n.sync, n.snap, n.spare = nil, nil, nil, nil, nil, nil
	c.resetConns(id) // the process exits: its clients' connections are reset
}

// Crash stops member id as a power loss would: what it never synced is dropped, cut short or
// torn, by a mode of Options.CrashModes drawn from the seed.
func (c *Cluster) Crash(id int) {
	n := c.Nodes[id]
	if n.R != nil {
		_ = n.Store.Close()
		c.Stats.Crashes++
		if n.sync != nil {
			c.Stats.CrashesInSync++
		}
	}
	n.R, n.Store, n.disk, n.sync, n.snap, n.spare = nil, nil, nil, nil, nil, nil // what was still under way never happened
	modes := c.opts.CrashModes
	n.FS.Crash(c.Rng, modes[c.Rng.IntN(len(modes))])
}

// CrashGroup crashes the members of ids that are up, at once (a power loss of a rack, or of the
// whole cluster), and counts it in Stats when it took down a majority or all of them.
func (c *Cluster) CrashGroup(ids ...int) {
	crashed := 0
	for _, id := range ids {
		if c.Up(id) {
			crashed++
			c.Crash(id)
		}
	}
	if crashed > len(c.Nodes)/2 {
		c.Stats.MajorityCrashes++
	}
	if crashed == len(c.Nodes) {
		c.Stats.AllCrashes++
	}
}

// CrashInSync arms a crash of the members of ids that are up: they crash together (CrashGroup)
// at a random moment inside the next sync any of them starts (between TakeSync and the sync's
// end: what it was to make durable is lost), or after window if none starts one before. A
// member that restarts before then is left alone.
func (c *Cluster) CrashInSync(window time.Duration, ids ...int) {
	a := &armedCrash{until: c.now + int64(window)}
	for _, id := range ids {
		if n := c.Nodes[id]; n.R != nil {
			a.ids, a.gens = append(a.ids, id), append(a.gens, n.Starts)
		}
	}
	if len(a.ids) == 0 {
		return
	}
	c.armed = append(c.armed, a)
	c.push(event{at: a.until, kind: evCrash, armed: a})
}

// Disarm cancels every CrashInSync not yet struck.
func (c *Cluster) Disarm() {
	for _, a := range c.armed {
		a.done = true
	}
	c.armed = nil
}

// armedFor draws, when member n starts a sync that ends at end, the moment inside it at which
// the armed groups n belongs to crash.
func (c *Cluster) armedFor(n *Node, end int64) {
	kept := c.armed[:0]
	for _, a := range c.armed {
		if a.done {
			continue
		}
		kept = append(kept, a)
		if a.timed {
			continue
		}
		for i, id := range a.ids {
			if id == n.ID && a.gens[i] == n.Starts {
				a.timed = true
				c.Stats.ArmedInSync++
				c.push(event{at: c.now + c.Rng.Int64N(max(end-c.now, 1)), kind: evCrash, armed: a, ok: true})
				break
			}
		}
	}
	c.armed = kept
}

// fireArmed crashes an armed group at its moment: inside a sync (ev.ok), or at the end of its
// window if no sync came.
func (c *Cluster) fireArmed(ev event) {
	a := ev.armed
	if a.done || (!ev.ok && a.timed) {
		return
	}
	a.done = true
	var ids []int
	for i, id := range a.ids {
		if c.Nodes[id].R != nil && c.Nodes[id].Starts == a.gens[i] {
			ids = append(ids, id)
		}
	}
	c.CrashGroup(ids...)
}

// Restart crashes and starts member id.
func (c *Cluster) Restart(id int) {
	c.Crash(id)
	c.Start(id)
}

// Up reports whether member id runs.
func (c *Cluster) Up(id int) bool { return c.Nodes[id].R != nil }

// Partition separates the given ids from all others, both ways. Ids are member ids, or
// clientBase+i for the i-th client (clients not named stay on the other side).
func (c *Cluster) Partition(ids ...int) {
	all := make([]int, 0, len(c.Nodes)+len(c.clients))
	for i := range c.Nodes {
		all = append(all, i)
	}
	for i := range c.clients {
		all = append(all, clientBase+i)
	}
	for _, a := range ids {
		for _, b := range all {
			if !slices.Contains(ids, b) {
				c.cut[[2]int{a, b}] = true
				c.cut[[2]int{b, a}] = true
			}
		}
	}
}

// Connected reports whether messages between a and b get through both ways (ids as for
// Partition): no partition separates them.
func (c *Cluster) Connected(a, b int) bool {
	return a == b || (!c.cut[[2]int{a, b}] && !c.cut[[2]int{b, a}])
}

// CutOneWay loses every message from a to b.
func (c *Cluster) CutOneWay(a, b int) { c.cut[[2]int{a, b}] = true }

// Heal removes every partition.
func (c *Cluster) Heal() { clear(c.cut) }

// Leader returns the member that is leader in the highest term among running members, or -1.
func (c *Cluster) Leader() int {
	best, term := -1, uint64(0)
	for _, n := range c.Nodes {
		if n.R == nil {
			continue
		}
		st := n.R.Summary()
		if st.Role == service.Leader && st.Term >= term {
			best, term = n.ID, st.Term
		}
	}
	return best
}

// A storm is more than stormEventsMax events within stormWindow of simulated time (a busy run has
// a few thousand).
const (
	stormWindow    = 100 * time.Millisecond
	stormEventsMax = 1_000_000
)

// Run advances simulated time by d.
func (c *Cluster) Run(d time.Duration) {
	c.RunUntil(func() bool { return false }, d)
}

// RunUntil advances simulated time until cond holds (checked after every event) or d passed;
// it reports whether cond held.
func (c *Cluster) RunUntil(cond func() bool, d time.Duration) bool {
	end := c.now + int64(d)
	if cond() {
		return true
	}
	for c.queue.Len() > 0 && c.queue[0].at <= end {
		ev := heap.Pop(&c.queue).(event)
		c.now = ev.at
		if c.now-c.stormAt >= int64(stormWindow) {
			c.stormAt, c.stormEvents = c.now, 0
		}
		if c.stormEvents++; c.stormEvents > stormEventsMax {
			// Members trading messages as fast as the network carries them (raft does, with a
			// follower whose log diverged from what it acknowledged): a finding, and a run that
			// would take hours of real time.
			c.fatalf("a storm: over %d events within %s of simulated time (%s)", stormEventsMax, stormWindow, c.Describe())
			return false
		}
		c.dispatch(ev)
		if c.AfterEvent != nil {
			c.AfterEvent()
		}
		if cond() {
			return true
		}
	}
	c.now = end
	return cond()
}

// WaitLeader runs until some member is leader and every running member agrees on it.
func (c *Cluster) WaitLeader(d time.Duration) int {
	c.T.Helper()
	if !c.RunUntil(c.LeaderAgreed, d) {
		c.fatalf("no leader after %s: %s", d, c.Describe())
	}
	return c.Leader()
}

// LeaderAgreed reports whether some member is leader and every running member that is not cut
// off from all others follows it.
func (c *Cluster) LeaderAgreed() bool {
	l := c.Leader()
	if l < 0 {
		return false
	}
	for _, n := range c.Nodes {
		if n.R != nil && n.R.Summary().Leader != l && !c.isolated(n.ID) && c.inMembership(l, n.ID) {
			return false
		}
	}
	return true
}

func (c *Cluster) isolated(id int) bool {
	for b := range c.Nodes {
		if b != id && !c.cut[[2]int{id, b}] {
			return false
		}
	}
	return len(c.Nodes) > 1
}

// Describe summarises every member's status, for failure messages.
func (c *Cluster) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "t=%s", c.Elapsed())
	for _, n := range c.Nodes {
		if n.R == nil {
			fmt.Fprintf(&b, " | m%d down", n.ID)
			continue
		}
		st := n.R.Summary()
		fmt.Fprintf(&b, " | m%d %s term=%d leader=%d commit=%d applied=%d snap=%d",
			n.ID, st.Role, st.Term, st.Leader, st.Commit, st.Applied, st.SnapshotIndex)
	}
	return b.String()
}

// ---- events ----

type evKind uint8

const (
	evTick evKind = iota
	evRaft
	evToNode   // client → member
	evToClient // member → client
	evSnapReport
	evClientTick
	evSyncDone      // a member's sync ends
	evSnapWritten   // a member's snapshot write ends
	evSparePrepared // a member's next log segment is ready (archive.TakeSpareJob)
	evCrash         // an armed crash falls due (CrashInSync)
	// A client's connection (client.go): the connect leaves the client, reaches the member,
	// is established or fails at the client; the client's close reaches the member.
	evClientDial
	evClientSyn
	evClientConnected
	evClientFailed
	evClientGone
)

type event struct {
	at   int64
	seq  uint64
	kind evKind
	node int // member (evTick, evRaft target, evToNode target, evSnapReport sender)
	gen  int // evTick, evSyncDone, evSnapWritten, evSparePrepared: the start generation it belongs to
	msg  *pb.Message
	raw  []byte // evRaft: marshalled message
	cm   *wire.ClientMsg
	raft uint64 // evSnapReport: the target's raft id
	ok   bool   // evSnapReport; evCrash: the moment inside a sync (not the window's end)
	cl   *Client
	// armed is the group an evCrash belongs to.
	armed *armedCrash
	sc    *simConn // evToNode, evToClient, evClient*: the client connection
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	ev := old[len(old)-1]
	*q = old[:len(old)-1]
	return ev
}

func (c *Cluster) push(ev event) {
	c.seq++
	ev.seq = c.seq
	heap.Push(&c.queue, ev)
}

func (c *Cluster) latency() int64 {
	lo, hi := int64(c.opts.LatencyMin), int64(c.opts.LatencyMax)
	return lo + c.Rng.Int64N(hi-lo+1)
}

// arrival returns when a message sent now from a to b arrives: after a random latency, but never
// before an earlier message on the same link (TCP keeps order on a connection).
func (c *Cluster) arrival(a, b int) int64 {
	at := max(c.now+c.latency(), c.lastArrival[[2]int{a, b}])
	c.lastArrival[[2]int{a, b}] = at
	return at
}

func (c *Cluster) dispatch(ev event) {
	switch ev.kind {
	case evTick:
		n := c.Nodes[ev.node]
		if n.R == nil || ev.gen != n.Starts {
			return // a tick of a previous life
		}
		n.R.Tick()
		n.nextTick += int64(c.config(n.ID).TickInterval)
		c.push(event{at: n.nextTick, kind: evTick, node: n.ID, gen: n.Starts})
		c.process(n)
	case evRaft:
		n := c.Nodes[ev.node]
		m := new(pb.Message)
		if err := proto.Unmarshal(ev.raw, m); err != nil {
			c.fatalf("unmarshal raft message: %v", err)
		}
		if n.R == nil || n.RaftID() != m.GetTo() {
			// Down, or rebuilt under another raft id since (its handshake would refuse the
			// sender's connection for the old one).
			if from := c.nodeOf(m.GetFrom()); m.GetType() == pb.MsgSnap && from >= 0 {
				// The transport's stream to a member that is down fails, and it says so: the
				// leader would otherwise wait for the snapshot's outcome for ever (a soak found
				// a member left behind so, seed 330 210).
				c.push(event{at: c.now + c.latency(), kind: evSnapReport, node: from, raft: m.GetTo(), ok: false})
			}
			return
		}
		c.Delivered[m.GetType()]++
		if err := n.R.Step(m); err != nil {
			if n.Wiped != 0 && errors.Is(err, consensus.ErrLostData) {
				// A wiped member the leader still counts as holding what it forgot: it stops,
				// rightly, and stays down, as a member waiting to be rebuilt does.
				c.Crash(n.ID)
				n.Lost = "wiped, then stopped: " + err.Error()
				return
			}
			if n.Wiped != 0 && m.GetType() == pb.MsgHeartbeat && errors.Is(err, consensus.ErrInvalidMessage) {
				// A leader's heartbeat saying that what the wiped member forgot is committed: the
				// lost-data rule's evidence, refused, as it must be.
				c.process(n)
				return
			}
			if errors.Is(err, consensus.ErrInvalidMessage) || errors.Is(err, consensus.ErrLostData) {
				// Every member here is honest: a refusal means a member lost what it acknowledged,
				// or the validation refuses an honest message. Either is a finding.
				c.fatalf("member %d refused a %s from member %d: %v (%s)", n.ID, m.GetType(),
					c.nodeOf(m.GetFrom()), err, c.Describe())
				return
			}
			c.T.Logf("m%d: step %s from %d: %v", n.ID, m.GetType(), m.GetFrom(), err)
		}
		c.process(n)
		if from := c.nodeOf(m.GetFrom()); m.GetType() == pb.MsgSnap && from >= 0 {
			c.SnapshotsSent++
			c.push(event{at: c.now + c.latency(), kind: evSnapReport, node: from, raft: m.GetTo(), ok: true})
		}
	case evSnapReport:
		if n := c.Nodes[ev.node]; n.R != nil {
			n.R.ReportSnapshot(ev.raft, ev.ok)
			c.process(n)
		}
	case evToNode:
		c.toNode(ev.sc, ev.cm)
	case evToClient:
		ev.sc.cl.receive(ev.sc, ev.cm)
	case evClientDial, evClientSyn, evClientConnected, evClientFailed, evClientGone:
		c.clientConnEvent(ev)
	case evSyncDone:
		n := c.Nodes[ev.node]
		if n.R == nil || ev.gen != n.Starts || n.sync == nil {
			return // a sync of a previous life
		}
		job := n.sync
		n.sync = nil
		n.R.SyncDone(job())
		c.process(n)
	case evSparePrepared:
		n := c.Nodes[ev.node]
		if n.R == nil || ev.gen != n.Starts || n.spare == nil {
			return // a job of a previous life: it never ran, as if the crash came first
		}
		job := n.spare
		n.spare = nil
		_ = job() // a failure leaves no spare: the next segment grows as it fills
		c.process(n)
	case evSnapWritten:
		n := c.Nodes[ev.node]
		if n.R == nil || ev.gen != n.Starts || n.snap == nil {
			return
		}
		job := n.snap
		n.snap = nil
		if err := n.R.SnapshotWritten(job()); err != nil {
			c.fatalf("member %d stopped: %v (%s)", n.ID, err, c.Describe())
			return
		}
		c.process(n)
	case evCrash:
		c.fireArmed(ev)
	case evClientTick:
		ev.cl.tick()
		c.push(event{at: c.now + int64(clientTick), kind: evClientTick, cl: ev.cl})
	}
}

func (c *Cluster) process(n *Node) {
	if n.R == nil {
		return
	}
	if err := n.R.Process(); err != nil {
		if errors.Is(err, replica.ErrRemoved) {
			// Removed from the cluster: it stops, and its data cannot serve again.
			c.Crash(n.ID)
			n.Lost = "removed: " + err.Error()
			return
		}
		c.fatalf("member %d stopped: %v (%s)", n.ID, err, c.Describe())
		return
	}
	if job := n.R.TakeSync(); job != nil {
		n.sync = job
		c.Stats.Syncs++
		d, stalled := c.diskTime(n, 1, c.opts.SyncMin, c.opts.SyncMax)
		if stalled {
			c.Stats.Stalls++
		}
		end := c.now + d
		c.push(event{at: end, kind: evSyncDone, node: n.ID, gen: n.Starts})
		if len(c.armed) > 0 {
			c.armedFor(n, end)
		}
		// The sync runs: apply what was durable before it (the replica's driver contract).
		if err := n.R.Process(); err != nil {
			c.fatalf("member %d stopped: %v (%s)", n.ID, err, c.Describe())
			return
		}
	}
	if job := n.Store.TakeSpareJob(); job != nil {
		// Zero-filling a segment ahead takes a while (5 to 50 syncs' worth); rolls meanwhile
		// grow their segment.
		n.spare = job
		draws := 0 // without Disks, diskTime draws once, uniformly, as old runs did
		if len(c.opts.Disks) > 0 {
			draws = 5 + c.Rng.IntN(46)
		}
		d, _ := c.diskTime(n, draws, 5*c.opts.SyncMax, 50*c.opts.SyncMax)
		c.push(event{at: c.now + d, kind: evSparePrepared, node: n.ID, gen: n.Starts})
	}
	if job := n.R.TakeSnapshotWrite(); job != nil {
		// A snapshot write takes a few syncs: file, directory, and the retention's directory.
		n.snap = job
		d, _ := c.diskTime(n, 3, 2*c.opts.SyncMin, 5*c.opts.SyncMax)
		c.push(event{at: c.now + d, kind: evSnapWritten, node: n.ID, gen: n.Starts})
	}
	c.checkDurable(n)
}

// diskTime draws how long a job of member n's disk takes, a job of draws syncs' worth (1 for a
// sync), and whether it stalled. Without Disks, uniformly between lo and hi, as the simulator
// always did.
func (c *Cluster) diskTime(n *Node, draws int, lo, hi time.Duration) (int64, bool) {
	if len(c.opts.Disks) <= n.ID { // (a member that joined later has the default disk)
		return int64(lo) + c.Rng.Int64N(int64(hi-lo)+1), false
	}
	var total time.Duration
	stalled := false
	for range draws {
		t, s := c.opts.Disks[n.ID].syncTime(c.Rng)
		total += t
		stalled = stalled || s
	}
	return int64(total), stalled
}

// checkDurable reports what member n's durableLog found, and an applied index its disk does not
// hold.
func (c *Cluster) checkDurable(n *Node) {
	if !checkDurability || n.disk == nil {
		return
	}
	for _, f := range n.disk.failed {
		c.violation("member %d: %s", n.ID, f)
	}
	n.disk.failed = nil
	if _, _, _, applied := n.R.Progress(); applied > n.disk.durablePrefix() {
		c.violation("member %d applied index %d, but its disk holds its log up to %d", n.ID, applied, n.disk.durablePrefix())
	}
}

func (c *Cluster) violation(format string, args ...any) {
	if c.Violation != nil {
		c.Violation(format, args...)
		return
	}
	c.fatalf(format, args...)
}

// checkExpiry checks a member's word that a session is gone: a client told so gives up on it
// and on the commands it left unanswered. The member must have applied the session's close (it
// remembers the id among its closed sessions); a member that never applied the session's open —
// a new leader still applying its predecessors' log — must not take its own ignorance for an
// expiry while the open is applied elsewhere. (A client's own close request answered while the
// close is under way is not an expiry.)
func (c *Cluster) checkExpiry(from *Node, m *wire.ClientMsg) {
	if m.Kind == wire.CSessionEvent && m.Reason == uint8(service.CloseClient) {
		return
	}
	ctr := from.R.Container()
	if ctr.SessionClosed(m.Session) {
		return
	}
	for _, n := range c.Nodes {
		if n.R != nil && n.R.Container().SessionOpen(m.Session) {
			c.violation("member %d told a client its session %x expired (message kind %d), but member %d has it open and member %d never closed it (applied %d)",
				from.ID, m.Session[:4], m.Kind, n.ID, from.ID, ctr.Applied())
			return
		}
	}
}

// readKey names a query as a member took it: the connection and the client's request id.
type readKey struct {
	member    int
	conn      replica.ConnID
	requestID uint64
}

// noteRead records what a query a member takes now must see (every command answered before it
// arrived). A query taken again on the same connection keeps its first, lower need.
func (c *Cluster) noteRead(n *Node, conn replica.ConnID, m *wire.ClientMsg) {
	k := readKey{n.ID, conn, m.RequestID}
	if _, ok := c.readNeeds[k]; !ok {
		c.readNeeds[k] = c.acked
	}
}

// checkRead checks a query's answer: a linearizable read reflects every command acknowledged
// before the query arrived, so the member serves it at an applied index at least as high as any
// index at which a command had been answered by then. (ReadIndex gives that: the leader serves at
// its commit index once a quorum confirmed it still leads, and that index is at least everything
// committed before.) Porcupine sees a stale read only when the value it returns is wrong for
// every order of the history; this sees it at once.
func (c *Cluster) checkRead(n *Node, conn replica.ConnID, m *wire.ClientMsg) {
	k := readKey{n.ID, conn, m.RequestID}
	need, ok := c.readNeeds[k]
	delete(c.readNeeds, k)
	if ok && m.Status == wire.StatusOK {
		if applied := n.R.Container().Applied(); applied < need {
			c.violation("member %d answered a query at applied index %d, but a command had been answered at index %d before the query arrived",
				n.ID, applied, need)
		}
	}
}

// lost decides whether a message from a to b is lost.
func (c *Cluster) lost(a, b int) bool {
	return c.cut[[2]int{a, b}] || (c.DropRate > 0 && c.Rng.Float64() < c.DropRate)
}

type outbox struct {
	c *Cluster
	n *Node
}

func (o *outbox) SendRaft(msgs []*pb.Message) {
	c := o.c
	for _, m := range msgs {
		if checkDurability {
			if v := o.n.disk.promise(m); v != "" {
				c.violation("member %d %s", o.n.ID, v)
			}
		}
		c.checkWipedVotes(o.n, m)
		to := c.nodeOf(m.GetTo())
		if to < 0 {
			// No member has that raft id any more (removed, or replaced by a rebuilt member):
			// the transport has no peer to send to; a snapshot's stream fails.
			if m.GetType() == pb.MsgSnap {
				c.push(event{at: c.now + c.latency(), kind: evSnapReport, node: o.n.ID, raft: m.GetTo(), ok: false})
			}
			continue
		}
		// Marshal now, as the transport does: raft's messages share memory with its log.
		raw, err := proto.Marshal(m)
		if err != nil {
			c.fatalf("marshal raft message: %v", err)
		}
		if c.lost(o.n.ID, to) {
			if m.GetType() == pb.MsgSnap {
				c.push(event{at: c.now + c.latency(), kind: evSnapReport, node: o.n.ID, raft: m.GetTo(), ok: false})
			}
			continue
		}
		copies := 1
		if c.DupRate > 0 && c.Rng.Float64() < c.DupRate {
			copies = 2
		}
		for range copies {
			at := c.now + c.latency()
			if !c.Reorder {
				at = c.arrival(o.n.ID, to)
			}
			c.push(event{at: at, kind: evRaft, node: to, raw: raw})
		}
	}
}

func (o *outbox) SendClient(conn replica.ConnID, m *wire.ClientMsg) {
	c := o.c
	if conn == adminConn {
		c.AdminAnswers = append(c.AdminAnswers, AdminAnswer{Member: o.n.ID, Msg: *m})
		return
	}
	switch m.Status {
	case wire.StatusSessionExpired:
		c.checkExpiry(o.n, m)
	case wire.StatusDenied:
		c.Stats.Denials++
	}
	switch {
	case m.Kind == wire.CResponse && m.Status == wire.StatusOK:
		c.acked = max(c.acked, o.n.R.Container().Applied())
	case m.Kind == wire.CQueryResponse:
		c.checkRead(o.n, conn, m)
	}
	sc := c.conns[conn]
	if sc == nil || sc.closed || c.lost(o.n.ID, sc.cl.net()) {
		return // the connection is gone (the client closes it for good), or the message is lost
	}
	cp := *m
	cp.Payload = slices.Clone(m.Payload)
	c.push(event{at: c.arrival(o.n.ID, sc.cl.net()), kind: evToClient, node: o.n.ID, cm: &cp, sc: sc})
}

func (o *outbox) Changed(ch replica.Change) {
	o.n.Changes = append(o.n.Changes, ch)
	if ch.Kind == replica.ChangeVerification {
		// Kept in the data directory as the node does, so that a restart keeps it.
		if err := o.n.Store.SetVerification(ch.Unverified, ch.VoteFloor); err != nil {
			o.c.fatalf("member %d: recording its verification: %v", o.n.ID, err)
		}
	}
}

// adminConn is the connection the harness's admin requests come on (Admin); what members answer
// on it is kept in Cluster.AdminAnswers.
const adminConn = replica.ConnID(1 << 62)

// AdminAnswer is a member's answer on the admin connection.
type AdminAnswer struct {
	Member int
	Msg    wire.ClientMsg
}

// Admin hands member id an admin request (as an operator's tandem cluster, or a joining member,
// sends it on the client port); the answer comes later, in AdminAnswers, under requestID.
func (c *Cluster) Admin(id int, requestID uint64, req wire.AdminRequest) {
	n := c.Nodes[id]
	if n.R == nil {
		return
	}
	n.R.ClientRequest(adminConn, &wire.ClientMsg{Kind: wire.CAdmin, RequestID: requestID, Protocol: wire.ClientProtocol,
		Payload: wire.EncodeAdmin(req), Grant: c.AdminGrant})
	c.process(n)
}

// inMembership reports whether member id is in the applied configuration of member by (voter,
// learner, or outgoing voter).
func (c *Cluster) inMembership(by, id int) bool {
	raft := c.Nodes[id].RaftID()
	for _, m := range c.Nodes[by].R.Members() {
		if m.RaftID == raft {
			return true
		}
	}
	return false
}

// Do submits a command from cl and runs until it is answered; it fails the test after d.
func (c *Cluster) Do(cl *Client, payload string, d time.Duration) Result {
	c.T.Helper()
	seq := cl.Submit([]byte(payload))
	if !c.RunUntil(func() bool { _, ok := cl.Results[seq]; return ok }, d) {
		c.fatalf("command %q (seq %d) unanswered after %s: %s", payload, seq, d, c.Describe())
	}
	return cl.Results[seq]
}

// Ask sends a query from cl and runs until it is answered; it fails the test after d.
func (c *Cluster) Ask(cl *Client, payload string, d time.Duration) string {
	c.T.Helper()
	id := cl.Query([]byte(payload))
	if !c.RunUntil(func() bool { _, ok := cl.QueryResults[id]; return ok }, d) {
		c.fatalf("query %q unanswered after %s: %s", payload, d, c.Describe())
	}
	return string(cl.QueryResults[id].Reply)
}

// WaitApplied runs until every running member applied at least index.
func (c *Cluster) WaitApplied(index uint64, d time.Duration) bool {
	return c.RunUntil(func() bool {
		for _, n := range c.Nodes {
			if n.R != nil && n.R.Summary().Applied < index {
				return false
			}
		}
		return true
	}, d)
}

// WaitConverged runs until the leader committed its whole log (so everything before its term is
// committed too) and every running member applied it.
func (c *Cluster) WaitConverged(d time.Duration) bool { return c.RunUntil(c.Converged, d) }

// Converged reports whether there is a leader, it committed its whole log, and every running
// member applied it.
func (c *Cluster) Converged() bool {
	l := c.Leader()
	if l < 0 {
		return false
	}
	commit := c.Nodes[l].R.Summary().Commit
	if last, _ := c.Nodes[l].Store.LastIndex(); commit < last {
		return false
	}
	for _, n := range c.Nodes {
		if n.R != nil && n.R.Summary().Applied < commit && c.inMembership(l, n.ID) {
			return false // (a member removed meanwhile hears no more)
		}
	}
	return true
}

// rngReader reads bytes from a seeded generator (replica.Config.Rand in the simulator).
type rngReader struct{ r *rand.Rand }

func (g *rngReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(g.r.Uint32())
	}
	return len(p), nil
}
