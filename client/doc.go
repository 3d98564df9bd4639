// Package client talks to a Tandem cluster. Dial opens a session; Send sends a command through
// the replicated log, applied exactly once; Query runs a linearizable read; Close closes the
// session. The client finds the leader and follows it across failovers by itself.
//
//	c, err := client.Dial(ctx, client.Config{Endpoints: []string{"10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"}})
//	if err != nil { … }                    // ErrNoLeader, ErrSessionRefused, a bad Config
//	defer c.Close()                        // closes the session on the cluster
//	reply, err := c.Send(ctx, command)     // through the log, exactly once
//	value, err := c.Query(ctx, request)    // linearizable, not logged
//
// # Sessions
//
// A Client is one session with the cluster. Its id is random (128 bits) and made by the client,
// so opening it is idempotent; the open is an entry of the replicated log, and so is its close.
// Dial returns once the cluster has opened the session. The session lives in the replicated
// state: it survives leader changes and a restart of the whole cluster (a new leader restarts
// every session's idle clock). The client keeps it alive while idle (KeepAliveInterval); a
// session the cluster hears nothing from for its session timeout (10 s by default) is expired by
// the cluster, and every later call fails with ErrSessionExpired: the client is finished, Dial a
// new one. A Client is safe for concurrent use: commands from many goroutines are pipelined on
// the one session, numbered in the order they were submitted and answered by number.
//
// # Exactly once
//
// Every command carries its session's sequence number. After a failover the client resends
// every unanswered command under the same number, and the cluster answers a resend from its
// record instead of applying it again; a command the cluster answered "unavailable" (no quorum
// yet, an overloaded leader) is resent after a backoff. A command is never resent under a new
// number, nor on a new session: once the client gives up on a command (its context ended, its
// AsyncTimeout passed, Close, the session's end) it is never sent again, and a copy still on its
// way is applied once at most.
//
// # Failover
//
// A follower answers with a redirect (leader id, term, the leader's client address); the client
// follows it at once (hints from older terms are ignored, consecutive hops are capped by
// MaxRedirects). Each attempt on a member is bounded by AttemptTimeout, so a member that accepts
// connections but never answers (a paused process, a half-open connection) is abandoned for the
// next one. While no leader answers, the client retries with exponential backoff and jitter
// (BackoffMin to BackoffMax) for as long as the call's context allows; Waiting says what it
// waits for ("reachable 1 of 3, need 2"), and the errors of calls given up meanwhile quote it.
//
// The members change (they join, are removed), so the client does not rely on Config.Endpoints
// alone: once its session attaches to a leader that speaks client protocol 4 or later, it asks
// that leader for the membership (the admin channel's list-members, on the session's own
// connection) at once and then every 10 s. Where it looks for the leader is then the members'
// client addresses (voters, then learners), followed by the configured endpoints the cluster
// did not list, kept as a fallback (Endpoints returns the list). A client given one member's
// address thus keeps working once that member is removed. A member of an older build is asked
// nothing: the client tries its configured endpoints, as before. The members' client
// addresses are the ones they advertise (node.Member's ClientAddr), which redirects name too:
// they must be reachable from the client.
//
// # Errors
//
// Every error of a command says whether it may have been applied; branch with errors.Is:
//
//	reply, err := c.Send(ctx, cmd)
//	switch {
//	case err == nil:                                  // applied once; reply is the service's
//	case errors.Is(err, client.ErrNotApplied):       // not applied: safe to send again
//	case errors.Is(err, client.ErrOutcomeUnknown):   // may have been applied: find out (a query) before sending again
//	}
//
// Then the cause, wrapped in the same error:
//
//   - ErrNotApplied: the command was never sent, or the cluster refused every attempt with its
//     reason (a limit, a malformed request, or "unavailable" until the caller gave up). Sending
//     it again is safe: it was not applied.
//   - ErrOutcomeUnknown: an attempt reached the cluster and no answer came back before the
//     caller gave up or the session ended; or the answer was already acknowledged and evicted
//     from the cluster's record. The client will not resend it; only the service's state can
//     tell whether it was applied.
//   - ErrTimeout (with context.DeadlineExceeded): a deadline passed, the call's context's or
//     AsyncTimeout. A cancelled context is not a timeout: the error wraps context.Canceled (and
//     the cause given to context.WithCancelCause).
//   - ErrSessionExpired: the cluster closed the session (idle past the session timeout, or
//     closed by the service). Every later call fails with it; Dial a new client.
//   - ErrClosed: the client was closed; calls unanswered at Close fail with it too.
//   - ErrTooLarge (with ErrNotApplied): the payload is over the cluster's command size limit;
//     refused before it was sent. Not worth retrying as is.
//   - ErrInFlightFull (with ErrNotApplied): SendAsync found MaxInFlight commands in flight;
//     send again once one is answered.
//   - ErrSessionRefused (Dial only): the cluster refused to open the session (its session limit
//     or its response byte budget, with its reason). Nothing was applied; the client does not
//     retry.
//   - ErrNoLeader (Dial only): Dial's context ended before any member answered as the leader;
//     the error says what the client could reach.
//   - ErrProtocolVersion: every member the client knows (configured or learned) refused the
//     client's protocol versions; the error names the client's range and the members'.
//
// # Versions
//
// Each connection speaks one client protocol version, the highest both the client and the member
// speak (this build: 1 and 2; 1 is what clients and members up to 045a031 speak). The client
// opens (or attaches) in the lowest version it speaks, with its range; what it sends behind the
// open before the answer is in that version too, and a member that does not read it refuses at
// the open and reads nothing after it; when their ranges meet, the client reconnects to it at
// once writing in the common version. The member answers in the version it chose, and the client
// writes in that version from then on. A member that refuses the client's versions is treated as
// one that cannot serve: the client tries the others (ErrProtocolVersion once every one refused).
//
// A query changes nothing, so whatever its error (a deadline, a refusal, the session's end), asking
// again is safe.
//
// # Limits
//
// When the session attaches to a leader, the leader announces two limits, and the client keeps
// to the latest announcement (a new leader may announce other ones):
//
//   - The largest command or query payload it accepts (its MaxCommandBytes; 1 MiB, the
//     protocol's limit, by default and before the first attach). A larger payload is refused
//     with ErrTooLarge before it is sent; the message names the limit.
//   - Its response window: how many command numbers a session may have in flight, from its
//     lowest unanswered number to its newest (1024 by default). The client's in-flight limit is
//     the smaller of Config.MaxInFlight and that window. Send waits for room (bounded by its
//     context), SendAsync refuses with ErrInFlightFull.
//
// # Timeouts
//
//   - The context of Send, Query and Dial bounds the whole call, across failovers and retries.
//   - AsyncTimeout bounds a SendAsync or QueryAsync call (30 s by default; negative: none).
//   - AttemptTimeout bounds one attempt on one member, not a call: the client then moves on.
//   - CloseTimeout bounds Close (CloseContext takes a context instead).
//
// # Asynchronous calls and Batch
//
// For the highest rate without a goroutine per command, SendAsync and QueryAsync take a callback
// instead of waiting. The callbacks run on the client's goroutines after its lock is released:
// they may start more calls (that is how a caller keeps a window of commands in flight), must
// not block for long, wait for an answer, or call Close. Commands sent at the same moment share
// one write; Batch sends everything a goroutine starts in its function in one write.
//
// # Pushes
//
// A service may push a message to a session (service.Session.Offer); Config.OnPush receives
// them, in order, on the goroutine that reads the connection. Pushes are best effort, at most
// once: they are not part of the log, only the leader the session is attached to sends them, and
// nothing is resent after a failover or a reconnect.
//
// # Close
//
// Close gives up on what is unanswered (ErrClosed), then asks the cluster to close the session
// and waits, at most CloseTimeout, for its confirmation: the service sees OnSessionClose with
// service.CloseClient, and the session's resources on the cluster are freed at once. A Close the
// cluster does not confirm in time (no leader, a failover under way) still ends the client and
// returns an error saying so: the session then expires on the cluster after its timeout.
//
// # Inside
//
// The protocol itself — numbering, failover, retries, keep-alives, completions, the close — is
// a state machine without I/O (internal/clientcore) that the deterministic simulator drives as
// well; this package runs it over TCP: config.go, errors.go; client.go (Dial, the lock and the
// core's outputs); send.go (Send, SendAsync, Query, QueryAsync, Batch); close.go; writes.go (a
// connection's coalesced writes); loop.go (the connections the core asks for, the timers);
// read.go (the reader).
package client
