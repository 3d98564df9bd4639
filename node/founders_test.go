package node

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// Members founded with different member sets (here member 2 was given a list with a fourth
// member) must not talk: their bootstrap entries are equal in index and term and differ in
// content, and raft would take them for the same configuration. Every handshake carries a digest
// of the founding ids; the others refuse member 2 and it refuses them, each naming its own list;
// members 0 and 1 form the cluster and serve, and member 2 never follows a leader.
func TestFoundersWithDifferentMembersDoNotTalk(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	extra := listenLocal(t)
	defer extra.Close()
	other := listenLocal(t)
	defer other.Close()
	wrong := append(c.members[2].cfg.Members[:0:0], c.members[2].cfg.Members...)
	wrong = append(wrong, Member{ID: 3, ClientAddr: extra.Addr().String(), MemberAddr: other.Addr().String()})
	c.members[2].cfg.Members = wrong
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
	if st := c.members[2].n.Status(); st.Leader >= 0 && st.Leader < 2 || st.Applied > 4 {
		t.Fatalf("member 2, founded with other members, follows their leader or applied their log: %+v", st)
	}
}

// The same members with an address spelled otherwise (localhost for 127.0.0.1) are only logged:
// such clusters worked, and both spellings may be right.
func TestFoundersWithAddressesSpelledOtherwiseTalk(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	spelled := append(c.members[2].cfg.Members[:0:0], c.members[2].cfg.Members...)
	_, port, _ := net.SplitHostPort(spelled[1].ClientAddr)
	spelled[1].ClientAddr = fmt.Sprintf("localhost:%s", port)
	c.members[2].cfg.Members = spelled
	c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	inc(ctx, t, cl)
	deadline := time.Now().Add(15 * time.Second)
	for c.members[2].n.Status().Applied < c.members[0].n.Status().Commit || c.members[2].n.Status().Leader < 0 {
		if time.Now().After(deadline) {
			t.Fatalf("member 2 did not follow: %+v", c.members[2].n.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 3 {
		if strings.Contains(c.members[i].logs.String(), "founding members differ") {
			t.Fatalf("member %d refused a peer for an address spelled otherwise", i)
		}
	}
}
