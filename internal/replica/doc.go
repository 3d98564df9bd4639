// Package replica is one Tandem member as a deterministic step function: the consensus core, the
// container running the user's service, and the leader's ingress (session checks, batching of
// client items into raft entries, ReadIndex rounds for queries, session expiry and timer ticks).
// It has no goroutines, sockets or timers: the node package drives it with real ones, and the
// simulator (internal/clustertest) with simulated ones, so both run exactly this code.
//
// The files: config.go (Config, its defaults and validation), members.go (member and raft ids,
// advertised addresses), ingress.go (client requests and their admission, batching and proposals,
// session expiry), principals.go (what a connection's grant allows, and whose sessions it may
// use), reads.go (queries and ReadIndex rounds), handler.go (what the consensus core
// calls back: sending, applying, installing snapshots, role changes, and the egress of answers),
// replica.go (the Replica, its life cycle and Process).
//
// The driver's loop, from one goroutine:
//
//  1. New with the Config, the service, the storage (the archive), a Clock and an Outbox; the
//     service starts from the storage's newest snapshot.
//  2. Inputs: Tick every Config.TickInterval; Step for each raft message from a peer;
//     ClientRequest for each message from a client connection and ClientGone when the
//     connection closes; ReportUnreachable and ReportSnapshot from the transport.
//  3. Process after a run of inputs: the leader proposes what it batched (one raft entry for many
//     client items, stamped with its clock) and starts one ReadIndex round for the queries taken;
//     the consensus core persists, sends and applies; the queries whose read index is applied
//     are answered.
//  4. Disk jobs: TakeSync returns the sync the core waits for. The driver starts it (on another
//     goroutine, or later in simulated time), calls Process at once — what was durable before
//     is applied while the disk works — goes on feeding inputs and calling Process, and reports
//     the result with SyncDone, then calls Process. (While a sync is under way Process only
//     applies and answers what commits; client items and queries wait for the next cycle, as
//     nothing they produce could leave before it.) TakeSnapshotWrite returns the write of a
//     snapshot taken at an index-aligned point; it runs beside everything, and SnapshotWritten
//     reports it.
//  5. Outputs go to the Outbox as they are produced: raft messages (only once what they depend on
//     is durable), client messages, and Changes (role, leader and term; snapshots taken and
//     installed) for the driver to turn into its own events.
//  6. An error from Process or SnapshotWritten stops the member: storage failed, or the log lost
//     entries it had acknowledged (consensus.ErrStopped, consensus.ErrLostData). Close ends it
//     (the service's OnTerminate, then the storage).
//
// Decisions written down here because users can observe them:
//   - Followers never forward: every client request to a follower is answered with a redirect
//     (leader id, term, the leader's advertised client address), or a redirect with leader -1
//     when no leader is known. Queries are served by the leader only, after a ReadIndex round.
//   - A command or query over MaxCommandBytes is refused by any member, leader or not, with a
//     "rejected" answer that names the limit; so is one whose frame the client port skipped for
//     its size (wire.ClientMsg.OversizedBytes).
//   - COpen opens a session (idempotent); CAttach only attaches to an open one, so a client whose
//     session expired is told so instead of silently getting a new session under the same id,
//     and an id closed before (and still remembered) is never opened again. The answer (CAttached) announces the
//     member's limits: Config.MaxCommandBytes and the response window. A refused open (the
//     session limit, the byte budget) is answered with a session event that says why.
//   - The leader refuses what it cannot take at once rather than let it time out: "rejected"
//     beyond MaxPendingItems client items waiting to be proposed, MaxPendingReads queries, or a
//     full response window; "unavailable" when raft drops a proposal, or a query's ReadIndex
//     round fails.
//   - A new leader that has not yet applied an entry of its own term cannot tell whether a
//     session it does not know was opened by its predecessors: an attach, command or keep-alive
//     of such a session is answered "unavailable" (the client retries), never "expired".
//   - Only the leader decides session expiry, by its local clock; a new leader restarts every
//     session's idle clock, so sessions survive leader changes and whole-cluster restarts. A
//     closed client connection does not close its sessions: they stay open until they expire.
//   - When leadership is lost, attached clients are redirected; their unanswered commands are
//     retried by the client under the same numbers and answered once through the response
//     window, and their pending queries are redirected too.
//   - Authorization (principals.go): a request from an authenticated connection (a Grant) that
//     its principal may not make — a command without Commands, a query without Queries, an admin
//     operation Grant.MayAdmin refuses (list-members excepted) — is answered "denied" by any
//     member, never proposed; a request about a session another principal opened is answered
//     "denied" by the leader. Below cluster version 6 an authenticated client's session requests
//     are answered "unavailable" (the cluster cannot record its principal yet). A request without
//     a Grant (a port without authentication) may do anything, on any session.
//   - Cluster time moves only with the log: when a timer is due and the log is idle, the leader
//     proposes an entry carrying nothing but its clock.
package replica
