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
// its record instead of applying it again. A command the cluster answered "unavailable" (no
// quorum yet, an overloaded leader) is resent after a backoff on the same connection. The session
// lives in the replicated state, so it survives leader changes and a restart of the whole cluster
// (Tandem's leader restarts every session's idle clock). If the cluster did expire the session,
// unanswered commands fail — with ErrOutcomeUnknown if an attempt may have been applied,
// ErrNotApplied if none was (both wrapping ErrSessionExpired) — and are never resent on a new
// session.
//
// Every failure says whether the command may have been applied: ErrNotApplied (never sent, or
// refused by the cluster — a limit, a malformed request, or "unavailable" until the caller gave
// up — with the cluster's reason) or ErrOutcomeUnknown. When a member attaches the session it
// announces its limits: the largest command it accepts (a larger one is refused before it is
// sent, with ErrTooLarge) and its response window (which lowers MaxInFlight if smaller). A
// cluster at its session limit refuses the session: Dial returns ErrSessionRefused at once.
//
// A Client is safe for concurrent use: commands from many goroutines are pipelined on the one
// session (up to MaxInFlight) and answered by number. Commands sent at the same moment share one
// write. For the highest rate without a goroutine per command, SendAsync and QueryAsync take a
// callback instead of waiting (tandem bench drives the cluster that way), each bounded by
// Config.AsyncTimeout; Batch sends all that a goroutine starts at once in one write. Pushes from
// Session.Offer reach Config.OnPush (best effort, at most once).
//
// The protocol itself — numbering, failover, retries, keep-alives, completions — is a state
// machine without I/O (internal/clientcore) that the deterministic simulator drives as well; this
// package runs it over TCP.
package client
