package clientcore

import (
	"context"
	"errors"
	"fmt"
)

// Errors. The client package exports them under the same names and documents them there.
var (
	ErrSessionExpired = errors.New("tandem: session expired")
	ErrSessionRefused = errors.New("tandem: session refused")
	ErrOutcomeUnknown = errors.New("tandem: outcome unknown")
	ErrNotApplied     = errors.New("tandem: not applied")
	ErrClosed         = errors.New("tandem: client closed")
	ErrTimeout        = errors.New("tandem: timed out")
	ErrInFlightFull   = errors.New("tandem: MaxInFlight commands already outstanding")
	ErrTooLarge       = errors.New("tandem: too large")
	// ErrProtocolVersion ends a core whose every known endpoint refused its client protocol
	// versions (the error names the ranges).
	ErrProtocolVersion = errors.New("tandem: no common protocol version")
	// ErrWrongCluster ends a core whose every known endpoint refused it, one at least because
	// it belongs to another cluster than the one the session first attached to (the error names
	// both identities).
	ErrWrongCluster = errors.New("tandem: another cluster")
	// ErrUnauthenticated ends a core whose credential a member refused, or that has none for a
	// member that needs one (the error says why). Final: a credential is not retried.
	ErrUnauthenticated = errors.New("tandem: not authenticated")
	// ErrDenied: the member's authorization refused this principal the request (not applied).
	// Final for that request; the session goes on.
	ErrDenied = errors.New("tandem: permission denied")
	// ErrDeadline is the cause given to a call that reached its deadline.
	ErrDeadline = fmt.Errorf("%w: %w", ErrTimeout, context.DeadlineExceeded)
)
