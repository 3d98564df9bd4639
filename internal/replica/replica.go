package replica

import (
	"fmt"
	"log/slog"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/bugs"
	"github.com/tandem-cluster/tandem/internal/consensus"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// ConnID identifies a client connection to this member (chosen by the driver).
type ConnID uint64

// Clock is the clock seam: Unix nanoseconds. The leader stamps batches with it.
type Clock interface{ Now() int64 }

// Outbox receives what the replica produces. It is called on the replica's goroutine and must not
// block: queue and return.
type Outbox interface {
	// SendRaft transmits raft messages; they are only produced after what they depend on is
	// durable. The messages are the caller's to keep (entries in them are immutable).
	SendRaft(msgs []*pb.Message)
	// SendClient delivers a message on a client connection. m is valid only during the call
	// (the container reuses its answers): encode or copy it.
	SendClient(conn ConnID, m *wire.ClientMsg)
	// Changed reports a change of the member's state, for operators.
	Changed(ch Change)
}

// A replica reports what it alone knows, in types named apart from the node's on purpose: node
// owns the public Event and Status, which add what only the driver sees (wall-clock time, peers'
// reachability, the transports' counters), and one name means one thing to a reader. So the
// replica reports a Change through Outbox.Changed, and sums itself up in a Summary; node turns
// them into its Events and its Status.

// ChangeKind classifies the changes a replica reports.
type ChangeKind uint8

// Change kinds.
const (
	// ChangeRole: role, leader or term changed.
	ChangeRole ChangeKind = iota + 1
	// ChangeSnapshotTaken: this member wrote a snapshot at Index.
	ChangeSnapshotTaken
	// ChangeSnapshotInstalled: this member installed the leader's snapshot at Index.
	ChangeSnapshotInstalled
	// ChangeClusterVersion: the entry at Index raised the cluster version to ClusterVersion.
	ChangeClusterVersion
	// ChangeClusterIdentity: the cluster's identity became known here (ClusterUUID): the entry
	// at Index recorded it, or a snapshot at Index (installed, or started from) holds it.
	ChangeClusterIdentity
	// ChangeVerification: whether this member may vote changed (Unverified, VoteFloor: what the
	// driver records in the data directory, so that a restart keeps it; consensus/verify.go).
	ChangeVerification
	// ChangeMembers: the membership change at Index was applied (Replica.Members is the new
	// membership; the driver points its transport at it).
	ChangeMembers
)

// Change is a change of the member's state.
type Change struct {
	Kind   ChangeKind
	Role   service.Role
	Leader int // member id, -1 when unknown
	Term   uint64
	Index  uint64 // the snapshot's, for snapshot changes; the raise's, for a cluster version
	// ClusterVersion: the version now in force, for ChangeClusterVersion.
	ClusterVersion uint16
	// ClusterUUID: the cluster's identity, for ChangeClusterIdentity.
	ClusterUUID wire.ClusterUUID
	// Unverified and VoteFloor, for ChangeVerification.
	Unverified bool
	VoteFloor  uint64
}

// Summary sums up the member's state (Replica.Summary).
type Summary struct {
	MemberID      int
	Role          service.Role
	Term          uint64
	Leader        int // -1 when unknown
	Commit        uint64
	Applied       uint64
	SnapshotIndex uint64
	Members       []Member
	// ClusterVersion is the cluster version in force here (at Applied); ClusterVersionMax the
	// highest this member applies.
	ClusterVersion    uint16
	ClusterVersionMax uint16
	// ClusterUUID is the cluster's identity as applied here; zero until known.
	ClusterUUID wire.ClusterUUID
	// Unverified: this member started on an empty log and may not vote yet; VoteFloor: it drops
	// vote requests up to this term (consensus/verify.go).
	Unverified bool
	VoteFloor  uint64
	// Suspended and Preferred: the operator's controls as applied here.
	Suspended bool
	Preferred []int
}

// Replica is one member: consensus core, container and the leader's ingress, driven step by step.
// It is not safe for concurrent use.
type Replica struct {
	cfg   Config
	self  uint64 // this member's raft id
	log   *slog.Logger
	clock Clock
	out   Outbox
	core  *consensus.Core
	ctr   *container.Container
	store consensus.Storage

	ticks int
	role  service.Role
	// appliedTerm is the term of the last entry applied (or of the snapshot started from): once
	// it is the leader's own term, the leader has applied everything its predecessors committed.
	appliedTerm uint64
	now         int64 // the clock for this round of inputs, once nowRead (inputNow)
	nowRead     bool
	// The meter's clock for this round, once meterRead; the stamps of the commands proposed and
	// not applied, and the count of each proposed batch's, from their heads on (meter.go).
	meterAt            int64
	meterRead          bool
	cmdRecv            []int64
	batchCmds          []int
	cmdHead, batchHead int
	lastSnap           uint64
	snapDue            []byte // snapshot bytes taken at snapDueIx, handed to storage after Process
	snapDueIx          uint64
	snapDueConf        *pb.ConfState // the membership as of snapDueIx
	// snapOwed: a member was added and no snapshot was taken since (one was being written):
	// the next entry applied takes one (membership.go).
	snapOwed bool
	// snapJob is the write of the snapshot at snapIx, until the driver takes it; snapWriting
	// holds from CreateSnapshot to SnapshotWritten (snapshot points meanwhile are skipped).
	snapJob     func() error
	snapIx      uint64
	snapWriting bool

	// attached maps an open (or opening) session to the connection its client uses here.
	attached map[wire.SessionID]ConnID
	// Leader-only state: reset on every change of leadership.
	opening      map[wire.SessionID]string // opens proposed, not yet applied: the principal each is for
	closing      map[wire.SessionID]bool   // closes proposed, not yet applied
	lastActivity map[wire.SessionID]int64  // local clock; a new term restarts every idle clock
	pending      []wire.Item               // client items waiting to be proposed
	pendingBytes int
	lastTimeProp int // tick of the last time-only proposal

	newReads   []pendingRead
	readWaits  map[uint64][]pendingRead // read id → reads
	readyReads []readyRead
	// readsPending counts the queries taken and not yet answered (served or failed), wherever
	// they wait: what MaxPendingReads bounds. (readWaits and readyReads hold rounds of them.)
	readsPending int

	// peerClusterMax: the highest cluster version each other member said it can apply
	// (PeerClusterVersion); absent until its handshake was seen.
	peerClusterMax map[uint64]uint16
	// rejoined maps a member that rejoined on a log lacking what this leader counts it as
	// holding to the term this leader learnt it in (rejoin.go).
	rejoined map[uint64]rejoined
	// unverified and voteFloor: whether this member may vote, as last reported (ChangeVerification).
	unverified bool
	voteFloor  uint64
	// confirming: a request held back by confirmFirst is being handled again (verdict).
	confirming bool
	// startCommit is the commit index the storage held at start; membersChecked: the
	// configured members were compared with the recorded ones (configured.go).
	startCommit    uint64
	membersChecked bool
	// raising: this leader proposed a raise of the cluster version that has not been applied.
	raising bool
	// removed: this member was removed from the cluster (membership.go); it stops.
	removed *RemovedError
	// changes: the membership changes this leader proposed and has not seen applied (admin.go).
	changes    []*pendingChange
	changeSeq  uint64
	promoteLog int // the tick of the last line about a learner that is not caught up
	// heard: the tick at which a message last came from each raft id (liveVoters).
	heard map[uint64]int
	// transfer: the leadership transfer an operator asked for and has not been answered
	// (transfer.go). Kept apart from changes: the step-down it causes must not fail it.
	transfer *pendingTransfer
	// identifying: this leader proposed the cluster's identity and has not applied an identity
	// entry since.
	identifying bool
	// principalsWaitLogged: this member logged that an authenticated client waits for cluster
	// version 6 (once: principals.go).
	principalsWaitLogged bool

	// The operator's controls (control.go): the requests this leader proposed and has not seen
	// applied; shutdownProposed: this leader proposed (or applied) a shutdown and proposes
	// nothing more; stop: this member applied a current shutdown and stops once it may
	// (checkStop), stopTick the tick it applied it, stopMatched the tick every member had it
	// (-1: not yet).
	controls         []*pendingControl
	shutdownProposed bool
	stop             *ShutdownError
	stopTick         int
	stopMatched      int
	// snapForced: the entry being applied needs a snapshot at its index (an operator's snapshot
	// or shutdown) even if one is being written: it then waits in snapQueued.
	snapForced bool
	snapQueued *queuedSnapshot

	// The preferred leader (preferred.go): preferring, a founding preference proposed and not
	// applied; leaderSince, the tick this member became leader; prefCand and prefStreak, the
	// preferred member found ready at the last checks and for how many in a row.
	preferring  bool
	prefWarned  bool
	leaderSince int
	prefCand    uint64
	prefStreak  int
}

// queuedSnapshot is a snapshot taken while another was being written, handed to storage once
// that one is.
type queuedSnapshot struct {
	data []byte
	ix   uint64
	conf *pb.ConfState
}

// Flow control of the leader's appends to each follower (raft's Config: MaxSizePerMsg,
// MaxInflightMsgs, MaxInflightBytes).
//
// Why these: in normal replication a follower has a round trip's worth of appends in flight —
// tens to hundreds of KiB even at 100 MB/s of commands — so neither bound slows it. A follower
// catching up is different: raft reads up to raftMsgBytesMax of old log per append and sends as
// many as the window allows; bounded by the count alone (256), that was 256 MiB per follower,
// held by raft's messages and again by their encoding in the transport's queue. With the byte
// bound (and the transport dropping what it queued for a peer it could not reach) the leader's
// memory grows by a small fraction of that while it catches a follower up, and throughput is
// unchanged (docs/PERFORMANCE.md, "Memory during catch-up").
const (
	raftMsgBytesMax      = 1 << 20
	raftInflightMsgsMax  = 256
	raftInflightBytesMax = 4 << 20
)

// raftCommittedBytesPerReadyMax bounds the committed entries one Ready hands out (raft's
// MaxCommittedSizePerReady). Raft counts an entry against MaxUncommittedBytes until a Ready has
// handed it out and been advanced; a leader applies and answers what commits during its sync
// from its own log (consensus.applyDurable), so its clients go on at the rate of its syncs while
// raft's count went down by at most this much per Ready. With raft's default (1 MiB, the message
// size) a leader taking 4 KiB commands at full speed outran the count: it reached the
// uncommitted limit within seconds, raft dropped proposals, and clients waited out backoffs
// ("unavailable"). 8 MiB a Ready keeps up with 100 MB/s of commands at 12 Readies a second, and
// bounds what a member replaying its log holds at once.
const raftCommittedBytesPerReadyMax = 8 << 20

// New creates a replica on storage. The service is started from the storage's newest snapshot.
func New(cfg Config, svc service.Service, st consensus.Storage, clock Clock, out Outbox) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	self := cfg.RaftID
	if self == 0 {
		self = RaftID(cfg.MemberID)
	}
	r := &Replica{
		cfg:          cfg,
		self:         self,
		log:          cfg.Logger,
		clock:        clock,
		out:          out,
		store:        st,
		attached:     map[wire.SessionID]ConnID{},
		opening:      map[wire.SessionID]string{},
		closing:      map[wire.SessionID]bool{},
		lastActivity: map[wire.SessionID]int64{},
		readWaits:    map[uint64][]pendingRead{},
		lastTimeProp: -1 << 30,
	}
	ccfg := cfg.Container
	ccfg.MemberID = cfg.MemberID
	ctr, err := container.New(ccfg, svc, r.egress)
	if err != nil {
		return nil, err
	}
	r.ctr = ctr
	if hs, _, err := st.InitialState(); err == nil {
		r.startCommit = hs.GetCommit()
	}
	snap, err := st.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("replica: reading snapshot: %w", err)
	}
	var applied uint64
	var data []byte
	if !raft.IsEmptySnap(snap) {
		applied = snap.GetMetadata().GetIndex()
		r.appliedTerm = snap.GetMetadata().GetTerm()
		data = snap.GetData()
	}
	if err := ctr.Start(data, applied); err != nil {
		return nil, cannotApply(fmt.Errorf("replica: starting the service from the snapshot at index %d: %w", applied, err))
	}
	r.lastSnap = applied
	peers := make([]raft.Peer, 0, len(cfg.Members))
	for _, m := range cfg.Members {
		peers = append(peers, raft.Peer{ID: RaftID(m.ID), Context: encodeAddrs(m)})
	}
	core, err := consensus.New(consensus.Config{
		ID:                        self,
		ElectionTicks:             cfg.ElectionTicks,
		HeartbeatTicks:            cfg.HeartbeatTicks,
		MaxSizePerMsg:             raftMsgBytesMax,
		MaxInflightMsgs:           raftInflightMsgsMax,
		MaxInflightBytes:          raftInflightBytesMax,
		MaxUncommittedBytes:       cfg.MaxUncommittedBytes,
		MaxCommittedBytesPerReady: raftCommittedBytesPerReadyMax,
		Unverified:                cfg.Unverified,
		VoteFloor:                 cfg.VoteFloor,
		Joined:                    cfg.Joined,
		Joining:                   cfg.Joining,
		Logger:                    cfg.Logger,
		MemberOf:                  r.MemberOf,
	}, st, peers, applied)
	if err != nil {
		return nil, err
	}
	r.core = core
	r.unverified, r.voteFloor = cfg.Unverified, cfg.VoteFloor
	return r, nil
}

