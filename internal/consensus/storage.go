package consensus

import (
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Storage is the durable raft log and snapshot store the core runs on (the archive in
// production, over a file system seam). Calls never overlap, with one exception: the driver runs
// Sync where it likes (on a goroutine of its own, in production) while the core goes on reading
// (Term, Entries, FirstIndex, LastIndex, Snapshot) and recording snapshots (PrepareSnapshot,
// AddSnapshot, and the snapshot's own write job, which runs beside all of them too); it
// never appends or saves a snapshot until the sync returned. Sync must therefore touch nothing
// those calls use; deleting what compaction released is Reclaim's, called after the sync.
//
// Durability contract: Append and SaveSnapshot may buffer; nothing is durable until Sync returns
// nil. After a crash, storage reopened from the same files holds a prefix of what was appended,
// containing at least everything that was synced. Any error is sticky: once a write or sync
// failed, every later mutating call returns the same error and the core stops.
type Storage interface {
	raft.Storage

	// Append writes entries (replacing any existing suffix from the first entry's index on) and
	// then the hard state (if not empty). Entries before the HardState that points at them.
	Append(hs *pb.HardState, ents []*pb.Entry) error
	// Sync makes everything appended or saved so far durable (group commit: one sync for many
	// appends).
	Sync() error
	// Reclaim deletes the log that snapshots released (AddSnapshot) once a Sync made what
	// replaces it durable. The core calls it after a Sync that returned nil, once raft's applied
	// index has reached every snapshot added: raft reads the committed entries it has yet to
	// hand out from the storage, and a leader applies some before raft hands them out
	// (deviations.go, 3). The log up to the first index must stay readable until then.
	Reclaim() error
	// SaveSnapshot stores a snapshot received from the leader, data included, and makes the
	// log start after it (entries at or below its index are dropped). The snapshot file is
	// durable before the record that points at it. Sync follows before the core relies on it.
	SaveSnapshot(snap *pb.Snapshot) error
	// PrepareSnapshot builds the snapshot this member took at index (≤ applied), with the
	// membership cs and the container's bytes, and returns it with the job that writes it
	// durably. The job touches nothing the other calls use: the driver runs it beside them (and
	// beside Sync), one at a time. A nil snapshot means a snapshot at index or later exists.
	PrepareSnapshot(index uint64, cs *pb.ConfState, data []byte) (*pb.Snapshot, func() error, error)
	// AddSnapshot records a snapshot whose job succeeded; the storage may then compact the log
	// behind it (keeping a trailing margin so slow followers can still be caught up from the
	// log), deleting at the next Reclaim.
	AddSnapshot(snap *pb.Snapshot) error
	// Close releases files. It does not sync.
	Close() error
}
