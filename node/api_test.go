package node

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/examples/counter"
)

// runOne runs a one-member cluster configured by cfg (ID, Members and DataDir filled in) with
// opts until the test ends, and returns the node and Run's result channel.
func runOne(t *testing.T, cfg Config, opts ...Option) (*Node, context.CancelFunc, <-chan error) {
	t.Helper()
	if cfg.Members == nil {
		cfg.Members = []Member{{ID: 0, ClientAddr: freeAddrs(t, 1)[0], MemberAddr: freeAddrs(t, 1)[0]}}
	}
	cfg.DataDir = t.TempDir()
	n, err := New(cfg, counter.New(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return n, cancel, done
}

// The member's log lines go to Config.Logger: a connection without a valid handshake on the
// member port is closed and logged there.
func TestConfigLoggerGetsTheMembersLines(t *testing.T) {
	logs := &syncBuffer{}
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	n, _, _ := runOne(t, cfg)
	waitRole(t, n, 10*time.Second)
	attack(t, n.cfg.Members[0].MemberAddr, []byte("GET / HTTP/1.1\r\n\r\n"), false, logs, "garbage", "no valid handshake")
}

// waitRole waits until the member has a leader (in a one-member cluster: itself).
func waitRole(t *testing.T, n *Node, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); n.Status().Leader < 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no leader within %s: %+v", timeout, n.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
