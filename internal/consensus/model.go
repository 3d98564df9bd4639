package consensus

import (
	"errors"
	"fmt"
	"math"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// ModelStorage is an in-memory Storage that keeps what was synced apart from what was only
// appended, so a simulated crash (Reopen) loses exactly the unsynced writes. It is the storage
// of fast simulations; the archive over the file-system model is the storage of the crash tests
// that also cut and tear files.
type ModelStorage struct {
	*raft.MemoryStorage // what the running member sees

	durable *raft.MemoryStorage
	// pending holds the writes since the last Sync, replayed onto durable by Sync.
	pending []func(*raft.MemoryStorage) error
	// marginEntries of log are kept behind a snapshot when compacting.
	marginEntries uint64
	err           error
	// FailSync makes the next Sync fail (fault injection); the failure is sticky.
	FailSync error
	// Syncs counts successful syncs.
	Syncs int
}

var _ Storage = (*ModelStorage)(nil)

// NewModelStorage returns an empty model storage that keeps marginEntries of log behind the
// newest snapshot.
func NewModelStorage(marginEntries uint64) *ModelStorage {
	return &ModelStorage{
		MemoryStorage: raft.NewMemoryStorage(),
		durable:       raft.NewMemoryStorage(),
		marginEntries: marginEntries,
	}
}

// Reopen returns the storage a member finds after a crash: only what was synced.
func (s *ModelStorage) Reopen() *ModelStorage {
	return &ModelStorage{
		MemoryStorage: cloneMemory(s.durable),
		durable:       cloneMemory(s.durable),
		marginEntries: s.marginEntries,
	}
}

func cloneMemory(src *raft.MemoryStorage) *raft.MemoryStorage {
	dst := raft.NewMemoryStorage()
	if snap, _ := src.Snapshot(); !raft.IsEmptySnap(snap) {
		mustOK(dst.ApplySnapshot(snap))
	}
	first, _ := src.FirstIndex()
	last, _ := src.LastIndex()
	if last >= first {
		ents, err := src.Entries(first, last+1, math.MaxUint64)
		mustOK(err)
		mustOK(dst.Append(ents))
	}
	if hs, _, _ := src.InitialState(); hs != nil {
		mustOK(dst.SetHardState(hs))
	}
	return dst
}

func mustOK(err error) {
	if err != nil {
		panic(fmt.Sprintf("model storage invariant broken: %v", err))
	}
}

func (s *ModelStorage) do(op func(*raft.MemoryStorage) error) error {
	if s.err != nil {
		return s.err
	}
	if err := op(s.MemoryStorage); err != nil {
		s.err = err
		return err
	}
	s.pending = append(s.pending, op)
	return nil
}

// Append implements Storage.
func (s *ModelStorage) Append(hs *pb.HardState, ents []*pb.Entry) error {
	return s.do(func(m *raft.MemoryStorage) error {
		if len(ents) > 0 {
			if err := m.Append(ents); err != nil {
				return err
			}
		}
		if !raft.IsEmptyHardState(hs) {
			return m.SetHardState(hs)
		}
		return nil
	})
}

// Sync implements Storage: everything appended becomes durable.
func (s *ModelStorage) Sync() error {
	if s.err != nil {
		return s.err
	}
	if s.FailSync != nil {
		s.err = s.FailSync
		return s.err
	}
	for _, op := range s.pending {
		if err := op(s.durable); err != nil {
			s.err = err
			return err
		}
	}
	s.pending = s.pending[:0]
	s.Syncs++
	return nil
}

// SaveSnapshot implements Storage.
func (s *ModelStorage) SaveSnapshot(snap *pb.Snapshot) error {
	return s.do(func(m *raft.MemoryStorage) error { return m.ApplySnapshot(snap) })
}

// CreateSnapshot implements Storage.
func (s *ModelStorage) CreateSnapshot(index uint64, cs *pb.ConfState, data []byte) error {
	return s.do(func(m *raft.MemoryStorage) error {
		if _, err := m.CreateSnapshot(index, cs, data); err != nil {
			if errors.Is(err, raft.ErrSnapOutOfDate) {
				return nil
			}
			return err
		}
		if index > s.marginEntries {
			if err := m.Compact(index - s.marginEntries); err != nil && !errors.Is(err, raft.ErrCompacted) {
				return err
			}
		}
		return nil
	})
}

// Close implements Storage.
func (s *ModelStorage) Close() error { return nil }
