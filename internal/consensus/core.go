package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/internal/bugs"
)

// ErrNotLeader is returned (wrapped in a *NotLeaderError) when a proposal or read is made on a
// member that is not the leader, or the leader dropped it (for instance during a leadership
// transfer). Nothing was appended to the log.
var ErrNotLeader = errors.New("consensus: not the leader")

// ErrDropped is returned when the leader refused a proposal for a limit (too many uncommitted
// bytes): nothing was appended; the caller may retry later.
var ErrDropped = errors.New("consensus: proposal dropped (uncommitted limit)")

// ErrReadTimeout is reported for a ReadIndex request that got no answer in time (raft drops them
// silently, for instance when leadership is lost while the heartbeat round is under way).
var ErrReadTimeout = errors.New("consensus: read index timed out")

// ErrStopped is returned after the core failed (a storage error, or a LostDataError): it is sticky.
var ErrStopped = errors.New("consensus: stopped (a storage error, or lost data)")

// NotLeaderError carries the leader hint: the raft id of the member believed to be the leader (0
// when unknown) and the term the hint comes from.
type NotLeaderError struct {
	Leader uint64
	Term   uint64
}

func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return "consensus: not the leader (leader unknown)"
	}
	return fmt.Sprintf("consensus: not the leader (leader is raft id %d in term %d)", e.Leader, e.Term)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Config configures the core. Tick length is the caller's: the core counts ticks.
type Config struct {
	ID             uint64 // raft id, ≥ 1
	ElectionTicks  int    // election timeout, randomised by raft in [ElectionTicks, 2×ElectionTicks)
	HeartbeatTicks int
	// MaxSizePerMsg bounds the entries in one append message; MaxInflightMsgs the append
	// messages in flight to one follower and MaxInflightBytes their entries' bytes (0: no bound
	// but the count); MaxUncommittedBytes the leader's uncommitted tail (proposals beyond it are
	// dropped with ErrDropped).
	MaxSizePerMsg       uint64
	MaxInflightMsgs     int
	MaxInflightBytes    uint64
	MaxUncommittedBytes uint64
	// MaxCommittedBytesPerReady bounds the committed entries one Ready hands out to apply (raft's
	// MaxCommittedSizePerReady; 0: MaxSizePerMsg, raft's default).
	MaxCommittedBytesPerReady uint64
	// ReadTimeoutTicks: a ReadIndex request unanswered this long fails with ErrReadTimeout.
	ReadTimeoutTicks int
	Logger           *slog.Logger
}

// Handler receives the core's output during Process, in the order of the Ready contract:
// messages only after the state they depend on is persisted (a leader's appends and heartbeats
// go out before its own write: see Process), then snapshot, then entries.
type Handler interface {
	// Send transmits messages. The messages may be retained by the handler (the core clones
	// nothing it does not own: entries in them are immutable).
	Send(msgs []*pb.Message)
	// InstallSnapshot replaces the state machine with a snapshot received from the leader; the
	// snapshot is already durable.
	InstallSnapshot(snap *pb.Snapshot) error
	// ApplyEntry applies one committed entry. For a conf change the core has already applied it
	// to raft; cc is its decoded form (nil for other entries).
	ApplyEntry(e *pb.Entry, cc *pb.ConfChange) error
	// ReadReady reports that the reads registered under id may be served once the applied index
	// reaches index. ReadFailed reports that they cannot be served here.
	ReadReady(id uint64, index uint64)
	ReadFailed(id uint64, err error)
	// StateChanged reports a change of role, leader or term.
	StateChanged(st State)
}

// State is the part of raft's state a member shows: role, leader and term.
type State struct {
	Role   raft.StateType
	Leader uint64
	Term   uint64
}