// Summary sums up the member's state.
func (r *Replica) Summary() Summary {
	bs := r.core.Status()
	preferred, _ := r.ctr.Preferred()
	return Summary{
		MemberID:      r.cfg.MemberID,
		Role:          roleOf(bs.RaftState),
		Term:          bs.GetTerm(),
		Leader:        r.IDOf(bs.Lead),
		Commit:        bs.GetCommit(),
		Applied:       r.ctr.Applied(),
		SnapshotIndex: r.lastSnap,
		Members:       r.Members(),

		ClusterVersion:    r.ctr.ClusterVersion(),
		ClusterVersionMax: r.ctr.ClusterVersionMax(),
		ClusterUUID:       r.ctr.ClusterUUID(),
		Unverified:        r.core.Unverified(),
		VoteFloor:         r.core.VoteFloor(),
		Suspended:         r.ctr.Suspended(),
		Preferred:         preferred,
	}
}

// Progress returns role, term, commit and applied index cheaply (no allocation), for checkers
// that look after every step.
func (r *Replica) Progress() (role service.Role, term, commit, applied uint64) {
	bs := r.core.Status()
	return roleOf(bs.RaftState), bs.GetTerm(), bs.GetCommit(), r.ctr.Applied()
}

// ProposalsFailed returns how many of this member's proposals failed (consensus/proposals.go).
// Safe from any goroutine.
func (r *Replica) ProposalsFailed() int64 { return r.core.ProposalsFailed() }

