package transport

import (
	"net"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

type peerRecorder struct {
	msgs        chan *pb.Message
	hold        sync.RWMutex // write-locked: Receive blocks, and so does the connection's reader
	unreachable chan uint64
}

func (r *peerRecorder) Receive(m *pb.Message) bool {
	r.hold.RLock()
	r.hold.RUnlock()
	r.msgs <- m
	return true
}

func (r *peerRecorder) Unreachable(id uint64) {
	select {
	case r.unreachable <- id:
	default:
	}
}

func (r *peerRecorder) SnapshotStatus(uint64, bool) {}

// startPair starts the transports of raft ids 1 and 2, connected to each other.
func startPair(t *testing.T, cfg Config) (a, b *Transport, ra, rb *peerRecorder) {
	t.Helper()
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
		return &peerRecorder{msgs: make(chan *pb.Message, 1<<16), unreachable: make(chan uint64, 1)}
	}
	ra, rb = rec(), rec()
	ca, cb := cfg, cfg
	ca.ClusterID, ca.SelfID, ca.Peers, ca.Listener, ca.SnapshotDir = "test", 1, peers, la, t.TempDir()
	cb.ClusterID, cb.SelfID, cb.Peers, cb.Listener, cb.SnapshotDir = "test", 2, peers, lb, t.TempDir()
	a, b = New(ca, ra), New(cb, rb)
	a.Start()
	b.Start()
	t.Cleanup(func() { a.Stop(); b.Stop() })
	return a, b, ra, rb
}

func appMsg(index uint64, data []byte) *pb.Message {
	return &pb.Message{Type: pb.MsgApp.Enum(), From: new(uint64(1)), To: new(uint64(2)), Index: new(index),
		Entries: []*pb.Entry{{Index: new(index + 1), Data: data}}}
}

// commitOnly is an append without entries: it only carries the commit index forward, and waits
// for Flush.
func commitOnly(i uint64) bool { return i%7 == 3 }

// Messages sent from the loop arrive complete and in order, whether they were written at once
// or by the peer's writer, urgent or left for Flush; the first ones, sent before the connection
// is up, are not lost.
func TestPeerMessagesArriveInOrder(t *testing.T) {
	a, _, _, rb := startPair(t, Config{})
	const n = 5000
	data := make([]byte, 300)
	msg := func(i uint64) *pb.Message {
		m := appMsg(i, data)
		if commitOnly(i) {
			m.Entries = nil
		}
		return m
	}
	for i := uint64(0); i < n; i++ {
		batch := []*pb.Message{msg(i)}
		if i%5 == 0 && i+1 < n { // some Sends carry two messages for the peer
			i++
			batch = append(batch, msg(i))
		}
		a.Send(batch)
		if i%11 == 0 {
			a.Flush()
		}
	}
	a.Flush()
	deadline := time.After(20 * time.Second)
	for want := range uint64(n) {
		wantEntries := 1
		if commitOnly(want) {
			wantEntries = 0
		}
		select {
		case m := <-rb.msgs:
			if m.GetIndex() != want || len(m.GetEntries()) != wantEntries ||
				(wantEntries == 1 && len(m.GetEntries()[0].GetData()) != len(data)) {
				t.Fatalf("message %d arrived as index %d with %d entries", want, m.GetIndex(), len(m.GetEntries()))
			}
		case <-deadline:
			t.Fatalf("received %d of %d messages", want, n)
		}
	}
}

// A peer that stops reading never blocks Send (the member's loop): its queue fills, further
// messages are dropped and the peer is reported unreachable, as raft expects of a lossy link.
func TestPeerThatStopsReadingNeverBlocksSend(t *testing.T) {
	a, _, ra, rb := startPair(t, Config{QueueBytes: 4 << 20})
	// The link is up once one message went through.
	a.Send([]*pb.Message{appMsg(0, nil)})
	select {
	case <-rb.msgs:
	case <-time.After(20 * time.Second):
		t.Fatal("the first message never arrived")
	}
	select {
	case <-ra.unreachable: // from before the link was up: not what this test is about
	default:
	}
	rb.hold.Lock() // Receive now blocks: the peer's reader stops reading
	t.Cleanup(rb.hold.Unlock)
	big := make([]byte, 256<<10)
	sent := make(chan struct{})
	go func() {
		for i := range uint64(400) { // 100 MiB, far beyond the socket buffers and the queue
			a.Send([]*pb.Message{appMsg(i+1, big)})
		}
		close(sent)
	}()
	select {
	case <-sent:
	case <-time.After(20 * time.Second):
		t.Fatal("Send blocked on a peer that stopped reading")
	}
	select {
	case id := <-ra.unreachable:
		if id != 2 {
			t.Fatalf("reported raft id %d unreachable, want 2", id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the full queue was never reported as an unreachable peer")
	}
}

// What was queued for a peer while it could not be reached is dropped when it comes back:
// delivered late, a pile of heartbeats made the peer answer each, and a leader probing it
// resent up to MaxSizePerMsg of log per answer (15 MiB at once after a few seconds' absence,
// docs/PERFORMANCE.md). Raft was told the peer was unreachable, and resends what matters.
func TestMessagesQueuedWhileUnreachableAreDropped(t *testing.T) {
	la, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addrB := lb.Addr().String()
	lb.Close() // nobody listens there yet: dials fail
	peers := map[uint64]string{1: la.Addr().String(), 2: addrB}
	ra := &peerRecorder{msgs: make(chan *pb.Message, 1<<16), unreachable: make(chan uint64, 1)}
	a := New(Config{ClusterID: "test", SelfID: 1, Peers: peers, Listener: la, SnapshotDir: t.TempDir(),
		BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond}, ra)
	a.Start()
	t.Cleanup(a.Stop)
	hb := func(i uint64) *pb.Message {
		return &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(uint64(1)), To: new(uint64(2)), Commit: new(i)}
	}
	for i := range uint64(50) { // 0.5 s: several failed dials, then heartbeats queued in a backoff
		a.Send([]*pb.Message{hb(i)})
		a.Flush()
		time.Sleep(10 * time.Millisecond)
	}
	lb, err = net.Listen("tcp", addrB) // Go listens with SO_REUSEADDR: only another listener could take it
	if err != nil {
		t.Fatalf("listening again on %s: %v", addrB, err)
	}
	rb := &peerRecorder{msgs: make(chan *pb.Message, 1<<16), unreachable: make(chan uint64, 1)}
	b := New(Config{ClusterID: "test", SelfID: 2, Peers: peers, Listener: lb, SnapshotDir: t.TempDir()}, rb)
	b.Start()
	t.Cleanup(b.Stop)
	const fresh = 1000
	deadline := time.Now().Add(10 * time.Second)
	for i := uint64(fresh); ; i++ {
		a.Send([]*pb.Message{hb(i)})
		a.Flush()
		select {
		case m := <-rb.msgs:
			if m.GetCommit() < fresh {
				t.Fatalf("heartbeat %d, queued while the peer was unreachable, was delivered", m.GetCommit())
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat reached the peer once it listened")
		}
	}
}
