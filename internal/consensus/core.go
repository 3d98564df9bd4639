package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
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
	// Unverified starts the member unverified although its log is not empty, and VoteFloor
	// drops vote requests up to that term: what its data directory recorded of an earlier start
	// (verify.go). A member whose log is empty at New starts unverified anyway.
	Unverified bool
	VoteFloor  uint64
	// Joined: this member was added to a running cluster under a raft id of its own
	// (confchange.go): on empty storage it bootstraps nothing — the leader sends it a snapshot and
	// the log. Joining: it was added just now, at this start: its raft id never voted, so it is
	// verified from the start (a joined member restarted on an empty log is unverified like any).
	Joined, Joining bool
	Logger          *slog.Logger
	// MemberOf, if set, returns the member id of a raft id, and whether the member knows it, for
	// the log: raft's own lines and the core's name members as people see them, and a raft id it
	// does not know as "raft id N" (raftlog.go). Nil: the founding mapping (raft id - 1). Called
	// on the core's goroutine only.
	MemberOf func(raftID uint64) (int, bool)
}

// Handler receives the core's output during Process, in the order of the Ready contract:
// messages only after the state they depend on is persisted (a leader's appends and heartbeats
// go out before its own write: deviations.go, 1), then snapshot, then entries.
type Handler interface {
	// Send transmits messages. The messages may be retained by the handler (the core clones
	// nothing it does not own: entries in them are immutable).
	Send(msgs []*pb.Message)
	// InstallSnapshot replaces the state machine with a snapshot received from the leader; the
	// snapshot is already durable.
	InstallSnapshot(snap *pb.Snapshot) error
	// ApplyEntry applies one committed entry: in index order, each once, some while a sync runs
	// (the apply rule, doc.go). For a conf change the core has already applied it to raft; cc is
	// its decoded form (a founding ConfChange as its V2 equivalent), nil for other entries and
	// for a change applied as no change (confchange.go).
	ApplyEntry(e *pb.Entry, cc *pb.ConfChangeV2) error
	// AdmitConfChange checks a committed membership change at index before raft applies it; an
	// error makes it no change, on every member alike (so it may only depend on the log).
	AdmitConfChange(index uint64, cc *pb.ConfChangeV2) error
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
	applied   uint64 // the last index handed to the handler (the apply rule: apply.go)
	// durable is the last index this core has synced (entries up to it are on disk as raft
	// gave them); 0 until the first sync.
	durable uint64
	err     error         // sticky storage error
	pending *pendingReady // the Ready waiting for its sync, if any
	snap    *pb.Snapshot  // the snapshot being written, if any
	// added is the index of the newest snapshot recorded with AddSnapshot: the storage may
	// compact the log up to it at Reclaim, which waits until raft's applied index reaches it
	// (reclaim).
	added uint64

	val  validator    // what Step's checks keep (validate.go)
	conf confTrack    // whether a membership change may be proposed (confchange.go)
	ver  verification // whether this member may vote yet (verify.go)

	readSeq uint64
	// reads maps a ReadIndex request id to the tick it was issued at, for the timeout.
	// Invariant: every id in reads was handed to raft and has not been reported yet.
	reads map[uint64]int
	ticks int
	// own follows this member's proposals until their fate is known (proposals.go).
	own ownProposals
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
		DisableProposalForwarding: !bugs.Active(bugs.FollowerForwards),
		ReadOnlyOption:            raft.ReadOnlySafe,
		StepDownOnRemoval:         true,
		Logger:                    &raftLogger{l: cfg.Logger.With("component", "raft"), name: cfg.MemberOf},
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
	bootstrapped := last == 0 && raft.IsEmptySnap(snap) && !cfg.Joined && !cfg.Joining
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
	c.ver.unverified, c.ver.floor = unverifiedAtStart(cfg, bootstrapped), cfg.VoteFloor
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

// Tick advances raft's logical clock by one tick and times out old reads. An unverified member's
// election clock stands still: it never campaigns (verify.go).
func (c *Core) Tick() {
	c.ticks++
	if c.ver.unverified {
		if c.checkVerified(); c.ver.unverified {
			return
		}
	}
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
	if c.dropVote(m) || c.dropForgetful(m) {
		return nil // an unverified member does not vote; a forgetful member's rejection (verify.go)
	}
	if m.GetType() == pb.MsgSnap && c.pending != nil {
		// Dropped, as if lost: raft would restore the snapshot's configuration at once, while
		// the committed entries of the Ready waiting for its sync — conf changes among them — are
		// still to be applied, on top of the wrong configuration (raft panics, or its tracker and
		// the applied membership part). The leader sends it again after its report.
		return nil
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
	err := c.propose(data)
	if err != nil {
		c.own.failed.Add(1)
	}
	return err
}

func (c *Core) propose(data []byte) error {
	if c.err != nil {
		return ErrStopped
	}
	bs := c.rn.BasicStatus()
	if bs.RaftState != raft.StateLeader && !bugs.Active(bugs.FollowerForwards) {
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
	// Propose appended the entry (it returned no error), and raft changes neither its state nor
	// its term in Propose: the status read before it holds.
	if bs.RaftState == raft.StateLeader {
		c.own.proposed(bs.GetTerm())
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

// ProposalsPaused reports whether raft would refuse a proposal now although this member led as of
// the last state it reported: it hands leadership over (until the target campaigns, or raft
// gives the transfer up an election timeout on), or it has just stepped down — on a vote request
// of a later term — which the handler hears of (StateChanged) once the new term is synced.
func (c *Core) ProposalsPaused() bool {
	if c.state.Role != raft.StateLeader {
		return false
	}
	bs := c.rn.BasicStatus()
	return bs.RaftState != raft.StateLeader || bs.LeadTransferee != 0
}

// Voted returns the raft id this member voted for in its current term (0: none).
func (c *Core) Voted() uint64 { return c.rn.BasicStatus().GetVote() }

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

// ActiveFollowerBut is BestFollower among the voters other than but that this leader heard from
// in the current election timeout (raft's RecentActive): false when there is none. (Either may
// name a member that is unverified, which drops the transfer: the leader takes commands again an
// election timeout later. What a peer said of that in its handshake is as old as the connection,
// and a member is unverified for seconds after it starts on an empty log.)
func (c *Core) ActiveFollowerBut(but uint64) (uint64, bool) {
	var best, match uint64
	for id, pr := range c.rn.Status().Progress {
		if id == c.cfg.ID || id == but || pr.IsLearner || !pr.RecentActive {
			continue
		}
		if best == 0 || pr.Match > match || (pr.Match == match && id < best) {
			best, match = id, pr.Match
		}
	}
	return best, best != 0
}

// Match returns what this leader believes member id holds (raft's progress), and whether it
// tracks id (it leads and id is in the configuration).
func (c *Core) Match(id uint64) (uint64, bool) {
	if c.rn.BasicStatus().RaftState != raft.StateLeader {
		return 0, false
	}
	pr, ok := c.rn.Status().Progress[id]
	return pr.Match, ok
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

// CreateSnapshot starts recording the state machine's snapshot at index (≤ applied) with cs, the
// membership as of index (ConfState when the entry at index was applied: entries applied since
// may have changed it, and a snapshot whose membership is not its index's makes the members that
// install it apply the changes after it differently). It returns the job that writes the snapshot (nil when
// there is nothing to write): the driver runs it beside everything else (a goroutine, or later in
// simulated time) and reports with SnapshotDone, which records it and lets the storage release
// the log behind it. One snapshot at a time: while one is being written, CreateSnapshot refuses.
func (c *Core) CreateSnapshot(index uint64, cs *pb.ConfState, data []byte) (func() error, error) {
	if c.err != nil {
		return nil, ErrStopped
	}
	if c.snap != nil {
		return nil, errors.New("consensus: a snapshot is already being written")
	}
	if index > c.applied {
		return nil, fmt.Errorf("consensus: snapshot index %d beyond applied %d", index, c.applied)
	}
	snap, write, err := c.storage.PrepareSnapshot(index, cs, data)
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
	c.added = max(c.added, snap.GetMetadata().GetIndex())
	return nil
}

// reclaim lets the storage delete the log that snapshots released, once raft's applied index
// has reached the newest snapshot recorded. Raft reads the committed entries it hands out from
// the storage, from its applied index on; a leader applies entries that commit during a sync
// before raft hands them out (deviations.go, 3), and may take a snapshot there: compacting
// behind it at once would delete entries raft has yet to hand out, and raft panics
// ("unexpected error when getting unapplied entries"). Until then the log is kept: the next
// Ready hands those entries out, and a later sync reclaims.
func (c *Core) reclaim() error {
	if c.rn.BasicStatus().Applied < c.added {
		return nil
	}
	return c.storage.Reclaim()
}

func (c *Core) fail(err error) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: %w", ErrStopped, err)
		c.log.Error("storage failed; this member stops acknowledging", "err", err)
	}
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
	if next.Term != c.state.Term || next.Role != c.state.Role {
		c.conf.newTerm(next.Term)
	}
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
