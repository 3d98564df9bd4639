package clustertest

import (
	"testing"

	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// A client authenticated as a principal keeps its session through a leader crash (it attaches
// to the new leader with the same credential) and through a whole-cluster restart from
// snapshots; every member's service sees the session's principal, the same everywhere, and no
// other principal's connection can use the session.
func TestPrincipalAcrossFailoverAndSnapshots(t *testing.T) {
	c := New(t, Options{
		Nodes: 3, Seed: 22,
		NewService: func(int) service.Service { return NewProbe() },
		Tune:       func(cfg *replica.Config) { cfg.Container.SnapshotIntervalEntries = 10 },
	})
	l := c.WaitLeader(10 * electionTimeout)
	if !c.RunUntil(func() bool { return c.Nodes[l].R.Summary().ClusterVersion == container.ClusterVersionMax }, 10*electionTimeout) {
		t.Fatalf("the cluster version was not raised: %s", c.Describe())
	}
	cl := c.NewClient()
	cl.Grant = &wire.Grant{Principal: "alice", Commands: true, Queries: true}
	for range 5 {
		value(t, c.Do(cl, "inc", 10*electionTimeout))
	}
	c.Crash(l)
	c.WaitLeader(10 * electionTimeout)
	for range 15 {
		value(t, c.Do(cl, "inc", 10*electionTimeout))
	}
	c.Start(l)
	assertConverged(t, c)
	for i := range c.Nodes {
		c.Crash(i)
	}
	for i := range c.Nodes {
		c.Start(i)
		if !probe(c, i).SnapshotSeen {
			t.Fatalf("member %d restarted without a snapshot", i)
		}
	}
	nl := c.WaitLeader(10 * electionTimeout)
	if v := value(t, c.Do(cl, "inc", 10*electionTimeout)); v != 21 || cl.Expired() {
		t.Fatalf("after the restart: %d (expired %v)", v, cl.Expired())
	}
	assertConverged(t, c)
	for i := range c.Nodes {
		s, ok := probe(c, i).cluster.Session(service.SessionID(cl.Session))
		if !ok || s.Principal() != "alice" {
			t.Fatalf("member %d: session open %v, principal %q", i, ok, principalOf(s))
		}
		if opens, incs := probe(c, i).Principal("alice"); opens != 1 || incs != 21 {
			t.Fatalf("member %d counts %d opens and %d increments of alice", i, opens, incs)
		}
	}
	// Another principal on the session, at the leader: denied, and nothing applied.
	thief := c.NewClient()
	thief.Grant = &wire.Grant{Principal: "mallory", Commands: true}
	var got []wire.ClientMsg
	thief.onRaw = func(m *wire.ClientMsg) { got = append(got, *m) }
	thief.SendRaw(nl, &wire.ClientMsg{Kind: wire.CAttach, Session: cl.Session})
	thief.SendRaw(nl, &wire.ClientMsg{Kind: wire.CCommand, Session: cl.Session, Seq: 30, Payload: []byte("steal")})
	if !c.RunUntil(func() bool { return len(got) == 2 }, electionTimeout) {
		t.Fatalf("the thief's requests unanswered: %+v", got)
	}
	if got[0].Kind != wire.CSessionEvent || got[0].Status != wire.StatusDenied || got[1].Kind != wire.CResponse || got[1].Status != wire.StatusDenied {
		t.Fatalf("the thief was answered %+v", got)
	}
	value(t, c.Do(cl, "inc", 10*electionTimeout))
	assertConverged(t, c)
	if n := probe(c, nl).Stolen(); n != 0 {
		t.Fatalf("%d steals applied", n)
	}
}

func principalOf(s service.Session) string {
	if s == nil {
		return "(none)"
	}
	return s.Principal()
}
