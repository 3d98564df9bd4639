package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/bugs"
	"github.com/tandem-cluster/tandem/internal/consensus"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// Member is one member of the cluster as configured: its id (what people see: 0, 1, 2…; the
// raft id is ID+1) and its endpoints.
type Member struct {
	ID             int
	ClientEndpoint string // advertised address clients use
	MemberEndpoint string // advertised address members use
}

// RaftID is the raft id of a member id.
func RaftID(memberID int) uint64 { return uint64(memberID) + 1 }

// MemberID is the member id of a raft id (-1 for raft id 0, "none").
func MemberID(raftID uint64) int { return int(raftID) - 1 }

// Config configures a replica.
type Config struct {
	MemberID int
	// Members are the founding members, used to bootstrap an empty data directory. After that
	// the membership comes from the replicated log and snapshots.
	Members []Member
	// TickInterval is the length of one raft tick; the driver calls Tick at this interval.
	TickInterval   time.Duration
	HeartbeatTicks int
	// ElectionTicks: raft randomises the election timeout in [ElectionTicks, 2×ElectionTicks).
	ElectionTicks int
	// SessionTimeout: the leader closes a session it has heard nothing from for this long.
	SessionTimeout time.Duration
	// MaxBatchBytes bounds the encoded size of one raft entry's batch of client items.
	MaxBatchBytes int
	// MaxPendingItems bounds client items waiting to be proposed; beyond it requests are refused
	// with StatusRejected.
	MaxPendingItems int
	// MaxPendingReads bounds the queries taken and not yet answered (waiting for their read
	// index, or for it to be applied); beyond it queries are refused with StatusRejected.
	MaxPendingReads int
	// MaxCommandBytes bounds a command's (and a query's) payload: a larger one is refused with
	// StatusRejected, on any member, and never proposed. It is announced to clients when they
	// attach (with the response window), so that they refuse larger commands themselves. At
	// most wire.MaxPayloadBytes; the driver's client port should take frames of
	// MaxCommandBytes+wire.CommandOverheadBytes.
	MaxCommandBytes int
	// MaxUncommittedBytes bounds the leader's uncommitted log tail (raft drops proposals beyond).
	MaxUncommittedBytes uint64
	Container           container.Config
	Logger              *slog.Logger
}

// DefaultConfig returns the defaults: heartbeat 100 ms, election timeout randomised in
// [700 ms, 1.4 s), session timeout 10 s.
//
// The architecture started from the seeds' heartbeat 200 ms and election timeout 1–2 s. With
// those, a follower notices a dead leader about 1.5 s after its last heartbeat (median), so the
// median failover measured 1.9 s, short of the performance goal (1.5 s). Etcd's own defaults are
// a 100 ms heartbeat and a 1 s election timeout; 700 ms keeps seven heartbeats of margin, and
// more than the longest fsync stall seen on the project's machines under load (~330 ms), against
// needless elections (PreVote and CheckQuorum guard the rest).
func DefaultConfig() Config {
	return Config{
		TickInterval:        100 * time.Millisecond,
		HeartbeatTicks:      1,
		ElectionTicks:       7,
		SessionTimeout:      10 * time.Second,
		MaxBatchBytes:       256 << 10,
		MaxPendingItems:     64 << 10,
		MaxPendingReads:     64 << 10,
		MaxCommandBytes:     wire.MaxPayloadBytes,
		MaxUncommittedBytes: 64 << 20,
		Container:           container.DefaultConfig(),
	}
}

