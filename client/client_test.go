package client_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Members that know no leader (an election under way, a minority) answer every open with a
// redirect without a hint. The client tries each in turn, then backs off. It used to reset its
// count of hops whenever a redirect had no hint, and so reconnected in a tight loop: 5 793
// connections in a second against three such members on loopback.
func TestRedirectsWithoutALeaderBackOff(t *testing.T) {
	var accepts atomic.Int64
	var addrs []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		addrs = append(addrs, l.Addr().String())
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepts.Add(1)
				go func() {
					defer c.Close()
					if _, _, _, err := wire.ReadFrame(bufio.NewReader(c), 1<<20, nil); err != nil {
						return
					}
					_, _ = c.Write(wire.AppendClientFrame(nil, &wire.ClientMsg{Kind: wire.CRedirect, LeaderID: -1, Term: 1, Status: wire.StatusNotLeader}, wire.ClientProtocolMax))
				}()
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := client.Dial(ctx, client.Config{Endpoints: addrs})
	if !errors.Is(err, client.ErrNoLeader) {
		t.Fatalf("Dial: %v", err)
	}
	// MaxRedirects (8) hops in a row, then a backoff of 10 ms or more that doubles up to 250 ms.
	if n := accepts.Load(); n > 300 {
		t.Fatalf("%d connections in one second: the client does not back off", n)
	}
}

// Close may be called from several goroutines at once (a shutdown path beside a deferred
// Close): each returns once the client has ended. It used to close its channel twice, and panic,
// when two of them got past the check that it was still open together.
func TestConcurrentCloseDoesNotPanic(t *testing.T) {
	addr := fakeMember(t)
	for range 400 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := client.Dial(ctx, client.Config{Endpoints: []string{addr}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				<-start
				if err := c.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if _, err := c.Send(context.Background(), []byte("x")); !errors.Is(err, client.ErrClosed) {
			t.Fatalf("Send after Close: %v, want ErrClosed", err)
		}
	}
}
