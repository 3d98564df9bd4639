package archive

import (
	"fmt"
	"path/filepath"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/internal/bugs"
	"github.com/tandem-cluster/tandem/internal/vfs"
)

// Append writes entries (superseding any from the first one's index on), then the hard state.
func (a *Archive) Append(hs *pb.HardState, ents []*pb.Entry) error {
	if err := a.Err(); err != nil {
		return err
	}
	if cur := a.current(); cur != nil {
		a.settle(cur)
	}
	if len(ents) > 0 {
		fi := ents[0].GetIndex()
		last := a.lastIndex()
		if fi > last+1 {
			return fmt.Errorf("archive: append at %d leaves a gap after %d", fi, last)
		}
		if fi < a.first {
			return fmt.Errorf("archive: append at %d is below the first index %d", fi, a.first)
		}
		cur := a.current()
		if fi <= last || cur == nil || cur.end >= a.opts.SegmentBytes || cur.version != segmentVersionWritten {
			// A truncation (or a full segment) starts a new segment, so every segment's
			// header is exact and recovery never guesses; so does a segment of an older
			// format (this build writes only its own).
			pt, err := a.Term(fi - 1)
			if err != nil {
				return err
			}
			if err := a.roll(fi, pt, false); err != nil {
				return a.fail(err)
			}
			a.ents = a.ents[:fi-a.first]
			a.forgetFrom(fi)
			if a.durable >= fi {
				a.durable = fi - 1
			}
		}
		s := a.current()
		a.buf = append(a.buf[:0], headroom[:]...)
		offs := make([]int64, len(ents))
		for i, e := range ents {
			raw, err := proto.Marshal(e)
			if err != nil {
				return err
			}
			offs[i] = int64(len(a.buf) - prefixBytesMax)
			a.buf = appendRecord(a.buf, recEntry, raw)
		}
		base, err := a.write(s, a.buf)
		if err != nil {
			return a.fail(err)
		}
		for i, e := range ents {
			end := int64(len(a.buf) - prefixBytesMax)
			if i+1 < len(ents) {
				end = offs[i+1]
			}
			a.ents = append(a.ents, loc{term: e.GetTerm(), seg: s, off: base + offs[i], n: uint32(end - offs[i])})
			a.remember(e)
		}
	}
	if !raft.IsEmptyHardState(hs) {
		raw, err := proto.Marshal(hs)
		if err != nil {
			return err
		}
		if cur := a.current(); cur == nil || cur.version != segmentVersionWritten {
			pt, _ := a.Term(a.lastIndex())
			if err := a.roll(a.lastIndex()+1, pt, false); err != nil {
				return a.fail(err)
			}
		}
		s := a.current()
		if _, err := a.write(s, appendRecord(headroom[:], recHardState, raw)); err != nil {
			return a.fail(err)
		}
		if a.hs == nil || a.hs.GetTerm() != hs.GetTerm() || a.hs.GetVote() != hs.GetVote() {
			s.voteEnd = s.end // Sync vouches for it (vouchVote)
		}
		a.hs = proto.Clone(hs).(*pb.HardState)
	}
	return nil
}

// Sync makes everything written durable: the data of every segment written since the last sync,
// then the log directory if segments were created. It may run on another goroutine than the
// archive's (see the package doc, Concurrency); what compaction released is deleted by the next
// Reclaim.
func (a *Archive) Sync() error {
	if err := a.Err(); err != nil {
		return err
	}
	if !a.opts.NoSync && !bugs.Active(bugs.SkipFsync) {
		for _, s := range a.segs {
			if s.dirty {
				if err := s.f.Sync(); err != nil {
					return a.fail(err)
				}
			}
		}
		if err := a.vouchVote(); err != nil {
			return a.fail(err)
		}
		if a.dirDirty {
			if err := a.fs.SyncDir(a.logDir()); err != nil {
				return a.fail(err)
			}
		}
	}
	for _, s := range a.segs {
		s.dirty = false
		s.syncedEnd = s.end
	}
	a.dirDirty = false
	a.durable = a.lastIndex()
	return nil
}