// Validate checks a configuration; errors name the field and value.
func (c Config) Validate() error {
	var errs []error
	if c.TickInterval <= 0 {
		errs = append(errs, fmt.Errorf("TickInterval (%s) must be positive", c.TickInterval))
	}
	if c.HeartbeatTicks <= 0 {
		errs = append(errs, fmt.Errorf("HeartbeatTicks (%d) must be positive", c.HeartbeatTicks))
	}
	if c.ElectionTicks <= c.HeartbeatTicks {
		errs = append(errs, fmt.Errorf("ElectionTicks (%d) must be larger than HeartbeatTicks (%d)", c.ElectionTicks, c.HeartbeatTicks))
	}
	if c.SessionTimeout < time.Duration(2*c.ElectionTicks)*c.TickInterval {
		errs = append(errs, fmt.Errorf("SessionTimeout (%s) must be at least two election timeouts (%s)",
			c.SessionTimeout, time.Duration(2*c.ElectionTicks)*c.TickInterval))
	}
	if c.MaxBatchBytes < 1024 {
		errs = append(errs, fmt.Errorf("MaxBatchBytes (%d) must be at least 1024", c.MaxBatchBytes))
	}
	if c.MaxPendingItems <= 0 {
		errs = append(errs, fmt.Errorf("MaxPendingItems (%d) must be positive", c.MaxPendingItems))
	}
	if c.MaxPendingReads <= 0 {
		errs = append(errs, fmt.Errorf("MaxPendingReads (%d) must be positive", c.MaxPendingReads))
	}
	if c.MaxCommandBytes <= 0 || c.MaxCommandBytes > wire.MaxPayloadBytes {
		errs = append(errs, fmt.Errorf("MaxCommandBytes (%d) must be between 1 and %d", c.MaxCommandBytes, wire.MaxPayloadBytes))
	}
	if len(c.Members) == 0 {
		errs = append(errs, errors.New("Members is empty: a cluster needs at least one member"))
	}
	seen := map[int]bool{}
	found := false
	for _, m := range c.Members {
		if m.ID < 0 {
			errs = append(errs, fmt.Errorf("Members: member id %d is negative", m.ID))
		}
		if seen[m.ID] {
			errs = append(errs, fmt.Errorf("Members: member id %d appears twice", m.ID))
		}
		seen[m.ID] = true
		found = found || m.ID == c.MemberID
	}
	if len(c.Members) > 0 && !found {
		errs = append(errs, fmt.Errorf("MemberID (%d) is not one of Members", c.MemberID))
	}
	if err := c.Container.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

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
	// Event reports a state change for operators.
	Event(ev Event)
}

// EventKind classifies events.
type EventKind uint8

// Event kinds.
const (
	// EventState: role, leader or term changed.
	EventState EventKind = iota + 1
	// EventSnapshotTaken: this member wrote a snapshot at Index.
	EventSnapshotTaken
	// EventSnapshotInstalled: this member installed the leader's snapshot at Index.
	EventSnapshotInstalled
)

// Event is a state change of the member.
type Event struct {
	Kind   EventKind
	Role   service.Role
	Leader int // member id, -1 when unknown
	Term   uint64
	Index  uint64
}

// Status is a summary of the member's state.
type Status struct {
	MemberID      int
	Role          service.Role
	Term          uint64
	Leader        int // -1 when unknown
	Commit        uint64
	Applied       uint64
	SnapshotIndex uint64
	Members       []Member
}

type pendingRead struct {
	conn      ConnID
	requestID uint64
	payload   []byte
}

type readyRead struct {
	index uint64
	reads []pendingRead
}

// Replica is one member: consensus core, container and the leader's ingress, driven step by step.
// It is not safe for concurrent use.
type Replica struct {
	cfg   Config
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
	lastSnap    uint64
	snapDue     []byte // snapshot bytes taken at snapDueIx, handed to storage after Process
	snapDueIx   uint64
	// snapJob is the write of the snapshot at snapIx, until the driver takes it; snapWriting
	// holds from CreateSnapshot to SnapshotWritten (snapshot points meanwhile are skipped).
	snapJob     func() error
	snapIx      uint64
	snapWriting bool

	// attached maps an open (or opening) session to the connection its client uses here.
	attached map[wire.SessionID]ConnID
	// Leader-only state: reset on every change of leadership.
	opening      map[wire.SessionID]bool  // opens proposed, not yet applied
	closing      map[wire.SessionID]bool  // closes proposed, not yet applied
	lastActivity map[wire.SessionID]int64 // local clock; a new term restarts every idle clock
	pending      []wire.Item              // client items waiting to be proposed
	pendingBytes int
	lastTimeProp int // tick of the last time-only proposal

	newReads   []pendingRead
	readWaits  map[uint64][]pendingRead // read id → reads
	readyReads []readyRead
	// readsPending counts the queries taken and not yet answered (served or failed), wherever
	// they wait: what MaxPendingReads bounds. (readWaits and readyReads hold rounds of them.)
	readsPending int
}

