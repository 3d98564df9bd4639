package container

import (
	"bytes"
	"container/heap"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tandem-cluster/tandem/internal/bugs"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// Config configures a container.
type Config struct {
	MemberID int
	// SnapshotIntervalEntries: a snapshot point at every index that is a multiple of it.
	SnapshotIntervalEntries uint64
	// SnapshotIntervalTime: a snapshot point whenever cluster time crosses a multiple of it.
	SnapshotIntervalTime time.Duration
	// ResponseWindowMax bounds the recorded replies per session (commands a client may have in
	// flight and unacknowledged).
	ResponseWindowMax int
	// ResponseBytesMax is the byte budget of the response windows: every recorded reply, every
	// number a window spans (its ring slot) and a per-session overhead.
	ResponseBytesMax int64
	// SessionsMax bounds open sessions.
	SessionsMax int
	// TimersMax bounds scheduled timers.
	TimersMax int
	// ClosedSessionsMax bounds how many closed session ids are remembered. An id is refused
	// when it is opened again while remembered: a client that had its first open applied, lost
	// the answer, and came back after the session expired must not get a fresh session under
	// the same id and have its old commands applied a second time.
	ClosedSessionsMax int
	// ClusterVersionMax is the highest cluster version this member applies (0: ClusterVersionMax,
	// what this build can). A member configured lower acts as a build that can apply no more: it
	// reports so to the leader, which then never raises the cluster version past it, and it stops
	// at an entry or snapshot that needs more.
	ClusterVersionMax uint16
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		SnapshotIntervalEntries: 1000,
		SnapshotIntervalTime:    30 * time.Second,
		ResponseWindowMax:       1024,
		ResponseBytesMax:        64 << 20,
		SessionsMax:             10_000,
		TimersMax:               100_000,
		ClosedSessionsMax:       100_000,
	}
}

// Validate checks a configuration; errors name the field and value.
func (c Config) Validate() error {
	var errs []error
	if c.SnapshotIntervalEntries == 0 {
		errs = append(errs, errors.New("SnapshotIntervalEntries (0) must be positive"))
	}
	if c.SnapshotIntervalTime <= 0 {
		errs = append(errs, fmt.Errorf("SnapshotIntervalTime (%s) must be positive", c.SnapshotIntervalTime))
	}
	if c.ResponseWindowMax <= 0 || c.ResponseWindowMax > maxWindowSpan {
		errs = append(errs, fmt.Errorf("ResponseWindowMax (%d) must be between 1 and %d", c.ResponseWindowMax, maxWindowSpan))
	}
	if c.ResponseBytesMax < sessionOverheadBytes {
		errs = append(errs, fmt.Errorf("ResponseBytesMax (%d) must be at least %d", c.ResponseBytesMax, sessionOverheadBytes))
	}
	if c.SessionsMax <= 0 {
		errs = append(errs, fmt.Errorf("SessionsMax (%d) must be positive", c.SessionsMax))
	}
	if c.ClosedSessionsMax <= 0 {
		errs = append(errs, fmt.Errorf("ClosedSessionsMax (%d) must be positive", c.ClosedSessionsMax))
	}
	if c.ClusterVersionMax > ClusterVersionMax {
		errs = append(errs, fmt.Errorf("ClusterVersionMax (%d) is above what this build applies (%d)", c.ClusterVersionMax, ClusterVersionMax))
	}
	if c.TimersMax <= 0 {
		errs = append(errs, fmt.Errorf("TimersMax (%d) must be positive", c.TimersMax))
	}
	return errors.Join(errs...)
}

// Byte accounting of the response table: what a session, a recorded reply (beyond its bytes)
// and each number a window spans cost. Deterministic constants, charged for what every member
// holds alike (the span is a function of the recorded replies and the floor, however the window
// got there, snapshot or log), so every member refuses the same commands. A spanned number is a
// slot of the window's ring, recorded or not: a client that skips numbers, or leaves a gap behind,
// pays for the slots in between. The ring holds at most four times the span's slots (it doubles
// as it grows and halves when a quarter full; window.go), at least eight.
const (
	sessionOverheadBytes = 256
	entryOverheadBytes   = 32
	slotBytes            = 24
)

