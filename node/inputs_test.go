package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// unstartedNode is a member that is never run: the test plays its loop.
func unstartedNode(t *testing.T, opts ...Option) *Node {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Members, cfg.DataDir = LocalCluster(3), t.TempDir()
	n, err := New(cfg, counter.New(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(n.quit) }) // releases whatever still waits for room
	return n
}

// returnsSoon runs f and fails the test if it has not returned within a few seconds.
func returnsSoon(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		f()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return: it waited for the loop", what)
	}
}

// wokenRound plays one round of the loop after it woke on client input (the worst case for raft:
// it drew the client's case) and returns the inputs in the order the loop handles them.
func wokenRound(n *Node) []input {
	var got []input
	n.takeRound(<-n.clientIn, func(in input) { got = append(got, in) })
	return got
}

func heartbeat(from uint64) *pb.Message {
	return &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(from), To: new(uint64(1)), Term: new(uint64(3))}
}

func snapMsg(from uint64) *pb.Message {
	return &pb.Message{Type: pb.MsgSnap.Enum(), From: new(from), To: new(uint64(1)), Term: new(uint64(3)),
		Snapshot: &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(uint64(100)), Term: new(uint64(3))},
			Data: []byte("state")}}
}

// A raft message — a heartbeat, and a MsgSnap the transport has received, synced and is about to
// acknowledge — that arrives while client input fills the loop's queue, with more client readers
// waiting for room, is taken, and handled before the queued client input.
func TestRaftInputIsNotDroppedOrDelayedByClientInput(t *testing.T) {
	const clientCap = 8
	n := unstartedNode(t, withInputCaps(4, clientCap))
	h := handler{n}
	for i := range clientCap {
		h.ClientRequests(uint64(i+1), []wire.ClientMsg{{Kind: wire.CQuery, RequestID: uint64(i)}})
	}
	// More client readers wait for room, as under a flood.
	var parked sync.WaitGroup
	for i := range 4 {
		parked.Go(func() {
			h.ClientRequests(uint64(100+i), []wire.ClientMsg{{Kind: wire.CQuery}})
		})
	}
	var tookHeartbeat, tookSnap bool
	returnsSoon(t, "Receive(MsgHeartbeat)", func() { tookHeartbeat = h.Receive(heartbeat(2)) })
	returnsSoon(t, "Receive(MsgSnap)", func() { tookSnap = h.Receive(snapMsg(3)) })
	if !tookHeartbeat || !tookSnap {
		t.Fatalf("Receive returned heartbeat %v, snapshot %v: a running member's loop must take both", tookHeartbeat, tookSnap)
	}

	got := wokenRound(n)
	if len(got) < 2 || got[0].kind != inRaft || got[0].msg.GetType() != pb.MsgHeartbeat ||
		got[1].kind != inRaft || got[1].msg.GetType() != pb.MsgSnap {
		t.Fatalf("the round handled %s; want the heartbeat, then the snapshot, before any client input", kinds(got))
	}
	if d := n.Status().RaftMessagesDropped; d != 0 {
		t.Fatalf("RaftMessagesDropped = %d", d)
	}
	// The parked readers get in too: nothing is lost.
	for deadline := time.After(5 * time.Second); len(got)-2 < clientCap+4; {
		select {
		case in := <-n.clientIn:
			n.takeRound(in, func(in input) { got = append(got, in) })
		case <-deadline:
			t.Fatalf("%d client inputs handled, want %d", len(got)-2, clientCap+4)
		}
	}
	parked.Wait()
}

// Unreachable never blocks (the loop itself calls it, from Transport.Send) and is not lost when
// raft's input is full; SnapshotStatus waits for room and is not lost either.
func TestPeerReportsAreNotLostWhenRaftInputIsFull(t *testing.T) {
	const raftCap = 4
	n := unstartedNode(t, withInputCaps(raftCap, 4))
	h := handler{n}
	for range raftCap {
		returnsSoon(t, "Receive", func() { h.Receive(heartbeat(2)) })
	}
	returnsSoon(t, "Unreachable(2)", func() { h.Unreachable(2) })
	returnsSoon(t, "Unreachable(3)", func() { h.Unreachable(3) })
	returnsSoon(t, "Unreachable(2), again", func() { h.Unreachable(2) })
	snapDone := make(chan struct{})
	go func() {
		h.SnapshotStatus(3, true)
		close(snapDone)
	}()

	unreachable := map[uint64]int{}
	snapReports, heartbeats := 0, 0
	record := func(in input) {
		switch in.kind {
		case inUnreachable:
			unreachable[in.peer]++
		case inSnapStatus:
			if in.peer == 3 && in.ok {
				snapReports++
			}
		case inRaft:
			heartbeats++
		}
	}
	deadline := time.After(5 * time.Second)
	for snapReports == 0 || heartbeats < raftCap || unreachable[2] == 0 || unreachable[3] == 0 {
		select {
		case in := <-n.raftIn:
			n.takeRound(in, record)
		case in := <-n.clientIn:
			n.takeRound(in, record)
		case <-deadline:
			t.Fatalf("after 5 s: %d heartbeats, unreachable reports %v, %d snapshot reports; want %d, both peers, 1",
				heartbeats, unreachable, snapReports, raftCap)
		}
	}
	<-snapDone
	if snapReports != 1 {
		t.Fatalf("%d snapshot reports, want 1", snapReports)
	}
}