// Core drives one raft.RawNode. It is not safe for concurrent use: one goroutine calls all of its
// methods (the member's loop, or the simulator).
type Core struct {
	cfg     Config
	rn      *raft.RawNode
	storage Storage
	log     *slog.Logger

	state     State
	confState *pb.ConfState
	applied   uint64
	// durable is the last index this core has synced (entries up to it are on disk as raft
	// gave them); 0 until the first sync.
	durable uint64
	err     error         // sticky storage error
	pending *pendingReady // the Ready waiting for its sync, if any
	snap    *pb.Snapshot  // the snapshot being written, if any

	val validator // what Step's checks keep (validate.go)

	readSeq uint64
	// reads maps a ReadIndex request id to the tick it was issued at, for the timeout.
	// Invariant: every id in reads was handed to raft and has not been reported yet.
	reads map[uint64]int
	ticks int
}

// New starts a core on storage. If the storage is empty, the cluster is bootstrapped with peers
// (every founding member bootstraps the same peers, so their logs agree); otherwise peers are
// ignored and the state comes from storage. applied is the index the state machine holds (the
// snapshot it was started from).
func New(cfg Config, st Storage, peers []raft.Peer, applied uint64) (*Core, error) {
	if cfg.ID == 0 {
		return nil, errors.New("consensus: Config.ID must be ≥ 1 (raft id 0 means none)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadTimeoutTicks <= 0 {
		cfg.ReadTimeoutTicks = 2 * cfg.ElectionTicks
	}
	rc := &raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             cfg.HeartbeatTicks,
		Storage:                   st,
		Applied:                   applied,
		MaxSizePerMsg:             cfg.MaxSizePerMsg,
		MaxInflightMsgs:           cfg.MaxInflightMsgs,
		MaxInflightBytes:          cfg.MaxInflightBytes,
		MaxUncommittedEntriesSize: cfg.MaxUncommittedBytes,
		MaxCommittedSizePerReady:  cfg.MaxCommittedBytesPerReady,
		CheckQuorum:               true,
		PreVote:                   true,
		DisableProposalForwarding: !bugs.Active("follower-forwards"),
		ReadOnlyOption:            raft.ReadOnlySafe,
		StepDownOnRemoval:         true,
		Logger:                    &raftLogger{l: cfg.Logger.With("component", "raft")},
	}
	rn, err := raft.NewRawNode(rc)
	if err != nil {
		return nil, fmt.Errorf("consensus: %w", err)
	}
	last, err := st.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("consensus: storage: %w", err)
	}
	snap, err := st.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("consensus: storage: %w", err)
	}
	bootstrapped := last == 0 && raft.IsEmptySnap(snap)
	if bootstrapped {
		if len(peers) == 0 {
			return nil, errors.New("consensus: empty storage and no peers to bootstrap")
		}
		if err := rn.Bootstrap(peers); err != nil {
			return nil, fmt.Errorf("consensus: bootstrap: %w", err)
		}
	}
	_, cs, err := st.InitialState()
	if err != nil {
		return nil, fmt.Errorf("consensus: storage: %w", err)
	}
	c := &Core{
		cfg:       cfg,
		rn:        rn,
		log:       cfg.Logger,
		confState: proto.Clone(cs).(*pb.ConfState),
		applied:   applied,
		reads:     make(map[uint64]int),
	}
	c.storage = watchedStorage{Storage: st, v: &c.val}
	c.val.matched()
	c.val.bootstrapped = bootstrapped
	bs := rn.BasicStatus()
	c.state = State{Role: bs.RaftState, Leader: bs.Lead, Term: bs.GetTerm()}
	return c, nil
}

// Err returns the sticky error that stopped the core, if any.
func (c *Core) Err() error { return c.err }

// State returns role, leader and term as of the last Process.
func (c *Core) State() State { return c.state }

// Status returns raft's basic status (commit index and the like).
func (c *Core) Status() raft.BasicStatus { return c.rn.BasicStatus() }

// Applied returns the index of the last entry handed to the handler.
func (c *Core) Applied() uint64 { return c.applied }

// ConfState returns the membership as of the applied index.
func (c *Core) ConfState() *pb.ConfState { return c.confState }