// Egress receives what the container emits, on every member alike; the caller delivers a
// message only where the session's client is attached. Called on the apply goroutine; must not
// block. m itself is valid only during the call (the container reuses it for the next answer):
// copy *m to keep it. Recorded replies (CResponse payloads) are immutable and may be kept; push
// payloads are copies owned by the callee.
type Egress func(m *wire.ClientMsg)

// Member is a member as recorded in the replicated state.
type Member struct {
	RaftID uint64
	// Addrs is the context of the member's conf change: its advertised addresses, encoded by the
	// replica (replica.Member), opaque here.
	Addrs   []byte
	Removed bool // ids are never reused: a removed member stays recorded
}

type session struct {
	id wire.SessionID
	// principal is who opened the session ("": anonymous), as the open recorded it (cluster
	// version 6 on); it never changes.
	principal string
	win       window // the floor (every command below it was acknowledged) and the replies above it
	bytes     int64  // accounted bytes of this session (overhead, principal and window)
	handle    *sessionHandle
	closed    bool // closed (and no longer in Container.sessions)
}

// Container applies committed entries to a service. Not safe for concurrent use.
type Container struct {
	cfg    Config
	svc    service.Service
	egress Egress
	answer wire.ClientMsg // reused for every command's answer (see Egress): no allocation each

	// Sessions opened, closed (for any reason) and closed for expiry (service.CloseTimeout), as
	// applied on this member since it started: a restart's replay of its log counts them again,
	// a snapshot counts none. Atomic, for the member's metrics (SessionCounts).
	sessionsOpened, sessionsClosed, sessionsExpired atomic.Int64

	// Replicated state (in snapshots).
	applied     uint64
	clusterTime int64
	sessions    map[wire.SessionID]*session
	timers      map[int64]int64 // correlation id → deadline (Unix nanos)
	members     map[uint64]Member
	bytesUsed   int64
	// clusterVersion decides how entries are applied (versions.go); 1 in an empty state.
	clusterVersion uint16
	// clusterUUID is the cluster's identity, from the first identity entry applied (zero until
	// then). Invariant: zero whenever clusterVersion < 3; once set, it never changes.
	clusterUUID wire.ClusterUUID
	// closed remembers recently closed session ids, oldest first in closedOrder, with the
	// reason of each close from cluster version 2 on (0 before: not recorded).
	// Invariant: len(closedOrder) == len(closed) <= cfg.ClosedSessionsMax.
	closed      map[wire.SessionID]uint8
	closedOrder []wire.SessionID
	// suspended, preferred and preferredSet: the operator's controls (control.go; cluster
	// version 5 on, snapshot format 4).
	suspended    bool
	preferred    []int
	preferredSet bool
	lastShutdown uint64 // the index of the last shutdown entry applied (0: none)

	// Derived: timer heap with lazy deletion (entries whose deadline no longer matches the map
	// are stale).
	timerQ timerHeap

	// Local state.
	role       service.Role
	inLog      bool // a log-driven callback is running: mutations allowed
	terminated bool
	cluster    *clusterView
}

// New creates a container for svc. Start must be called before anything is applied.
func New(cfg Config, svc service.Service, egress Egress) (*Container, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ClusterVersionMax == 0 {
		cfg.ClusterVersionMax = ClusterVersionMax
	}
	if egress == nil {
		egress = func(*wire.ClientMsg) {}
	}
	c := &Container{cfg: cfg, svc: svc, egress: egress}
	c.cluster = &clusterView{c: c}
	c.reset()
	return c, nil
}

func (c *Container) reset() {
	c.applied, c.clusterTime, c.bytesUsed, c.clusterVersion = 0, 0, 0, 1
	c.clusterUUID = wire.ClusterUUID{}
	c.sessions = map[wire.SessionID]*session{}
	c.timers = map[int64]int64{}
	c.members = map[uint64]Member{}
	c.timerQ = nil
	c.closed = map[wire.SessionID]uint8{}
	c.closedOrder = nil
	c.suspended, c.preferred, c.preferredSet, c.lastShutdown = false, nil, false, 0
}

