// Package container applies the committed log to the user's service (Aeron's
// ClusteredServiceContainer, SOFAJRaft's FSMCaller): replicated client sessions with exactly-once
// commands, cluster time, replicated timers, the membership as recorded, and snapshots of all of
// it. It does no I/O and has no goroutines; the replica drives it.
//
// Determinism is the contract: every member that applied the same entries holds the same state,
// emits the same answers and takes byte-identical snapshots at the same index. Nothing local —
// the wall clock, the member's role, map iteration order — reaches state, replies or snapshot
// bytes; the limits below (and TimersMax: ScheduleTimer returns service.ErrTooManyTimers) are
// checked against replicated state only. So every member must be configured with the same
// limits (node sets them alike); the snapshot intervals may differ, as they only decide when a
// snapshot is taken.
//
// The caller's part, from one goroutine:
//
//  1. New with the Config, the service and an Egress; then Start with the newest snapshot (nil:
//     empty state) and its index. Start replaces all state and calls the service's OnStart; it
//     is called again whenever a snapshot from the leader is installed.
//  2. Apply every committed entry exactly once, in log order: ApplyBatch for a batch of client
//     items (wire.Batch), ApplyMember for a membership change, ApplyClusterVersion and
//     ApplyClusterIdentity for those entries (versions.go), ApplyEmpty for anything else. Each
//     reports whether the entry's index is a snapshot point (a multiple of
//     SnapshotIntervalEntries, or cluster time crossing a multiple of SnapshotIntervalTime).
//  3. At a snapshot point, before the next entry is applied, TakeSnapshot returns the bytes to
//     store: the container's state and the service's own (the format is in snapshot.go).
//  4. Between entries only: Query runs the service's OnQuery (read-only: the caller runs it once
//     the query's read index is applied); SetRole reports this member's role; Admit lets a leader
//     refuse early a command that applying would surely refuse.
//  5. Terminate once, at the end.
//
// Applying a batch: cluster time moves to the leader's timestamp, never backwards; the timers
// whose deadline it reached fire, in (deadline, correlation id) order; then the items apply in
// order:
//   - open: idempotent (the first open applied decides the session's principal: an open for a
//     principal, from cluster version 6, records who opened it, which the service reads as
//     Session.Principal; a plain open is anonymous). Refused, with a session event that says
//     why, over SessionsMax or the response byte budget; refused as expired if the id belongs to a session closed before and
//     still remembered (ClosedSessionsMax), so a client never gets a fresh session under an old
//     id and has its old commands applied twice.
//   - command: the client's lowest unacknowledged number moves the session's floor up and frees
//     the replies below it. A number below the floor is answered "evicted"; a recorded number is
//     answered from the record and never applied again; a number ResponseWindowMax or more above
//     the floor, or one that would pass ResponseBytesMax, is answered "rejected"; any other runs
//     OnSessionMessage, and its reply is recorded in the session's response window, then
//     answered. A command of a session that is not open is answered "expired".
//   - close: OnSessionClose, and the id is remembered as closed.
//
// Egress: answers are emitted on every member alike; the caller delivers one only where the
// session's client is attached (the leader) and drops it elsewhere (followers, and replay after a
// restart). The service may mutate replicated state (timers, closing sessions, Session.Offer)
// only from callbacks the log drives (OnSessionOpen, OnSessionClose, OnSessionMessage,
// OnTimerEvent); elsewhere such calls return service.ErrNotAllowed.
package container
