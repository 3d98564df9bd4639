package clientcore

import (
	"errors"
	"strings"
	"testing"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// What the core writes on a new connection (the open and the commands behind it) is in its lowest
// version, the open carrying its range; after the attached message, everything is in the version
// the member chose (its version byte). Version 0 (the simulator's messages) changes nothing.
func TestWritesFollowTheNegotiatedVersion(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	h.submit("x1", "p1")
	c := h.connect()
	ms := h.out.take()
	if kinds(ms) != "open cmd1/1" {
		t.Fatalf("wrote %s", kinds(ms))
	}
	for _, m := range ms {
		if m.Version != wire.ClientProtocolMin {
			t.Fatalf("%v written at version %d before the attach, want the lowest, %d", m.Kind, m.Version, wire.ClientProtocolMin)
		}
	}
	if ms[0].Protocol != wire.ClientProtocol {
		t.Fatalf("the open carries %s, want %s", ms[0].Protocol, wire.ClientProtocol)
	}
	h.recv(c, wire.ClientMsg{Version: 2, Kind: wire.CAttached, Session: h.s.Session()})
	h.submit("x2", "p2")
	if ms := h.out.take(); len(ms) != 1 || ms[0].Version != 2 {
		t.Fatalf("after an attach at version 2: %+v", ms)
	}
	// A new connection starts at the lowest again; a version-1 attach keeps it there.
	h.s.Failed(c, h.at(0))
	c = h.connect()
	h.recv(c, wire.ClientMsg{Version: 1, Kind: wire.CAttached, Session: h.s.Session()})
	h.out.take()
	h.submit("x3", "p3")
	if ms := h.out.take(); len(ms) != 1 || ms[0].Version != 1 {
		t.Fatalf("after an attach at version 1: %+v", ms)
	}
}

// A member that refuses the core's versions is left for the next, with the backoff; once every
// configured member refused, the core ends with ErrProtocolVersion naming both ranges, and what
// was submitted completes with it.
func TestEveryMemberRefusingTheVersionEndsTheCore(t *testing.T) {
	cfg := testConfig()
	cfg.Protocol = wire.Range{Min: 3, Max: 3}
	h := newHarness(t, cfg)
	h.s.Start(h.now)
	h.submit("x", "p")
	for i, e := range cfg.Endpoints {
		if d := h.out.lastDial(); d.endpoint != e || (i > 0 && d.after == 0) {
			t.Fatalf("dial %d: %+v, want %s after a backoff", i, d, e)
		}
		c := h.connect()
		ms := h.out.take()
		if ms[0].Kind != wire.COpen || ms[0].Version != 3 || ms[0].Protocol != cfg.Protocol {
			t.Fatalf("open %+v", ms[0])
		}
		if h.s.Err() != nil {
			t.Fatalf("ended after %d refusals: %v", i, h.s.Err())
		}
		h.recv(c, wire.ClientMsg{Version: 2, Kind: wire.CVersionRefused, Protocol: wire.ClientProtocol,
			Payload: []byte("client protocol: this member speaks [1,2], the client speaks [3,3]: no common version")})
		if len(h.out.hangups) != i+1 {
			t.Fatalf("the refusing connection was not hung up: %v", h.out.hangups)
		}
	}
	err := h.s.Err()
	if !errors.Is(err, ErrProtocolVersion) || !strings.Contains(err.Error(), "[3,3]") || !strings.Contains(err.Error(), "[1,2]") {
		t.Fatalf("Err() = %v, want ErrProtocolVersion naming [3,3] and [1,2]", err)
	}
	if o := h.out.done["x"]; !errors.Is(o.err, ErrProtocolVersion) || !errors.Is(o.err, ErrNotApplied) {
		t.Fatalf("the submitted command completed with %v", o.err)
	}
}

// A refusal is forgotten once that member answers otherwise (it was upgraded): the core ends only
// when every member refused on its latest answer.
func TestVersionRefusalForgottenWhenTheMemberAnswers(t *testing.T) {
	cfg := testConfig()
	cfg.Endpoints = []string{"a", "b"}
	h := newHarness(t, cfg)
	h.s.Start(h.now)
	refuse := func(c ConnID) {
		h.recv(c, wire.ClientMsg{Kind: wire.CVersionRefused, Protocol: wire.Range{Min: 7, Max: 7}, Payload: []byte("no")})
	}
	refuse(h.connect())                                                              // a
	h.recv(h.connect(), wire.ClientMsg{Kind: wire.CRedirect, LeaderID: -1, Term: 1}) // b answers
	refuse(h.connect())                                                              // a again
	if h.s.Err() != nil {
		t.Fatalf("ended although b answered: %v", h.s.Err())
	}
	refuse(h.connect()) // b, now refusing too
	if !errors.Is(h.s.Err(), ErrProtocolVersion) {
		t.Fatalf("Err() = %v", h.s.Err())
	}
}

// A session that attached to cluster A refuses an endpoint whose attached message names cluster
// B: it tries the others, an endpoint of A serves it, and once every endpoint refused it, one for
// its cluster, the core ends with ErrWrongCluster naming both identities.
func TestEndpointOfAnotherClusterRefused(t *testing.T) {
	a := wire.ClusterUUID{0x3f, 0x2a, 15: 1}
	b := wire.ClusterUUID{0x9c, 0x1d, 15: 2}
	cfg := testConfig()
	cfg.Endpoints = []string{"a", "b"}
	h := newHarness(t, cfg)
	h.s.Start(h.now)
	c := h.connect() // a
	h.recv(c, wire.ClientMsg{Version: 3, Kind: wire.CAttached, Session: h.s.Session(), ClusterUUID: a})
	if h.s.cluster != a {
		t.Fatalf("the session's cluster is %v after attaching to %v", h.s.cluster, a)
	}
	h.s.Failed(c, h.at(0))
	hung := len(h.out.hangups)
	c = h.connect() // b: another cluster's
	h.recv(c, wire.ClientMsg{Version: 3, Kind: wire.CAttached, Session: h.s.Session(), ClusterUUID: b})
	if len(h.out.hangups) != hung+1 || h.s.Err() != nil || h.s.Waiting().Attached {
		t.Fatalf("an endpoint of another cluster: hangups %d (want %d), err %v, attached %v",
			len(h.out.hangups), hung+1, h.s.Err(), h.s.Waiting().Attached)
	}
	c = h.connect() // a again: serves
	h.recv(c, wire.ClientMsg{Version: 3, Kind: wire.CAttached, Session: h.s.Session(), ClusterUUID: a})
	if !h.s.Waiting().Attached || h.s.Err() != nil {
		t.Fatalf("the session's own cluster did not serve it: %v", h.s.Err())
	}
	// An attached message with no identity (a member that does not know it yet) is accepted.
	h.s.Failed(c, h.at(0))
	c = h.connect() // b, not knowing its identity
	h.recv(c, wire.ClientMsg{Version: 2, Kind: wire.CAttached, Session: h.s.Session()})
	if !h.s.Waiting().Attached {
		t.Fatalf("an attached message naming no cluster was refused")
	}
	// Both endpoints now belong to B (a was replaced too): the core ends.
	h.submit("x", "p")
	for range 2 {
		h.s.Failed(c, h.at(0))
		c = h.connect()
		h.recv(c, wire.ClientMsg{Version: 3, Kind: wire.CAttached, Session: h.s.Session(), ClusterUUID: b})
	}
	err := h.s.Err()
	if !errors.Is(err, ErrWrongCluster) || !strings.Contains(err.Error(), a.String()) || !strings.Contains(err.Error(), b.String()) {
		t.Fatalf("Err() = %v, want ErrWrongCluster naming %v and %v", err, a, b)
	}
	if o := h.out.done["x"]; !errors.Is(o.err, ErrWrongCluster) {
		t.Fatalf("the submitted command completed with %v", o.err)
	}
}