func kinds(ins []input) string {
	s := ""
	for i, in := range ins {
		if i == 6 {
			return s + fmt.Sprintf(" … (%d in all)", len(ins))
		}
		switch in.kind {
		case inRaft:
			s += " raft:" + in.msg.GetType().String()
		case inClient:
			s += " client"
		default:
			s += fmt.Sprintf(" kind%d", in.kind)
		}
	}
	return s
}

// queryFlood keeps a raw connection to addr full of queries, reading (and dropping) the answers,
// until stop is closed.
func queryFlood(t *testing.T, addr string, stop <-chan struct{}, wg *sync.WaitGroup) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return
	}
	var burst []byte
	for i := range 2048 {
		burst = wire.AppendClientFrame(burst, &wire.ClientMsg{Kind: wire.CQuery, RequestID: uint64(i),
			Payload: counter.EncodeRequest(counter.Request{Op: counter.OpGet})}, wire.ClientProtocolMax)
	}
	wg.Go(func() { _, _ = io.Copy(io.Discard, conn) })
	wg.Go(func() {
		defer conn.Close()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := conn.Write(burst); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue // the member is not reading: it is flooded, as intended
				}
				return
			}
		}
	})
}

// A flood of client input that keeps the leader's client queue full (many connections pipelining
// queries, and clients pipelining commands) neither costs the leader its leadership nor drops a
// raft message anywhere.
func TestClientFloodDoesNotStarveRaft(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.opts = func(int) []Option { return []Option{withInputCaps(16, 16)} }
	l, term := c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 32 {
		queryFlood(t, c.clients[l], stop, &wg)
	}
	incs := startIncLoop(t, c.dialWith(ctx, client.Config{MaxInFlight: 512}), 512, 0)
	var full, samples atomic.Int64
	leader := c.members[l].n
	const floodTime = 3 * time.Second // over twice the longest election timeout (1.4 s)
	for end := time.Now().Add(floodTime); time.Now().Before(end); {
		samples.Add(1)
		if len(leader.clientIn) == cap(leader.clientIn) {
			full.Add(1)
		}
		if st := leader.Status(); st.Role != service.Leader || st.Term != term {
			if raceDetector {
				// Under the race detector the members run several times slower, and on two cores
				// the leader lost its term in about one run of six (the build before issue 18's
				// last slice alike, 3 of 15): enforced without it, as `go test ./...` runs it.
				t.Logf("under the flood member %d is %s in term %d (leader in term %d before): not enforced under -race", l, st.Role, st.Term, term)
				term = st.Term
				break
			}
			close(stop)
			t.Fatalf("under the flood member %d is %s in term %d (leader in term %d before)", l, st.Role, st.Term, term)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if f, n := full.Load(), samples.Load(); f < n/4 {
		t.Fatalf("the leader's client queue was full in only %d of %d samples: the flood is too weak to test anything", f, n)
	}
	answered := incs.finish(ctx) // each answered once, the values 1…answered
	for i, m := range c.members {
		st := m.n.Status()
		if st.RaftMessagesDropped != 0 || st.RaftSendsDropped != 0 {
			t.Errorf("member %d dropped %d received and %d outgoing raft messages", i, st.RaftMessagesDropped, st.RaftSendsDropped)
		}
	}
	if nl, nt := c.leader(time.Second); !raceDetector && (nl != l || nt != term) {
		t.Fatalf("leader/term changed from %d/%d to %d/%d", l, term, nl, nt)
	}
	if after := inc(ctx, t, c.dial(ctx)); after != int64(answered)+1 {
		t.Fatalf("counter %d after %d increments answered during the flood", after, answered)
	}
	t.Logf("client queue full in %d of %d samples; %d increments answered during the flood", full.Load(), samples.Load(), answered)
}
