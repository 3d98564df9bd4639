package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
)

// Close closes the session on the cluster: the service sees OnSessionClose with CloseClient
// once Close returns. Before, the session stayed open until it expired.
func TestCloseClosesTheSessionOnTheCluster(t *testing.T) {
	endpoints, stop := startCluster(1, newPusher)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	observer, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	defer observer.Close()
	c, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	took := time.Since(start)
	closes, err := observer.Query(ctx, []byte("closes"))
	if err != nil {
		t.Fatal(err)
	}
	if want := c.SessionID() + " CLIENT_ACTION"; string(closes) != want {
		t.Fatalf("closes the service saw after Close returned (in %s): %q, want %q", took, closes, want)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	if _, err := c.Send(ctx, []byte("x")); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
}

// A Close the cluster does not confirm still ends the client, within its bound, and says that the
// session was left to expire: past CloseTimeout as a timeout, with a cancelled context as
// cancelled (at once).
func TestCloseUnconfirmedEndsTheClient(t *testing.T) {
	addr := silentMember(t, false) // attaches, never answers the close
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Endpoints: []string{addr}, CloseTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	outcome := make(chan error, 1)
	if err := c.SendAsync([]byte("x"), func(_ []byte, err error) { outcome <- err }); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = c.Close()
	took := time.Since(start)
	if !errors.Is(err, client.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not closed on the cluster") {
		t.Fatalf("an unconfirmed Close: %v", err)
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Fatalf("an unconfirmed Close took %s, CloseTimeout 300 ms", took)
	}
	if err := <-outcome; !errors.Is(err, client.ErrOutcomeUnknown) || !errors.Is(err, client.ErrClosed) {
		t.Fatalf("the command unanswered at Close: %v", err)
	}
	if again := c.Close(); again != err {
		t.Fatalf("a second Close returned %v, the first %v", again, err)
	}

	c, err = client.Dial(ctx, client.Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	start = time.Now()
	err = c.CloseContext(cctx)
	if !errors.Is(err, context.Canceled) || errors.Is(err, client.ErrTimeout) || time.Since(start) > time.Second {
		t.Fatalf("CloseContext with a cancelled context: %v after %s", err, time.Since(start))
	}
}