// vouchVote, in Sync once the segments are synced, writes and syncs a synced record after a hard
// state that changed the term or the vote, so that damage to a synced term or vote is never read
// as a torn tail (which would revert it): the one record of recovery that a later write must
// vouch for before Sync returns. It costs a second sync only for the Readys that carry an
// election's term or vote. Sync does not move the segment's end (the owner reads it beside
// Sync): the record's length waits in vouchTail for the owner's next write (settle).
func (a *Archive) vouchVote() error {
	s := a.current()
	if s == nil || s.version < segmentV3 || s.voteEnd <= s.vouched || s.vouchTail != 0 {
		return nil
	}
	// write grows the file with room for this record after every write: no growth here.
	if _, err := s.f.WriteAt(appendSynced(nil, s.end), s.end); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	s.vouched, s.vouchTail = s.end, syncedRecordBytes
	return nil
}

// settle adds to s's end the synced record vouchVote wrote after it, on the owner's goroutine.
func (a *Archive) settle(s *segment) {
	s.end += s.vouchTail
	s.vouchTail = 0
}

// DurableIndex returns the last index known to be synced.
func (a *Archive) DurableIndex() uint64 { return a.durable }

// Reclaim deletes the leading segments whose entries are all at or below the floor (or voided by
// a later reset segment). Call it after a Sync returned nil, so the snapshot and reset segments
// they depend on are durable.
func (a *Archive) Reclaim() error {
	if err := a.Err(); err != nil {
		return err
	}
	return a.compact()
}

// compact drops the leading segments Reclaim may delete: each is released (release) and the log
// starts at the next segment's first entry.
func (a *Archive) compact() error {
	for len(a.segs) > 1 {
		next := a.segs[1]
		if !next.reset && next.first-1 > a.floor {
			break
		}
		s := a.segs[0]
		_ = s.f.Close()
		if err := a.release(s); err != nil {
			return a.fail(err)
		}
		a.segs = a.segs[1:]
		a.dirDirty = true
		if next.first > a.first {
			drop := next.first - a.first
			for i := uint64(0); i < drop; i++ {
				delete(a.cache, a.first+i)
			}
			a.ents = append(a.ents[:0:0], a.ents[drop:]...)
			a.first, a.prevTerm = next.first, next.prevTerm
		}
	}
	return nil
}

// roll starts a new segment whose entries start at first.
func (a *Archive) roll(first, prevTerm uint64, reset bool) error {
	seq := uint64(1)
	if c := a.current(); c != nil {
		seq = c.seq + 1
		a.settle(c)
		// Only the last segment may have a torn tail: finish the current one before starting
		// the next (rolls are rare, so this costs little).
		if c.dirty && !a.opts.NoSync {
			if err := c.f.Sync(); err != nil {
				return err
			}
			c.dirty = false
		}
	}
	path := filepath.Join(a.logDir(), fmt.Sprintf("%016x.seg", seq))
	f, size, err := a.newSegmentFile(path)
	if err != nil {
		return err
	}
	s := &segment{seq: seq, path: path, f: f, version: segmentVersionWritten, size: size, first: first, prevTerm: prevTerm, reset: reset}
	if !a.opts.NoSync {
		s.durableSize = size // the spare's zeros, synced by its job (0 for a new file)
	}
	a.segs = append(a.segs, s)
	a.dirDirty = true
	// The header (write grows a new file first, durably), then the allocated record naming the
	// file's durable size (with the header's write in version 3: write puts it before the next
	// records, and there are none).
	if _, err := a.write(s, appendRecord(make([]byte, prefixBytesMax), recHeader, encodeHeader(s.version, first, prevTerm, reset))); err != nil {
		return err
	}
	if _, err := a.write(s, make([]byte, prefixBytesMax)); err != nil {
		return err
	}
	// The header is durable before anything else is written to the segment: then a crash never
	// leaves a segment whose header is lost but whose later records survive, and recovery can
	// take a bad header followed by a valid record for what it is, damage (see badRecord).
	if !a.opts.NoSync {
		if err := f.Sync(); err != nil {
			return err
		}
		// Then its name, then the file that names the newest segment (newestName): once that
		// names seq, a log without this segment lost it; before, a crash may undo the roll.
		if err := a.fs.SyncDir(a.logDir()); err != nil {
			return err
		}
		a.dirDirty = false
		if err := a.writeNewest(seq); err != nil {
			return err
		}
	}
	if a.hs != nil {
		raw, _ := proto.Marshal(a.hs)
		if _, err := a.write(s, appendRecord(make([]byte, prefixBytesMax), recHardState, raw)); err != nil {
			return err
		}
	}
	return nil
}

