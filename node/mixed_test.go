package node

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// incLoad sends increments from a few clients until stopped, counting what was acknowledged and
// what may or may not have been applied.
type incLoad struct {
	acked, unknown atomic.Int64
	stop           context.CancelFunc
	wg             sync.WaitGroup
}

func startIncLoad(t *testing.T, c *cluster, clients int) *incLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &incLoad{stop: cancel}
	for range clients {
		cl := c.dialWith(ctx, client.Config{})
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				_, err := cl.Send(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement}))
				switch {
				case err == nil:
					l.acked.Add(1)
				case errors.Is(err, client.ErrNotApplied):
				default:
					l.unknown.Add(1)
				}
			}
		}()
	}
	return l
}

// waitAcked waits until the load has n more acknowledged increments than now.
func (l *incLoad) waitAcked(t *testing.T, n int64, what string) {
	t.Helper()
	want := l.acked.Load() + n
	deadline := time.Now().Add(30 * time.Second)
	for l.acked.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d increments acknowledged, want %d within 30 s", what, l.acked.Load(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finish stops the load and checks that the counter, read by a query, holds every acknowledged
// increment and no more than those of unknown outcome besides.
func (l *incLoad) finish(t *testing.T, c *cluster) {
	t.Helper()
	l.stop()
	l.wg.Wait()
	cl := c.dial(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	raw, err := cl.Query(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpGet}))
	if err != nil {
		t.Fatal(err)
	}
	r, err := counter.DecodeResponse(raw)
	if err != nil {
		t.Fatal(err)
	}
	acked, unknown := l.acked.Load(), l.unknown.Load()
	if r.Value < acked || r.Value > acked+unknown {
		t.Fatalf("counter %d after %d acknowledged increments and %d of unknown outcome", r.Value, acked, unknown)
	}
	t.Logf("%d increments acknowledged, %d of unknown outcome, counter %d", acked, unknown, r.Value)
}

// clusterVersions returns each running member's cluster version in force.
func (c *cluster) clusterVersions() []uint16 {
	var vs []uint16
	for _, m := range c.members {
		if m.cancel != nil {
			vs = append(vs, m.n.Status().ClusterVersion)
		}
	}
	return vs
}

// reopenReason opens a session on the leader (raw frames), closes it as its client, asks to open
// it again and returns the close reason the refusal names: what cluster version 2 changes.
func reopenReason(t *testing.T, addr string, id wire.SessionID) service.CloseReason {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	next := func(kind wire.ClientKind) wire.ClientMsg {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			_, body, _, err := wire.ReadFrame(r, 1<<20, nil)
			if err != nil {
				t.Fatalf("waiting for a message of kind %d: %v", kind, err)
			}
			m, err := wire.DecodeClientMsg(body)
			if err != nil {
				t.Fatal(err)
			}
			if m.Kind == kind {
				return m
			}
			if m.Kind == wire.CRedirect || m.Kind == wire.CVersionRefused {
				t.Fatalf("%s answered %+v", addr, m)
			}
		}
	}
	send := func(m wire.ClientMsg) {
		t.Helper()
		if _, err := conn.Write(wire.AppendClientFrame(nil, &m, wire.ClientProtocolMin)); err != nil {
			t.Fatal(err)
		}
	}
	send(wire.ClientMsg{Kind: wire.COpen, Session: id, Protocol: wire.ClientProtocol})
	next(wire.CAttached)
	send(wire.ClientMsg{Kind: wire.CClose, Session: id})
	if m := next(wire.CSessionEvent); m.Reason != uint8(service.CloseClient) {
		t.Fatalf("the close was answered %+v", m)
	}
	send(wire.ClientMsg{Kind: wire.COpen, Session: id, Protocol: wire.ClientProtocol})
	m := next(wire.CSessionEvent)
	if m.Status != wire.StatusSessionExpired {
		t.Fatalf("reopening a closed session was answered %+v", m)
	}
	return service.CloseReason(m.Reason)
}

// A cluster where one member speaks only the previous versions (client protocol 1, cluster
// version 1: an older build, played by this one with WithVersions) serves a steady load; the
// cluster version stays 1, and with it the newer way of applying (close reasons remembered) stays
// off. Upgrading that member (a restart without the restriction) lets the leader raise the
// cluster version to 2 by itself, and the feature is on. A member two member-protocol versions
// away is refused at the handshake with a message naming both ranges, and the others keep
// serving. No acknowledged increment is lost through any of it.
func TestMixedVersionCluster(t *testing.T) {
	t.Parallel()
	const old = 2
	c := newCluster(t, 3, nil)
	var restrict atomic.Value // []Option for member old's next start
	restrict.Store([]Option{WithVersions(wire.Range{Min: 1, Max: 1}, wire.Range{Min: 1, Max: 1}, 1)})
	c.opts = func(i int) []Option {
		if i == old {
			return restrict.Load().([]Option)
		}
		return nil
	}
	c.startAll(15 * time.Second)
	load := startIncLoad(t, c, 3)
	defer load.stop()

	// The previous version in force while the older member runs.
	load.waitAcked(t, 300, "with a member of the previous versions")
	if st := c.members[old].n.Status(); st.ClusterVersionMax != 1 {
		t.Fatalf("the restricted member applies up to %d", st.ClusterVersionMax)
	}
	l, _ := c.leader(10 * time.Second)
	if got := reopenReason(t, c.clients[l], wire.SessionID{0x17, 1}); got != service.CloseTimeout {
		t.Fatalf("at cluster version 1 the refusal of a closed session says %v, want %v (as before)", got, service.CloseTimeout)
	}
	load.waitAcked(t, 300, "more, still mixed")
	for i, v := range c.clusterVersions() {
		if v != 1 {
			t.Fatalf("member %d is at cluster version %d while a member applies only 1", i, v)
		}
	}

	// Upgrade the older member: stop it, start it on this build's versions.
	c.stop(old)
	restrict.Store([]Option(nil))
	c.start(old)
	deadline := time.Now().Add(30 * time.Second)
	for {
		vs := c.clusterVersions()
		if len(vs) == 3 && vs[0] == container.ClusterVersionMax && vs[1] == vs[0] && vs[2] == vs[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster versions %v 30 s after the upgrade, want %d everywhere", vs, container.ClusterVersionMax)
		}
		time.Sleep(20 * time.Millisecond)
	}
	l, _ = c.leader(10 * time.Second)
	if got := reopenReason(t, c.clients[l], wire.SessionID{0x17, 2}); got != service.CloseClient {
		t.Fatalf("at cluster version 2 the refusal of a closed session says %v, want %v", got, service.CloseClient)
	}
	load.waitAcked(t, 300, "after the raise")

	// Two versions away: refused at the handshake, on both sides, naming both ranges.
	c.stop(old)
	restrict.Store([]Option{WithVersions(wire.Range{Min: 3, Max: 3}, wire.Range{}, 0)})
	c.start(old)
	refused := func(logs string) bool {
		return strings.Contains(logs, "speaks [1,1]") && strings.Contains(logs, "speaks [3,3]") &&
			strings.Contains(logs, "no common version")
	}
	deadline = time.Now().Add(30 * time.Second)
	for !refused(c.members[old].logs.String()) || !refused(c.members[(old+1)%3].logs.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal naming both ranges in 30 s; member %d logged:\n%s", old, c.members[old].logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	load.waitAcked(t, 300, "while a member two versions away is refused")
	c.stop(old)
	restrict.Store([]Option(nil))
	c.start(old)

	// Nothing acknowledged was lost.
	load.finish(t, c)
}