// Tick advances raft's logical clock by one tick and times out old reads.
func (c *Core) Tick() {
	c.ticks++
	c.rn.Tick()
}

// Step feeds a message received from a peer. A message raft would panic on, or that no honest
// member sends, is refused with an error wrapping ErrInvalidMessage and never reaches raft (the
// checks are listed in validate.go); the caller should drop the connection it came from. Heartbeats
// refused persistently because this member's log lacks what the leader says it acknowledged stop
// the core with a *LostDataError (ErrLostData), returned here and by every later Process.
func (c *Core) Step(m *pb.Message) error {
	if err := c.check(m); err != nil {
		return err
	}
	err := c.rn.Step(m)
	if errors.Is(err, raft.ErrStepPeerNotFound) {
		// A response from a member that is not (or no longer) in the configuration.
		return nil
	}
	return err
}

// Propose appends data as one entry if this member is the leader. It fails fast: a *NotLeaderError
// when not leader (or raft dropped it during a leadership transfer), ErrDropped when over the
// uncommitted limit. On success the entry is in the leader's unstable log; whether it commits is
// learnt from the applied log (sessions make a retry safe).
func (c *Core) Propose(data []byte) error {
	if c.err != nil {
		return ErrStopped
	}
	if c.rn.BasicStatus().RaftState != raft.StateLeader && !bugs.Active("follower-forwards") {
		return c.notLeader()
	}
	if err := c.rn.Propose(data); err != nil {
		if errors.Is(err, raft.ErrProposalDropped) {
			if c.rn.BasicStatus().LeadTransferee != 0 {
				return c.notLeader()
			}
			return ErrDropped
		}
		return err
	}
	return nil
}

func (c *Core) notLeader() error {
	bs := c.rn.BasicStatus()
	lead := bs.Lead
	if lead == c.cfg.ID {
		lead = bs.LeadTransferee
	}
	return &NotLeaderError{Leader: lead, Term: bs.GetTerm()}
}

// ReadIndex starts a linearizable read and returns its id; the handler's ReadReady or ReadFailed
// reports the outcome. Each call uses a fresh request context (etcd#20418).
func (c *Core) ReadIndex() (uint64, error) {
	if c.err != nil {
		return 0, ErrStopped
	}
	bs := c.rn.BasicStatus()
	if bs.RaftState != raft.StateLeader {
		return 0, c.notLeader()
	}
	c.readSeq++
	id := c.readSeq
	var ctx [8]byte
	binary.LittleEndian.PutUint64(ctx[:], id)
	c.reads[id] = c.ticks
	c.rn.ReadIndex(ctx[:])
	return id, nil
}

// TransferLeadership asks raft to hand leadership to the member with raft id to.
func (c *Core) TransferLeadership(to uint64) { c.rn.TransferLeader(to) }

// BestFollower returns the voter other than this member with the highest match index (the
// lowest id on a tie), the natural target of a leadership transfer.
func (c *Core) BestFollower() (uint64, bool) {
	var best, match uint64
	for id, pr := range c.rn.Status().Progress {
		if id == c.cfg.ID || pr.IsLearner {
			continue
		}
		if best == 0 || pr.Match > match || (pr.Match == match && id < best) {
			best, match = id, pr.Match
		}
	}
	return best, best != 0
}

// ReportUnreachable tells raft that a message to id could not be delivered.
func (c *Core) ReportUnreachable(id uint64) { c.rn.ReportUnreachable(id) }

// ReportSnapshot tells raft whether a snapshot sent to id arrived.
func (c *Core) ReportSnapshot(id uint64, ok bool) {
	st := raft.SnapshotFinish
	if !ok {
		st = raft.SnapshotFailure
	}
	c.rn.ReportSnapshot(id, st)
}

