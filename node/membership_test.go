package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-cluster/tandem/internal/admin"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// waitMembershipVersion waits until every member applies this build's cluster version (4 and
// up: membership changes; 5: the operator's controls).
func (c *cluster) waitMembershipVersion() {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	v := container.ClusterVersionMax
	for !slices.Equal(c.clusterVersions(), []uint16{v, v, v}) {
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster versions %v, want %d everywhere", c.clusterVersions(), v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// addJoiner configures member id on fresh ephemeral ports, joining through the cluster's
// client addresses.
func (c *cluster) addJoiner(id int, learner bool) int {
	m := &member{client: listenLocal(c.t), member: listenLocal(c.t)}
	cfg := DefaultConfig()
	self := Member{ID: id, ClientAddr: m.client.Addr().String(), MemberAddr: m.member.Addr().String()}
	cfg.ID, cfg.Members, cfg.DataDir = id, []Member{self}, fmt.Sprintf("%s/node-%d", c.t.TempDir(), id)
	cfg.Join, cfg.Learner = slices.Clone(c.clients), learner
	m.cfg = cfg
	c.members = append(c.members, m)
	c.clients = append(c.clients, self.ClientAddr)
	return len(c.members) - 1
}

// waitMembers waits until member i's status shows the voters and learners wanted (member ids).
func (c *cluster) waitMembers(i int, voters, learners []int, what string) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got Status
	for time.Now().Before(deadline) {
		got = c.members[i].n.Status()
		var v, l []int
		for _, m := range got.Members {
			if m.Learner {
				l = append(l, m.ID)
			} else {
				v = append(v, m.ID)
			}
		}
		if slices.Equal(v, voters) && slices.Equal(l, learners) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("%s: member %d shows members %+v, want voters %v learners %v", what, i, got.Members, voters, learners)
}

// adminCall sends an admin request to the cluster and wants ok.
func (c *cluster) adminCall(req wire.AdminRequest) wire.AdminResponse {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, st, err := admin.Call(ctx, c.clients, req, admin.Options{})
	if err != nil || st != wire.StatusOK {
		c.t.Fatalf("%s: status %v, %v (%s)", req.Op, st, err, resp.Error)
	}
	return resp
}

// waitRemoved waits for member i's Run to end because it was removed.
func (c *cluster) waitRemoved(i int) {
	c.t.Helper()
	m := c.members[i]
	select {
	case err := <-m.done:
		if !errors.Is(err, ErrRemoved) {
			c.t.Fatalf("member %d stopped with %v, want ErrRemoved", i, err)
		}
		m.cancel()
		m.cancel = nil
	case <-time.After(30 * time.Second):
		c.t.Fatalf("member %d still runs 30 s after it was removed", i)
	}
}

// Under client load a fourth member joins through the client addresses, catches up and is
// promoted; then the leader is removed (it hands over first and stops with ErrRemoved), and a
// member restarted with its stale configuration takes the membership from its data. Nothing
// acknowledged is lost; the removed member's data cannot serve again.
func TestMemberJoinsAndTheLeaderIsRemoved(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.startAll(10 * time.Second)
	c.waitMembershipVersion()
	load := startIncLoad(t, c, 2)
	load.waitAcked(t, 100, "before the join")

	j := c.addJoiner(3, false)
	c.start(j)
	leader, _ := c.leader(10 * time.Second)
	c.waitMembers(leader, []int{0, 1, 2, 3}, nil, "after the join")
	defer func() {
		if t.Failed() {
			t.Log(c.members[j].logs.String())
		}
	}()
	c.waitMembers(j, []int{0, 1, 2, 3}, nil, "on the joiner")
	if st := c.members[j].n.Status(); st.RaftID != 4 {
		t.Fatalf("the joiner's raft id is %d, want 4", st.RaftID)
	}
	load.waitAcked(t, 100, "after the join")

	// Removing the leader: it hands over, and the request is answered by the next leader.
	resp := c.adminCall(wire.AdminRequest{Op: wire.AdminRemoveMember, ID: leader})
	t.Logf("removed member %d at index %d", leader, resp.Index)
	c.waitRemoved(leader)
	rest := slices.DeleteFunc([]int{0, 1, 2, 3}, func(i int) bool { return i == leader })
	next, _ := c.leader(10 * time.Second)
	c.waitMembers(next, rest, nil, "after removing the leader")
	load.waitAcked(t, 100, "after removing the leader")

	// Stale command lines: every member restarts with the configuration it was first given.
	for _, i := range rest {
		c.stop(i)
		c.start(i)
	}
	next, _ = c.leader(20 * time.Second)
	c.waitMembers(next, rest, nil, "after the restart")
	load.waitAcked(t, 100, "after the restart")

	// The removed member's data cannot serve again.
	c.start(leader)
	c.waitRemoved(leader)

	load.finish(t, c)
}

// waitRebuilt waits until the leader's membership has member id as a voter under raft id raftID,
// and three members.
func (c *cluster) waitRebuilt(id int, raftID uint64) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, _ := c.leader(10 * time.Second)
		st := c.members[l].n.Status()
		rebuilt := slices.ContainsFunc(st.Members, func(m Member) bool { return m.ID == id && m.RaftID == raftID && !m.Learner })
		if rebuilt && len(st.Members) == 3 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("member %d not rebuilt under raft id %d within 30 s: %+v", id, raftID, st.Members)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRebuiltScraping is waitRebuilt gathering every running member's metrics meanwhile: while
// the rebuilt member is in the membership twice (two raft ids, one member id), a scrape must still
// succeed (a series given twice fails the whole scrape).
func (c *cluster) waitRebuiltScraping(id int, raftID uint64) {
	c.t.Helper()
	regs := map[int]*prometheus.Registry{}
	for i, m := range c.members {
		if m.cancel != nil && i != id {
			regs[i] = m.n.newRegistry()
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	twice := 0
	for {
		for i, reg := range regs {
			st := c.members[i].n.Status()
			n := 0
			for _, m := range st.Members {
				if m.ID == id {
					n++
				}
			}
			if n < 2 {
				continue
			}
			twice++
			if _, err := reg.Gather(); err != nil {
				c.t.Fatalf("member %d's metrics while member %d is in the membership twice: %v", i, id, err)
			}
		}
		l, _ := c.leader(10 * time.Second)
		st := c.members[l].n.Status()
		if slices.ContainsFunc(st.Members, func(m Member) bool { return m.ID == id && m.RaftID == raftID && !m.Learner }) && len(st.Members) == 3 {
			c.t.Logf("scraped %d times with member %d in the membership twice", twice, id)
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("member %d not rebuilt under raft id %d within 30 s: %+v", id, raftID, st.Members)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A member whose directory was wiped is rebuilt in place: started on an empty directory with
// Join, it is added under a new raft id and replaces its old one once caught up. With member 0
// then stopped, the other two serve: the rebuilt member holds everything.
func TestWipedMemberIsRebuiltUnderANewRaftID(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.startAll(10 * time.Second)
	c.waitMembershipVersion()
	load := startIncLoad(t, c, 2)
	load.waitAcked(t, 200, "before the wipe")
	leader, _ := c.leader(10 * time.Second)
	victim := (leader + 1) % 3
	c.stop(victim)
	if err := os.RemoveAll(c.members[victim].cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	load.waitAcked(t, 100, "while the member is down")
	c.members[victim].cfg.Join = slices.DeleteFunc(slices.Clone(c.clients), func(a string) bool {
		return a == c.clients[victim]
	})
	c.start(victim)
	c.waitRebuiltScraping(victim, 4)
	load.waitAcked(t, 100, "after the rebuild")
	// Wiped again and started without Join: it would start as its founding raft id, which is
	// not its own any more; it refuses, saying to rebuild it with Join.
	c.stop(victim)
	if err := os.RemoveAll(c.members[victim].cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	join := c.members[victim].cfg.Join
	c.members[victim].cfg.Join = nil
	c.start(victim)
	select {
	case err := <-c.members[victim].done:
		if !errors.Is(err, ErrRejoinWithJoin) || !strings.Contains(err.Error(), "--join") {
			t.Fatalf("the wiped member started without Join: %v, want ErrRejoinWithJoin", err)
		}
		c.members[victim].cancel()
		c.members[victim].cancel = nil
	case <-time.After(10 * time.Second):
		t.Fatal("the wiped member started without Join runs")
	}
	c.members[victim].cfg.Join = join
	c.start(victim)
	c.waitRebuilt(victim, 5)
	load.waitAcked(t, 100, "after the second rebuild")
	other := 3 - leader - victim // the member that was never wiped, beside the leader
	c.stop(other)
	load.waitAcked(t, 100, "with the rebuilt member and one other")
	load.finish(t, c)
	checkNamedByMemberID(t, c.members[other].logs.String(), other, victim)
}

// checkNamedByMemberID checks the log of member self, which saw member peer replaced under new
// raft ids (not its founding one): every line carries self's id, and the lines about peer — the
// transport's peer set changing, its outages if any — name it by member id, never by raft id.
func checkNamedByMemberID(t *testing.T, logs string, self, peer int) {
	t.Helper()
	named := 0
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !strings.Contains(l, fmt.Sprintf(" self=%d", self)) {
			t.Errorf("member %d's line does not carry self=%d: %s", self, self, l)
		}
		switch {
		case strings.Contains(l, "the peers changed"):
			// Every such line names members by member id; some are about member peer (its raft
			// id replaced), others not (a start's replay of the membership moves the peer set).
			if strings.Contains(l, "raft id") || strings.Contains(l, "raft_id") {
				t.Errorf("a line about the peers names a raft id: %s", l)
			}
			if strings.Contains(l, fmt.Sprintf("member %d]", peer)) || strings.Contains(l, fmt.Sprintf("member %d ", peer)) {
				named++
			}
		case strings.Contains(l, "unreachable") || strings.Contains(l, "reachable again"):
			if !strings.Contains(l, fmt.Sprintf(" member=%d ", peer)) || strings.Contains(l, "raft_id") {
				t.Errorf("a line about member %d's outage does not name it by member id: %s", peer, l)
			}
		}
	}
	if named == 0 {
		t.Errorf("member %d's log says nothing of member %d's raft ids changing:\n%s", self, peer, logs)
	}
}
