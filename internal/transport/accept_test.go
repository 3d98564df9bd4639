package transport

import (
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// brokenListener fails every accept as a process out of file descriptors does, recording when.
type brokenListener struct {
	net.Listener
	mu    sync.Mutex
	calls []time.Time
}

func (l *brokenListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	l.mu.Unlock()
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
}

func (l *brokenListener) Close() error { return nil } // as a listener that stays broken

// An accept loop whose accepts keep failing backs off (5 ms, doubling) instead of spinning or
// ending, counts the failures, and still ends promptly on Stop in the middle of a backoff.
func TestAcceptLoopBacksOffAndStops(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	l := &brokenListener{Listener: inner}
	s := NewClientServer(ClientConfig{Listener: l}, &clientRecorder{})
	s.Start()
	const n = 6
	for deadline := time.Now().Add(10 * time.Second); s.AcceptFailures() < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d accept failures after 10 s, want %d: the loop ended", s.AcceptFailures(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.mu.Lock()
	spent := l.calls[n-1].Sub(l.calls[0])
	l.mu.Unlock()
	// Between the first and the sixth attempt: 5+10+20+40+80 ms of backoff at least.
	if least := 155 * time.Millisecond; spent < least {
		t.Fatalf("%d attempts in %s: the loop does not back off (want at least %s)", n, spent, least)
	}
	stopped := make(chan struct{})
	go func() {
		s.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not end the backing-off accept loop")
	}
}
