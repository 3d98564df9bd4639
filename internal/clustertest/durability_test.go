package clustertest

import (
	"strings"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/vfs"
)

// Each durability check fails on a promise the disk does not hold, and passes once it does.
func TestDurableLogPromises(t *testing.T) {
	open := func(opts archive.Options) *durableLog {
		fs := vfs.NewMem()
		opts.ClusterID, opts.GrowBytes = "t", 4<<10
		a, err := archive.Open(fs, "/data", opts)
		if err != nil {
			t.Fatal(err)
		}
		d, err := newDurableLog(a, fs, "/data/log")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	ents := func(term uint64, from, to uint64) []*pb.Entry {
		var es []*pb.Entry
		for i := from; i <= to; i++ {
			es = append(es, &pb.Entry{Index: new(i), Term: new(term), Data: []byte("x")})
		}
		return es
	}
	msg := func(typ pb.MessageType, term, index uint64, from, to uint64, reject bool) *pb.Message {
		return &pb.Message{Type: typ.Enum(), Term: new(term), Index: new(index), From: new(from), To: new(to), Reject: new(reject)}
	}
	want := func(d *durableLog, m *pb.Message, bad string) {
		t.Helper()
		got := d.promise(m)
		if (bad == "") != (got == "") || !strings.Contains(got, bad) {
			t.Errorf("%s term %d index %d: %q, want %q", m.GetType(), m.GetTerm(), m.GetIndex(), got, bad)
		}
	}

	d := open(archive.Options{})
	if err := d.Append(&pb.HardState{Term: new(uint64(2)), Vote: new(uint64(3))}, ents(2, 1, 5)); err != nil {
		t.Fatal(err)
	}
	// Written, not synced: no acknowledgement, no vote, nothing in term 2.
	want(d, msg(pb.MsgAppResp, 2, 5, 1, 2, false), "disk holds term 0")
	want(d, msg(pb.MsgHeartbeatResp, 2, 0, 1, 2, false), "disk holds term 0")
	want(d, msg(pb.MsgPreVote, 3, 5, 1, 2, false), "") // a pre-vote promises nothing
	want(d, msg(pb.MsgAppResp, 0, 5, 1, 2, false), "") // nor does a message without a term
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if len(d.failed) != 0 {
		t.Fatalf("a sync of the archive found wanting: %v", d.failed)
	}
	want(d, msg(pb.MsgAppResp, 2, 5, 1, 2, false), "")
	want(d, msg(pb.MsgAppResp, 2, 6, 1, 2, false), "acknowledged index 6")
	want(d, msg(pb.MsgAppResp, 2, 9, 1, 2, true), "") // a rejection promises nothing
	want(d, msg(pb.MsgVoteResp, 2, 0, 1, 3, false), "")
	want(d, msg(pb.MsgVoteResp, 2, 0, 1, 2, false), "granted its vote to raft id 2")
	want(d, msg(pb.MsgVoteResp, 2, 0, 1, 2, true), "")
	want(d, msg(pb.MsgVote, 2, 5, 1, 2, false), "asked for votes in term 2") // it voted for 3
	want(d, msg(pb.MsgVote, 3, 5, 1, 2, false), "disk holds term 2")
	// A grant (or a request) in an earlier term than the disk holds keeps its promise: the
	// member can never vote in that term again (soak seed 258 405: a Ready carried a grant in
	// term 4 and the state of term 5).
	want(d, msg(pb.MsgVoteResp, 1, 0, 1, 2, false), "")
	want(d, msg(pb.MsgVote, 1, 5, 1, 2, false), "")

	// A rewritten suffix is not durable as the log now has it until the next sync.
	if err := d.Append(&pb.HardState{Term: new(uint64(3)), Vote: new(uint64(1))}, ents(3, 4, 4)); err != nil {
		t.Fatal(err)
	}
	if d.durablePrefix() != 3 {
		t.Fatalf("durable prefix %d after rewriting from 4, want 3", d.durablePrefix())
	}
	want(d, msg(pb.MsgAppResp, 2, 4, 1, 2, false), "acknowledged index 4")
	want(d, msg(pb.MsgVote, 3, 4, 1, 2, false), "disk holds term 2")
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	want(d, msg(pb.MsgAppResp, 3, 4, 1, 2, false), "")
	want(d, msg(pb.MsgAppResp, 3, 5, 1, 2, false), "acknowledged index 5") // cut by the rewrite
	want(d, msg(pb.MsgVote, 3, 4, 1, 2, false), "")

	// An archive that does not sync (its test-only switch) is caught at its first sync.
	d = open(archive.Options{NoSync: true})
	if err := d.Append(&pb.HardState{Term: new(uint64(1))}, ents(1, 1, 2)); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if len(d.failed) != 1 || !strings.Contains(d.failed[0], "unsynced data in /data/log/") {
		t.Fatalf("an archive that does not sync: %v", d.failed)
	}
}
