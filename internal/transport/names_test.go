package transport

import (
	"net"
	"regexp"
	"strings"
	"testing"
)

// A peer that cannot be reached is logged once when its dials start failing, by its member id
// (here raft id 7 is member 2, as for a member added later), and once when it is dialled again,
// with how long it was out and how many dials failed; the repeats between are ratelog.Outage's
// (its test). No line names raft id 7.
func TestUnreachablePeerIsLoggedWhenItStartsAndStops(t *testing.T) {
	var logs logBuffer
	l := listen(t)
	addr := l.Addr().String()
	_ = l.Close() // nobody listens: dials fail until the peer starts below
	memberOf := func(id uint64) (int, bool) { return map[uint64]int{1: 0, 7: 2}[id], id == 1 || id == 7 }
	a, _ := startMember(t, Config{SelfID: 1, Peers: map[uint64]string{7: addr}, Listener: listen(t),
		Logger: logs.logger(), MemberOf: memberOf})
	waitFor(t, "the first failed dial is logged", func() bool {
		return strings.Contains(logs.String(), `msg="member unreachable: cannot connect; retrying with backoff" member=2`)
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the peer's port was taken meanwhile: %v", err)
	}
	startMember(t, Config{SelfID: 7, Peers: map[uint64]string{1: addrOf(a)}, Listener: l, MemberOf: memberOf})
	back := regexp.MustCompile(`msg="member reachable again" member=2 after=\S+ failed_dials=[1-9]`)
	waitFor(t, "the peer's return is logged", func() bool { return back.MatchString(logs.String()) })
	out := logs.String()
	if n := strings.Count(out, "member unreachable"); n != 1 {
		t.Errorf("the outage's start was logged %d times, want once:\n%s", n, out)
	}
	if strings.Contains(out, "raft_id") || strings.Contains(out, "raft id") {
		t.Errorf("a line names a raft id:\n%s", out)
	}
}

// A peer removed while unreachable is never dialled again: its outage's end is logged when it
// is removed, with how long it was out and how many dials failed.
func TestPeerRemovedWhileUnreachableIsLogged(t *testing.T) {
	var logs logBuffer
	l := listen(t)
	addr := l.Addr().String()
	_ = l.Close() // nobody listens: dials fail
	memberOf := func(id uint64) (int, bool) { return map[uint64]int{1: 0, 7: 2}[id], id == 1 || id == 7 }
	a, _ := startMember(t, Config{SelfID: 1, Peers: map[uint64]string{7: addr}, Listener: listen(t),
		Logger: logs.logger(), MemberOf: memberOf})
	waitFor(t, "the first failed dial is logged", func() bool {
		return strings.Contains(logs.String(), `msg="member unreachable: cannot connect; retrying with backoff" member=2`)
	})
	a.SetPeers(map[uint64]string{})
	removed := regexp.MustCompile(`msg="member removed while unreachable" member=2 unreachable_for=\S+ failed_dials=[1-9]`)
	waitFor(t, "the removal ends the outage in the log", func() bool { return removed.MatchString(logs.String()) })
}
