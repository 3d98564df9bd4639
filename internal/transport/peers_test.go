package transport

import (
	"maps"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// closedAddr is an address nobody listens at: dials to it fail at once.
func closedAddr(t *testing.T) string {
	t.Helper()
	l := listen(t)
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func newRecorder() *peerRecorder {
	return &peerRecorder{msgs: make(chan *pb.Message, 1<<16), unreachable: make(chan uint64, 1)}
}

// startMember starts one more member's transport (cfg names its raft id, peers and listener),
// recording what it is handed.
func startMember(t *testing.T, cfg Config) (*Transport, *peerRecorder) {
	t.Helper()
	cfg.ClusterID, cfg.SnapshotDir = "test", t.TempDir()
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 100 * time.Millisecond
	}
	r := newRecorder()
	tr := New(cfg, r)
	tr.Start()
	t.Cleanup(tr.Stop)
	return tr, r
}

func addrOf(tr *Transport) string { return tr.cfg.Listener.Addr().String() }

// sendUntilReceived sends heartbeats from raft id from (transport tr) to raft id to until one
// reaches to's recorder, for 10 s at most: the first may go out before the connection is up.
func sendUntilReceived(t *testing.T, what string, tr *Transport, from, to uint64, rec *peerRecorder) {
	t.Helper()
	waitFor(t, what, func() bool {
		tr.Send([]*pb.Message{msgFrom(from, to)})
		tr.Flush()
		for {
			select {
			case m := <-rec.msgs:
				if m.GetFrom() == from {
					return true
				}
			case <-time.After(10 * time.Millisecond):
				return false
			}
		}
	})
}

// authedFrom counts tr's inbound connections whose handshake named raft id id.
func authedFrom(tr *Transport, id uint64) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, p := range tr.authed {
		if p.id == id {
			n++
		}
	}
	return n
}

// goroutines counts the goroutines whose stack holds one of frames: for a precise count, a
// function's own frame, "(*peer).run(" (its callees' frames and "created by" lines name it
// otherwise).
func goroutines(frames ...string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, f := range frames {
			if strings.Contains(g, f) {
				count++
				break
			}
		}
	}
	return count
}

// transportGoroutines are every goroutine of the member transport's own code.
var transportGoroutines = []string{"internal/transport.(*Transport)", "internal/transport.(*peer)",
	"internal/transport.(*accepter)"}

// A member added at run time gets a sender at once: messages reach it, and its handshakes,
// refused while it was not a peer, are accepted.
func TestPeerAddedAtRunTime(t *testing.T) {
	a, b, ra, rb := startPair(t, Config{BackoffMax: 100 * time.Millisecond})
	ln := listen(t)
	peers := map[uint64]string{1: addrOf(a), 2: addrOf(b), 3: ln.Addr().String()}
	c, rc := startMember(t, Config{SelfID: 3, Peers: peers, Listener: ln})
	waitFor(t, "raft id 1 refuses the handshake of raft id 3, not a peer yet", func() bool {
		c.Send([]*pb.Message{msgFrom(3, 1)})
		c.Flush()
		return a.Rejected() > 0
	})
	for _, m := range drain(ra.msgs) {
		t.Fatalf("raft id 1 received %s from raft id %d before it was a peer", m.GetType(), m.GetFrom())
	}

	a.SetPeers(peers)
	if got, want := a.Peers(), map[uint64]string{2: addrOf(b), 3: ln.Addr().String()}; !maps.Equal(got, want) {
		t.Fatalf("Peers() = %v, want %v (this member's own id left out)", got, want)
	}
	sendUntilReceived(t, "a message reaches the added raft id 3", a, 1, 3, rc)
	sendUntilReceived(t, "a message of the added raft id 3 is accepted", c, 3, 1, ra)
	sendUntilReceived(t, "raft id 2, which stayed, still receives", a, 1, 2, rb)
}

