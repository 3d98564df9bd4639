package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

// Report is what a scan of a data directory found.
type Report struct {
	Segments   int
	Records    int
	FirstIndex uint64
	LastIndex  uint64
	HardState  string
	TornTail   string // where a torn tail was found (and cut, on Open), "" if none
	Snapshots  []string
	// The last segment: its file, format version and the end of its records (after any cut),
	// and the largest offset a synced record in it names (everything before it was durable
	// when that record was written; 0 if none, as in every version-1 segment).
	LastSegment        string
	LastSegmentVersion uint8
	LastSegmentEnd     int64
	SyncedOffset       int64
	// TornFile and TornOffset are TornTail's place ("" and 0 if none).
	TornFile   string
	TornOffset int64
	// Files is what recovery found in each segment file it read, in log order: on a refusal, up
	// to and including the one refused (Describe).
	Files []SegmentInfo
}

// recoverLog replays every segment into the in-memory index. With cut, a torn tail is cut from
// the last segment; rep, if not nil, is filled in.
func (a *Archive) recoverLog(cut bool, rep *Report) (err error) {
	names, err := a.fs.ReadDir(a.logDir())
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	var segNames []string
	for _, n := range names {
		if strings.HasSuffix(n, ".seg") {
			segNames = append(segNames, n)
		}
	}
	if a.newest, err = a.readNewest(); err != nil {
		return err
	}
	started := false
	emptied := "" // the last segment before the first kept one that held no record
	// The cuts and removals wait until every check passed: a directory refused for lost synced
	// data is left as it was found, for whoever rebuilds the member.
	var fixes []func() error
	// reading is what was found so far in the segment being read, with rep: a refusal while it
	// is read is this segment's damage.
	var reading *SegmentInfo
	defer func() {
		if err != nil {
			if reading != nil {
				reading.State, reading.Problem = SegmentDamaged, err.Error()
				rep.Files = append(rep.Files, *reading)
			}
			a.closeFiles()
			a.segs = nil
		}
	}()
	for k, name := range segNames {
		path := filepath.Join(a.logDir(), name)
		var seq uint64
		if _, err := fmt.Sscanf(name, "%016x.seg", &seq); err != nil {
			return fmt.Errorf("%w: unexpected file %s", ErrCorrupt, path)
		}
		b, err := readFile(a.fs, path)
		if err != nil {
			return fmt.Errorf("archive: reading %s: %w", path, err)
		}
		last := k == len(segNames)-1
		s := &segment{seq: seq, path: path, size: int64(len(b))}
		if rep != nil {
			reading = &SegmentInfo{Name: name, Seq: seq, Bytes: int64(len(b)), State: SegmentIntact}
		}
		var off int64
		for off < int64(len(b)) {
			typ, payload, next, ok, end := parseRecord(b, off)
			if ok && off > 0 && typ > recTypeMax(s.version) {
				ok = false // no such record in a segment of this version: bad, as its build saw it
			}
			if end || !ok {
				// What the allocated records say was durable is checked first: a tail cut
				// short by a lost end of file must not be cut as torn.
				if err := a.checkLength(s, int64(len(b)), off); err != nil {
					return err
				}
				torn, err := a.badRecord(s, b, off, end, last)
				if err != nil {
					return err
				}
				if torn {
					if rep != nil {
						rep.TornTail = fmt.Sprintf("%s offset %d (%d bytes after it)", path, off, int64(len(b))-off)
						rep.TornFile, rep.TornOffset = path, off
						reading.State, reading.TornOffset = SegmentTorn, off
					}
					a.log.Warn("archive: cutting a torn tail", "file", path, "offset", off)
					if cut {
						at, size := off, int64(len(b))
						fixes = append(fixes, func() error { return a.cutTail(path, at, size) })
					}
				}
				break
			}
			if rep != nil {
				rep.Records++
			}
			if off == 0 && typ != recHeader {
				return fmt.Errorf("%w: %s does not start with a segment header", ErrCorrupt, path)
			}
			switch typ {
			case recHeader:
				if off != 0 {
					return fmt.Errorf("%w: %s offset %d: a second segment header", ErrCorrupt, path, off)
				}
				version, first, prevTerm, reset, err := decodeHeader(payload)
				if err != nil {
					return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
				}
				s.version, s.first, s.prevTerm, s.reset = version, first, prevTerm, reset
				if reading != nil {
					reading.Version, reading.FirstIndex, reading.LastIndex, reading.Reset = version, first, first-1, reset
				}
				if err := a.applyHeader(s, started); err != nil {
					return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
				}
				started = true
			case recEntry:
				e := new(pb.Entry)
				if err := proto.Unmarshal(payload, e); err != nil {
					return fmt.Errorf("%w: %s offset %d: %v", ErrCorrupt, path, off, err)
				}
				if e.GetIndex() != a.lastIndex()+1 {
					return fmt.Errorf("%w: %s offset %d: entry %d does not follow %d", ErrCorrupt, path, off, e.GetIndex(), a.lastIndex())
				}
				a.ents = append(a.ents, loc{term: e.GetTerm(), seg: s, off: off, n: uint32(next - off)})
				if reading != nil {
					reading.LastIndex = e.GetIndex()
					reading.Entries++
				}
			case recHardState:
				hs := new(pb.HardState)
				if err := proto.Unmarshal(payload, hs); err != nil {
					return fmt.Errorf("%w: %s offset %d: %v", ErrCorrupt, path, off, err)
				}
				a.hs = hs
			case recSynced:
				if len(payload) != syncedPayloadBytes {
					return fmt.Errorf("%w: %s offset %d: a synced record of %d bytes", ErrCorrupt, path, off, len(payload))
				}
				if at := syncedOffset(payload); at != off {
					return fmt.Errorf("%w: %s offset %d: a synced record names offset %d, not its own", ErrCorrupt, path, off, at)
				}
				s.vouched = off
			case recAllocated:
				if len(payload) != allocatedPayloadBytes {
					return fmt.Errorf("%w: %s offset %d: an allocated record of %d bytes", ErrCorrupt, path, off, len(payload))
				}
				s.claimed = max(s.claimed, syncedOffset(payload))
			}
			off = next
		}
		if off >= int64(len(b)) {
			if err := a.checkLength(s, int64(len(b)), off); err != nil {
				return err
			}
		}
		s.end = off
		s.durableSize = s.claimed
		if reading != nil {
			reading.RecordsEnd, reading.SyncedOffset = off, s.vouched
		}
		if s.end == 0 {
			// A segment whose header never reached the disk (the last one, after a crash in a
			// roll), or one all zeros (no valid record follows them: checked above): nothing in it
			// counts, and it goes, so that no later start reads it again and no compaction must
			// find it. Unless it is the last and the newest-segment file names it or a later
			// one: its header was durable then.
			if last && seq <= a.newest {
				if err := a.lost(path, 0, "the segment's header, durable since it was started, is gone (%d bytes, no record)", len(b)); err != nil {
					return err
				}
			}
			if len(a.segs) == 0 {
				emptied = path
			}
			if cut {
				fixes = append(fixes, func() error { _ = a.fs.Remove(path); a.dirDirty = true; return nil })
			}
			if reading != nil {
				reading.State = SegmentEmpty
				rep.Files, reading = append(rep.Files, *reading), nil
			}
			continue
		}
		if reading != nil {
			rep.Files, reading = append(rep.Files, *reading), nil
		}
		if cut {
			if s.f, err = a.fs.OpenFile(path, os.O_RDWR, 0); err != nil {
				return fmt.Errorf("archive: %w", err)
			}
		}
		a.segs = append(a.segs, s)
	}
	if err := a.reconcileSnapshot(); err != nil {
		return err
	}
	if a.hs == nil && a.latest == nil && len(a.ents) > 0 {
		// Entries and no hard state anywhere: the remains of the member's first write (raft's
		// bootstrap writes its entries and its hard state together, and every segment repeats
		// the hard state after its header), torn by a crash before its sync ended. Nothing of it
		// was ever acknowledged, and raft cannot start on a log without the hard state that
		// made it (the member would belong to no configuration): it goes, and the member
		// bootstraps afresh. A hard state lost after that sync is refused instead: the synced
		// record vouching for it (vouchVote) says it was durable.
		first := a.ents[0]
		s := first.seg
		if s != a.current() {
			return a.lost(s.path, first.off, "entries in more than one segment and no hard state anywhere (each segment repeats it after its header)")
		}
		if rep != nil {
			rep.TornTail = fmt.Sprintf("%s offset %d (the member's first write: entries without their hard state)", s.path, first.off)
			rep.TornFile, rep.TornOffset = s.path, first.off
			for i := range rep.Files {
				if f := &rep.Files[i]; f.Name == filepath.Base(s.path) {
					f.State, f.TornOffset, f.RecordsEnd = SegmentTorn, first.off, first.off
					f.LastIndex, f.Entries = f.FirstIndex-1, 0
				}
			}
		}
		a.log.Warn("archive: cutting the member's torn first write (entries without their hard state)", "file", s.path, "offset", first.off)
		if cut {
			path, at, size := s.path, first.off, s.size
			fixes = append(fixes, func() error { return a.cutTail(path, at, size) })
		}
		a.ents, s.end = nil, first.off
	}
	if a.latest == nil && a.first > 1 && len(a.segs) > 0 {
		// Only a snapshot lets a log start later (compaction follows one, a reset segment
		// follows the leader's): the entries before it were synced, and are gone.
		file := a.segs[0].path
		if emptied != "" {
			file = emptied
		}
		if err := a.lost(file, -1, "the log starts at index %d and no snapshot holds the entries before it: entries 1..%d (an older segment is missing or empty)",
			a.first, a.first-1); err != nil {
			return err
		}
	}
	if err := a.checkEnd(); err != nil {
		return err
	}
	for _, fix := range fixes {
		if err := fix(); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
	}
	if rep != nil {
		rep.Segments = len(a.segs)
		rep.FirstIndex, rep.LastIndex = a.first, a.lastIndex()
		if a.hs != nil {
			rep.HardState = fmt.Sprintf("term %d vote %d commit %d", a.hs.GetTerm(), a.hs.GetVote(), a.hs.GetCommit())
		}
	}
	if rep != nil && len(a.segs) > 0 {
		s := a.current()
		rep.LastSegment, rep.LastSegmentVersion, rep.LastSegmentEnd, rep.SyncedOffset = s.path, s.version, s.end, s.vouched
	}
	a.durable = a.lastIndex()
	return nil
}

