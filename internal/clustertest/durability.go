package clustertest

import (
	"fmt"
	"strings"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/vfs"
)

// checkDurability switches on the checks of this file (default on). Switched off, only the
// end-to-end checks remain (linearizability, loss, two leaders in a term, diverging state), which
// shows how far they alone get: TestSimulatorCatchesPlantedBugs runs both ways.
var checkDurability = true

// durableLog is a member's archive as the consensus core uses it, with what the member's disk
// holds durably kept beside it, so that the harness can check the member's promises against
// the disk rather than against the member's own word:
//
//   - a sync that returned made everything written before it durable (the disk model, vfs.Mem,
//     must then hold no unsynced data in the log directory);
//   - a member sends nothing in a term its disk does not hold, grants no vote and casts none for
//     itself that its disk does not hold, and acknowledges no entry its disk does not hold as the
//     member's log has it (pre-votes promise nothing: their term is a future one);
//   - a member applies no entry its disk does not hold.
//
// These are the Ready contract seen from outside (raft's documentation and the Raft thesis
// §10.2.1: only a leader's appends may go out before its own write; everything else waits for
// the sync). A member that breaks them loses acknowledged data or votes twice once it crashes
// at the wrong moment; these checks see the broken promise when it is made, crash or not.
type durableLog struct {
	*archive.Archive
	fs  *vfs.Mem
	dir string

	// What the member wrote: its log's last index, the lowest index it wrote since the last
	// sync (0: none), its hard state. Invariant: rewriteFrom == 0 || rewriteFrom <= written.
	written     uint64
	rewriteFrom uint64
	writtenHS   hardState
	// What a crash would keep: the log up to durable (as it was at the last sync) and the hard
	// state durableHS.
	durable   uint64
	durableHS hardState
	// failed holds what the checks found, for the harness to report.
	failed []string
}

type hardState struct{ term, vote uint64 }

func newDurableLog(a *archive.Archive, fs *vfs.Mem, dir string) (*durableLog, error) {
	// What the archive found at Open is durable: a crash made everything left synced, and a
	// clean stop left files the next start reads as they are.
	hs, _, err := a.InitialState()
	if err != nil {
		return nil, err
	}
	last, err := a.LastIndex()
	if err != nil {
		return nil, err
	}
	d := &durableLog{Archive: a, fs: fs, dir: dir, written: last, durable: last}
	d.writtenHS = hardState{hs.GetTerm(), hs.GetVote()}
	d.durableHS = d.writtenHS
	return d, nil
}

// Append implements consensus.Storage.
func (d *durableLog) Append(hs *pb.HardState, ents []*pb.Entry) error {
	if err := d.Archive.Append(hs, ents); err != nil {
		return err
	}
	if n := len(ents); n > 0 {
		if first := ents[0].GetIndex(); d.rewriteFrom == 0 || first < d.rewriteFrom {
			d.rewriteFrom = first
		}
		d.written = ents[n-1].GetIndex()
	}
	if !raft.IsEmptyHardState(hs) {
		d.writtenHS = hardState{hs.GetTerm(), hs.GetVote()}
	}
	return nil
}

// Sync implements consensus.Storage.
func (d *durableLog) Sync() error {
	if err := d.Archive.Sync(); err != nil {
		return err
	}
	if checkDurability {
		if files := d.fs.UnsyncedFiles(d.dir); len(files) > 0 {
			d.failed = append(d.failed, fmt.Sprintf("its archive's sync returned, but the disk holds unsynced data in %s",
				strings.Join(files, ", ")))
		}
	}
	d.durable, d.durableHS, d.rewriteFrom = d.written, d.writtenHS, 0
	return nil
}

// SaveSnapshot implements consensus.Storage: the snapshot file is durable when it returns, and
// the log is the snapshot alone.
func (d *durableLog) SaveSnapshot(snap *pb.Snapshot) error {
	if err := d.Archive.SaveSnapshot(snap); err != nil {
		return err
	}
	ix := snap.GetMetadata().GetIndex()
	if last, _ := d.Archive.LastIndex(); last == ix {
		d.written, d.durable, d.rewriteFrom = ix, ix, 0
	}
	return nil
}

// durablePrefix is the last index up to which the disk holds the log as the member has it.
func (d *durableLog) durablePrefix() uint64 {
	if d.rewriteFrom != 0 && d.rewriteFrom <= d.durable {
		return d.rewriteFrom - 1
	}
	return d.durable
}

// promise checks a message the member is about to send against its disk; it returns what is
// wrong, or "".
func (d *durableLog) promise(m *pb.Message) string {
	t := m.GetType()
	if m.GetTerm() == 0 || t == pb.MsgPreVote || t == pb.MsgPreVoteResp {
		return ""
	}
	hs := d.durableHS
	switch {
	case m.GetTerm() > hs.term:
		return fmt.Sprintf("sent %s in term %d, but its disk holds term %d", t, m.GetTerm(), hs.term)
	// A vote asked or granted in term T is a promise that the member votes for no one else in T:
	// kept if its disk holds T and that vote, or a later term (in which it can never vote in T
	// again: raft hands out in one Ready a grant in T and the later term's state, when it
	// granted in T and then moved on before the Ready was taken).
	case t == pb.MsgVote && hs.term == m.GetTerm() && hs.vote != m.GetFrom():
		return fmt.Sprintf("asked for votes in term %d, but its disk holds term %d, vote %d", m.GetTerm(), hs.term, hs.vote)
	case t == pb.MsgVoteResp && !m.GetReject() && hs.term == m.GetTerm() && hs.vote != m.GetTo():
		return fmt.Sprintf("granted its vote to raft id %d in term %d, but its disk holds term %d, vote %d",
			m.GetTo(), m.GetTerm(), hs.term, hs.vote)
	case t == pb.MsgAppResp && !m.GetReject() && m.GetIndex() > d.durablePrefix():
		return fmt.Sprintf("acknowledged index %d in term %d, but its disk holds its log up to %d", m.GetIndex(), m.GetTerm(), d.durablePrefix())
	}
	return ""
}