// Start replaces all state with a snapshot taken by TakeSnapshot (nil: empty state) at raft
// index index, and calls OnStart. Used at start and to install a snapshot from the leader.
func (c *Container) Start(snapshot []byte, index uint64) error {
	c.reset()
	var svcBytes []byte
	if snapshot != nil {
		st, err := decodeSnapshot(snapshot)
		if err != nil {
			return err
		}
		if index != 0 && st.applied != index {
			return fmt.Errorf("container: snapshot holds index %d, raft says %d", st.applied, index)
		}
		if st.clusterVersion > c.cfg.ClusterVersionMax {
			return &ClusterVersionError{Index: st.applied, Version: st.clusterVersion, Max: c.cfg.ClusterVersionMax, Snapshot: true}
		}
		c.applied, c.clusterTime, c.bytesUsed, c.clusterVersion = st.applied, st.clusterTime, 0, st.clusterVersion
		c.clusterUUID = st.clusterUUID
		c.suspended, c.preferred, c.preferredSet, c.lastShutdown = st.suspended, st.preferred, st.preferredSet, st.lastShutdown
		for _, s := range st.sessions {
			if bugs.Active(bugs.SnapshotDropsPrincipal) {
				s.principal = "" // planted bug: the principal does not survive a snapshot
			}
			s.handle = &sessionHandle{c: c, id: s.id, principal: s.principal}
			s.bytes = sessionOverheadBytes + int64(len(s.principal)) + slotBytes*int64(s.win.span)
			s.win.each(func(_ wire.Seq, r []byte) { s.bytes += entryOverheadBytes + int64(len(r)) })
			c.bytesUsed += s.bytes
			c.sessions[s.id] = s
		}
		for id, d := range st.timers {
			c.timers[id] = d
			heap.Push(&c.timerQ, timerEntry{deadline: d, id: id})
		}
		for _, m := range st.members {
			c.members[m.RaftID] = m
		}
		for i, id := range st.closed {
			c.remember(id, st.closedReasons[i])
		}
		svcBytes = st.service
	} else {
		c.applied = index
	}
	c.inLog = false
	if snapshot == nil {
		return c.svc.OnStart(c.cluster, nil)
	}
	return c.svc.OnStart(c.cluster, bytes.NewReader(svcBytes))
}

// Applied returns the index of the last applied entry.
func (c *Container) Applied() uint64 { return c.applied }

// ClusterTime returns cluster time in Unix nanoseconds.
func (c *Container) ClusterTime() int64 { return c.clusterTime }

// Sessions returns how many sessions are open.
func (c *Container) Sessions() int { return len(c.sessions) }

// SessionCounts returns how many sessions this member opened, closed and closed for expiry as it
// applied the log since it started (a replay counts again; a snapshot installed counts none).
// Safe from any goroutine.
func (c *Container) SessionCounts() (opened, closed, expired int64) {
	return c.sessionsOpened.Load(), c.sessionsClosed.Load(), c.sessionsExpired.Load()
}

// SessionOpen reports whether a session is open.
func (c *Container) SessionOpen(id wire.SessionID) bool { _, ok := c.sessions[id]; return ok }

// SessionPrincipal returns the principal that opened session id ("": anonymous) and whether the
// session is open. No allocation: for the path every command takes.
func (c *Container) SessionPrincipal(id wire.SessionID) (string, bool) {
	if s, ok := c.sessions[id]; ok {
		return s.principal, true
	}
	return "", false
}

// SessionClosed reports whether id belongs to a session that was closed (and is still
// remembered): opening it again is refused.
func (c *Container) SessionClosed(id wire.SessionID) bool { _, ok := c.closed[id]; return ok }

// ClosedReason returns why a remembered closed session was closed: the reason recorded from
// cluster version 2 on; for one closed before, service.CloseTimeout, which is what every answer
// about a closed session said before the reason was recorded.
func (c *Container) ClosedReason(id wire.SessionID) service.CloseReason {
	if r := c.closed[id]; r != 0 {
		return service.CloseReason(r)
	}
	return service.CloseTimeout
}

// remember records a closed session id, and its close reason from cluster version 2 on.
func (c *Container) remember(id wire.SessionID, reason uint8) {
	if _, ok := c.closed[id]; ok {
		return
	}
	if !c.recordsCloseReasons() {
		reason = 0
	}
	c.closed[id] = reason
	c.closedOrder = append(c.closedOrder, id)
	if len(c.closedOrder) > c.cfg.ClosedSessionsMax {
		delete(c.closed, c.closedOrder[0])
		c.closedOrder = c.closedOrder[1:]
	}
}

