package replica

import (
	"bytes"
	"errors"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// identityEntries returns the identity entries among the appends sent to member 1.
func identityEntries(msgs []*pb.Message) []wire.ClusterUUID {
	var us []wire.ClusterUUID
	for _, m := range msgs {
		if m.GetType() != pb.MsgApp || m.GetTo() != RaftID(1) {
			continue
		}
		for _, e := range m.GetEntries() {
			if k, err := wire.EntryKindOf(e.GetData()); err == nil && k == wire.EntryClusterIdentity {
				u, err := wire.DecodeClusterIdentity(e.GetData())
				if err == nil {
					us = append(us, u)
				}
			}
		}
	}
	return us
}

// answer has member 1 acknowledge every append and heartbeat the leader sent it (so that the
// leader keeps its quorum), and returns the identity entries among the appends.
func (h *harness) answer() []wire.ClusterUUID {
	h.t.Helper()
	msgs := h.out.takeRaft()
	var last uint64
	var app, beat bool
	for _, m := range msgs {
		switch {
		case m.GetTo() != RaftID(1):
		case m.GetType() == pb.MsgApp:
			last, app = max(last, m.GetIndex()+uint64(len(m.GetEntries()))), true
		case m.GetType() == pb.MsgHeartbeat:
			beat = true
		}
	}
	if app {
		h.step(pb.MsgAppResp, 1, &pb.Message{Index: new(last)})
	}
	if beat {
		h.step(pb.MsgHeartbeatResp, 1, &pb.Message{})
	}
	return identityEntries(msgs)
}

// The leader proposes the cluster's identity once the cluster version in force is 3 (after the
// raise every member reported it applies), applies it, reports it, and proposes no other.
func TestLeaderProposesIdentityAfterRaiseTo3(t *testing.T) {
	want := wire.ClusterUUID{0x3f, 0x2a, 0x11, 15: 0x42}
	h := newHarness(t, 3, func(c *Config) { c.Rand = bytes.NewReader(want[:]) })
	h.lead()
	if s := h.r.Summary(); s.ClusterVersion != 1 || !s.ClusterUUID.IsZero() {
		t.Fatalf("a new cluster at version %d, identity %v", s.ClusterVersion, s.ClusterUUID)
	}
	// Below version 3 no identity is proposed, however long the leader waits.
	for range 20 {
		h.r.Tick()
		h.drive()
		if us := h.answer(); len(us) > 0 {
			t.Fatalf("an identity proposed at cluster version %d", h.r.Summary().ClusterVersion)
		}
	}
	h.r.PeerClusterVersion(RaftID(1), 3)
	h.r.PeerClusterVersion(RaftID(2), 3)
	var seen []wire.ClusterUUID
	h.tickUntil(50, func() bool {
		seen = append(seen, h.answer()...)
		return !h.r.Summary().ClusterUUID.IsZero()
	})
	if s := h.r.Summary(); s.ClusterVersion != 3 || s.ClusterUUID != want {
		t.Fatalf("after the raise: version %d, identity %v, want 3 and %v", s.ClusterVersion, s.ClusterUUID, want)
	}
	if len(seen) != 1 || seen[0] != want {
		t.Fatalf("identity entries sent: %v, want one (%v)", seen, want)
	}
	var changes []Change
	for _, ch := range h.out.changes {
		if ch.Kind == ChangeClusterIdentity {
			changes = append(changes, ch)
		}
	}
	if len(changes) != 1 || changes[0].ClusterUUID != want || changes[0].Index == 0 {
		t.Fatalf("identity changes %+v, want one naming %v", changes, want)
	}
	// Once it holds one, the leader proposes no other (Rand is exhausted: a draw would fail and
	// log, but the entries are what counts).
	for range 20 {
		h.r.Tick()
		h.drive()
		if us := h.answer(); len(us) > 0 {
			t.Fatalf("a second identity proposed: %v", us)
		}
	}
	if s := h.r.Summary(); s.Role != service.Leader {
		t.Fatalf("the harness lost its leader: %+v", s)
	}
}

// An identity entry below cluster version 3 stops the member at its index (no build proposes
// one there).
func TestIdentityEntryBelowVersion3StopsTheMember(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.term = 2
	data := wire.AppendClusterIdentity(nil, wire.ClusterUUID{1, 15: 1})
	m := &pb.Message{Index: new(uint64(3)), LogTerm: new(uint64(1)), Commit: new(uint64(4)),
		Entries: []*pb.Entry{{Term: new(uint64(2)), Index: new(uint64(4)), Data: data}}}
	m.Type, m.From, m.To, m.Term = pb.MsgApp.Enum(), new(RaftID(1)), new(RaftID(0)), new(h.term)
	if err := h.r.Step(m); err != nil {
		t.Fatal(err)
	}
	if err := drive(h.r); err == nil || !isCannotApply(err) {
		t.Fatalf("applying an identity entry at cluster version 1: %v", err)
	}
	if st := h.r.Summary(); st.Applied != 3 || !st.ClusterUUID.IsZero() {
		t.Fatalf("applied %d, identity %v: the entry was applied", st.Applied, st.ClusterUUID)
	}
}

func isCannotApply(err error) bool { return errors.Is(err, ErrCannotApply) }