// Flow control of the leader's appends to each follower (raft's Config: MaxSizePerMsg,
// MaxInflightMsgs, MaxInflightBytes).
//
// Why these: in normal replication a follower has a round trip's worth of appends in flight —
// tens to hundreds of KiB even at 100 MB/s of commands — so neither bound slows it. A follower
// catching up is different: raft reads up to raftMsgBytesMax of old log per append and sends as
// many as the window allows; bounded by the count alone (256), that was 256 MiB per follower,
// held by raft's messages and again by their encoding in the transport's queue — the leader's
// RSS grew by 360–430 MiB catching up a follower 100 MB behind. With the byte bound (and the
// transport dropping what it queued for a peer it could not reach) it grows by 20–30 MiB, and
// throughput is unchanged (docs/PERFORMANCE.md, "Memory during catch-up").
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
// size) 4 KiB commands at ~25 000/s outran the count by far: it reached the 64 MiB limit within
// seconds, raft dropped proposals, and clients waited out backoffs ("unavailable"). 8 MiB a
// Ready keeps up with 100 MB/s of commands at 12 Readies a second, and bounds what a member
// replaying its log holds at once.
const raftCommittedBytesPerReadyMax = 8 << 20

// New creates a replica on storage. The service is started from the storage's newest snapshot.
func New(cfg Config, svc service.Service, st consensus.Storage, clock Clock, out Outbox) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Replica{
		cfg:          cfg,
		log:          cfg.Logger,
		clock:        clock,
		out:          out,
		store:        st,
		attached:     map[wire.SessionID]ConnID{},
		opening:      map[wire.SessionID]bool{},
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
		return nil, fmt.Errorf("replica: starting the service from the snapshot at index %d: %w", applied, err)
	}
	r.lastSnap = applied
	peers := make([]raft.Peer, 0, len(cfg.Members))
	for _, m := range cfg.Members {
		peers = append(peers, raft.Peer{ID: RaftID(m.ID), Context: encodeEndpoints(m)})
	}
	core, err := consensus.New(consensus.Config{
		ID:                        RaftID(cfg.MemberID),
		ElectionTicks:             cfg.ElectionTicks,
		HeartbeatTicks:            cfg.HeartbeatTicks,
		MaxSizePerMsg:             raftMsgBytesMax,
		MaxInflightMsgs:           raftInflightMsgsMax,
		MaxInflightBytes:          raftInflightBytesMax,
		MaxUncommittedBytes:       cfg.MaxUncommittedBytes,
		MaxCommittedBytesPerReady: raftCommittedBytesPerReadyMax,
		Logger:                    cfg.Logger,
	}, st, peers, applied)
	if err != nil {
		return nil, err
	}
	r.core = core
	return r, nil
}

// encodeEndpoints is the context of a member's conf change: its endpoints, replicated so every
// member (and a member that joins later) knows where the others are.
func encodeEndpoints(m Member) []byte {
	return []byte(m.ClientEndpoint + "\n" + m.MemberEndpoint)
}

func decodeEndpoints(id int, b []byte) Member {
	client, member, _ := strings.Cut(string(b), "\n")
	return Member{ID: id, ClientEndpoint: client, MemberEndpoint: member}
}

// Members returns the replicated membership, ordered by id.
func (r *Replica) Members() []Member {
	var ms []Member
	for _, m := range r.ctr.Members() {
		if !m.Removed {
			ms = append(ms, decodeEndpoints(MemberID(m.RaftID), m.Endpoints))
		}
	}
	return ms
}

