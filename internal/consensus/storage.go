package consensus

import (
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Storage is the durable raft log and snapshot store the core runs on (the archive in
// production, over a file system seam). Calls never overlap: the core makes them from its
// goroutine, except Sync, which it may run on a goroutine of its own while making no other call
// (it applies already-durable entries meanwhile) and waits for before going on.
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
	// SaveSnapshot stores a snapshot received from the leader, data included, and makes the
	// log start after it (entries at or below its index are dropped). The snapshot file is
	// durable before the record that points at it. Sync follows before the core relies on it.
	SaveSnapshot(snap *pb.Snapshot) error
	// CreateSnapshot records a snapshot this member took at index (≤ applied), with the
	// membership cs and the container's bytes, and may compact the log behind it (keeping a
	// trailing margin so slow followers can still be caught up from the log).
	CreateSnapshot(index uint64, cs *pb.ConfState, data []byte) error
	// Close releases files. It does not sync.
	Close() error
}
