package transport

import (
	"net"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// dropOnSnapshot is a member that refuses every snapshot it is handed (its loop judged the
// MsgSnap invalid): it closes the sender's connections with DropInbound, as the node does.
type dropOnSnapshot struct {
	*peerRecorder
	t *Transport
}

func (d *dropOnSnapshot) Receive(m *pb.Message) bool {
	if m.GetType() == pb.MsgSnap {
		d.t.DropInbound(m.GetFrom())
	}
	return d.peerRecorder.Receive(m)
}

// A connection DropInbound closed is the member's refusal, logged and counted by the member: the
// transport does not count it again as a protocol violation (Rejected), whether it was reading
// messages or receiving a snapshot, which then fails to acknowledge it.
func TestDroppedConnectionsAreNotCountedAsRejected(t *testing.T) {
	la, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peers := map[uint64]string{1: la.Addr().String(), 2: lb.Addr().String()}
	rec := func() *peerRecorder {
		return &peerRecorder{msgs: make(chan *pb.Message, 16), unreachable: make(chan uint64, 1)}
	}
	a := New(Config{ClusterID: "test", SelfID: 1, Peers: peers, Listener: la, SnapshotDir: t.TempDir()}, rec())
	hb := &dropOnSnapshot{peerRecorder: rec()}
	b := New(Config{ClusterID: "test", SelfID: 2, Peers: peers, Listener: lb, SnapshotDir: t.TempDir()}, hb)
	hb.t = b
	a.Start()
	b.Start()
	t.Cleanup(func() { a.Stop(); b.Stop() })

	a.Send([]*pb.Message{{Type: pb.MsgSnap.Enum(), From: new(uint64(1)), To: new(uint64(2)), Term: new(uint64(2)),
		Snapshot: &pb.Snapshot{Data: make([]byte, 3000), Metadata: &pb.SnapshotMetadata{Index: new(uint64(10)), Term: new(uint64(2))}}}})
	select {
	case m := <-hb.msgs:
		if m.GetType() != pb.MsgSnap {
			t.Fatalf("received %s, want the snapshot", m.GetType())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the snapshot was not received")
	}
	// The connections DropInbound closed leave b's list once their goroutines have ended.
	for deadline := time.Now().Add(10 * time.Second); ; {
		b.mu.Lock()
		dropped := 0
		for _, p := range b.authed {
			if p.dropped {
				dropped++
			}
		}
		b.mu.Unlock()
		if dropped == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d dropped connections still served after 10 s", dropped)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := b.Rejected(); n != 0 {
		t.Fatalf("Rejected() = %d: connections the member dropped were counted as protocol violations", n)
	}
}