// markSynced appends to buf the synced record that vouches for s up to where the last sync left
// it, if s grew since its last synced record and nothing was written since the sync (the record
// must lie at the offset it names: buf is written at s.end). Syncing switched off (NoSync)
// writes none: they would vouch for nothing.
func (a *Archive) markSynced(buf []byte, s *segment) []byte {
	if s.version < segmentV2 || a.opts.NoSync || s.syncedEnd <= s.vouched || s.end != s.syncedEnd {
		return buf
	}
	s.vouched = s.end
	return appendSynced(buf, s.end)
}

// prefixBytesMax is the headroom every write's records start after: room for the records write
// puts first (prefix), a synced record and an allocated record.
const prefixBytesMax = syncedRecordBytes + allocatedRecordBytes

// headroom is prefixBytesMax zero bytes to start a write's buffer with (copied, never written).
var headroom [prefixBytesMax]byte

// prefix appends to buf the records due at s.end before a write's own: the synced record
// (markSynced), then, in version 3, an allocated record if the file's durable size grew past
// the last one named. Never before the header (s.end 0).
func (a *Archive) prefix(buf []byte, s *segment) []byte {
	buf = a.markSynced(buf, s)
	if s.version >= segmentV3 && s.end > 0 && s.durableSize > s.claimed {
		s.claimed = s.durableSize
		buf = appendAllocated(buf, s.durableSize)
	}
	return buf
}

// write appends recs[prefixBytesMax:] to segment s, after the records prefix puts in the headroom
// before it, growing the file first if needed; it returns the offset of recs[prefixBytesMax].
func (a *Archive) write(s *segment, recs []byte) (int64, error) {
	body := int64(len(recs) - prefixBytesMax)
	// Room for the prefix, the records, and the synced record vouchVote may write after them.
	if need := s.end + prefixBytesMax + body + syncedRecordBytes; need > s.size {
		if err := a.grow(s, need); err != nil {
			return 0, err
		}
	}
	var p [prefixBytesMax]byte
	pre := a.prefix(p[:0], s)
	start := prefixBytesMax - len(pre)
	copy(recs[start:], pre)
	off := s.end + int64(len(pre))
	if len(recs) == start {
		return off, nil
	}
	if _, err := s.f.WriteAt(recs[start:], s.end); err != nil {
		return 0, err
	}
	s.end += int64(len(recs) - start)
	s.dirty = true
	return off, nil
}

// grow extends s's file with zeros to at least need bytes, in steps of GrowBytes, and syncs them
// before any record is written into them: then the file is durably that long before any
// allocated record says so (prefix), and recovery may take a file shorter than an allocated
// record in it says for what it is, lost synced data, never a crash. The sync also makes durable
// what was written before (markSynced may vouch for it). It costs a sync per GrowBytes on the
// commit path, of zeros the next sync would flush anyway; a spare prepared ahead needs none.
func (a *Archive) grow(s *segment, need int64) error {
	n := max(a.opts.GrowBytes, need-s.size)
	if err := writeZeros(s.f, s.size, n); err != nil {
		return err
	}
	s.size += n
	if a.opts.NoSync {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	s.durableSize, s.syncedEnd, s.dirty = s.size, s.end, false
	return nil
}

// zeroBlock is what segments are grown with.
var zeroBlock = make([]byte, 256<<10)

// writeZeros extends f from off by n bytes of written zeros. Writing them, rather than extending
// the file with Truncate, allocates the blocks once: appends then overwrite allocated blocks, and
// a sync after an append flushes data without committing new file metadata each time, which
// makes it faster (docs/PERFORMANCE.md). The zeros are synced before records go into them (grow).
func writeZeros(f vfs.File, off, n int64) error {
	for n > 0 {
		chunk := min(n, int64(len(zeroBlock)))
		if _, err := f.WriteAt(zeroBlock[:chunk], off); err != nil {
			return err
		}
		off += chunk
		n -= chunk
	}
	return nil
}
