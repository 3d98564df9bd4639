package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
)

// fdLimit is the file descriptor limit the members of these tests run under.
const fdLimit = 64

// startLimited starts a one-member cluster under fdLimit with the extra flags; it does not wait.
func startLimited(t *testing.T, flags ...string) *procCluster {
	pc := newProcCluster(t, 1)
	pc.shell = fmt.Sprintf("ulimit -n %d", fdLimit)
	pc.extraArgs = flags
	pc.start(0)
	return pc
}

// openConns dials addr n times, failing the test on an error; the connections are closed when
// the test ends (or earlier by the caller).
func openConns(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for range n {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns)+1, err)
		}
		t.Cleanup(func() { conn.Close() })
		conns = append(conns, conn)
	}
	return conns
}

// dialAndGet opens a session on the cluster and reads the counter.
func dialAndGet(ctx context.Context, endpoints []string) error {
	c, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = get(ctx, c)
	return err
}

func waitOutput(t *testing.T, p *proc, want string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !strings.Contains(p.output(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the member's output within %s:\n%s", want, timeout, p.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A member whose process ran out of file descriptors (accept: too many open files) serves again
// within a second of the flood ending; with a connection limit below its descriptors, a flood
// never gets that far: the connections over the limit are refused and counted.
func TestProcessSurvivesDescriptorExhaustion(t *testing.T) {
	exhausted := startLimited(t)
	limited := startLimited(t, "--max-client-conns", "16")
	exhausted.leader(15 * time.Second)
	limited.leader(15 * time.Second)

	t.Run("exhausted", func(t *testing.T) {
		p := exhausted.procs[0]
		// More connections than the member has descriptors: its accepts fail.
		flood := openConns(t, exhausted.clients[0], 2*fdLimit)
		waitOutput(t, p, "too many open files", 5*time.Second)
		for _, c := range flood {
			c.Close()
		}
		ended := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := dialAndGet(ctx, exhausted.clients); err != nil {
			t.Fatalf("the member does not answer after the flood: %v\n%s", err, p.output())
		}
		if took := time.Since(ended); took > time.Second {
			t.Fatalf("the member answered %s after the flood ended, want within 1 s", took)
		}
		if !strings.Contains(p.output(), "accept failed; retrying") {
			t.Fatalf("the failed accepts were not logged as retried:\n%s", p.output())
		}
		t.Logf("answered %s after the flood ended", time.Since(ended))
	})

	t.Run("limited", func(t *testing.T) {
		p := limited.procs[0]
		const held, over = 16, 24
		conns := openConns(t, limited.clients[0], held+over)
		// The connections over the limit are closed by the member at once.
		var wg sync.WaitGroup
		closed := make(chan int, len(conns))
		for i, c := range conns {
			wg.Go(func() {
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := io.Copy(io.Discard, c); err == nil {
					closed <- i
				}
			})
		}
		wg.Wait()
		if len(closed) != over {
			t.Fatalf("%d connections closed by the member, want the %d over the limit of %d", len(closed), over, held)
		}
		waitOutput(t, p, "client port: connection refused", 5*time.Second) // rate-limited: the first of them
		if strings.Contains(p.output(), "too many open files") {
			t.Fatalf("the member ran out of descriptors despite its connection limit:\n%s", p.output())
		}
		for _, c := range conns {
			c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := dialAndGet(ctx, limited.clients); err != nil {
			t.Fatalf("the member does not answer once the connections closed: %v", err)
		}
	})
}