// CreateSnapshot starts recording the state machine's snapshot at index (≤ applied) with the
// membership as of the applied index. It returns the job that writes the snapshot (nil when
// there is nothing to write): the driver runs it beside everything else (a goroutine, or later in
// simulated time) and reports with SnapshotDone, which records it and lets the storage release
// the log behind it. One snapshot at a time: while one is being written, CreateSnapshot refuses.
func (c *Core) CreateSnapshot(index uint64, data []byte) (func() error, error) {
	if c.err != nil {
		return nil, ErrStopped
	}
	if c.snap != nil {
		return nil, errors.New("consensus: a snapshot is already being written")
	}
	if index > c.applied {
		return nil, fmt.Errorf("consensus: snapshot index %d beyond applied %d", index, c.applied)
	}
	snap, write, err := c.storage.PrepareSnapshot(index, c.confState, data)
	if err != nil {
		c.fail(err)
		return nil, err
	}
	if snap == nil {
		return nil, nil
	}
	c.snap = snap
	return write, nil
}

// SnapshotDone reports the result of the job CreateSnapshot returned. A failed write stops the
// core like any storage error (the disk refused a durable write: stop loudly, lose nothing).
func (c *Core) SnapshotDone(err error) error {
	snap := c.snap
	if snap == nil {
		panic("consensus: SnapshotDone without a snapshot being written")
	}
	c.snap = nil
	if c.err != nil {
		return c.err
	}
	if err == nil {
		err = c.storage.AddSnapshot(snap)
	}
	if err != nil {
		c.fail(err)
		return c.err
	}
	return nil
}

func (c *Core) fail(err error) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: %w", ErrStopped, err)
		c.log.Error("storage failed; this member stops acknowledging", "err", err)
	}
}

// Process runs Ready cycles until raft has nothing more to do or a cycle waits for its sync,
// following the Ready contract:
//  1. persist the snapshot, then entries, then the hard state, and sync when raft.MustSync
//     (a leader sends its appends and heartbeats just before: splitLeaderEarly);
//  2. send the other messages (only now: they may promise what was just persisted);
//  3. install the snapshot, then apply committed entries (ApplyConfChange for conf changes);
//  4. report read states and expired reads; 5. Advance.
//
// The sync of step 1 is not run by Process: it leaves it pending and returns at once. The driver
// takes it (TakeSync), starts it where it likes, calls Process again — which now applies what was
// durable before (applyWhileSyncing): the disk never waits for the apply — and reports the
// sync's end with SyncDone. Until then the driver goes on calling Step, Tick, Propose and
// ReadIndex, and Process after each input: raft takes them in between Ready and Advance (as its
// own node.go does), everything they produce waits for the next Ready, and a leader applies at
// once the entries they commit that were already durable here (applyDurable). Once the sync is
// reported, the next Process finishes the cycle (steps 2–5) and goes on.
//
// A storage error stops the core for good (sticky); a handler error is returned as is.
func (c *Core) Process(h Handler) error {
	if c.err != nil {
		return c.err
	}
	c.expireReads(h)
	for {
		if p := c.pending; p != nil {
			if !p.done {
				return c.applyWhileSyncing(h, p)
			}
			c.pending = nil
			if p.err != nil {
				c.fail(p.err)
				return c.err
			}
			if err := c.storage.Reclaim(); err != nil {
				c.fail(err)
				return c.err
			}
			c.noteDurable(&p.rd)
			if err := c.finish(h, &p.rd, p.msgs, p.committed[p.next:]); err != nil {
				return err
			}
			continue
		}
		if !c.rn.HasReady() {
			return nil
		}
		rd := c.rn.Ready()
		msgs := rd.Messages
		role := c.state.Role
		if rd.SoftState != nil {
			role = rd.SoftState.RaftState
		}
		if role == raft.StateLeader && len(msgs) > 0 {
			msgs = c.dropCommitAnnouncements(msgs)
			var early []*pb.Message
			early, msgs = splitLeaderEarly(msgs)
			if len(early) > 0 {
				c.send(h, early)
			}
		}
		if bugs.Active("send-before-persist") && len(msgs) > 0 {
			c.send(h, msgs) // planted bug: every role sends before its write is durable
			msgs = nil
		}
		syncing, err := c.write(&rd)
		if err != nil {
			c.fail(err)
			return c.err
		}
		committed := rd.CommittedEntries
		if !syncing {
			if err := c.finish(h, &rd, msgs, committed); err != nil {
				return err
			}
			continue
		}
		// While the sync is pending, what this member synced before this Ready may be applied
		// (a rewritten suffix is not synced): applyWhileSyncing, once the sync runs. Nothing is
		// applied before the driver has taken the sync, so that the disk starts at once.
		bound := c.durable
		if len(rd.Entries) > 0 {
			bound = min(bound, rd.Entries[0].GetIndex()-1)
		}
		p := &pendingReady{rd: rd, msgs: msgs, committed: committed, bound: bound}
		p.job = c.storage.Sync
		if role == raft.StateLeader {
			p.leaderTerm = c.rn.BasicStatus().GetTerm()
		}
		c.pending = p
		return nil
	}
}

