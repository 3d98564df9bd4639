package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/tandem-cluster/tandem/internal/clientcore"
)

// Errors callers branch on with errors.Is.
var (
	// ErrSessionExpired: the cluster closed this client's session (it was idle past the session
	// timeout, or the service closed it). The client is finished; Dial a new one.
	ErrSessionExpired = clientcore.ErrSessionExpired
	// ErrSessionRefused: the cluster refused to open the session: its session limit or its
	// response byte budget is reached. Dial returns it at once, with the cluster's reason
	// (nothing was applied, and the client does not retry: try later, or raise the limit).
	ErrSessionRefused = clientcore.ErrSessionRefused
	// ErrOutcomeUnknown: the command may or may not have been applied (the caller gave up
	// waiting, or the session ended with the command unanswered, after it was sent). It is
	// never resent.
	ErrOutcomeUnknown = clientcore.ErrOutcomeUnknown
	// ErrNotApplied: the command was not applied: it was never sent, or the cluster refused it
	// (a limit was hit, a malformed request; or it said "unavailable" to every attempt until the
	// caller gave up). The error carries the cluster's reason. Safe to retry.
	ErrNotApplied = clientcore.ErrNotApplied
	// ErrTooLarge is wrapped, with ErrNotApplied, in the error for a command or query larger
	// than the cluster accepts: the member announces its limit when the session attaches, and
	// the client refuses a larger payload before sending it. The message names the limit.
	ErrTooLarge = clientcore.ErrTooLarge
	// ErrClosed: the client was closed. Every call after Close returns it; the calls unanswered
	// at Close complete with it, wrapped in ErrNotApplied or ErrOutcomeUnknown.
	ErrClosed = clientcore.ErrClosed
	// ErrInFlightFull is returned (wrapped in ErrNotApplied) by SendAsync when MaxInFlight
	// commands are already in flight (see Config.MaxInFlight).
	ErrInFlightFull = clientcore.ErrInFlightFull
	// ErrProtocolVersion: every configured member refused this client's protocol versions (a
	// member or a client too far apart in builds: see docs/COMPATIBILITY.md). The error names the
	// client's range and each member's. A member that refuses is tried again with the backoff,
	// as one that is down would be (it may be upgraded meanwhile); the client ends only once
	// every configured member refused on its latest answer: Dial returns it, and calls
	// unanswered then complete with it (wrapped in ErrNotApplied or ErrOutcomeUnknown; a
	// command the members refused with its open was not applied).
	ErrProtocolVersion = clientcore.ErrProtocolVersion
	// ErrWrongCluster: every configured member refused the session, one at least because it
	// belongs to another cluster than the one the session first attached to (its attached
	// message named another cluster identity: a member started on another cluster's data
	// directory, or an endpoint of another cluster). The error names both identities. Like a
	// version refusal, such a member is skipped while others serve.
	ErrWrongCluster = clientcore.ErrWrongCluster
	// ErrUnauthenticated: a member refused the client's credential (its token, or its TLS
	// client certificate), or needs one and the client has none, or the member's own
	// certificate is not one the client trusts. Final: Dial returns it at once and the client
	// ends; nothing unanswered was applied on that connection. The error says why.
	ErrUnauthenticated = clientcore.ErrUnauthenticated
	// ErrDenied is wrapped (with ErrNotApplied) in the error of a command or query the member's
	// authorization refused this client's principal, and ends a client whose session belongs to
	// another principal. Final: it is not retried.
	ErrDenied = clientcore.ErrDenied
	// ErrNoLeader (the client's "not leader" error: it follows redirects itself) is returned by
	// Dial when its context ends before any member answered as the leader; the error says what
	// the client could reach.
	ErrNoLeader = errors.New("tandem: no leader reachable")
	// ErrTimeout is wrapped, with context.DeadlineExceeded, in every error returned because a
	// deadline passed: the caller's context's, or Config.AsyncTimeout. A call whose context was
	// cancelled is not a timeout: its error wraps context.Canceled instead (and, for a command,
	// ErrNotApplied or ErrOutcomeUnknown as for any other).
	ErrTimeout = clientcore.ErrTimeout
)

// ctxErr is the error of a call given up on because ctx ended: past a deadline it wraps
// ErrTimeout and context.DeadlineExceeded, cancelled it wraps context.Canceled. A cause the
// caller gave (context.WithCancelCause) is wrapped too.
func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		err = fmt.Errorf("%w (%w)", err, cause)
	}
	return err
}
