package replica

import (
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/vfs"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

type countingOutbox struct {
	replies, other int
	last           wire.ClientMsg
}

func (o *countingOutbox) SendRaft([]*pb.Message) {}
func (o *countingOutbox) SendClient(_ ConnID, m *wire.ClientMsg) {
	if m.Kind == wire.CResponse && m.Status == wire.StatusOK {
		o.replies++
	} else {
		o.other++
		o.last = *m
	}
}
func (o *countingOutbox) Changed(Change) {}

type stepClock struct{ now int64 }

func (c *stepClock) Now() int64 { c.now += int64(time.Microsecond); return c.now }

// BenchmarkLeaderPath measures one member's whole path per client command: ingress checks and
// batching, the raft proposal, the archive write (fsync off: the disk is not measured here),
// applying through the container and the counter, and the reply, with 4 sessions of 256
// commands in flight proposed 256 at a time. ns/op and allocs/op are per command.
func BenchmarkLeaderPath(b *testing.B) {
	// The real file system with fsync off: the disk's sync time is archive.BenchmarkAppendSync's
	// subject; this one measures the CPU per command.
	st, err := archive.Open(vfs.OS(), b.TempDir(), archive.Options{ClusterID: "bench", MemberID: 0, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Members = []Member{{ID: 0, ClientAddr: "c", MemberAddr: "m"}}
	out := &countingOutbox{}
	r, err := New(cfg, counter.New(), st, &stepClock{}, out)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for i := 0; r.Summary().Role != service.Leader; i++ {
		if i > 10*cfg.ElectionTicks {
			b.Fatal("a single member did not elect itself")
		}
		r.Tick()
		if err := drive(r); err != nil {
			b.Fatal(err)
		}
	}
	const sessions, inflight, perRound = 4, 256, 256
	ids := make([]wire.SessionID, sessions)
	for i := range ids {
		ids[i][0] = byte(i + 1)
		r.ClientRequest(ConnID(i), &wire.ClientMsg{Kind: wire.COpen, Session: ids[i]})
	}
	if err := drive(r); err != nil {
		b.Fatal(err)
	}
	next := make([]wire.Seq, sessions)
	for i := range next {
		next[i] = 1
	}
	inc := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})
	msg := &wire.ClientMsg{Kind: wire.CCommand, Payload: inc}
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(perRound, b.N-done)
		for k := range n {
			s := k % sessions
			msg.Session, msg.Seq = ids[s], next[s]
			msg.LowestUnacked = 1
			if next[s] > inflight {
				msg.LowestUnacked = next[s] - inflight + 1
			}
			next[s]++
			r.ClientRequest(ConnID(s), msg)
		}
		if err := drive(r); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	b.StopTimer()
	if out.replies < b.N {
		b.Fatalf("%d replies for %d commands (%d other messages, the last %+v)", out.replies, b.N, out.other, out.last)
	}
}

// drive runs Process and every sync and snapshot write it leaves pending, inline, as a driver
// must (TakeSync, Process, SyncDone, Process).
func drive(r *Replica) error {
	for {
		if err := r.Process(); err != nil {
			return err
		}
		if job := r.TakeSnapshotWrite(); job != nil {
			if err := r.SnapshotWritten(job()); err != nil {
				return err
			}
		}
		job := r.TakeSync()
		if job == nil {
			return nil
		}
		if err := r.Process(); err != nil { // applies what was durable before, "while it syncs"
			return err
		}
		r.SyncDone(job())
	}
}