// applyWhileSyncing runs while the pending Ready's sync runs (not before the driver took it):
// it applies the Ready's committed entries up to the bound — what this member had synced before
// it; on a leader, all of them: an entry commits only after a follower's acknowledgement was
// stepped, after the Ready that sent it, whose sync had finished — and then, on a leader, what
// commits meanwhile (applyDurable). Only h.ApplyEntry runs: a conf change waits for the sync,
// since applying one may read the log. finish skips what was applied here.
func (c *Core) applyWhileSyncing(h Handler, p *pendingReady) error {
	if p.job != nil || bugs.Active("ack-before-commit") {
		return nil
	}
	for p.next < len(p.committed) {
		e := p.committed[p.next]
		if e.GetIndex() > p.bound || e.GetType() != pb.EntryNormal {
			break
		}
		if e.GetIndex() > c.applied {
			if err := c.apply(h, e); err != nil {
				return err
			}
		}
		p.next++
	}
	return c.applyDurable(h)
}

// pendingReady is a Ready whose write waits for its sync.
type pendingReady struct {
	rd        raft.Ready
	msgs      []*pb.Message // to send once the sync finished
	committed []*pb.Entry   // to apply: committed[:next] while the sync runs, the rest after it
	next      int
	// bound is the last index this member had synced before this Ready (and that the Ready
	// does not rewrite); leaderTerm the term in which this member led when the Ready was taken
	// (0 if it did not).
	bound, leaderTerm uint64
	job               func() error // the sync, until the driver takes it
	done              bool
	err               error
}

// TakeSync returns the sync the pending Ready waits for, once: the driver starts it (on another
// goroutine, or later in simulated time), calls Process (which applies meanwhile what was durable
// before), and reports the result with SyncDone. It returns nil when no sync is waiting to be
// taken.
//
// While the sync runs the driver may call Step, Tick, Propose, ReadIndex, CreateSnapshot,
// SnapshotDone and Process, which read the storage (Term, Entries, FirstIndex, LastIndex, Snapshot) and record
// snapshots but never append: Storage.Sync is written to allow that.
func (c *Core) TakeSync() func() error {
	if c.pending == nil || c.pending.job == nil {
		return nil
	}
	job := c.pending.job
	c.pending.job = nil
	return job
}

// SyncPending reports whether a Ready waits for its sync (taken or not).
func (c *Core) SyncPending() bool { return c.pending != nil && !c.pending.done }

// SyncDone reports the result of the sync TakeSync returned. The next Process finishes the Ready.
func (c *Core) SyncDone(err error) {
	if c.pending == nil || c.pending.job != nil || c.pending.done {
		panic("consensus: SyncDone without a sync taken")
	}
	c.pending.done, c.pending.err = true, err
}