// Err returns the error that stopped the member, if any.
func (r *Replica) Err() error { return r.core.Err() }

// Container exposes the container for tests and status pages (read-only use).
func (r *Replica) Container() *container.Container { return r.ctr }

func roleOf(s raft.StateType) service.Role {
	switch s {
	case raft.StateLeader:
		return service.Leader
	case raft.StateCandidate:
		return service.Candidate
	case raft.StatePreCandidate:
		return service.PreCandidate
	}
	return service.Follower
}

func (r *Replica) isLeader() bool { return r.role == service.Leader }

// Tick advances the member's logical clock by one TickInterval: raft's tick, and on the leader
// session expiry and due timers.
func (r *Replica) Tick() {
	r.ticks++
	r.core.Tick()
	r.noteVerification()
	r.retryRejoined()
	r.transferProgress() // on a leader that stepped down too: it answers the transfer it started
	if !r.isLeader() || r.shutdownProposed {
		return
	}
	now := r.clock.Now()
	r.expireSessions(now)
	r.maybeRaiseClusterVersion()
	r.maybeProposeIdentity()
	r.maybePromote()
	r.maybeProposePreferred()
	r.maybeYieldToPreferred()
	if d, ok := r.ctr.NextTimerDeadline(); ok && d <= now && len(r.pending) == 0 && !r.ctr.Suspended() &&
		r.ticks-r.lastTimeProp >= r.cfg.HeartbeatTicks {
		// Cluster time only moves with the log: an idle log needs an entry for a timer to fire.
		r.lastTimeProp = r.ticks
		r.propose(nil, 0)
	}
}

