package node

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Members founded with different lists (here member 2 has a typo in member 1's client address)
// must not talk: their bootstrap entries are equal in index and term and differ in content, and
// raft would take them for the same. Every handshake carries a digest of the founding list; the
// others refuse member 2 and it refuses them, each logging its own list; members 0 and 1 form
// the cluster and serve, and member 2 never follows a leader.
func TestFoundersWithDifferentListsDoNotTalk(t *testing.T) {
	c := newCluster(t, 3, nil)
	typo := c.members[2].cfg.Members
	typo = append(typo[:0:0], typo...)
	typo[1].ClientAddr = "127.0.0.1:1" // a typo
	c.members[2].cfg.Members = typo
	c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	if got := inc(ctx, t, cl); got != 1 {
		t.Fatalf("increment: %d", got)
	}
	refused := func(i int) bool {
		return strings.Contains(c.members[i].logs.String(), "founding members differ")
	}
	deadline := time.Now().Add(15 * time.Second)
	for !refused(2) || !(refused(0) || refused(1)) {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal naming the founding lists in 15 s; member 2 logged:\n%s", c.members[2].logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := c.members[2].n.Status(); st.Leader >= 0 || st.Applied > 3 {
		t.Fatalf("member 2, founded with another list, follows a leader or applied their log: %+v", st)
	}
}
