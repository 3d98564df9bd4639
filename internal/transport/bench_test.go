package transport

import (
	"net"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// discard is a member that takes every message and forgets it.
type discard struct{}

func (discard) Receive(*pb.Message) bool    { return true }
func (discard) Unreachable(uint64)          {}
func (discard) SnapshotStatus(uint64, bool) {}

// startThree starts raft id 1, the sender, and ids 2 and 3, which discard what they receive,
// and waits until id 1 is connected to both.
func startThree(b *testing.B) *Transport {
	b.Helper()
	var ls [3]net.Listener
	peers := map[uint64]string{}
	for i := range ls {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ls[i] = l
		peers[uint64(i+1)] = l.Addr().String()
	}
	var ts [3]*Transport
	for i := range ts {
		ts[i] = New(Config{ClusterID: "bench", SelfID: uint64(i + 1), Peers: peers, Listener: ls[i],
			SnapshotDir: b.TempDir()}, discard{})
		ts[i].Start()
	}
	b.Cleanup(func() {
		for _, t := range ts {
			t.Stop()
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ts[0].PeerVersion(2) == 0 || ts[0].PeerVersion(3) == 0; {
		if time.Now().After(deadline) {
			b.Fatal("not connected to both peers within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return ts[0]
}

// BenchmarkSend measures Send from the member's loop, one op a Send of one message to each of two
// connected peers: appends with an entry (written at once) and appends that only carry the
// commit index (left for Flush, which runs once per 64 Sends, as a loop's round batches them).
// dropped/op is there to tell a run whose queues overflowed (then it measured dropping).
func BenchmarkSend(b *testing.B) {
	data := make([]byte, 128)
	batch := func(withEntries bool) []*pb.Message {
		var ms []*pb.Message
		for _, to := range []uint64{2, 3} {
			m := &pb.Message{Type: pb.MsgApp.Enum(), From: new(uint64(1)), To: new(to), Index: new(uint64(7))}
			if withEntries {
				m.Entries = []*pb.Entry{{Index: new(uint64(8)), Data: data}}
			}
			ms = append(ms, m)
		}
		return ms
	}
	for _, c := range []struct {
		name    string
		entries bool
	}{{"urgent", true}, {"commit-only", false}} {
		b.Run(c.name, func(b *testing.B) {
			t := startThree(b)
			ms := batch(c.entries)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				t.Send(ms)
				if i%64 == 63 {
					t.Flush()
				}
			}
			t.Flush()
			b.ReportMetric(float64(t.SendsDropped())/float64(b.N), "dropped/op")
		})
	}
}
