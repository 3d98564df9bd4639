package transport

import (
	"net"
	"testing"
	"time"
)

// Reachable follows the peer: known and reachable once the outbound connection is up, though
// nothing is sent on it; unreachable within a few seconds of the peer stopping, though this
// member sends it nothing (the peer's closing makes it dial again, and that dial fails); reachable
// again once it is back.
func TestReachableFollowsThePeerWithoutTraffic(t *testing.T) {
	la, lb := listen(t), listen(t)
	addrB := lb.Addr().String()
	peers := map[uint64]string{1: la.Addr().String(), 2: addrB}
	a, _ := startMember(t, Config{SelfID: 1, Peers: peers, Listener: la, HeardWindow: 200 * time.Millisecond})
	b, _ := startMember(t, Config{SelfID: 2, Peers: peers, Listener: lb, HeardWindow: 200 * time.Millisecond})
	reach := func(tr *Transport, id uint64, want bool) func() bool {
		return func() bool { ok, known := tr.Reachable(id); return known && ok == want }
	}
	waitFor(t, "1 finds 2 reachable", reach(a, 2, true))
	waitFor(t, "2 finds 1 reachable", reach(b, 1, true))
	if ok, known := a.Reachable(9); ok || !known {
		t.Fatalf("Reachable(9), not a peer: %v %v, want false true", ok, known)
	}
	b.Stop()
	waitFor(t, "1 finds the stopped 2 unreachable", reach(a, 2, false))
	l, err := net.Listen("tcp", addrB)
	if err != nil {
		t.Skipf("2's port was taken meanwhile: %v", err)
	}
	startMember(t, Config{SelfID: 2, Peers: peers, Listener: l})
	waitFor(t, "1 finds 2 reachable again", reach(a, 2, true))
}
