package client_test

import (
	"bufio"
	"context"
	"errors"
	"net"
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
					_, _ = c.Write(wire.AppendClientFrame(nil, &wire.ClientMsg{Kind: wire.CRedirect, LeaderID: -1, Term: 1, Status: wire.StatusNotLeader}))
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