// SessionIDs returns the open sessions, sorted.
func (c *Container) SessionIDs() []wire.SessionID {
	ids := make([]wire.SessionID, 0, len(c.sessions))
	for id := range c.sessions {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, compareIDs)
	return ids
}

func compareIDs(a, b wire.SessionID) int { return bytes.Compare(a[:], b[:]) }

// NextTimerDeadline returns the earliest timer deadline.
func (c *Container) NextTimerDeadline() (int64, bool) {
	for c.timerQ.Len() > 0 {
		top := c.timerQ[0]
		if d, ok := c.timers[top.id]; ok && d == top.deadline {
			return top.deadline, true
		}
		heap.Pop(&c.timerQ) // stale
	}
	return 0, false
}

// Members returns the recorded members, sorted by raft id.
// Member returns the member of raft id id as recorded (removed ones included), without
// allocating: for the paths every message takes.
func (c *Container) Member(id uint64) (Member, bool) {
	m, ok := c.members[id]
	return m, ok
}

func (c *Container) Members() []Member {
	ms := make([]Member, 0, len(c.members))
	for _, m := range c.members {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Member) int { return int(a.RaftID) - int(b.RaftID) })
	return ms
}

// WindowFullMessage is the text of a command's refusal when its session's response window (or
// the byte budget of all windows) is full.
const WindowFullMessage = "response window full: acknowledge earlier commands first"

// Admit is the leader's early check of a command seq carrying the client's lowest
// unacknowledged number low. The same limits are enforced again, deterministically, at apply;
// Admit only refuses what apply would surely refuse.
//
// The window is judged as apply will see it: applying the command first moves the floor up to
// low (the window as it stands still holds replies the client has acknowledged since: the floor
// moves only when a command carrying it applies), and then refuses a number ResponseWindowMax or
// more above the floor.
func (c *Container) Admit(id wire.SessionID, seq, low wire.Seq, opening bool) wire.Status {
	s, ok := c.sessions[id]
	if !ok {
		if opening {
			return wire.StatusOK
		}
		return wire.StatusSessionExpired
	}
	floor := max(s.win.floor, low)
	if _, dup := s.win.get(seq); dup || seq < floor {
		return wire.StatusOK // answered from the record at apply
	}
	if c.beyondWindow(seq, floor) || c.overBudget(s, seq, floor) {
		return wire.StatusRejected
	}
	return wire.StatusOK
}

// beyondWindow reports whether seq lies too far above floor for the response window: a session
// has at most ResponseWindowMax numbers from its lowest unacknowledged one to its newest. A
// client keeps fewer in flight (client.Config.MaxInFlight), so it only meets this limit if it
// ignores its own.
func (c *Container) beyondWindow(seq, floor wire.Seq) bool {
	return uint64(seq-floor) >= uint64(c.cfg.ResponseWindowMax)
}

// overBudget reports whether recording a reply for seq, once the session's floor is at floor
// (at or above the window's, seq at or above it and within the window), would pass
// ResponseBytesMax: a reply's overhead and the slots by which the span grows. (The reply's own
// bytes are known only once applied: the budget may be passed by one reply, which the next
// admission sees.) At apply the floor has moved already; at ingress the bytes it would free are
// not counted, so ingress refuses no less than apply.
func (c *Container) overBudget(s *session, seq, floor wire.Seq) bool {
	span := max(0, s.win.span-int(floor-s.win.floor)) // the span once the floor is at floor
	grow := max(0, int(seq-floor)+1-span)
	return c.bytesUsed+entryOverheadBytes+slotBytes*int64(grow) > c.cfg.ResponseBytesMax
}

// charge adds n bytes (negative: frees them) to session s and the total.
func (c *Container) charge(s *session, n int64) {
	s.bytes += n
	c.bytesUsed += n
}

// SetRole records this member's role and tells the service.
func (c *Container) SetRole(r service.Role) {
	if r == c.role {
		return
	}
	c.role = r
	c.inLog = false
	c.svc.OnRoleChange(r)
}

