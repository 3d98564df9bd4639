package service

import (
	"encoding/hex"
	"errors"
	"io"
	"time"
)

// ErrNotAllowed is returned by a mutating Cluster or Session method called from a callback that
// is not driven by the log (OnStart, OnQuery, OnTakeSnapshot, OnRoleChange, OnTerminate).
var ErrNotAllowed = errors.New("service: mutating call not allowed from this callback")

// ErrSessionClosed is returned by Session.Offer and Cluster.CloseSession for a session that is no
// longer open.
var ErrSessionClosed = errors.New("service: session is closed")

// ErrTooManyTimers is returned by ScheduleTimer when the container's timer limit is reached.
var ErrTooManyTimers = errors.New("service: too many timers")

// SessionID identifies a client session. Clients generate it (128 random bits), so opening a
// session is idempotent and the open can travel with the first command.
type SessionID [16]byte

// String returns the id in hex.
func (id SessionID) String() string { return hex.EncodeToString(id[:]) }

// Role is a member's role in the consensus protocol. It is local to one member.
type Role uint8

// Roles. PreCandidate is the pre-vote phase: a member asks whether it could win before it
// disturbs the cluster with a real election.
const (
	Follower Role = iota
	PreCandidate
	Candidate
	Leader
)

func (r Role) String() string {
	switch r {
	case Follower:
		return "FOLLOWER"
	case PreCandidate:
		return "PRE-CANDIDATE"
	case Candidate:
		return "CANDIDATE"
	case Leader:
		return "LEADER"
	}
	return "UNKNOWN"
}

// CloseReason says why a session closed.
type CloseReason uint8

// Close reasons, as in Aeron's CloseReason.
const (
	// CloseClient: the client closed its session.
	CloseClient CloseReason = iota + 1
	// CloseService: the service closed it with Cluster.CloseSession.
	CloseService
	// CloseTimeout: the leader saw no traffic from the client for the session timeout.
	CloseTimeout
)

func (r CloseReason) String() string {
	switch r {
	case CloseClient:
		return "CLIENT_ACTION"
	case CloseService:
		return "SERVICE_ACTION"
	case CloseTimeout:
		return "TIMEOUT"
	}
	return "UNKNOWN"
}

// Session is an open client session as a service sees it.
type Session interface {
	// ID is the client-generated session id.
	ID() SessionID
	// Principal is who opened the session: the principal the member's client port
	// authenticated the client's connection as (a token's name, a client certificate's name),
	// recorded in the log when the session opened. It is "" when the cluster does not
	// authenticate clients (and for every session opened before the cluster recorded
	// principals: cluster version 6). It is the same on every member, set at open and never
	// changes, so a service may decide by it (who may do what to which of its data): no other
	// principal can act on the session (a member refuses a request for it from another
	// principal's connection).
	Principal() string
	// Offer pushes an unsolicited message to the client if it is attached to this member. It is
	// not recorded and not retried (see the reply contract). Allowed only from log-driven
	// callbacks.
	Offer(msg []byte) error
}

// Cluster is what a service may ask of the cluster. Its methods may be called only from the
// service's callbacks, on the goroutine that made the callback.
type Cluster interface {
	// MemberID is this member's id (0, 1, 2, …). Local: never let it decide state.
	MemberID() int
	// Role is this member's current role. Local: never let it decide state.
	Role() Role
	// Time is cluster time: the leader's clock as stamped on the entry being applied, never moving
	// backwards. It is the same on every member for the same entry.
	Time() time.Time
	// LogIndex is the index of the log entry being applied (or of the last one applied, outside
	// log-driven callbacks).
	LogIndex() uint64
	// ScheduleTimer schedules (or reschedules) the timer with this correlation id to fire at
	// deadline, in cluster time. A deadline in the past fires on the next entry. Timers are part
	// of the replicated state and of snapshots.
	ScheduleTimer(correlationID int64, deadline time.Time) error
	// CancelTimer cancels a scheduled timer; it reports whether one was scheduled.
	CancelTimer(correlationID int64) (bool, error)
	// Session returns an open session.
	Session(id SessionID) (Session, bool)
	// Sessions returns the open sessions, ordered by id.
	Sessions() []Session
	// CloseSession closes a session; OnSessionClose(CloseService) follows at once.
	CloseSession(id SessionID) error
}

// Service is a deterministic replicated service. See the package documentation for the
// contracts every implementation must keep and the order of the calls. Embed Base for no-op
// OnSessionOpen, OnSessionClose, OnTimerEvent, OnRoleChange and OnTerminate.
type Service interface {
	// OnStart is called when the member starts and whenever it installs a snapshot from the
	// leader. snapshot is nil for an empty service; otherwise it is what OnTakeSnapshot wrote,
	// and the service must replace all of its state with it. An error stops the member.
	OnStart(c Cluster, snapshot io.Reader) error
	// OnSessionOpen is called when a session opens.
	OnSessionOpen(s Session, t time.Time)
	// OnSessionClose is called when a session closes, for the given reason.
	OnSessionClose(s Session, t time.Time, reason CloseReason)
	// OnSessionMessage applies a command and returns the reply, which is recorded for
	// exactly-once retries (see the reply contract). msg must not be retained.
	OnSessionMessage(s Session, t time.Time, msg []byte) (reply []byte)
	// OnTimerEvent is called once when a scheduled timer's deadline has passed in cluster time.
	OnTimerEvent(correlationID int64, t time.Time)
	// OnTakeSnapshot writes the whole state of the service to w. It must not change state.
	OnTakeSnapshot(w io.Writer) error
	// OnRoleChange tells the service that this member's role changed. Local: informative only.
	OnRoleChange(r Role)
	// OnTerminate is called once when the member shuts down.
	OnTerminate()
	// OnQuery answers a read-only request, linearizably: it runs after the member applied every
	// entry committed before the query arrived. It must not change state.
	OnQuery(q []byte) (reply []byte)
}
