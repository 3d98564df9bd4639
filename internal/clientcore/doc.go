// Package clientcore is the protocol state machine of a Tandem client session, with no I/O of its
// own: no goroutines, sockets, locks or clock reads. Time is an input. The client package drives
// it over TCP; the simulator (internal/clustertest) drives the same code over its simulated
// network, so what the simulator checks is the real client's session, numbering, retry and window
// logic.
//
// What the core decides: the session id and whether it was opened; the numbering of commands (a
// ring of the unanswered ones) and the lowest unacknowledged number each command reports; which
// endpoint to try next (a fresh redirect hint, else the endpoints in turn: the members' client
// addresses learned from the leader, then the configured ones — members.go), redirect
// hops (hints from older terms are ignored; after MaxRedirects hops it backs off) and the backoff
// with jitter; abandoning a member that stays silent while the client waits (AttemptTimeout);
// keep-alives; resending every unanswered command under its original number on each new
// connection (behind the open or attach: the member keeps their order), and a refused one
// ("unavailable") after a backoff; completions, with a reply or a typed error that
// says whether the command may have been applied; deadlines; session expiry and refusal; closing
// the session on the cluster (CloseSession); handing on what the service pushes.
//
// The driver's contract, all from one goroutine at a time (the client holds its lock):
//
//  1. Create the core with New and call Start: the core answers with Output.Dial.
//  2. On Dial(conn, endpoint, after): wait after, connect, and report Connected(conn) or
//     Failed(conn). Keep the connection's id with it; the core ignores reports for connections it
//     has left, and hangs up a connection it no longer wants.
//  3. Read from the connection. Before the messages of each read from the network, call Heard;
//     then Received for each message. When the connection fails or ends, call Failed.
//  4. On Write(conn, m): queue the encoded frame on conn, in the order written. Frames of one
//     connection must reach the member in that order: commands are written in the order of their
//     numbers, and the cluster answers in the order it receives (an answer frees room in the
//     window only when it is for the lowest unanswered number).
//  5. On Hangup(conn): close conn (or abandon the dial). Later reports for it are ignored.
//  6. On Complete(ref, reply, err): hand the outcome to the caller; on Push(payload), what the
//     service pushed — both after the core's method returns, never by calling the core back
//     from inside Output, and in the order the core gave them.
//  7. Call Tick periodically: it is the resolution of every timer (the client ticks every
//     AttemptTimeout/8, or BackoffMax if shorter, so that refused commands are resent close to
//     their backoff). Call Submit, Query, Cancel and Close for the caller. Times passed in never
//     go back.
//  8. To close the session on the cluster, call CloseSession, then keep driving the core (steps
//     2 to 7) while Closing reports true: the core asks the leader to close the session and
//     follows failovers until the cluster's word (Closed then reports true). To stop waiting,
//     call Close: the core ends without it, and the session expires on the cluster.
//
// Outcomes: a reply; ErrNotApplied (never sent, or the cluster refused every attempt: a limit, a
// bad request, or a refusal that lasted until the caller gave up); ErrOutcomeUnknown (an attempt
// may have been applied) — each wrapping ErrSessionExpired, ErrSessionRefused or the cause given
// to Close or CloseSession for what was unanswered when the session ended. A command given up on
// is never sent again, and the lowest unacknowledged number moves past it (its place in the
// window is freed): a copy still on its way is applied once at most, and once a later command
// carried the new number the cluster answers it as evicted. At most once holds.
//
// Versions: the core speaks Config.Protocol (this build's client protocol versions by default).
// On each new connection it writes the open or attach, with its range, and the calls behind it,
// in its lowest version, or, to a member that refused that version while speaking one in common
// with the core, in the common version (a member that does not read the open's version refuses
// it and reads nothing after it, so those calls were not applied there; the core reconnects to it
// at once); once attached, everything it writes is in the
// version of the attached message (Output.Write hands the version in m.Version). A message with
// Version 0, one not decoded from bytes (the simulator's), leaves the connection's version as it
// is. A member's version refusal is a member that cannot serve: the core tries the next with its
// backoff, and ends with ErrProtocolVersion (naming the ranges) once every endpoint it knows
// refused on its latest answer.
//
// Files: core.go (the Core, its start and its end: Close, CloseSession), conn.go (the
// connection: dialing, attaching, failover, what arrives), calls.go (commands and queries:
// numbering, answers, refusals, giving up), timers.go (Tick), members.go (learning the members'
// addresses from the leader), ring.go (the ring of unanswered calls).
package clientcore