// Terminate calls OnTerminate once.
func (c *Container) Terminate() {
	if c.terminated {
		return
	}
	c.terminated = true
	c.inLog = false
	c.svc.OnTerminate()
}

// Query runs OnQuery; mutations inside are refused.
func (c *Container) Query(q []byte) []byte {
	c.inLog = false
	return c.svc.OnQuery(q)
}

// snapshotPoint reports whether index (applied with cluster time moving from before to after)
// is a snapshot point. Purely a function of the log: every member agrees.
func (c *Container) snapshotPoint(index uint64, before, after int64) bool {
	if index%c.cfg.SnapshotIntervalEntries == 0 {
		return true
	}
	iv := int64(c.cfg.SnapshotIntervalTime)
	return before > 0 && after/iv > before/iv
}

// ApplyEmpty applies an entry that carries nothing for the service.
func (c *Container) ApplyEmpty(index uint64) bool {
	c.applied = index
	return c.snapshotPoint(index, c.clusterTime, c.clusterTime)
}

// ApplyMember records a membership change; addrs is the change's context (Member.Addrs), kept
// from the last change that carried one.
func (c *Container) ApplyMember(index uint64, raftID uint64, addrs []byte, removed bool) bool {
	m := c.members[raftID]
	m.RaftID = raftID
	if len(addrs) > 0 {
		m.Addrs = slices.Clone(addrs)
	}
	m.Removed = m.Removed || removed
	c.members[raftID] = m
	c.applied = index
	return c.snapshotPoint(index, c.clusterTime, c.clusterTime)
}

// ApplyBatch applies one batch: cluster time advances (never backwards), due timers fire in
// (deadline, correlation id) order, then the items apply in order.
func (c *Container) ApplyBatch(index uint64, b *wire.Batch) (bool, error) {
	if index <= c.applied {
		return false, fmt.Errorf("container: entry %d applied after %d", index, c.applied)
	}
	before := c.clusterTime
	c.clusterTime = max(c.clusterTime, b.TimestampNanos)
	c.applied = index
	if !c.suspended {
		c.fireTimers()
	}
	for i := range b.Items {
		it := &b.Items[i]
		switch it.Kind {
		case wire.ItemOpen:
			c.open(it.Session, "")
		case wire.ItemOpenPrincipal:
			if c.clusterVersion < ClusterVersionPrincipal {
				return false, fmt.Errorf("%w: the entry at index %d, at cluster version %d", ErrPrincipalBeforeVersion, index, c.clusterVersion)
			}
			c.open(it.Session, it.Principal)
		case wire.ItemCommand:
			c.command(it)
		case wire.ItemClose:
			if _, open := c.sessions[it.Session]; !open {
				// A close of a session that is not open (its open failed, or it closed meanwhile)
				// is answered too: the leader that proposed it waits for an answer, and so does
				// its client. Egress only: no state changes.
				c.egress(&wire.ClientMsg{Kind: wire.CSessionEvent, Session: it.Session,
					Status: wire.StatusSessionExpired, Reason: it.Reason})
				continue
			}
			c.closeSession(it.Session, service.CloseReason(it.Reason))
		default:
			return false, fmt.Errorf("container: entry %d: unknown item kind %d", index, it.Kind)
		}
	}
	c.inLog = false
	return c.snapshotPoint(index, before, c.clusterTime), nil
}

func (c *Container) now() time.Time { return time.Unix(0, c.clusterTime).UTC() }

func (c *Container) fireTimers() {
	var due []timerEntry
	for c.timerQ.Len() > 0 && c.timerQ[0].deadline <= c.clusterTime {
		e := heap.Pop(&c.timerQ).(timerEntry)
		if d, ok := c.timers[e.id]; ok && d == e.deadline {
			due = append(due, e)
		}
	}
	// The heap pops by (deadline, id): due is already in firing order.
	for _, e := range due {
		if d, ok := c.timers[e.id]; !ok || d != e.deadline {
			continue // cancelled or rescheduled by an earlier timer's callback
		}
		delete(c.timers, e.id)
		c.inLog = true
		c.svc.OnTimerEvent(e.id, c.now())
	}
}

