package archive

import (
	"fmt"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// InitialState implements raft.Storage.
func (a *Archive) InitialState() (*pb.HardState, *pb.ConfState, error) {
	cs := new(pb.ConfState)
	if a.latest != nil {
		cs = proto.Clone(a.latest.GetMetadata().GetConfState()).(*pb.ConfState)
	}
	h := new(pb.HardState)
	if a.hs != nil {
		h = proto.Clone(a.hs).(*pb.HardState)
	}
	// A snapshot holds only applied, hence committed, entries; the hard state recording a commit
	// that far may not have been synced (raft does not sync for commit alone). Raft needs the
	// commit index to cover what the state machine restarts from.
	if a.latest != nil && h.GetCommit() < a.latest.GetMetadata().GetIndex() {
		h.Commit = new(a.latest.GetMetadata().GetIndex())
	}
	return h, cs, nil
}

// FirstIndex implements raft.Storage.
func (a *Archive) FirstIndex() (uint64, error) { return a.first, nil }

// LastIndex implements raft.Storage.
func (a *Archive) LastIndex() (uint64, error) { return a.lastIndex(), nil }

// Term implements raft.Storage.
func (a *Archive) Term(i uint64) (uint64, error) {
	switch {
	case i+1 < a.first:
		return 0, raft.ErrCompacted
	case i+1 == a.first:
		return a.prevTerm, nil
	case i > a.lastIndex():
		return 0, raft.ErrUnavailable
	}
	return a.ents[i-a.first].term, nil
}

// Snapshot implements raft.Storage.
func (a *Archive) Snapshot() (*pb.Snapshot, error) {
	if a.latest == nil {
		return new(pb.Snapshot), nil
	}
	return a.latest, nil
}

// Entries implements raft.Storage: entries [lo, hi) up to maxSize bytes (at least one), read
// through the bounded cache.
func (a *Archive) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	if lo < a.first {
		return nil, raft.ErrCompacted
	}
	if hi > a.lastIndex()+1 {
		return nil, raft.ErrUnavailable
	}
	var out []*pb.Entry
	var size uint64
	for i := lo; i < hi; i++ {
		e, err := a.entry(i)
		if err != nil {
			return nil, err
		}
		size += uint64(proto.Size(e))
		if len(out) > 0 && size > maxSize {
			break
		}
		out = append(out, e)
	}
	return out, nil
}

// entry reads entry i, which the log holds, through the cache; a record read from its segment is
// checked again.
func (a *Archive) entry(i uint64) (*pb.Entry, error) {
	if e, ok := a.cache[i]; ok {
		return e, nil
	}
	l := a.ents[i-a.first]
	b := make([]byte, l.n)
	if _, err := l.seg.f.ReadAt(b, l.off); err != nil {
		return nil, fmt.Errorf("archive: reading entry %d from %s: %w", i, l.seg.path, err)
	}
	typ, payload, _, ok, _ := parseRecord(b, 0)
	if !ok || typ != recEntry {
		return nil, fmt.Errorf("%w: entry %d in %s offset %d fails its checksum on read", ErrCorrupt, i, l.seg.path, l.off)
	}
	e := new(pb.Entry)
	if err := proto.Unmarshal(payload, e); err != nil {
		return nil, fmt.Errorf("%w: entry %d: %v", ErrCorrupt, i, err)
	}
	a.remember(e)
	return e, nil
}

// remember caches e, evicting the oldest entries to stay within Options.CacheBytes; an entry
// larger than the whole cache is not kept.
func (a *Archive) remember(e *pb.Entry) {
	sz := int64(proto.Size(e)) + 64
	for a.cacheBytes+sz > a.opts.CacheBytes && len(a.cacheFIFO) > 0 {
		old := a.cacheFIFO[0]
		a.cacheFIFO = a.cacheFIFO[1:]
		if oe, ok := a.cache[old]; ok {
			a.cacheBytes -= int64(proto.Size(oe)) + 64
			delete(a.cache, old)
		}
	}
	if sz > a.opts.CacheBytes {
		return
	}
	a.cache[e.GetIndex()] = e
	a.cacheFIFO = append(a.cacheFIFO, e.GetIndex())
	a.cacheBytes += sz
}

// forgetFrom evicts the cached entries from index i on (a truncation or a snapshot replaced them).
func (a *Archive) forgetFrom(i uint64) {
	for idx, e := range a.cache {
		if idx >= i {
			a.cacheBytes -= int64(proto.Size(e)) + 64
			delete(a.cache, idx)
		}
	}
}
