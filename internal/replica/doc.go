// Package replica is one Tandem member as a deterministic step function: the consensus core, the
// container running the user's service, and the leader's ingress (session checks, batching of
// client items into raft entries, ReadIndex rounds for queries, session expiry and timer ticks).
// It has no goroutines, sockets or timers: the node package drives it with real ones, and the
// simulator (internal/clustertest) with simulated ones, so both run exactly this code.
//
// The driver's loop, from one goroutine:
//
//  1. Inputs: Tick every Config.TickInterval; Step for each raft message from a peer;
//     ClientRequest for each message from a client connection and ClientGone when it closes;
//     ReportUnreachable / ReportSnapshot from the transport.
//  2. Process after a run of inputs: it proposes what the leader batched (one raft entry for many
//     client items, stamped with the leader's clock), runs the consensus core (persist, send,
//     apply), writes the snapshot if an index-aligned snapshot point was applied, and serves the
//     queries whose read index has been applied.
//  3. Outputs go to the Outbox: raft messages, client messages, events.
//
// Decisions written down here because users can observe them:
//   - Followers never forward: every client request to a follower is answered with a redirect
//     (leader id, term, the leader's advertised client address), or a redirect with leader -1
//     when no leader is known.
//   - COpen opens a session (idempotent); CAttach only attaches to an open one, so a client whose
//     session expired is told so instead of silently getting a new session under the same id.
//     The answer (CAttached) announces the member's limits: Config.MaxCommandBytes and the
//     response window. A refused open (the session limit, the byte budget) is answered with a
//     session event that says why.
//   - A command or query over MaxCommandBytes is refused by any member, leader or not, with a
//     "rejected" answer that names the limit; so is one whose frame the client port skipped for
//     its size (wire.ClientMsg.OversizedBytes).
//   - Only the leader decides session expiry, by its local clock; a new leader restarts every
//     session's idle clock, so sessions survive leader changes and whole-cluster restarts.
//   - When leadership is lost, attached clients are redirected; their unanswered commands are
//     retried by the client under the same numbers and answered once through the response
//     window.
package replica
