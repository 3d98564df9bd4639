package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// A member restarted with a member list whose ids differ from the cluster's recorded membership
// (here: a list of members 0 and 2 in a three-member cluster) stops at once with ErrMembersDiffer, naming both
// lists, instead of running without ever joining; with the right list it serves again.
func TestConfiguredMembersAgainstTheData(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	inc(ctx, t, cl)
	// Wait until member 2 holds the command (its data knows the membership), then restart it
	// with two members configured.
	deadline := time.Now().Add(10 * time.Second)
	for c.members[2].n.Status().Applied < c.members[0].n.Status().Commit || c.members[2].n.Status().Applied == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("member 2 did not catch up: %+v", c.members[2].n.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.stop(2)
	full := c.members[2].cfg.Members
	c.members[2].cfg.Members = append(full[:1:1], full[2]) // members 0 and 2 only
	c.start(2)
	var err error
	select {
	case err = <-c.members[2].done:
		c.members[2].cancel = nil
	case <-time.After(10 * time.Second):
		t.Fatalf("the member with a list that differs from the data still runs after 10 s")
	}
	if !errors.Is(err, ErrMembersDiffer) || !strings.Contains(err.Error(), "configured 0,") || !strings.Contains(err.Error(), "recorded 0,") {
		t.Fatalf("Run returned %v, want ErrMembersDiffer naming both lists", err)
	}
	c.members[2].cfg.Members = full
	c.start(2)
	if got := inc(ctx, t, cl); got != 2 {
		t.Fatalf("an increment after member 2 came back with the right list: %d", got)
	}
}
