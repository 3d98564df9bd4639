package node

import (
	"context"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/admin"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// A leader stopped (its context cancelled: Ctrl+C) hands over in one election, and stops only
// once it follows its successor: stopping at the successor's vote request, before its own vote
// was synced and sent, left the successor to win with the third member's vote alone — and a
// second election when that member's link was stale.
func TestStoppedLeaderFollowsItsSuccessorBeforeItStops(t *testing.T) {
	c := newCluster(t, 3, nil)
	l, term := c.startAll(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	for range 20 {
		inc(ctx, t, cl)
	}
	c.stop(l)
	st := c.members[l].n.Status()
	if st.Role == service.Leader || st.Leader < 0 || st.Leader == l || st.Term != term+1 {
		t.Fatalf("the stopped leader's last status: %s, leader %d, term %d; want a follower of another member in term %d",
			st.Role, st.Leader, st.Term, term+1)
	}
	nl, nterm := c.leader(10 * time.Second)
	if nl != st.Leader || nterm != term+1 {
		t.Fatalf("member %d leads in term %d; the stopped leader followed member %d in term %d", nl, nterm, st.Leader, term+1)
	}
	inc(ctx, t, cl)
}

// transfer-leader over the admin channel, from any member: answered once the target leads, with
// the new leader and term in the answer; --auto picks another voter.
func TestTransferLeaderOverTheAdminChannel(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	l, term := c.startAll(10 * time.Second)
	c.waitMembershipVersion()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	inc(ctx, t, cl)
	to := (l + 1) % 3
	// Asked of a follower: redirected to the leader, which answers once member to leads.
	resp, status, err := admin.Call(ctx, c.clients[(l+2)%3:(l+2)%3+1], wire.AdminRequest{Op: wire.AdminTransferLeader, ID: to},
		admin.Options{AttemptTimeout: 10 * time.Second})
	if err != nil || status != wire.StatusOK || resp.Status == nil || resp.Status.Leader != to || resp.Status.Term <= term {
		t.Fatalf("transfer-leader %d: %v, status %v, %+v", to, err, status, resp)
	}
	// Its status is updated at its next tick.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st := c.members[to].n.Status()
		if st.Role == service.Leader && st.Term == resp.Status.Term {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("answered that member %d leads in term %d; its status: %s in term %d", to, resp.Status.Term, st.Role, st.Term)
		}
	}
	inc(ctx, t, cl)
	resp, status, err = admin.Call(ctx, c.clients, wire.AdminRequest{Op: wire.AdminTransferLeader, Auto: true},
		admin.Options{AttemptTimeout: 10 * time.Second})
	if err != nil || status != wire.StatusOK || resp.Status == nil || resp.Status.Leader == to || resp.Status.Leader < 0 {
		t.Fatalf("transfer-leader --auto from member %d: %v, status %v, %+v", to, err, status, resp)
	}
	inc(ctx, t, cl)
}
