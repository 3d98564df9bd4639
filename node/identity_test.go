package node

import (
	"context"
	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"os"
	"strings"
	"testing"
	"time"
)

// waitUUIDs waits until every running member of c reports one cluster identity, and returns it.
func (c *cluster) waitUUIDs(timeout time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var got []string
		one := true
		for _, m := range c.members {
			u := m.n.Status().ClusterUUID
			got = append(got, u)
			one = one && u != "" && u == got[0]
		}
		if one {
			return got[0]
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster identities %q after %s, want one on every member", got, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A new cluster gets one identity, the same on every member, kept in every member's IDENTITY:
// after a restart each member reports it again.
func TestNewClusterGetsOneIdentityKeptAcrossRestarts(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.startAll(30 * time.Second)
	u := c.waitUUIDs(30 * time.Second)
	if len(u) != 32 {
		t.Fatalf("cluster identity %q, want 32 hex digits", u)
	}
	for i, m := range c.members {
		b, err := os.ReadFile(m.cfg.DataDir + "/IDENTITY")
		if err != nil || !strings.Contains(string(b), "uuid "+u+"\n") {
			t.Fatalf("member %d's IDENTITY %q (%v) does not hold %s", i, b, err, u)
		}
	}
	for i := range c.members {
		c.stopNow(i) // (the hand-over is not this test's: the last leader would wait 3 s for it)
	}
	c.startAll(30 * time.Second)
	if got := c.waitUUIDs(30 * time.Second); got != u {
		t.Fatalf("after a restart the identity is %s, was %s", got, u)
	}
}

// The scenario: another cluster's data directory (same default name, same member id)
// replaces one member's. The others refuse it at the handshake, naming both identities, and it
// never leads them; they keep serving with their own identity.
func TestDataDirectoryOfAnotherClusterRefused(t *testing.T) {
	t.Parallel()
	// The two clusters start together (their elections overlap); the other one stops, without
	// the hand-over (its last leader would wait 3 s for it), before its member's data is copied.
	other, c := newCluster(t, 3, nil), newCluster(t, 3, nil)
	for i := range 3 {
		other.start(i)
		c.start(i)
	}
	other.leader(30 * time.Second)
	uB := other.waitUUIDs(30 * time.Second)
	for i := range other.members {
		other.stopNow(i)
	}

	c.leader(30 * time.Second)
	uA := c.waitUUIDs(30 * time.Second)
	if uA == uB {
		t.Fatalf("two clusters drew the same identity %s", uA)
	}
	c.stop(0)
	dir := c.members[0].cfg.DataDir
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(dir, os.DirFS(other.members[0].cfg.DataDir)); err != nil {
		t.Fatal(err)
	}
	c.start(0)
	// The others log the refusal with both identities; so does the stray member.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, m := range c.members {
			s := m.logs.String()
			ok = ok && strings.Contains(s, "a data directory of another cluster?") && strings.Contains(s, uA) && strings.Contains(s, uB)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refusal naming %s and %s is not logged by every member within 30 s:\n%s", uA, uB, c.members[1].logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Member 0 may have led before it stopped: wait until 1 and 2 elected one of them, then, for a
	// few election timeouts, they never follow member 0, and keep their identity.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		l1, l2 := c.members[1].n.Status().Leader, c.members[2].n.Status().Leader
		if l1 == l2 && (l1 == 1 || l1 == 2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("members 1 and 2 follow leaders %d and %d 30 s after member 0 came back", l1, l2)
		}
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		for _, i := range []int{1, 2} {
			st := c.members[i].n.Status()
			if st.Leader == 0 || st.ClusterUUID != uA {
				t.Fatalf("member %d follows leader %d with identity %s (want not 0, and %s)", i, st.Leader, st.ClusterUUID, uA)
			}
		}
		if st := c.members[0].n.Status(); st.ClusterUUID != "" && st.ClusterUUID != uB {
			t.Fatalf("the stray member reports identity %s", st.ClusterUUID)
		}
	}
}

// A client that attached to cluster A, whose endpoint list also names a member of cluster B
// (another cluster, same defaults), is refused by B when A is down — B's member knows the
// identity the attach names is not its own — and nothing of its session is applied on B; once A
// is back, the command completes there.
func TestClientRefusesAnEndpointOfAnotherCluster(t *testing.T) {
	t.Parallel()
	a, b := newCluster(t, 1, nil), newCluster(t, 1, nil)
	a.startAll(15 * time.Second)
	b.startAll(15 * time.Second)
	for _, c := range []*cluster{a, b} {
		deadline := time.Now().Add(10 * time.Second)
		for c.members[0].n.Status().ClusterUUID == "" {
			if time.Now().After(deadline) {
				t.Fatalf("no cluster identity after 10 s: %+v", c.members[0].n.Status())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.Config{Endpoints: []string{a.clients[0], b.clients[0]}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := inc(ctx, t, cl); got != 1 {
		t.Fatalf("first increment on A: %d", got)
	}
	a.stop(0)
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	_, err = cl.Send(short, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement}))
	cancelShort()
	if err == nil {
		t.Fatalf("an increment was answered while A was down: B served a session of A")
	}
	if logs := b.members[0].logs.String(); strings.Contains(logs, "panic") {
		t.Fatalf("B: %s", logs)
	}
	if st := b.members[0].n.Status(); st.Applied == 0 {
		t.Fatalf("B applied nothing at all: %+v", st)
	}
	// B's counter is still 0: nothing of A's session reached it.
	bc := b.dial(ctx)
	raw, err := bc.Query(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpGet}))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := counter.DecodeResponse(raw); r.Value != 0 {
		t.Fatalf("B's counter is %d: a session of A was served by B", r.Value)
	}
	a.start(0)
	if got := inc(ctx, t, cl); got < 2 {
		t.Fatalf("increment on A once it is back: %d", got)
	}
}
