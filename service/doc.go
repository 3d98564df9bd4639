// Package service is what a Tandem user implements, and what the user's code may call while
// Tandem runs it.
//
// A Service is a deterministic state machine driven by callbacks, in the form of Aeron Cluster's
// ClusteredService. Tandem runs one copy of it on every member of the cluster and feeds every copy
// the same committed log, so every copy must end up in the same state. A service embeds Base for
// the five callbacks it may have no use for and writes the other four:
//
//	// Register holds one value; a command replaces it and replies with the value it replaced.
//	type Register struct {
//		service.Base // no-op OnSessionOpen, OnSessionClose, OnTimerEvent, OnRoleChange, OnTerminate
//		value        []byte
//	}
//
//	// OnStart replaces all state with the snapshot's, or with the empty state when snap is nil.
//	func (r *Register) OnStart(_ service.Cluster, snap io.Reader) (err error) {
//		r.value = nil
//		if snap != nil {
//			r.value, err = io.ReadAll(snap)
//		}
//		return err
//	}
//
//	func (r *Register) OnSessionMessage(_ service.Session, _ time.Time, msg []byte) []byte {
//		old := r.value
//		r.value = bytes.Clone(msg) // msg must not be retained
//		return old
//	}
//
//	func (r *Register) OnQuery([]byte) []byte { return r.value }
//
//	func (r *Register) OnTakeSnapshot(w io.Writer) error {
//		_, err := w.Write(r.value)
//		return err
//	}
//
// node.New(cfg, &Register{}) runs it on a member. Package tandemtest runs it on a whole cluster
// in memory, with crashes and partitions, and checks that every member computes the same thing
// (this package's Example does, with this service). examples/counter and examples/kv are
// complete services with their tests.
//
// # Determinism
//
// Every member must compute the same state, the same replies and the same snapshot bytes from
// the same log:
//
//   - A callback's effect on state may depend only on the service's state, the arguments of the
//     callback and what the Cluster returns for cluster time and sessions. Never read the wall
//     clock, random numbers, the environment, files, or iterate a Go map in an order that reaches
//     state, replies or snapshot bytes. Cluster.MemberID and Cluster.Role are local facts of one
//     member: they may be logged, never used to decide state.
//   - Single-threadedness. All callbacks are made from one goroutine, one at a time; a service
//     needs no locks for its own state, and must not keep the Cluster or a Session for use from
//     another goroutine.
//
// # The order of callbacks
//
// On each member, from one goroutine, one callback at a time:
//
//  1. OnStart, when the member starts: with the newest snapshot it holds, or with nil for an
//     empty service. The member starts as a Follower (no OnRoleChange for that) and applies the
//     log after the snapshot, which includes entries it had applied before it stopped; replies
//     and pushes of that replay are dropped.
//  2. For each committed log entry, in log order: cluster time moves to the leader's stamp on the
//     entry (never backwards); every timer whose deadline has passed fires (OnTimerEvent, by
//     deadline, then by correlation id); then the entry's items, in order: OnSessionOpen,
//     OnSessionMessage, OnSessionClose. One entry may carry the commands of many sessions.
//  3. Between entries: OnQuery, for a query whose read point has been applied; OnTakeSnapshot at
//     each snapshot point (index-aligned, so every member snapshots at the same indexes: every
//     SnapshotIntervalEntries entries, and when cluster time crosses a multiple of
//     SnapshotIntervalTime; see node.Config); OnRoleChange when this member's role changes; and
//     OnStart again when the member installs a snapshot from the leader because it fell too far
//     behind for the log: on the same service value, which must then replace all of its state.
//  4. OnTerminate, once, when the member stops (node.Run returns). Nothing is called on a crash;
//     the next start begins at step 1.
//
// # The reply contract
//
// OnSessionMessage returns the reply to the command. The reply is part of the log's outcome: the
// container records it in the session's response window, so a client that retries the same command
// (after a failover, say) gets exactly this reply back and the command is not applied a second
// time. Every member computes the same reply; only the member the client is attached to (normally
// the leader) delivers it. Nothing a service can observe depends on whether its member is the
// leader. Session.Offer is for unsolicited pushes (notifications); pushes are not recorded, are
// delivered only while the client is attached, and may be lost on failover.
//
// # The snapshot contract
//
// OnTakeSnapshot writes all of the service's state; OnStart with a non-nil snapshot must replace
// all of the service's state with what that snapshot holds. OnStart is called once when the member
// starts (with the newest local snapshot, or nil for an empty service) and again whenever the
// member installs a snapshot received from the leader. A service that keeps anything across an
// OnStart call it should have discarded diverges from the other members. Members that applied the
// same index must write byte-identical snapshots: write in a defined order (sort what comes from a
// map; encoding/json sorts map keys).
//
// # Principals
//
// Session.Principal says who opened a session: the principal the member's client port
// authenticated the client's connection as (a token's name, a client certificate's name). It is
// recorded in the log with the open, so it is the same on every member and in every snapshot,
// set at open and never changed: a service may decide by it, deterministically, who may do what
// to which of its data (per-user records, an owner's right to delete). It is "" when the cluster
// does not authenticate clients, and for sessions opened before the cluster recorded principals
// (cluster version 6, docs/COMPATIBILITY.md).
//
// The members enforce what the port granted before a service sees anything: a principal that may
// not send commands, run queries or use admin operations is refused ("denied") and nothing of it
// reaches the service; and no connection of another principal can act on a session (open it
// again, attach to it, send commands or keep-alives on it, close it), so a command a service
// applies on a session with principal P came from P's connection.
//
// # What may be called where
//
// Mutating calls (Cluster.ScheduleTimer, Cluster.CancelTimer, Cluster.CloseSession,
// Session.Offer) are allowed only while a log entry is applied: from OnSessionOpen,
// OnSessionClose, OnSessionMessage and OnTimerEvent. From OnStart, OnQuery, OnTakeSnapshot,
// OnRoleChange and OnTerminate they return ErrNotAllowed: those callbacks are not driven by the log
// (or run on one member only) and a mutation there would make the members diverge. The reading
// calls (Time, LogIndex, Session, Sessions, MemberID, Role) may be made from every callback.
//
//	callback           driven by the log   mutating calls
//	OnStart            no                  ErrNotAllowed
//	OnSessionOpen      yes                 allowed
//	OnSessionMessage   yes                 allowed
//	OnSessionClose     yes                 allowed
//	OnTimerEvent       yes                 allowed
//	OnQuery            no                  ErrNotAllowed
//	OnTakeSnapshot     no                  ErrNotAllowed
//	OnRoleChange       no (one member)     ErrNotAllowed
//	OnTerminate        no (one member)     ErrNotAllowed
//
// # The base, and the four callbacks it leaves to the service
//
// Base gives no-op OnSessionOpen, OnSessionClose, OnTimerEvent, OnRoleChange and OnTerminate: a
// service that keeps no per-session state, schedules no timers and does not care about roles or
// shutdown is right to do nothing there. The other four have no default, on purpose, so that a
// service that forgets one does not compile as a Service:
//
//   - OnStart and OnTakeSnapshot: only the service knows its state. A default OnStart would keep
//     the old state under an installed snapshot; a default OnTakeSnapshot would write nothing, and
//     every restart would lose the state.
//   - OnSessionMessage: the reply is the service's answer to a command; a default would apply
//     nothing and answer every command with an empty reply.
//   - OnQuery: there is no neutral answer; an empty reply cannot be told from an empty value.
//
// Write var _ service.Service = (*T)(nil) next to the type, so that the compiler names a missing
// callback there rather than at the call of node.New.
package service