// Step feeds a raft message from a peer. Messages from a raft id the membership recorded as
// removed (or raft id 0) are dropped: a removed member must not move terms. A raft id this member
// has not recorded is let through: a member added while this one was down, or that it has not
// applied yet, may lead by now, and this member would never catch up if it refused its leader
// (etcd's rafthttp accepts such senders for the same reason). The transport authenticated the
// sender (its cluster's identity). The core refuses what raft would crash
// on (consensus.ErrInvalidMessage: the driver drops the connection) and stops a member whose log
// lost what it acknowledged (consensus.ErrLostData, also returned by the next Process).
func (r *Replica) Step(m *pb.Message) error {
	if m.GetTo() != r.self {
		return fmt.Errorf("replica: message for %s delivered to %s", r.nameID(m.GetTo()), r.nameID(r.self))
	}
	if r.Removed(m.GetFrom()) || m.GetFrom() == 0 {
		return fmt.Errorf("replica: message from %s, which was removed from the cluster", r.nameID(m.GetFrom()))
	}
	if r.heard == nil {
		r.heard = make(map[uint64]int)
	}
	r.heard[m.GetFrom()] = r.ticks
	return r.core.Step(m)
}

// ReportUnreachable tells raft the peer of raft id id could not be reached.
func (r *Replica) ReportUnreachable(id uint64) { r.core.ReportUnreachable(id) }