func (r *Replica) member(id int) (Member, bool) {
	for _, m := range r.Members() {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// Status summarises the member's state.
func (r *Replica) Status() Status {
	bs := r.core.Status()
	return Status{
		MemberID:      r.cfg.MemberID,
		Role:          roleOf(bs.RaftState),
		Term:          bs.GetTerm(),
		Leader:        MemberID(bs.Lead),
		Commit:        bs.GetCommit(),
		Applied:       r.ctr.Applied(),
		SnapshotIndex: r.lastSnap,
		Members:       r.Members(),
	}
}

// Progress returns role, term, commit and applied index cheaply (no allocation), for checkers
// that look after every step.
func (r *Replica) Progress() (role service.Role, term, commit, applied uint64) {
	bs := r.core.Status()
	return roleOf(bs.RaftState), bs.GetTerm(), bs.GetCommit(), r.ctr.Applied()
}

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
	if !r.isLeader() {
		return
	}
	now := r.clock.Now()
	r.expireSessions(now)
	if d, ok := r.ctr.NextTimerDeadline(); ok && d <= now && len(r.pending) == 0 &&
		r.ticks-r.lastTimeProp >= r.cfg.HeartbeatTicks {
		// Cluster time only moves with the log: an idle log needs an entry for a timer to fire.
		r.lastTimeProp = r.ticks
		r.propose(nil, 0)
	}
}

func (r *Replica) expireSessions(now int64) {
	timeout := r.cfg.SessionTimeout.Nanoseconds()
	for _, id := range r.ctr.SessionIDs() {
		last, ok := r.lastActivity[id]
		if !ok {
			r.lastActivity[id] = now
			continue
		}
		if now-last > timeout && !r.closing[id] {
			r.closing[id] = true
			r.enqueue(wire.Item{Kind: wire.ItemClose, Session: id, Reason: uint8(service.CloseTimeout)})
		}
	}
}

// Step feeds a raft message from a peer. Messages from raft ids outside the membership are
// dropped: a stray or hostile sender must not move terms. The core refuses what raft would crash
// on (consensus.ErrInvalidMessage: the driver drops the connection) and stops a member whose log
// lost what it acknowledged (consensus.ErrLostData, also returned by the next Process).
func (r *Replica) Step(m *pb.Message) error {
	if m.GetTo() != RaftID(r.cfg.MemberID) {
		return fmt.Errorf("replica: message for raft id %d delivered to raft id %d", m.GetTo(), RaftID(r.cfg.MemberID))
	}
	if !r.isMember(m.GetFrom()) {
		return fmt.Errorf("replica: message from raft id %d, not a member", m.GetFrom())
	}
	return r.core.Step(m)
}

func (r *Replica) isMember(raftID uint64) bool {
	cs := r.core.ConfState()
	return slices.Contains(cs.GetVoters(), raftID) || slices.Contains(cs.GetLearners(), raftID)
}

// ReportUnreachable tells raft a peer could not be reached.
func (r *Replica) ReportUnreachable(memberID int) { r.core.ReportUnreachable(RaftID(memberID)) }

// ReportSnapshot tells raft whether a snapshot reached a peer.
func (r *Replica) ReportSnapshot(memberID int, ok bool) { r.core.ReportSnapshot(RaftID(memberID), ok) }

// BestFollower returns the most caught-up other member (on the leader).
func (r *Replica) BestFollower() (int, bool) {
	id, ok := r.core.BestFollower()
	return MemberID(id), ok
}

// TransferLeadership asks the leader to hand over to another member.
func (r *Replica) TransferLeadership(to int) { r.core.TransferLeadership(RaftID(to)) }

// Close terminates the service (OnTerminate) and closes the storage.
func (r *Replica) Close() error {
	r.ctr.Terminate()
	return r.store.Close()
}

// ClientRequest handles a request from a client connection.
func (r *Replica) ClientRequest(conn ConnID, m *wire.ClientMsg) {
	if r.tooLarge(conn, m) {
		return
	}
	if !r.isLeader() && !(bugs.Active("follower-forwards") && m.Kind == wire.CCommand) {
		r.redirect(conn, m)
		return
	}
	now := r.inputNow()
	switch m.Kind {
	case wire.COpen, wire.CAttach:
		if r.ctr.SessionOpen(m.Session) {
			r.attach(m.Session, conn, now)
			r.out.SendClient(conn, r.attached1(m.Session))
			return
		}
		if m.Kind == wire.CAttach {
			if r.unsure(m.Session) {
				r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session,
					Status: wire.StatusUnavailable, Payload: []byte(catchingUpMessage)})
				return
			}
			// Reattaching never reopens: a session the cluster expired stays expired, so the
			// commands it left unanswered cannot be applied a second time on a new session.
			r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CSessionEvent, Session: m.Session,
				Status: wire.StatusSessionExpired, Reason: uint8(service.CloseTimeout)})
			return
		}
		if r.ctr.SessionClosed(m.Session) {
			// The session existed and was closed: never a fresh session under the same id.
			r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CSessionEvent, Session: m.Session,
				Status: wire.StatusSessionExpired, Reason: uint8(service.CloseTimeout)})
			return
		}
		if r.opening[m.Session] {
			r.attach(m.Session, conn, now)
			return
		}
		if !r.admitPending(conn, m) {
			return
		}
		r.opening[m.Session] = true
		r.attach(m.Session, conn, now)
		r.enqueue(wire.Item{Kind: wire.ItemOpen, Session: m.Session})
	case wire.CCommand:
		st := r.ctr.Admit(m.Session, m.Seq, m.LowestUnacked, r.opening[m.Session])
		if st == wire.StatusSessionExpired && r.unsure(m.Session) {
			st = wire.StatusUnavailable
		}
		if st != wire.StatusOK {
			reply := &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq, Status: st}
			switch st {
			case wire.StatusRejected:
				reply.Payload = []byte(container.WindowFullMessage)
			case wire.StatusUnavailable:
				reply.Payload = []byte(catchingUpMessage)
			}
			r.out.SendClient(conn, reply)
			return
		}
		if !r.admitPending(conn, m) {
			return
		}
		r.attach(m.Session, conn, now)
		r.enqueue(wire.Item{Kind: wire.ItemCommand, Session: m.Session, Seq: m.Seq,
			LowestUnacked: m.LowestUnacked, Payload: m.Payload})
	case wire.CKeepAlive:
		st := wire.StatusOK
		if r.ctr.SessionOpen(m.Session) {
			r.attach(m.Session, conn, now)
		} else if r.unsure(m.Session) {
			st = wire.StatusUnavailable
		} else if !r.opening[m.Session] {
			st = wire.StatusSessionExpired
		}
		r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CKeepAliveAck, Session: m.Session, Status: st})
	case wire.CClose:
		if !r.ctr.SessionOpen(m.Session) || r.closing[m.Session] {
			r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CSessionEvent, Session: m.Session,
				Status: wire.StatusSessionExpired, Reason: uint8(service.CloseClient)})
			return
		}
		r.closing[m.Session] = true
		r.attach(m.Session, conn, now)
		r.enqueue(wire.Item{Kind: wire.ItemClose, Session: m.Session, Reason: uint8(service.CloseClient)})
	case wire.CQuery:
		if r.readsPending >= r.cfg.MaxPendingReads {
			r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CQueryResponse, RequestID: m.RequestID,
				Status: wire.StatusRejected, Payload: []byte("too many pending queries")})
			return
		}
		r.newReads = append(r.newReads, pendingRead{conn: conn, requestID: m.RequestID, payload: m.Payload})
		r.readsPending++
	default:
		r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq,
			Status: wire.StatusBadRequest, Payload: []byte(fmt.Sprintf("unexpected message kind %d", m.Kind))})
	}
}

