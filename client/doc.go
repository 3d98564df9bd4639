// Package client talks to a Tandem cluster: Dial opens a session, Send sends a command through
// the log (exactly once), Query runs a linearizable read.
//
// The client follows the leader by itself. A follower answers with a redirect (leader id, term,
// the leader's client address); hints from older terms are ignored and redirect hops are capped.
// Each attempt on a member is bounded by AttemptTimeout, so a member that accepts connections but
// never answers (a paused process, a half-open connection) is abandoned for the next one. While no
// leader answers, the client retries with exponential backoff and jitter for as long as the
// caller's context allows, and Waiting says what it waits for ("reachable 1 of 3, need 2").
//
// Exactly once: every command carries its session's sequence number; after a failover the client
// resends every unanswered command under the same number, and the cluster answers a resend from
// its record instead of applying it again. The session lives in the replicated state, so it
// survives leader changes and a restart of the whole cluster (Tandem's leader restarts every
// session's idle clock). If the cluster did expire the session, unanswered commands fail with
// ErrOutcomeUnknown and are never resent on a new session.
//
// A Client is safe for concurrent use: commands from many goroutines are pipelined on the one
// session (up to MaxInFlight) and answered by number. Commands sent at the same moment share one
// write. For the highest rate without a goroutine per command, SendAsync and QueryAsync take a
// callback instead of waiting (tandem bench drives the cluster that way); Batch sends all that a
// goroutine starts at once in one write. Pushes from
// Session.Offer are not surfaced yet.
package client