// applyDurable runs while a sync is pending: on a leader, it applies the entries that commit
// meanwhile (a follower's acknowledgement stepped during the sync) if this member had synced them
// before the pending Ready. Raft will hand them out again in a later Ready; they are skipped then.
//
// Why this is safe: the entries are committed (raft's commit index) and durable here; the leader
// has led since the pending Ready was taken, in the same term, so its log only grew and the
// storage holds, up to the bound, exactly raft's entries. It stops at a conf change, which waits
// for the Ready that carries it.
func (c *Core) applyDurable(h Handler) error {
	p := c.pending
	if p.leaderTerm == 0 || bugs.Active("ack-before-commit") {
		return nil
	}
	bs := c.rn.BasicStatus()
	if bs.RaftState != raft.StateLeader || bs.GetTerm() != p.leaderTerm {
		return nil
	}
	hi := min(bs.GetCommit(), p.bound)
	if hi <= c.applied {
		return nil
	}
	ents, err := c.storage.Entries(c.applied+1, hi+1, math.MaxUint64)
	switch {
	case errors.Is(err, raft.ErrCompacted) || errors.Is(err, raft.ErrUnavailable):
		return nil // not expected; the Ready that carries them applies them
	case err != nil:
		c.fail(err)
		return c.err
	}
	for _, e := range ents {
		if e.GetType() != pb.EntryNormal {
			break
		}
		if err := c.apply(h, e); err != nil {
			return err
		}
	}
	return nil
}

// send hands msgs to the handler, noting what Step's checks need to know of them.
func (c *Core) send(h Handler, msgs []*pb.Message) {
	c.val.noteSent(msgs)
	h.Send(msgs)
}

// finish completes a Ready once what it wrote is durable: steps 2–5 of Process.
func (c *Core) finish(h Handler, rd *raft.Ready, msgs []*pb.Message, committed []*pb.Entry) error {
	if rd.SoftState != nil || rd.HardState != nil {
		c.noteState(h, rd.SoftState, rd.HardState)
	}
	if len(msgs) > 0 {
		c.send(h, msgs)
	}
	if bugs.Active("ack-before-commit") && c.state.Role == raft.StateLeader {
		// Planted bug: treat what this member persisted as committed.
		for _, e := range rd.Entries {
			if e.GetIndex() != c.applied+1 || e.GetType() != pb.EntryNormal {
				break
			}
			if err := c.apply(h, e); err != nil {
				return err
			}
		}
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := h.InstallSnapshot(rd.Snapshot); err != nil {
			return err
		}
		c.confState = proto.Clone(rd.Snapshot.GetMetadata().GetConfState()).(*pb.ConfState)
		c.applied = rd.Snapshot.GetMetadata().GetIndex()
	}
	for _, e := range committed {
		if e.GetIndex() <= c.applied {
			continue // applied while a sync was pending (or under the planted ack-before-commit bug)
		}
		if err := c.apply(h, e); err != nil {
			return err
		}
	}
	for _, rs := range rd.ReadStates {
		if len(rs.RequestCtx) != 8 {
			continue
		}
		id := binary.LittleEndian.Uint64(rs.RequestCtx)
		if _, ok := c.reads[id]; ok {
			delete(c.reads, id)
			h.ReadReady(id, rs.Index)
		}
	}
	c.rn.Advance(*rd)
	return nil
}