// tooLarge refuses a command or query over MaxCommandBytes (whole, or only its head when the
// client port skipped its oversized frame) with an answer that names the limit; any member
// answers so, leader or not, as the limit is each member's own.
func (r *Replica) tooLarge(conn ConnID, m *wire.ClientMsg) bool {
	if len(m.Payload) <= r.cfg.MaxCommandBytes && m.OversizedBytes == 0 {
		return false
	}
	why := fmt.Sprintf("too large: a payload of %d bytes, the limit is %d (MaxCommandBytes)", len(m.Payload), r.cfg.MaxCommandBytes)
	if m.OversizedBytes > 0 {
		why = fmt.Sprintf("too large: a request of %d bytes, the limit is %d bytes of payload (MaxCommandBytes)", m.OversizedBytes, r.cfg.MaxCommandBytes)
	}
	switch m.Kind {
	case wire.CCommand:
		r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq,
			Status: wire.StatusRejected, Payload: []byte("command " + why)})
	case wire.CQuery:
		r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CQueryResponse, RequestID: m.RequestID,
			Status: wire.StatusRejected, Payload: []byte("query " + why)})
	default:
		r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq,
			Status: wire.StatusBadRequest, Payload: []byte(fmt.Sprintf("message kind %d %s", m.Kind, why))})
	}
	return true
}

// attached1 is the answer to an attach: the session is attached here, and the limits the client
// must keep to.
func (r *Replica) attached1(id wire.SessionID) *wire.ClientMsg {
	return &wire.ClientMsg{Kind: wire.CAttached, Session: id,
		CommandBytesMax: r.cfg.MaxCommandBytes, WindowMax: r.cfg.Container.ResponseWindowMax}
}

// catchingUpMessage is the refusal of a request about a session a new leader does not know yet.
const catchingUpMessage = "the leader is still applying its predecessors' log: retry"