// ReportSnapshot tells raft whether a snapshot reached the peer of raft id id.
func (r *Replica) ReportSnapshot(id uint64, ok bool) { r.core.ReportSnapshot(id, ok) }

// BestFollower returns the raft id of the most caught-up other voter (on the leader).
func (r *Replica) BestFollower() (uint64, bool) { return r.core.BestFollower() }

// TransferLeadership asks the leader to hand over to the member of raft id to.
func (r *Replica) TransferLeadership(to uint64) { r.core.TransferLeadership(to) }

// Close terminates the service (OnTerminate) and closes the storage.
func (r *Replica) Close() error {
	r.ctr.Terminate()
	return r.store.Close()
}

// Process proposes what is pending, runs the consensus core (persist, send, apply) and serves
// the queries whose read index was applied. Call it after every input and after SyncDone.
//
// When the core's cycle waits for a sync (TakeSync), Process only applies and serves what
// commits meanwhile: client items and queries wait for the sync, then go out batched in the next
// cycle (proposing them earlier would gain nothing, as nothing leaves before that cycle).
func (r *Replica) Process() error {
	r.nowRead, r.meterRead = false, false
	err := r.process()
	// The meter's clock read in this round (an apply, a query served) is not the next round's:
	// the inputs fed before the next Process read it afresh (meter.go).
	r.meterRead = false
	return err
}

func (r *Replica) process() error {
	if r.core.SyncPending() {
		return r.afterCore(r.core.Process(r))
	}
	if r.isLeader() || bugs.Active(bugs.FollowerForwards) {
		r.flush()
	}
	if r.isLeader() {
		r.startReads()
	}
	return r.afterCore(r.core.Process(r))
}