// open opens session id for principal ("": anonymous). Opening an open session changes nothing,
// whoever asks: the first open applied decides the principal (the leader refuses an open or
// attach of another principal's session before proposing anything; replica's ingress.go).
func (c *Container) open(id wire.SessionID, principal string) {
	if _, ok := c.sessions[id]; ok {
		return // idempotent
	}
	if c.SessionClosed(id) {
		c.egress(&wire.ClientMsg{Kind: wire.CSessionEvent, Session: id, Status: wire.StatusSessionExpired,
			Reason: uint8(c.ClosedReason(id))})
		return
	}
	cost := sessionOverheadBytes + int64(len(principal))
	if len(c.sessions) >= c.cfg.SessionsMax || c.bytesUsed+cost > c.cfg.ResponseBytesMax {
		// The text is the refused client's to show; it is the same on every member (replicated
		// state and configuration only).
		why := fmt.Sprintf("session limit reached: %d sessions open (SessionsMax %d)", len(c.sessions), c.cfg.SessionsMax)
		if len(c.sessions) < c.cfg.SessionsMax {
			why = fmt.Sprintf("response byte budget full: %d of %d bytes used (ResponseBytesMax)", c.bytesUsed, c.cfg.ResponseBytesMax)
		}
		c.egress(&wire.ClientMsg{Kind: wire.CSessionEvent, Session: id, Status: wire.StatusRejected, Payload: []byte(why)})
		return
	}
	s := &session{id: id, principal: principal, bytes: cost}
	s.handle = &sessionHandle{c: c, id: id, principal: principal}
	c.sessions[id] = s
	c.bytesUsed += s.bytes
	c.inLog = true
	c.sessionsOpened.Add(1)
	c.svc.OnSessionOpen(s.handle, c.now())
	c.egress(&wire.ClientMsg{Kind: wire.CAttached, Session: id})
}

func (c *Container) closeSession(id wire.SessionID, reason service.CloseReason) {
	s, ok := c.sessions[id]
	if !ok {
		return
	}
	delete(c.sessions, id)
	s.closed = true
	c.bytesUsed -= s.bytes
	c.remember(id, uint8(reason))
	c.sessionsClosed.Add(1)
	if reason == service.CloseTimeout {
		c.sessionsExpired.Add(1)
	}
	c.inLog = true
	c.svc.OnSessionClose(s.handle, c.now(), reason)
	c.egress(&wire.ClientMsg{Kind: wire.CSessionEvent, Session: id, Reason: uint8(reason)})
}

func (c *Container) command(it *wire.Item) {
	s, ok := c.sessions[it.Session]
	if !ok {
		c.egress(&wire.ClientMsg{Kind: wire.CResponse, Session: it.Session, Seq: it.Seq, Status: wire.StatusSessionExpired})
		return
	}
	if it.LowestUnacked > s.win.floor {
		span := s.win.span
		s.win.advance(it.LowestUnacked, func(r []byte) { c.charge(s, -entryOverheadBytes-int64(len(r))) })
		c.charge(s, slotBytes*int64(s.win.span-span))
	}
	if it.Seq < s.win.floor {
		c.egress(&wire.ClientMsg{Kind: wire.CResponse, Session: it.Session, Seq: it.Seq, Status: wire.StatusEvicted})
		return
	}
	r, dup := s.win.get(it.Seq)
	if dup && !bugs.Active(bugs.NoDedup) {
		c.egress(&wire.ClientMsg{Kind: wire.CResponse, Session: it.Session, Seq: it.Seq, Status: wire.StatusOK, Payload: r})
		return
	}
	if c.suspended && (c.role == service.Leader || !bugs.Active(bugs.SuspendLeaderOnly)) {
		// Refused, not recorded: the command was not applied, and the client was told so.
		c.egress(&wire.ClientMsg{Kind: wire.CResponse, Session: it.Session, Seq: it.Seq, Status: wire.StatusRejected,
			Payload: []byte(SuspendedMessage)})
		return
	}
	if c.beyondWindow(it.Seq, s.win.floor) || c.overBudget(s, it.Seq, s.win.floor) {
		c.egress(&wire.ClientMsg{Kind: wire.CResponse, Session: it.Session, Seq: it.Seq, Status: wire.StatusRejected,
			Payload: []byte(WindowFullMessage)})
		return
	}
	c.inLog = true
	reply := slices.Clone(c.svc.OnSessionMessage(s.handle, c.now(), it.Payload))
	if reply == nil {
		reply = []byte{}
	}
	if !s.closed && !dup { // (a duplicate reaches here only under the planted no-dedup bug)
		// The service may have closed the session meanwhile. The budget was checked before
		// applying; the reply itself may overshoot it by at most one reply, which the next
		// admission sees. Recording is not optional: the command was applied, and a retry must
		// get this reply, never a second application.
		span := s.win.span
		s.win.put(it.Seq, reply)
		c.charge(s, entryOverheadBytes+int64(len(reply))+slotBytes*int64(s.win.span-span))
	}
	c.answer = wire.ClientMsg{Kind: wire.CResponse, Session: it.Session, Seq: it.Seq, Status: wire.StatusOK, Payload: reply}
	c.egress(&c.answer)
}