// dropCommitAnnouncements removes from a leader's messages the appends without entries to a
// follower that has acknowledged every entry they follow (StateReplicate, Match at or past the
// append's index): such an append only announces a new commit index. Raft sends one to every
// follower each time the commit index moves, and under light load that doubled the messages of
// every command — the announcement, its acknowledgement, and on the follower a Ready of its own
// (a hard state record, an apply, an answer). The follower learns the commit index instead from
// the next append, which carries it, or the next heartbeat (raft sends min(Match, commit) with
// each one), so under load it applies one round later and at rest within a heartbeat interval.
//
// Why this is safe: dropping any message is what a lossy network does, and raft copes; here raft
// has recorded the commit as sent (sentCommit) and the heartbeat carries it again. Nothing else
// waits for the follower's commit index: commands are answered by the leader, and a leader
// elected later commits its own entry before it applies. Appends a follower may need — probes
// (StateProbe), and the empty appends a throttled StateReplicate sends to recover lost
// messages, whose index is past the follower's Match — are kept.
func (c *Core) dropCommitAnnouncements(msgs []*pb.Message) []*pb.Message {
	found := false
	for _, m := range msgs {
		if m.GetType() == pb.MsgApp && len(m.GetEntries()) == 0 {
			found = true
			break
		}
	}
	if !found {
		return msgs
	}
	var caught [maxTrackedPeers]uint64 // followers in StateReplicate, by raft id: their Match+1
	c.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id < maxTrackedPeers && pr.State == tracker.StateReplicate {
			caught[id] = pr.Match + 1
		}
	})
	kept := msgs[:0] // the Ready's slice is ours until Advance
	for _, m := range msgs {
		if to := m.GetTo(); m.GetType() == pb.MsgApp && len(m.GetEntries()) == 0 && (bugs.Active("drop-empty-appends") ||
			to < maxTrackedPeers && caught[to] > 0 && caught[to]-1 >= m.GetIndex()) {
			continue // (the planted bug drops probes and recovery appends too)
		}
		kept = append(kept, m)
	}
	return kept
}

// maxTrackedPeers bounds the raft ids dropCommitAnnouncements looks at without allocating;
// messages to higher ids are always sent.
const maxTrackedPeers = 64

// splitLeaderEarly separates a leader's appends and heartbeats, which may go out before the
// leader's own write of the same entries (Raft thesis §10.2.1: the leader writes its log in
// parallel with replicating it), from everything else, which waits for the write.
//
// Why this is safe: a message or an applied entry leaves this member only through a Ready, and a
// Ready is taken only once the previous Ready's sync finished. When Ready k is taken, the commit
// index can only cover entries some follower acknowledged, which this member sent in an earlier
// Ready and wrote before that Ready's sync: so every commit index the leader sends, and every
// entry it applies and acknowledges, is durable on it and on the followers that acknowledged it.
// (Acknowledgements stepped while Ready k-1's sync is pending may commit k-1's entries; they are
// applied only after that sync — applyDurable's bound. In a single-member cluster the leader
// commits on its own, but there is nobody to send to, and entries are applied only after the
// write's sync.)
func splitLeaderEarly(msgs []*pb.Message) (early, late []*pb.Message) {
	n := 0
	for _, m := range msgs {
		if t := m.GetType(); t == pb.MsgApp || t == pb.MsgHeartbeat {
			n++
		}
	}
	if n == len(msgs) {
		return msgs, nil
	}
	if n == 0 {
		return nil, msgs
	}
	early = make([]*pb.Message, 0, n)
	late = make([]*pb.Message, 0, len(msgs)-n)
	for _, m := range msgs {
		if t := m.GetType(); t == pb.MsgApp || t == pb.MsgHeartbeat {
			early = append(early, m)
		} else {
			late = append(late, m)
		}
	}
	return early, late
}

// write persists the Ready's snapshot, entries and hard state. A snapshot is synced at once (and
// the log compacted); otherwise write reports whether raft.MustSync: the sync is left pending.
func (c *Core) write(rd *raft.Ready) (syncing bool, err error) {
	snap := !raft.IsEmptySnap(rd.Snapshot)
	if snap {
		if err := c.storage.SaveSnapshot(rd.Snapshot); err != nil {
			return false, err
		}
	}
	if len(rd.Entries) > 0 || !raft.IsEmptyHardState(rd.HardState) {
		if err := c.storage.Append(rd.HardState, rd.Entries); err != nil {
			return false, err
		}
	}
	if snap {
		if err := c.storage.Sync(); err != nil {
			return false, err
		}
		if err := c.storage.Reclaim(); err != nil {
			return false, err
		}
		c.noteDurable(rd)
		return false, nil
	}
	if bugs.Active("vote-not-synced") && len(rd.Entries) == 0 {
		return false, nil // planted bug: a term or vote alone is written but not synced
	}
	return rd.MustSync, nil
}

