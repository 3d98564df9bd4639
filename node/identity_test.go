package node

import (
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
		c.stop(i)
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
	other := newCluster(t, 3, nil)
	other.startAll(30 * time.Second)
	uB := other.waitUUIDs(30 * time.Second)
	for i := range other.members {
		other.stop(i)
	}

	c := newCluster(t, 3, nil)
	c.startAll(30 * time.Second)
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