// ---- timers ----

type timerEntry struct {
	deadline int64
	id       int64
}

type timerHeap []timerEntry

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].deadline != h[j].deadline {
		return h[i].deadline < h[j].deadline
	}
	return h[i].id < h[j].id
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// ---- what the service sees ----

type clusterView struct{ c *Container }

func (v *clusterView) MemberID() int      { return v.c.cfg.MemberID }
func (v *clusterView) Role() service.Role { return v.c.role }
func (v *clusterView) Time() time.Time    { return v.c.now() }
func (v *clusterView) LogIndex() uint64   { return v.c.applied }

func (v *clusterView) ScheduleTimer(id int64, deadline time.Time) error {
	c := v.c
	if !c.inLog {
		return service.ErrNotAllowed
	}
	if _, ok := c.timers[id]; !ok && len(c.timers) >= c.cfg.TimersMax {
		return service.ErrTooManyTimers
	}
	d := deadline.UnixNano()
	c.timers[id] = d
	heap.Push(&c.timerQ, timerEntry{deadline: d, id: id})
	// Stale heap entries are dropped lazily; keep the heap from growing without bound when one
	// timer is rescheduled over and over.
	if c.timerQ.Len() > 2*len(c.timers)+64 {
		c.rebuildTimers()
	}
	return nil
}

func (c *Container) rebuildTimers() {
	c.timerQ = c.timerQ[:0]
	for id, d := range c.timers {
		c.timerQ = append(c.timerQ, timerEntry{deadline: d, id: id})
	}
	heap.Init(&c.timerQ)
}

func (v *clusterView) CancelTimer(id int64) (bool, error) {
	c := v.c
	if !c.inLog {
		return false, service.ErrNotAllowed
	}
	_, ok := c.timers[id]
	delete(c.timers, id)
	return ok, nil
}

func (v *clusterView) Session(id service.SessionID) (service.Session, bool) {
	s, ok := v.c.sessions[wire.SessionID(id)]
	if !ok {
		return nil, false
	}
	return s.handle, true
}

func (v *clusterView) Sessions() []service.Session {
	var out []service.Session
	for _, id := range v.c.SessionIDs() {
		out = append(out, v.c.sessions[id].handle)
	}
	return out
}

func (v *clusterView) CloseSession(id service.SessionID) error {
	c := v.c
	if !c.inLog {
		return service.ErrNotAllowed
	}
	if _, ok := c.sessions[wire.SessionID(id)]; !ok {
		return service.ErrSessionClosed
	}
	c.closeSession(wire.SessionID(id), service.CloseService)
	c.inLog = true // still inside the caller's log-driven callback
	return nil
}

type sessionHandle struct {
	c         *Container
	id        wire.SessionID
	principal string
}

func (h *sessionHandle) ID() service.SessionID { return service.SessionID(h.id) }

func (h *sessionHandle) Principal() string { return h.principal }

func (h *sessionHandle) Offer(msg []byte) error {
	c := h.c
	if !c.inLog {
		return service.ErrNotAllowed
	}
	if _, ok := c.sessions[h.id]; !ok {
		return service.ErrSessionClosed
	}
	c.egress(&wire.ClientMsg{Kind: wire.CPush, Session: h.id, Payload: slices.Clone(msg)})
	return nil
}