// noteDurable records what the Ready's sync made durable.
func (c *Core) noteDurable(rd *raft.Ready) {
	if !raft.IsEmptySnap(rd.Snapshot) {
		c.durable = rd.Snapshot.GetMetadata().GetIndex()
	}
	if n := len(rd.Entries); n > 0 {
		c.durable = rd.Entries[n-1].GetIndex()
	}
}

func (c *Core) apply(h Handler, e *pb.Entry) error {
	var cc *pb.ConfChange
	switch e.GetType() {
	case pb.EntryConfChange:
		cc = new(pb.ConfChange)
		if err := proto.Unmarshal(e.GetData(), cc); err != nil {
			return fmt.Errorf("consensus: conf change at index %d: %w", e.GetIndex(), err)
		}
		c.confState = c.rn.ApplyConfChange(cc)
	case pb.EntryConfChangeV2:
		return fmt.Errorf("consensus: joint conf changes are not supported (index %d)", e.GetIndex())
	}
	if err := h.ApplyEntry(e, cc); err != nil {
		return err
	}
	c.applied = e.GetIndex()
	return nil
}

func (c *Core) noteState(h Handler, ss *raft.SoftState, hs *pb.HardState) {
	next := c.state
	if ss != nil {
		next.Role, next.Leader = ss.RaftState, ss.Lead
	}
	if hs != nil && hs.GetTerm() != 0 {
		next.Term = hs.GetTerm()
	}
	if next == c.state {
		return
	}
	wasLeader := c.state.Role == raft.StateLeader
	c.state = next
	if wasLeader && next.Role != raft.StateLeader {
		c.failReads(h, c.notLeader())
	}
	h.StateChanged(next)
}

func (c *Core) expireReads(h Handler) {
	if len(c.reads) == 0 {
		return
	}
	var expired []uint64
	for id, at := range c.reads {
		if c.ticks-at >= c.cfg.ReadTimeoutTicks {
			expired = append(expired, id)
		}
	}
	slices.Sort(expired) // map order must not reach the output
	for _, id := range expired {
		delete(c.reads, id)
		h.ReadFailed(id, ErrReadTimeout)
	}
}

func (c *Core) failReads(h Handler, err error) {
	ids := make([]uint64, 0, len(c.reads))
	for id := range c.reads {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		delete(c.reads, id)
		h.ReadFailed(id, err)
	}
}

// raftLogger routes raft's logging to slog: libraries never print.
type raftLogger struct{ l *slog.Logger }

func (r *raftLogger) Debug(v ...any)                 { r.l.Debug(fmt.Sprint(v...)) }
func (r *raftLogger) Debugf(format string, v ...any) { r.l.Debug(fmt.Sprintf(format, v...)) }
func (r *raftLogger) Info(v ...any)                  { r.l.Debug(fmt.Sprint(v...)) }
func (r *raftLogger) Infof(format string, v ...any)  { r.l.Debug(fmt.Sprintf(format, v...)) }
func (r *raftLogger) Warning(v ...any)               { r.l.Warn(fmt.Sprint(v...)) }
func (r *raftLogger) Warningf(format string, v ...any) {
	r.l.Warn(fmt.Sprintf(format, v...))
}
func (r *raftLogger) Error(v ...any)                 { r.l.Error(fmt.Sprint(v...)) }
func (r *raftLogger) Errorf(format string, v ...any) { r.l.Error(fmt.Sprintf(format, v...)) }
func (r *raftLogger) Fatal(v ...any)                 { r.Panic(v...) }
func (r *raftLogger) Fatalf(format string, v ...any) { r.Panicf(format, v...) }
func (r *raftLogger) Panic(v ...any) {
	s := fmt.Sprint(v...)
	r.l.Error(s)
	panic(s)
}
func (r *raftLogger) Panicf(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	r.l.Error(s)
	panic(s)
}
