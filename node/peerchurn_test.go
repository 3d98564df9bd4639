package node

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// At a fresh bootstrap the founders' conf changes add the members one at a time: applying them
// must not remove from the transport the peers the next ones add back — no "the peers changed"
// line with removals, and no "member removed while unreachable" for a peer that had not started
// yet (nobody was removed).
func TestBootstrapDoesNotRemoveAndReAddPeers(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.start(0)
	// Member 0's dials fail until the others start: an outage is under way for each.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(c.members[0].logs.String(), "member unreachable: cannot connect"); {
		if time.Now().After(deadline) {
			t.Fatalf("member 0 logged no failed dial in 10 s:\n%s", c.members[0].logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.start(1)
	c.start(2)
	c.leader(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	inc(ctx, t, c.dial(ctx)) // committed: every member applied the bootstrap meanwhile or soon
	removals := regexp.MustCompile(`the peers changed.* removed="\[`)
	for i, m := range c.members {
		// Every member applies the bootstrap (its membership has all three).
		for deadline := time.Now().Add(10 * time.Second); len(m.n.Status().Members) != 3; {
			if time.Now().After(deadline) {
				t.Fatalf("member %d: %d members after 10 s", i, len(m.n.Status().Members))
			}
			time.Sleep(10 * time.Millisecond)
		}
		logs := m.logs.String()
		if strings.Contains(logs, "member removed while unreachable") {
			t.Errorf("member %d logged a removal nobody made:\n%s", i, logs)
		}
		if removals.MatchString(logs) {
			t.Errorf("member %d removed peers from its transport at the bootstrap:\n%s", i, logs)
		}
	}
}