// unsure reports whether this leader cannot tell yet that session id is gone. A new leader
// holds every committed entry but may not have applied them all: it learns how far its log is
// committed only when an entry of its own term commits (raft's first entry of a term). Until it
// applied that entry, a session it knows neither as open nor as closed may have been opened by
// its predecessors, and telling its client "expired" would end a live session and leave its
// unanswered commands' outcome unknown for ever; such requests are refused as unavailable
// instead, and the client retries.
func (r *Replica) unsure(id wire.SessionID) bool {
	return r.appliedTerm < r.core.State().Term && !r.ctr.SessionOpen(id) && !r.ctr.SessionClosed(id) && !r.opening[id]
}

// inputNow returns the clock as read once per round of inputs (Process starts the next round):
// when a client last spoke needs no finer grain than a round, and a clock read costs about as
// much as the rest of a command's ingress.
func (r *Replica) inputNow() int64 {
	if !r.nowRead {
		r.now, r.nowRead = r.clock.Now(), true
	}
	return r.now
}

func (r *Replica) admitPending(conn ConnID, m *wire.ClientMsg) bool {
	if len(r.pending) < r.cfg.MaxPendingItems {
		return true
	}
	r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq,
		Status: wire.StatusRejected, Payload: []byte("leader ingress queue full")})
	return false
}

func (r *Replica) attach(id wire.SessionID, conn ConnID, now int64) {
	r.attached[id] = conn
	r.lastActivity[id] = now
}

// ClientGone forgets a closed client connection. Its sessions stay open until they expire.
func (r *Replica) ClientGone(conn ConnID) {
	for id, c := range r.attached {
		if c == conn {
			delete(r.attached, id)
		}
	}
}

func (r *Replica) redirect(conn ConnID, m *wire.ClientMsg) {
	st := r.core.State()
	red := &wire.ClientMsg{Kind: wire.CRedirect, Session: m.Session, Seq: m.Seq, RequestID: m.RequestID,
		LeaderID: -1, Term: st.Term, Status: wire.StatusNotLeader}
	if st.Leader != 0 && st.Leader != RaftID(r.cfg.MemberID) {
		red.LeaderID = MemberID(st.Leader)
		if lm, ok := r.member(red.LeaderID); ok {
			red.Endpoint = lm.ClientEndpoint
		}
	}
	r.out.SendClient(conn, red)
}

func (r *Replica) enqueue(it wire.Item) {
	r.pending = append(r.pending, it)
	r.pendingBytes += wire.BatchItemBytes(&it)
}

// flush proposes the pending items as batches of at most MaxBatchBytes.
func (r *Replica) flush() {
	rest := r.pending
	for len(rest) > 0 {
		n, size := 0, 0
		for n < len(rest) {
			sz := wire.BatchItemBytes(&rest[n])
			if n > 0 && size+sz > r.cfg.MaxBatchBytes {
				break
			}
			size += sz
			n++
		}
		r.propose(rest[:n], size)
		rest = rest[n:]
	}
	// The encoded batches own their bytes: the slice is reused, without the payloads.
	clear(r.pending)
	r.pending = r.pending[:0]
	r.pendingBytes = 0
}

// batchHeaderBytes covers a batch's fixed fields (version, timestamp, item count).
const batchHeaderBytes = 32

func (r *Replica) propose(items []wire.Item, size int) {
	b := wire.Batch{TimestampNanos: r.clock.Now(), Items: items}
	err := r.core.Propose(wire.AppendBatch(make([]byte, 0, size+batchHeaderBytes), &b))
	if err == nil {
		return
	}
	// Nothing was appended: tell each client now instead of letting it time out.
	for i := range items {
		it := &items[i]
		// Only the item that proposed an open or a close gives its mark back: a session's open
		// (or close) proposed in an earlier batch is still under way, and a later command of
		// the session must still be admitted (or refused) on it. A failed close is proposed
		// again: by the client, or by expireSessions at a later tick, attached here or not.
		switch it.Kind {
		case wire.ItemOpen:
			delete(r.opening, it.Session)
		case wire.ItemClose:
			delete(r.closing, it.Session)
		}
		conn, ok := r.attached[it.Session]
		if !ok {
			continue
		}
		switch {
		case errors.Is(err, consensus.ErrNotLeader):
			r.redirect(conn, &wire.ClientMsg{Session: it.Session, Seq: it.Seq})
		default:
			r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: it.Session, Seq: it.Seq,
				Status: wire.StatusUnavailable, Payload: []byte(err.Error())})
		}
	}
}

