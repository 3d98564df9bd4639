package node

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// peerReachable reads tandem_network_peer_reachable from the member's metrics: member id → value.
func peerReachable(t *testing.T, n *Node) map[string]float64 {
	t.Helper()
	mfs, err := n.newRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "tandem_network_peer_reachable" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return out
}

// reachability says what member i reports of every other member's reachability, in its metric
// and its unreachable set (/status, the admin channel), and whether the two agree.
func (c *cluster) reachability(t *testing.T, i int) (metric map[string]float64, down []int) {
	n := c.members[i].n
	for id, d := range n.unreachableSet() {
		if d {
			down = append(down, id)
		}
	}
	slices.Sort(down)
	return peerReachable(t, n), down
}

// waitReachability waits (up to timeout) until each running member but skip reports every other
// member reachable, except victim, reported unreachable (victim -1: none), in its metric and
// /status alike.
func (c *cluster) waitReachability(t *testing.T, victim, skip int, timeout time.Duration) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ok := true
		var sb strings.Builder
		for i := range c.members {
			if i == skip {
				continue
			}
			metric, down := c.reachability(t, i)
			want := map[string]float64{}
			for j := range c.members {
				if j != i {
					want[fmt.Sprint(j)] = 1
				}
			}
			var wantDown []int
			if victim >= 0 && victim != i {
				want[fmt.Sprint(victim)] = 0
				wantDown = []int{victim}
			}
			if !maps.Equal(metric, want) || !slices.Equal(down, wantDown) {
				ok = false
			}
			fmt.Fprintf(&sb, "member %d: metric %v unreachable %v\n", i, metric, down)
		}
		if ok {
			return
		}
		last = sb.String()
	}
	t.Fatalf("not within %s: every member reports member %d (-1: none) alone unreachable:\n%s", timeout, victim, last)
}

// The members' view of which peers they reach (tandem_network_peer_reachable, /status's
// Unreachable, the member-reachable events) is the transport's: in a healthy cluster every
// member reaches every other — followers too, which exchange no raft messages, after a start
// whose first dials failed; a stopped member, follower or leader, is unreachable for the others
// within a few seconds, and reachable again once it is back.
func TestPeerReachabilityFollowsTheMembers(t *testing.T) {
	c := newCluster(t, 3, nil)
	// Member 0 starts alone: its first dials fail (an unreachable start, as when a cluster's
	// processes start one by one).
	c.start(0)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(c.members[0].logs.String(), "member unreachable: cannot connect"); {
		if time.Now().After(deadline) {
			t.Fatal("member 0 logged no failed dial in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.start(1)
	c.start(2)
	leader, _ := c.leader(15 * time.Second)
	c.waitReachability(t, -1, -1, 5*time.Second)

	follower := (leader + 1) % 3
	other := 3 - leader - follower
	c.stop(follower)
	c.waitReachability(t, follower, follower, 5*time.Second)
	// The other follower, which sends the stopped one nothing, said so as an event too.
	if !eventSeen(c.members[other].events, EventMemberUnreachable, follower) {
		t.Fatalf("member %d emitted no member-unreachable event for member %d", other, follower)
	}
	c.start(follower)
	c.waitReachability(t, -1, -1, 5*time.Second)

	c.stop(leader)
	c.waitReachability(t, leader, leader, 5*time.Second)
	c.start(leader)
	c.waitReachability(t, -1, -1, 5*time.Second)
	c.leader(15 * time.Second)
}

// eventSeen drains events until one of kind about member id, or until none is left.
func eventSeen(events chan Event, kind EventKind, id int) bool {
	for {
		select {
		case ev := <-events:
			if ev.Kind == kind && ev.Member == id {
				return true
			}
		default:
			return false
		}
	}
}
