package transport

import (
	"log/slog"
	"net"
	"regexp"
	"strings"
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

// A peer's connection that carries nothing for IdleTimeout (a follower's connection to another
// follower, while raft has nothing for it) is closed quietly: a debug line naming the peer as
// a field, no warning, no protocol violation (Rejected), no failure received from the peer.
func TestIdleConnectionIsClosedQuietly(t *testing.T) {
	var la, lb logBuffer
	debug := func(l *logBuffer) *slog.Logger {
		return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	memberOf := func(id uint64) (int, bool) { return int(id) - 1, id == 1 || id == 2 }
	lna, lnb := listen(t), listen(t)
	peers := map[uint64]string{1: lna.Addr().String(), 2: lnb.Addr().String()}
	a, _ := startMember(t, Config{SelfID: 1, Peers: peers, Listener: lna, Logger: debug(&la), MemberOf: memberOf})
	b, rb := startMember(t, Config{SelfID: 2, Peers: peers, Listener: lnb, Logger: debug(&lb), MemberOf: memberOf,
		IdleTimeout: 200 * time.Millisecond})
	sendUntilReceived(t, "a message from 1 reaches 2", a, 1, 2, rb)
	idleLine := regexp.MustCompile(`level=DEBUG msg="closing idle member connection" member=0 remote=\S+ idle_for=200ms`)
	waitFor(t, "2 closes 1's idle connection", func() bool { return idleLine.MatchString(lb.String()) })
	if out := lb.String(); strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
		t.Errorf("closing an idle connection was a warning:\n%s", out)
	}
	if n := b.Rejected(); n != 0 {
		t.Errorf("Rejected() = %d: an idle connection counted as a protocol violation", n)
	}
	for _, s := range b.PeerStats() {
		if s.ReceivedFailures != 0 {
			t.Errorf("raft id %d: ReceivedFailures = %d, want 0: an idle connection is no failure of the peer's", s.ID, s.ReceivedFailures)
		}
	}
}

// A connection closed for what its authenticated sender sent names the sender as a field
// (member=N), not only in the message's text.
func TestRejectedPeerConnectionNamesTheMember(t *testing.T) {
	var lb logBuffer
	memberOf := func(id uint64) (int, bool) { return int(id) - 1, id == 1 || id == 2 }
	lna, lnb := listen(t), listen(t)
	peers := map[uint64]string{1: lna.Addr().String(), 2: lnb.Addr().String()}
	a, _ := startMember(t, Config{SelfID: 1, Peers: peers, Listener: lna, MemberOf: memberOf})
	_, rb := startMember(t, Config{SelfID: 2, Peers: peers, Listener: lnb, Logger: lb.logger(), MemberOf: memberOf})
	sendUntilReceived(t, "a message from 1 reaches 2", a, 1, 2, rb)
	// A message that claims another sender than its connection's handshake.
	a.Send([]*pb.Message{msgFrom(3, 2)})
	a.Flush()
	line := regexp.MustCompile(`level=WARN msg="closing member connection: raft message claims from=3 to=2 \(raft ids\) ` +
		`on a connection from member 0 to member 1" member=0 remote=\S+`)
	waitFor(t, "2 closes the connection, naming member 0 as a field", func() bool { return line.MatchString(lb.String()) })
}
