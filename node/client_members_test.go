package node

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/internal/admin"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// The requirement: a client given only one member's address learns the current members'
// addresses, and keeps working after that member is removed.
//
// The client is given the leader's address only: it attaches there directly and hears of no
// other member from a redirect. It learns the three members; the leader is removed (it hands
// over, the new leader removes it, it stops); the client goes on, and learns the new membership,
// the removed member's address kept last, as configured. Then the new leader restarts: no
// redirect names a leader, the configured address is gone for good, and only the learned
// addresses lead the client back. Every increment is acknowledged once, in order.
func TestClientGivenOneAddressOutlivesItsRemoval(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.startAll(10 * time.Second)
	c.waitMembershipVersion()
	a, _ := c.leader(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.Config{Endpoints: []string{c.clients[a]}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var value int64
	send := func(n int, what string) {
		t.Helper()
		for range n {
			value++
			if got := inc(ctx, t, cl); got != value {
				t.Fatalf("%s: the counter is %d, want %d", what, got, value)
			}
		}
	}
	send(5, "before learning")
	// learned waits until the client tries want, in order, and counts voters learned voters.
	learned := func(want []string, voters int, what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !slices.Equal(cl.Endpoints(), want) || cl.Waiting().Members != voters {
			if time.Now().After(deadline) {
				w := cl.Waiting()
				t.Fatalf("%s: the client tries %v, and counts %d members (need %d); want %v and %d",
					what, cl.Endpoints(), w.Members, w.Need, want, voters)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	learned(c.clients, 3, "attached to the leader") // (the members in id order, as the leader lists them)

	// The removal, through the admin channel. A leader elected moments ago may not have heard
	// from the others lately, and refuses to go under the quorum of live voters: asked again.
	var resp wire.AdminResponse
	for removeBy := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var st wire.Status
		resp, st, err = admin.Call(ctx, c.clients, wire.AdminRequest{Op: wire.AdminRemoveMember, ID: a}, admin.Options{})
		if err == nil && st == wire.StatusOK {
			break
		}
		if err != nil || st != wire.StatusRejected || !strings.Contains(resp.Error, "live voters") || time.Now().After(removeBy) {
			t.Fatalf("remove-member %d: status %v, %v (%s)", a, st, err, resp.Error)
		}
	}
	t.Logf("removed member %d (the client's only configured endpoint) at index %d", a, resp.Index)
	c.waitRemoved(a)
	var rest []int
	var restAddrs []string
	for i := range c.members {
		if i != a {
			rest = append(rest, i)
			restAddrs = append(restAddrs, c.clients[i])
		}
	}
	b, _ := c.leader(10 * time.Second)
	c.waitMembers(b, rest, nil, "after the removal")
	send(5, "after the removal")
	learned(append(slices.Clone(restAddrs), c.clients[a]), 2, "after the removal") // (a last: configured)

	// The new leader restarts: the client must find the cluster without a redirect's hint, and
	// without the member it was configured with.
	c.stop(b)
	c.start(b)
	c.leader(20 * time.Second)
	send(5, "after the new leader's restart")
	t.Logf("%d increments acknowledged; the client tries %v", value, cl.Endpoints())
}
