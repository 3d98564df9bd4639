package client_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// silentMember attaches sessions and never answers a command or a query; it confirms a close if
// closes is set.
func silentMember(t *testing.T, closes bool) string {
	return serveFake(t, func(m *wire.ClientMsg, out []byte) []byte {
		switch {
		case m.Kind == wire.COpen || m.Kind == wire.CAttach:
			out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CAttached, Session: m.Session}, wire.ClientProtocolMax)
		case m.Kind == wire.CClose && closes:
			out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CSessionEvent, Session: m.Session, Reason: uint8(service.CloseClient)}, wire.ClientProtocolMax)
		}
		return out
	})
}

// A call whose context is cancelled says it was cancelled, not that it timed out; a call whose
// deadline passes says it timed out. Before, both wrapped ErrTimeout.
func TestCancelledCallIsNotATimeout(t *testing.T) {
	addr := silentMember(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// AttemptTimeout long: the silent member is not abandoned while the test waits.
	c, err := client.Dial(ctx, client.Config{Endpoints: []string{addr}, AttemptTimeout: time.Minute, MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	cancelled := func() context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		return ctx
	}
	timedOut := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	check := func(what string, err error, cancel bool, applied error) {
		t.Helper()
		if applied != nil && !errors.Is(err, applied) {
			t.Errorf("%s: %v, want %v", what, err, applied)
		}
		if cancel && (!errors.Is(err, context.Canceled) || errors.Is(err, client.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)) {
			t.Errorf("%s, cancelled: %v, want context.Canceled and no ErrTimeout", what, err)
		}
		if !cancel && (!errors.Is(err, client.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			t.Errorf("%s, past its deadline: %v, want ErrTimeout and context.DeadlineExceeded", what, err)
		}
	}
	for _, cancel := range []bool{true, false} {
		ctx := timedOut
		if cancel {
			ctx = cancelled
		}
		_, err := c.Send(ctx(), []byte("x")) // sent, never answered
		check("Send", err, cancel, client.ErrOutcomeUnknown)
		_, err = c.Query(ctx(), []byte("q"))
		check("Query", err, cancel, nil) // (a query changes nothing)
	}
	// Waiting for room in MaxInFlight (1): the command held there was never sent.
	held := make(chan error, 1)
	if err := c.SendAsync([]byte("x"), func(_ []byte, err error) { held <- err }); err != nil {
		t.Fatal(err)
	}
	for _, cancel := range []bool{true, false} {
		ctx := timedOut
		if cancel {
			ctx = cancelled
		}
		_, err := c.Send(ctx(), []byte("y"))
		check("Send waiting for room", err, cancel, client.ErrNotApplied)
	}

	// A cause given with the cancellation is kept.
	why := errors.New("shutting down")
	cctx, cancelCause := context.WithCancelCause(context.Background())
	time.AfterFunc(50*time.Millisecond, func() { cancelCause(why) })
	if _, err := c.Query(cctx, []byte("q")); !errors.Is(err, why) || !errors.Is(err, context.Canceled) {
		t.Errorf("Query cancelled with a cause: %v, want the cause and context.Canceled", err)
	}

	// Dial, cancelled before any member answered.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := l.Addr().String()
	l.Close()
	_, err = client.Dial(cancelled(), client.Config{Endpoints: []string{nobody}})
	check("Dial", err, true, client.ErrNoLeader)
}