// A removed member is cut off: its sender goroutines end, its inbound connection is closed, a
// new handshake from it is refused, messages to it are dropped and counted without reporting it
// unreachable, nothing of it is delivered any more, and nothing of the transport outlives Stop.
func TestRemovedPeerIsCutOff(t *testing.T) {
	logs := &logBuffer{}
	a, b, ra, rb := startPair(t, Config{Logger: logs.logger(), BackoffMax: 100 * time.Millisecond})
	sendUntilReceived(t, "raft id 1 reaches raft id 2", a, 1, 2, rb)
	sendUntilReceived(t, "raft id 2 reaches raft id 1", b, 2, 1, ra)
	if n := authedFrom(a, 2); n != 1 {
		t.Fatalf("raft id 1 serves %d connections from raft id 2, want 1", n)
	}
	// Each transport runs one sender pair, for its one peer.
	if run, snaps := goroutines("(*peer).run("), goroutines("(*peer).runSnapshots("); run != 2 || snaps != 2 {
		t.Fatalf("%d senders and %d snapshot senders before the removal, want 2 and 2", run, snaps)
	}

	a.SetPeers(map[uint64]string{1: addrOf(a)})
	if got := a.Peers(); len(got) != 0 {
		t.Fatalf("Peers() = %v after raft id 2 was removed, want none", got)
	}
	waitFor(t, "raft id 1's senders to the removed raft id 2 end", func() bool {
		return goroutines("(*peer).run(") == 1 && goroutines("(*peer).runSnapshots(") == 1
	})
	waitFor(t, "raft id 1 closes the inbound connection of the removed raft id 2", func() bool {
		return authedFrom(a, 2) == 0
	})

	// Messages to it: dropped, counted, and raft is not told it is unreachable (it no longer
	// tracks it). Nothing else reports it any more: its senders have ended.
	drain(ra.msgs)
	select {
	case <-ra.unreachable:
	default:
	}
	dropped := a.SendsDropped()
	a.Send([]*pb.Message{msgFrom(1, 2), msgFrom(1, 2), appMsg(5, []byte("x"))})
	a.Flush()
	if n := a.SendsDropped() - dropped; n != 3 {
		t.Fatalf("SendsDropped grew by %d for 3 messages to a removed peer, want 3", n)
	}
	select {
	case id := <-ra.unreachable:
		t.Fatalf("raft id %d reported unreachable after raft id 2 was removed", id)
	default:
	}

	// Its new handshakes are refused; nothing it sends is delivered (its old connection's
	// messages were drained above, once it was closed).
	rejected := a.Rejected()
	waitFor(t, "raft id 1 refuses a new handshake of the removed raft id 2", func() bool {
		b.Send([]*pb.Message{msgFrom(2, 1)})
		b.Flush()
		return a.Rejected() > rejected && strings.Contains(logs.String(), "handshake from raft id 2, which is not a peer")
	})
	for _, m := range drain(ra.msgs) {
		t.Fatalf("raft id 1 received %s from raft id %d after it was removed", m.GetType(), m.GetFrom())
	}

	a.Stop()
	b.Stop()
	waitFor(t, "no goroutine of either transport outlives Stop", func() bool {
		return goroutines(transportGoroutines...) == 0
	})
	a.SetPeers(map[uint64]string{2: addrOf(b)})
	if got := a.Peers(); len(got) != 0 {
		t.Fatalf("Peers() = %v: SetPeers after Stop changed the set", got)
	}
	if n := goroutines(transportGoroutines...); n != 0 {
		t.Fatalf("SetPeers after Stop started %d goroutines", n)
	}
}

// A member that moved (same raft id, new address) is reached at its new address: the connection
// to the old one is closed, and nothing more goes there.
func TestPeerAddressChangeReconnectsThere(t *testing.T) {
	a, b, _, rb := startPair(t, Config{BackoffMax: 100 * time.Millisecond})
	sendUntilReceived(t, "raft id 1 reaches raft id 2 at its first address", a, 1, 2, rb)
	// Raft id 2 restarts elsewhere; the old one keeps running, so a message that still went
	// there would be seen.
	ln := listen(t)
	moved := map[uint64]string{1: addrOf(a), 2: ln.Addr().String()}
	_, rb2 := startMember(t, Config{SelfID: 2, Peers: moved, Listener: ln})

	a.SetPeers(moved)
	if got := a.Peers()[2]; got != ln.Addr().String() {
		t.Fatalf("Peers()[2] = %s after the move, want %s", got, ln.Addr())
	}
	waitFor(t, "raft id 1 closes its connection to the old address", func() bool { return authedFrom(b, 1) == 0 })
	drain(rb.msgs)
	sendUntilReceived(t, "a message reaches raft id 2 at its new address", a, 1, 2, rb2)
	for _, m := range drain(rb.msgs) {
		t.Fatalf("%s reached raft id 2's old address after it moved", m.GetType())
	}
}