// TakeSync returns, once, the sync the member's current cycle waits for (nil if none). The driver
// starts it — on another goroutine, or later in simulated time — and calls Process at once:
// what was durable before is applied while the disk works, never before it starts. It goes on
// feeding inputs and calling Process, and reports the sync's result with SyncDone, then calls
// Process.
func (r *Replica) TakeSync() func() error { return r.core.TakeSync() }

// SyncDone reports the result of the sync TakeSync returned.
func (r *Replica) SyncDone(err error) { r.core.SyncDone(err) }

// TakeSnapshotWrite returns, once, the job writing the snapshot the member took (nil if none). The
// driver runs it like a sync — beside everything else — and reports with SnapshotWritten. Until
// then the member goes on; the snapshot counts (Status, compaction, catching followers up) only
// once written.
func (r *Replica) TakeSnapshotWrite() func() error {
	job := r.snapJob
	r.snapJob = nil
	return job
}

// SnapshotWritten reports the result of the job TakeSnapshotWrite returned. A failed write stops
// the member (the returned error, as from Process).
func (r *Replica) SnapshotWritten(err error) error {
	r.snapWriting = false
	if err := r.core.SnapshotDone(err); err != nil {
		return err
	}
	if q := r.snapQueued; q != nil {
		// Handed to storage by the next Process (afterCore).
		r.snapQueued = nil
		r.snapDue, r.snapDueIx, r.snapDueConf = q.data, q.ix, q.conf
	}
	r.lastSnap = max(r.lastSnap, r.snapIx) // a leader's snapshot may have been installed meanwhile
	st := r.core.State()
	r.out.Changed(Change{Kind: ChangeSnapshotTaken, Index: r.snapIx, Term: st.Term, Role: r.role, Leader: r.IDOf(st.Leader)})
	return nil
}

// afterCore hands a snapshot the apply loop took to storage and serves the reads now applied.
func (r *Replica) afterCore(err error) error {
	if r.snapDue != nil {
		data, ix := r.snapDue, r.snapDueIx
		r.snapDue = nil
		job, serr := r.core.CreateSnapshot(ix, r.snapDueConf, data)
		switch {
		case serr != nil:
			if err == nil {
				err = serr
			}
		case job != nil:
			r.snapJob, r.snapIx, r.snapWriting = job, ix, true
		default:
			// The storage holds a snapshot at or past ix already (one installed from the
			// leader): what a shutdown waiting for its snapshot needs (checkStop).
			r.lastSnap = max(r.lastSnap, ix)
		}
	}
	r.serveReads()
	r.noteVerification()
	if err == nil {
		err = r.checkConfiguredMembers()
	}
	if err == nil {
		err = r.checkRemoved()
	}
	if err == nil {
		err = r.checkStop()
	}
	return err
}

// PeerStanding reports what a member said of itself in its member handshake (the transport
// learns it on every connection, in both directions, before anything from that connection): a
// member on an empty log decides from it when it may vote (consensus/verify.go).
func (r *Replica) PeerStanding(id uint64, s wire.Standing) {
	r.core.PeerStanding(id, s.Term, s.Blank, s.Unverified)
	r.noteVerification()
	r.noteRejoined(id, s)
}

// Standing is what this member's handshakes say of it: its term, the last index of its log,
// whether it is blank, whether it is unverified.
func (r *Replica) Standing() wire.Standing {
	return wire.Standing{Term: r.core.Status().GetTerm(), Last: r.core.LastIndex(), Blank: r.core.Blank(),
		Unverified: r.core.Unverified()}
}

// noteVerification reports a change of whether this member may vote (ChangeVerification).
func (r *Replica) noteVerification() {
	u, f := r.core.Unverified(), r.core.VoteFloor()
	if u == r.unverified && f == r.voteFloor {
		return
	}
	r.unverified, r.voteFloor = u, f
	st := r.core.State()
	r.out.Changed(Change{Kind: ChangeVerification, Unverified: u, VoteFloor: f, Term: st.Term, Role: r.role,
		Leader: r.IDOf(st.Leader)})
}