// badRecord decides what a bad record (or the zero end marker, end) at off of segment s means:
// the end of its records, a torn tail to cut (torn), or corruption (an error naming the file and
// offset). Only the last segment can hold unsynced data (a segment is synced before the next
// one starts), so only there can a tail be torn; the middle of a log is never cut.
func (a *Archive) badRecord(s *segment, b []byte, off int64, end, last bool) (torn bool, err error) {
	if end && allZero(b[off:]) {
		return false, nil // the records end here; zeros follow
	}
	if !end && !last {
		// A segment is synced whole before the next one starts (roll).
		return false, a.lost(s.path, off, "a bad record in a segment that is not the last (synced whole before the next one started): the records from here on")
	}
	if off == 0 && s.seq <= a.newest {
		// Its header was durable before the newest-segment file named it or a later one.
		if err := a.lost(s.path, off, "the segment's header, durable since it was started, is damaged"); err != nil {
			return false, err
		}
		return true, nil
	}
	if last && s.version >= segmentV2 && off > 0 {
		// Every synced record names the offset it lies at, and everything before it was durable
		// when it was written. One after off says off lies in synced data: damage, not a crash.
		// None says nothing from off on was ever synced: a crash wrote some of it back and not
		// the rest, in any order, and all of it goes, valid records after off included.
		if at, found := syncedRecordAfter(b, off); found {
			if err := a.lost(s.path, off, "a bad record in data the synced record at offset %d says was durable: the records from here to offset %d at least (refusing to cut the middle of the log)", at, at); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	// A version-1 segment, one that is not the last (its records end with zeros, then junk),
	// or a header that cannot be read, so that neither the version nor any synced record counts.
	// A segment's header is durable before anything else is written to it (roll), so in a
	// segment of this build a bad header followed by a valid record is damage too.
	maxType := recTypeMax(s.version)
	if off == 0 {
		maxType = recTypeMax(segmentVersionWritten)
	}
	if p, found := validRecordAfter(b, off, maxType); found {
		if off == 0 {
			// A header is durable before anything else is written to its segment (roll).
			return false, a.lost(s.path, off, "a damaged segment header precedes a valid record at offset %d: the segment's records", p)
		}
		return false, fmt.Errorf("%w: %s offset %d: a bad record precedes a valid one at offset %d: refusing to cut the middle of the log",
			ErrCorrupt, s.path, off, p)
	}
	return true, nil
}

// checkLength refuses a segment of n bytes, whose records were read up to off, that is shorter
// than an allocated record in it says its file was durably (a crash never shortens a file below
// what a sync made durable, and grow syncs the zeros before the record that names them), or a
// segment of version 3 the newest-segment file vouches for (its header and first allocated record
// were durable before that file named it) without an allocated record.
func (a *Archive) checkLength(s *segment, n, off int64) error {
	if s.version < segmentV3 {
		return nil
	}
	if n < s.claimed {
		return a.lost(s.path, n, "the file is %d bytes but was durably at least %d (the allocated record it still holds says so): its end was cut off, with any records from offset %d on",
			n, s.claimed, off)
	}
	if s.claimed == 0 && s.seq <= a.newest {
		return a.lost(s.path, off, "the segment's first allocated record, durable since it was started, is gone: the file (%d bytes) was cut short or damaged there", n)
	}
	return nil
}

// checkEnd refuses a log that ends before what was durable: the newest-segment file names a
// segment after the last one present (it was deleted, or lost with its directory entry), or the
// hard state's commit index lies beyond the last entry and the snapshot (entries up to the
// commit index were written, and synced, before the hard state naming it).
func (a *Archive) checkEnd() error {
	var seq uint64
	if c := a.current(); c != nil {
		seq = c.seq
	}
	if a.newest > seq {
		missing := filepath.Join(a.logDir(), fmt.Sprintf("%016x.seg", a.newest))
		if err := a.lost(missing, -1, "the newest segment is missing (%s names it; the log present ends at index %d): its entries and hard state, and those of any segment before it that is missing too",
			newestName, a.lastIndex()); err != nil {
			return err
		}
	}
	if a.hs != nil && a.hs.GetCommit() > a.lastIndex() {
		where := a.logDir()
		if c := a.current(); c != nil {
			where = c.path
		}
		if err := a.lost(where, -1, "the hard state says entries up to index %d are committed, but the log ends at index %d: entries %d..%d",
			a.hs.GetCommit(), a.lastIndex(), a.lastIndex()+1, a.hs.GetCommit()); err != nil {
			return err
		}
	}
	return nil
}

// applyHeader starts a segment's entries during replay.
func (a *Archive) applyHeader(s *segment, started bool) error {
	if !started || s.reset || s.first < a.first {
		a.ents = a.ents[:0]
		a.first, a.prevTerm = s.first, s.prevTerm
		return nil
	}
	if s.first > a.lastIndex()+1 {
		return fmt.Errorf("segment starts at %d, the log ends at %d", s.first, a.lastIndex())
	}
	if t, err := a.Term(s.first - 1); err != nil || t != s.prevTerm {
		return fmt.Errorf("segment at %d expects term %d before it, the log has %d", s.first, s.prevTerm, t)
	}
	a.ents = a.ents[:s.first-a.first]
	return nil
}

// reconcileSnapshot lines the log up with the newest snapshot.
func (a *Archive) reconcileSnapshot() error {
	if a.latest == nil {
		return nil
	}
	md := a.latest.GetMetadata()
	si, st := md.GetIndex(), md.GetTerm()
	if si < a.first-1 {
		if len(a.ents) == 0 && len(a.segs) == 0 {
			a.first, a.prevTerm = si+1, st
			return nil
		}
		return fmt.Errorf("%w: the log starts at %d but the newest snapshot is at %d: entries in between are missing", ErrCorrupt, a.first, si)
	}
	if t, err := a.Term(si); err == nil && t == st && si <= a.lastIndex() {
		return nil // the log continues the snapshot
	}
	// The snapshot replaced the log (received from the leader) but the reset segment did not
	// reach the disk: the snapshot wins, as raft's ApplySnapshot would have it.
	a.ents = a.ents[:0]
	a.first, a.prevTerm = si+1, st
	return nil
}

// cutTail zero-fills the segment at path from off to its size, and syncs it.
func (a *Archive) cutTail(path string, off, size int64) error {
	f, err := a.fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// Cut, then zero-fill again: stale bytes beyond the cut must not survive to confuse the
	// next recovery.
	if err := f.Truncate(off); err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// Verify checks every record and snapshot under dir without changing anything, writes a summary
// to w, and returns the first corruption found.
func Verify(fsys vfs.FS, dir string, w interface{ Write([]byte) (int, error) }) (Report, error) {
	a := &Archive{fs: fsys, dir: dir, cache: map[uint64]*pb.Entry{}, first: 1, readOnly: true}
	a.opts.defaults()
	a.log = a.opts.Logger
	var rep Report
	path := filepath.Join(dir, "IDENTITY")
	if _, err := fsys.Stat(path); err != nil {
		return rep, fmt.Errorf("archive: %s is not a Tandem data directory: %w", dir, err)
	}
	id, err := readFile(fsys, path)
	if err != nil {
		return rep, fmt.Errorf("archive: reading %s: %w", path, err)
	}
	// The IDENTITY file ends with the CRC-32C of what precedes it (identity.go); Open refuses
	// one that fails it, and so does Verify.
	if len(id) < 4 || crc32.Checksum(id[:len(id)-4], castagnoli) != binary.LittleEndian.Uint32(id[len(id)-4:]) ||
		!strings.HasPrefix(string(id), "tandem-archive ") {
		return rep, fmt.Errorf("%w: %s is damaged (%d bytes; its checksum fails or it is not an IDENTITY file): the member will not start on it",
			ErrCorrupt, path, len(id))
	}
	fmt.Fprintf(w, "identity: %s, checksum ok\n", strings.ReplaceAll(strings.TrimSpace(string(id[:len(id)-4])), "\n", ", "))
	if err := a.loadSnapshots(); err != nil {
		return rep, err
	}
	for _, s := range a.snaps {
		b, err := readFile(fsys, s.path)
		if err != nil {
			return rep, err
		}
		if _, err := DecodeSnapshot(b); err != nil {
			return rep, fmt.Errorf("%s: %w", s.path, err)
		}
		line := fmt.Sprintf("snapshot %s: index %d term %d, %d bytes, checksum ok", filepath.Base(s.path), s.index, s.term, len(b))
		rep.Snapshots = append(rep.Snapshots, line)
		fmt.Fprintln(w, line)
	}
	if err := a.recoverLog(false, &rep); err != nil {
		if errors.Is(err, ErrLostSyncedData) {
			fmt.Fprintf(w, "LOST SYNCED DATA: %v\n", err)
		}
		return rep, err
	}
	fmt.Fprintf(w, "log: %d segments, %d records, entries %d..%d, hard state: %s\n",
		rep.Segments, rep.Records, rep.FirstIndex, rep.LastIndex, rep.HardState)
	switch {
	case rep.LastSegment == "":
	case rep.LastSegmentVersion < segmentV2:
		fmt.Fprintf(w, "last segment %s: format %d (no synced records), records end at offset %d\n",
			filepath.Base(rep.LastSegment), rep.LastSegmentVersion, rep.LastSegmentEnd)
	case rep.SyncedOffset == 0:
		fmt.Fprintf(w, "last segment %s: format %d, records end at offset %d, no synced record yet\n",
			filepath.Base(rep.LastSegment), rep.LastSegmentVersion, rep.LastSegmentEnd)
	default:
		fmt.Fprintf(w, "last segment %s: format %d, records end at offset %d, its last synced record vouches for the bytes before offset %d\n",
			filepath.Base(rep.LastSegment), rep.LastSegmentVersion, rep.LastSegmentEnd, rep.SyncedOffset)
	}
	if rep.TornTail != "" {
		fmt.Fprintf(w, "torn tail at %s (cut when the member next starts)\n", rep.TornTail)
	} else {
		fmt.Fprintln(w, "no torn tail")
	}
	if err := a.loadVerification(); err != nil {
		if errors.Is(err, ErrLostSyncedData) {
			fmt.Fprintf(w, "LOST SYNCED DATA: %v\n", err)
		}
		return rep, err
	}
	switch {
	case a.unverified:
		fmt.Fprintln(w, "verification: unverified (started on an empty log: it votes once verified)")
	case a.voteFloor > 0:
		fmt.Fprintf(w, "verification: verified, votes only in terms after %d\n", a.voteFloor)
	}
	fmt.Fprintln(w, "ok")
	return rep, nil
}