// Before Start, SetPeers only replaces the set: Start launches senders for the new one, and
// none for the peer it replaced (a MsgSnap handed to that one is reported failed).
func TestSetPeersBeforeStart(t *testing.T) {
	la, lb := listen(t), listen(t)
	ra := &snapRecorder{peerRecorder: newRecorder(), reports: make(chan snapReport, 16)}
	a := New(Config{ClusterID: "test", SelfID: 1, Peers: map[uint64]string{1: la.Addr().String(), 9: closedAddr(t)},
		Listener: la, SnapshotDir: t.TempDir(), BackoffMax: 100 * time.Millisecond}, ra)
	t.Cleanup(a.Stop)
	a.Send([]*pb.Message{snapTo(9)})
	peers := map[uint64]string{1: la.Addr().String(), 2: lb.Addr().String()}
	a.SetPeers(peers)
	if got, want := a.Peers(), map[uint64]string{2: lb.Addr().String()}; !maps.Equal(got, want) {
		t.Fatalf("Peers() = %v, want %v", got, want)
	}
	select {
	case r := <-ra.reports:
		if want := (snapReport{9, false}); r != want {
			t.Fatalf("reported %+v, want %+v", r, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the MsgSnap to raft id 9, replaced before Start, was never reported")
	}
	a.Start()
	b, rb := startMember(t, Config{SelfID: 2, Peers: peers, Listener: lb})
	sendUntilReceived(t, "raft id 1 reaches raft id 2, set before Start", a, 1, 2, rb)
	sendUntilReceived(t, "raft id 2 is accepted by raft id 1", b, 2, 1, ra.peerRecorder)
	if n := goroutines("(*peer).run("); n != 2 {
		t.Fatalf("%d senders, want 2: one each way between raft ids 1 and 2, none for the replaced raft id 9", n)
	}
	dropped := a.SendsDropped()
	a.Send([]*pb.Message{msgFrom(1, 9)})
	if a.SendsDropped() != dropped+1 {
		t.Fatal("a message to raft id 9, replaced before Start, was not counted as dropped")
	}
}

type snapReport struct {
	id uint64
	ok bool
}

// snapRecorder records snapshot reports too.
type snapRecorder struct {
	*peerRecorder
	reports chan snapReport
}

func (r *snapRecorder) SnapshotStatus(id uint64, ok bool) { r.reports <- snapReport{id, ok} }

func snapTo(to uint64) *pb.Message {
	return &pb.Message{Type: pb.MsgSnap.Enum(), From: new(uint64(1)), To: new(to), Term: new(uint64(2)),
		Snapshot: &pb.Snapshot{Data: make([]byte, 3000),
			Metadata: &pb.SnapshotMetadata{Index: new(uint64(10)), Term: new(uint64(2))}}}
}

// A snapshot transfer under way to a peer that is removed is abandoned and reported failed, once
// (raft sends a peer nothing more until it hears of its MsgSnap), and so is one queued behind it;
// a MsgSnap sent to it after its removal is dropped and reported failed too.
func TestSnapshotToRemovedPeerReportedFailedOnce(t *testing.T) {
	la, lb := listen(t), listen(t)
	peers := map[uint64]string{1: la.Addr().String(), 2: lb.Addr().String()}
	ra := &snapRecorder{peerRecorder: newRecorder(), reports: make(chan snapReport, 16)}
	a := New(Config{ClusterID: "test", SelfID: 1, Peers: peers, Listener: la, SnapshotDir: t.TempDir()}, ra)
	a.Start()
	t.Cleanup(a.Stop)
	b, rb := startMember(t, Config{SelfID: 2, Peers: peers, Listener: lb})
	rb.hold.Lock() // raft id 2 takes nothing: the transfer is never acknowledged
	t.Cleanup(rb.hold.Unlock)

	a.Send([]*pb.Message{snapTo(2)})
	waitFor(t, "the snapshot transfer's connection is up beside the messages'", func() bool {
		return authedFrom(b, 1) == 2
	})
	// Raft sends one MsgSnap at a time; a second one waits in the queue all the same.
	a.Send([]*pb.Message{snapTo(2)})
	select {
	case r := <-ra.reports:
		t.Fatalf("reported %+v before the transfer could be acknowledged", r)
	default:
	}

	a.SetPeers(map[uint64]string{1: la.Addr().String()})
	want := snapReport{2, false}
	for i := range 2 {
		select {
		case r := <-ra.reports:
			if r != want {
				t.Fatalf("reported %+v for an abandoned transfer, want %+v", r, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of the 2 MsgSnaps to the removed peer were reported", i)
		}
	}
	dropped := a.SendsDropped()
	a.Send([]*pb.Message{snapTo(2)})
	select {
	case r := <-ra.reports:
		if r != want {
			t.Fatalf("reported %+v for a MsgSnap to a removed peer, want %+v", r, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a MsgSnap to a removed peer was never reported")
	}
	if a.SendsDropped() != dropped+1 {
		t.Fatal("a MsgSnap to a removed peer was not counted as dropped")
	}
	a.Stop() // every report is made by then: runSnapshots has ended
	select {
	case r := <-ra.reports:
		t.Fatalf("reported %+v once more", r)
	default:
	}
}

// A MsgSnap waiting for a transfer slot (MaxConcurrentSnapshots) when its peer is removed is
// reported failed, once, and the transfer holding the slot goes on unreported.
func TestSnapshotWaitingForSlotReportedFailedOnRemoval(t *testing.T) {
	la, lb, lc := listen(t), listen(t), listen(t)
	peers := map[uint64]string{1: la.Addr().String(), 2: lb.Addr().String(), 3: lc.Addr().String()}
	ra := &snapRecorder{peerRecorder: newRecorder(), reports: make(chan snapReport, 16)}
	a := New(Config{ClusterID: "test", SelfID: 1, Peers: peers, Listener: la, SnapshotDir: t.TempDir(),
		MaxConcurrentSnapshots: 1}, ra)
	a.Start()
	t.Cleanup(a.Stop)
	startMember(t, Config{SelfID: 2, Peers: peers, Listener: lb})
	c, rc := startMember(t, Config{SelfID: 3, Peers: peers, Listener: lc})
	rc.hold.Lock() // raft id 3 takes nothing: its transfer holds the only slot
	t.Cleanup(rc.hold.Unlock)

	a.Send([]*pb.Message{snapTo(3)})
	waitFor(t, "the transfer to raft id 3 is under way", func() bool { return authedFrom(c, 1) == 2 })
	a.Send([]*pb.Message{snapTo(2)})
	p2 := a.peers.Load().byID[2]
	waitFor(t, "raft id 2's snapshot sender took its MsgSnap, and waits for the slot", func() bool {
		return len(p2.snapq) == 0
	})

	a.SetPeers(map[uint64]string{1: la.Addr().String(), 3: lc.Addr().String()})
	select {
	case r := <-ra.reports:
		if want := (snapReport{2, false}); r != want {
			t.Fatalf("reported %+v, want %+v", r, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the MsgSnap waiting for a slot was never reported")
	}
	// Left: raft id 1's for raft id 3, and the two of raft ids 2 and 3 each.
	waitFor(t, "raft id 1's snapshot sender for raft id 2 ends", func() bool {
		return goroutines("(*peer).runSnapshots(") == 1+2+2
	})
	select {
	case r := <-ra.reports:
		t.Fatalf("reported %+v once more, or the transfer to raft id 3 that was not acknowledged", r)
	default:
	}
}

// SetPeers may run on another goroutine than Send: a peer added and removed over and over while
// the loop sends to it and to one that stays (the race detector watches), and then nothing of
// the transport outlives Stop.
func TestSetPeersConcurrentWithSend(t *testing.T) {
	a, b, _, rb := startPair(t, Config{BackoffMax: 100 * time.Millisecond})
	with := map[uint64]string{1: addrOf(a), 2: addrOf(b), 3: closedAddr(t)}
	without := map[uint64]string{1: addrOf(a), 2: addrOf(b)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			if i%2 == 0 {
				a.SetPeers(with)
			} else {
				a.SetPeers(without)
			}
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-done:
		default:
			msgs := []*pb.Message{msgFrom(1, 2), msgFrom(1, 3), appMsg(uint64(i), nil)}
			if i%10 == 0 {
				msgs = append(msgs, snapTo(3))
			}
			a.Send(msgs)
			a.Flush()
			continue
		}
		break
	}
	if got := a.Peers(); !maps.Equal(got, map[uint64]string{2: addrOf(b)}) {
		t.Fatalf("Peers() = %v after the last SetPeers left raft id 3 out", got)
	}
	sendUntilReceived(t, "raft id 2, in every set, still receives", a, 1, 2, rb)
	a.Stop()
	b.Stop()
	waitFor(t, "no goroutine of either transport outlives Stop", func() bool {
		return goroutines(transportGoroutines...) == 0
	})
}