// Process proposes what is pending, runs the consensus core (persist, send, apply) and serves
// the queries whose read index was applied. Call it after every input and after SyncDone.
//
// When the core's cycle waits for a sync (TakeSync), Process only applies and serves what
// commits meanwhile: client items and queries wait for the sync, then go out batched in the next
// cycle (proposing them earlier would gain nothing, as nothing leaves before that cycle).
func (r *Replica) Process() error {
	r.nowRead = false
	if r.core.SyncPending() {
		return r.afterCore(r.core.Process(r))
	}
	if r.isLeader() || bugs.Active("follower-forwards") {
		r.flush()
	}
	if r.isLeader() && bugs.Active("read-without-readindex") {
		r.readyReads = append(r.readyReads, readyRead{index: 0, reads: r.newReads})
		r.newReads = nil
	}
	if r.isLeader() {
		if len(r.newReads) > 0 {
			reads := r.newReads
			r.newReads = nil
			// One ReadIndex round serves every query that arrived since the last one.
			id, err := r.core.ReadIndex()
			if err != nil {
				r.failReads(reads, err)
			} else {
				r.readWaits[id] = reads
			}
		}
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
	r.lastSnap = max(r.lastSnap, r.snapIx) // a leader's snapshot may have been installed meanwhile
	st := r.core.State()
	r.out.Event(Event{Kind: EventSnapshotTaken, Index: r.snapIx, Term: st.Term, Role: r.role, Leader: MemberID(st.Leader)})
	return nil
}

// afterCore hands a snapshot the apply loop took to storage and serves the reads now applied.
func (r *Replica) afterCore(err error) error {
	if r.snapDue != nil {
		data, ix := r.snapDue, r.snapDueIx
		r.snapDue = nil
		job, serr := r.core.CreateSnapshot(ix, data)
		switch {
		case serr != nil:
			if err == nil {
				err = serr
			}
		case job != nil:
			r.snapJob, r.snapIx, r.snapWriting = job, ix, true
		}
	}
	r.serveReads()
	return err
}

func (r *Replica) serveReads() {
	applied := r.ctr.Applied()
	keep := r.readyReads[:0]
	for _, rr := range r.readyReads {
		if rr.index > applied {
			keep = append(keep, rr)
			continue
		}
		r.readsPending -= len(rr.reads)
		for _, q := range rr.reads {
			reply := r.ctr.Query(q.payload)
			r.out.SendClient(q.conn, &wire.ClientMsg{Kind: wire.CQueryResponse, RequestID: q.requestID,
				Status: wire.StatusOK, Payload: reply})
		}
	}
	r.readyReads = keep
}

func (r *Replica) failReads(reads []pendingRead, err error) {
	r.readsPending -= len(reads)
	for _, q := range reads {
		if errors.Is(err, consensus.ErrNotLeader) {
			r.redirect(q.conn, &wire.ClientMsg{Kind: wire.CQuery, RequestID: q.requestID})
			continue
		}
		r.out.SendClient(q.conn, &wire.ClientMsg{Kind: wire.CQueryResponse, RequestID: q.requestID,
			Status: wire.StatusUnavailable, Payload: []byte(err.Error())})
	}
}

// ---- consensus.Handler ----

// Send implements consensus.Handler.
func (r *Replica) Send(msgs []*pb.Message) { r.out.SendRaft(msgs) }

// InstallSnapshot implements consensus.Handler.
func (r *Replica) InstallSnapshot(snap *pb.Snapshot) error {
	ix := snap.GetMetadata().GetIndex()
	r.appliedTerm = snap.GetMetadata().GetTerm()
	if err := r.ctr.Start(snap.GetData(), ix); err != nil {
		return fmt.Errorf("replica: installing snapshot at index %d: %w", ix, err)
	}
	r.lastSnap = ix
	st := r.core.State()
	r.out.Event(Event{Kind: EventSnapshotInstalled, Index: ix, Term: st.Term, Role: r.role, Leader: MemberID(st.Leader)})
	return nil
}

// ApplyEntry implements consensus.Handler.
func (r *Replica) ApplyEntry(e *pb.Entry, cc *pb.ConfChange) error {
	ix := e.GetIndex()
	r.appliedTerm = e.GetTerm()
	var due bool
	switch {
	case cc != nil:
		due = r.ctr.ApplyMember(ix, cc.GetNodeId(), cc.GetContext(), cc.GetType() == pb.ConfChangeRemoveNode)
	case len(e.GetData()) == 0:
		due = r.ctr.ApplyEmpty(ix)
	default:
		b, err := wire.DecodeBatch(e.GetData())
		if err != nil {
			// A committed entry that does not decode cannot be skipped (the others applied it).
			return fmt.Errorf("replica: committed entry %d does not decode: %w", ix, err)
		}
		if due, err = r.ctr.ApplyBatch(ix, &b); err != nil {
			return fmt.Errorf("replica: applying entry %d: %w", ix, err)
		}
	}
	if due && !r.snapWriting {
		data, err := r.ctr.TakeSnapshot()
		if err != nil {
			return fmt.Errorf("replica: snapshot at index %d: %w", ix, err)
		}
		r.snapDue, r.snapDueIx = data, ix
	}
	return nil
}

// ReadReady implements consensus.Handler.
func (r *Replica) ReadReady(id uint64, index uint64) {
	reads, ok := r.readWaits[id]
	if !ok {
		return
	}
	delete(r.readWaits, id)
	r.readyReads = append(r.readyReads, readyRead{index: index, reads: reads})
}

// ReadFailed implements consensus.Handler.
func (r *Replica) ReadFailed(id uint64, err error) {
	reads, ok := r.readWaits[id]
	if !ok {
		return
	}
	delete(r.readWaits, id)
	r.failReads(reads, err)
}

// StateChanged implements consensus.Handler.
func (r *Replica) StateChanged(st consensus.State) {
	role := roleOf(st.Role)
	wasLeader := r.isLeader()
	r.role = role
	r.ctr.SetRole(role)
	if role == service.Leader && !wasLeader {
		// A new term restarts every session's idle clock: the new leader cannot know when the
		// clients last spoke to the old one.
		now := r.clock.Now()
		clear(r.lastActivity)
		for _, id := range r.ctr.SessionIDs() {
			r.lastActivity[id] = now
		}
	}
	if wasLeader && role != service.Leader {
		r.stepDown()
	}
	r.out.Event(Event{Kind: EventState, Role: role, Leader: MemberID(st.Leader), Term: st.Term})
}

// stepDown drops the leader-only state and sends every attached client to the new leader; their
// in-flight commands are retried there under the same numbers, and dedup answers them once.
func (r *Replica) stepDown() {
	for _, it := range r.pending {
		if conn, ok := r.attached[it.Session]; ok {
			r.redirect(conn, &wire.ClientMsg{Session: it.Session, Seq: it.Seq})
		}
	}
	r.pending, r.pendingBytes = nil, 0
	st := r.core.State()
	r.failReads(r.newReads, &consensus.NotLeaderError{Leader: st.Leader, Term: st.Term})
	r.newReads = nil
	for _, rr := range r.readyReads {
		r.failReads(rr.reads, &consensus.NotLeaderError{Leader: st.Leader, Term: st.Term})
	}
	r.readyReads = nil
	ids := make([]wire.SessionID, 0, len(r.attached))
	for id := range r.attached {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b wire.SessionID) int { return strings.Compare(string(a[:]), string(b[:])) })
	for _, id := range ids {
		r.redirect(r.attached[id], &wire.ClientMsg{Session: id})
		delete(r.attached, id)
	}
	clear(r.opening)
	clear(r.closing)
	clear(r.lastActivity)
}

// egress routes what the container emits: to the client if it is attached here, else nowhere
// (followers compute the same replies and drop them; so does replay after a restart).
func (r *Replica) egress(m *wire.ClientMsg) {
	switch m.Kind {
	case wire.CAttached:
		delete(r.opening, m.Session)
	case wire.CSessionEvent:
		delete(r.opening, m.Session)
		delete(r.closing, m.Session)
		delete(r.lastActivity, m.Session)
	}
	conn, ok := r.attached[m.Session]
	if !ok {
		return
	}
	switch m.Kind {
	case wire.CSessionEvent:
		delete(r.attached, m.Session)
	case wire.CAttached:
		m = r.attached1(m.Session) // with the limits, which the container does not know
	}
	r.out.SendClient(conn, m)
}
