package node

import (
	"bufio"
	"context"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// failingListener fails its first accepts as a process out of file descriptors does.
type failingListener struct {
	net.Listener
	fails atomic.Int64 // accepts still to fail
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// After accepts failed with "too many open files", a member serves its peers and its clients
// again: both accept loops back off and retry instead of ending.
func TestMemberServesAfterFailedAccepts(t *testing.T) {
	t.Parallel()
	const fails = 6 // 5 ms doubling: the last retry comes about 0.3 s after the first failure
	c := newCluster(t, 3, nil)
	c.opts = func(i int) []Option {
		if i != 0 {
			return nil
		}
		return []Option{wrapListeners(func(_ string, l net.Listener) net.Listener {
			fl := &failingListener{Listener: l}
			fl.fails.Store(fails)
			return fl
		})}
	}
	l, _ := c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var last int64
	for range 5 {
		last = inc(ctx, t, c.dial(ctx))
	}
	// Member 0 hears its peers: whether it leads or follows, what its peers send it comes in
	// through its member port, so it could not have applied the log without it.
	commit := c.members[l].n.Status().Commit
	for deadline := time.Now().Add(10 * time.Second); c.members[0].n.Status().Applied < commit; {
		if time.Now().After(deadline) {
			t.Fatalf("member 0 applied %d of the %d committed: it does not hear its peers; logs:\n%s",
				c.members[0].n.Status().Applied, commit, c.members[0].logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Member 0 serves clients: a client that knows only member 0 is answered by it (or
	// redirected by it to the leader).
	only0, err := client.Dial(ctx, client.Config{Endpoints: c.clients[:1]})
	if err != nil {
		t.Fatalf("a client of member 0 alone: %v", err)
	}
	defer only0.Close()
	if v := inc(ctx, t, only0); v != last+1 {
		t.Fatalf("counter %d after %d", v, last)
	}
	if got := c.members[0].n.Status().AcceptFailures; got != 2*fails {
		t.Fatalf("AcceptFailures = %d, want %d (both ports)", got, 2*fails)
	}
	if logs := c.members[0].logs.String(); !strings.Contains(logs, "accept failed; retrying") ||
		!strings.Contains(logs, "too many open files") {
		t.Fatalf("no log line for the failed accepts; logs:\n%s", logs)
	}
}

// query sends a query on conn and waits for its answer.
func query(conn net.Conn) error {
	m := wire.ClientMsg{Kind: wire.CQuery, RequestID: 7}
	if _, err := conn.Write(wire.AppendClientFrame(nil, &m, wire.ClientProtocolMax)); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, _, err := wire.ReadFrame(bufio.NewReader(conn), 1<<20, nil)
	return err
}

// Over a port's connection limit, a connection is closed at once, counted and logged; the
// connections within the limit are served, and a place freed is taken again.
func TestConnectionLimitsRefuseAndCount(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) { cfg.MaxClientConns, cfg.MaxMemberConns = 2, 1 })
	c.startAll(15 * time.Second)
	m := c.members[0]
	dial := func(addr string) net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	waitCount := func(what string, get func(Status) int, want int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); get(m.n.Status()) != want; {
			if time.Now().After(deadline) {
				t.Fatalf("%s = %d, want %d", what, get(m.n.Status()), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// Member port (limit 1): the first connection is held before its handshake (which it has
	// 5 s to send), the second is refused.
	dial(m.cfg.Members[0].MemberAddr)
	expectClosed(t, dial(m.cfg.Members[0].MemberAddr), "a member connection over the limit")
	waitCount("MemberConnsRefused", func(st Status) int { return st.MemberConnsRefused }, 1)

	// Client port (limit 2).
	a, b := dial(c.clients[0]), dial(c.clients[0])
	expectClosed(t, dial(c.clients[0]), "a client connection over the limit")
	waitCount("ClientConnsRefused", func(st Status) int { return st.ClientConnsRefused }, 1)
	for _, conn := range []net.Conn{a, b} {
		if err := query(conn); err != nil {
			t.Fatalf("a connection within the limit is not served: %v", err)
		}
	}
	// The accept loop counts a refusal before it logs it: the line may come a moment after.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		logs := m.logs.String()
		if strings.Contains(logs, "client port: connection refused") && strings.Contains(logs, "member port: connection refused") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line for the refused connections; logs:\n%s", logs)
		}
	}
	// A freed place is taken again (once the member has seen the close).
	b.Close()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if err := query(dial(c.clients[0])); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("after a client left, a new connection is still not served: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
