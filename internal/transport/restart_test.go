package transport

import (
	"net"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// A peer that was down for a while and comes back is reached again as soon as it connects to
// this member, not after this member's backoff — which grew to BackoffMax while it was down.
// Until then every message to it is dropped: a restarted member heard nothing from this one
// (no vote requests either) for up to BackoffMax.
func TestRestartedPeerIsReachedAtOnce(t *testing.T) {
	a, b, _, _ := startPair(t, Config{})
	bAddr := addrOf(b)
	hb := func() []*pb.Message {
		return []*pb.Message{{Type: pb.MsgHeartbeat.Enum(), From: new(uint64(1)), To: new(uint64(2))}}
	}
	b.Stop()
	// Down long enough for a's backoff to reach its maximum (2 s).
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		a.Send(hb())
		a.Flush()
	}
	lb, err := net.Listen("tcp", bAddr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", bAddr, err)
	}
	rb := &peerRecorder{msgs: make(chan *pb.Message, 1<<16), unreachable: make(chan uint64, 1)}
	b2 := New(Config{ClusterID: "test", SelfID: 2, Peers: b.cfg.Peers, Listener: lb, SnapshotDir: t.TempDir()}, rb)
	start := time.Now()
	b2.Start()
	t.Cleanup(b2.Stop)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-rb.msgs:
			took := time.Since(start)
			t.Logf("the restarted peer heard from this member %s after it started", took.Round(time.Millisecond))
			if took > 500*time.Millisecond {
				t.Fatalf("the restarted peer heard from this member only %s after it started (its backoff, not its return)", took)
			}
			return
		case <-tick.C:
			a.Send(hb())
			a.Flush()
		case <-time.After(5 * time.Second):
			t.Fatal("the restarted peer heard nothing within 5 s")
		}
	}
}
