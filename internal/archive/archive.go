package archive

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/internal/bugs"
	"github.com/tandem-cluster/tandem/internal/vfs"
)

// Options configures an archive.
type Options struct {
	ClusterID string
	MemberID  int
	// SegmentBytes: once a segment holds this much, the next append starts a new one (default
	// 64 MiB).
	SegmentBytes int64
	// GrowBytes: a segment that was not prepared ahead (the first after Open, or one needed
	// before its spare was ready: see TakeSpareJob) grows in steps of this size (default
	// 1 MiB), not record by record. The zeros of a step are flushed by the next sync, on the
	// commit path: an fsync carrying a 1 MiB step took p50 1.9 ms here, against 0.12 ms without.
	GrowBytes int64
	// SparePace is the pause after each MiB of zeros the spare's job writes (TakeSpareJob), so
	// that preparing the next segment never keeps the disk busy for long (0: no pause, as in
	// the simulator; the node uses SparePaceDefault).
	SparePace time.Duration
	// SnapshotsRetained: the newest snapshots kept (default 3).
	SnapshotsRetained int
	// LogMarginEntries: log kept behind the oldest retained snapshot, so a follower a little
	// behind is caught up from the log rather than by a snapshot (default 10 000).
	LogMarginEntries uint64
	// CacheBytes bounds the entry cache (default 64 MiB).
	CacheBytes int64
	// NoSync turns syncing off. TEST ONLY: it exists so a test can show that the crash tests
	// detect loss when syncing is missing.
	NoSync bool
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = 64 << 20
	}
	if o.GrowBytes == 0 {
		o.GrowBytes = 1 << 20
	}
	if o.SnapshotsRetained == 0 {
		o.SnapshotsRetained = 3
	}
	if o.LogMarginEntries == 0 {
		o.LogMarginEntries = 10_000
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 64 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// formatVersion is the version of the IDENTITY file and of snapshot files.
const formatVersion uint8 = 1

// Segment format versions (a segment header's first byte). Version 2 adds the synced record, and
// with it a recovery that tells an unsynced tail with holes from damage to synced data (see
// doc.go). Version-1 segments, written by older builds, are read with the rule of their time.
const (
	segmentV1 uint8 = 1
	segmentV2 uint8 = 2
)

// segmentVersionWritten is the version of the segments this build writes (a variable only so
// that tests can write version-1 segments as an older build did).
var segmentVersionWritten = segmentV2

// Record types.
const (
	recHeader    uint8 = 1
	recEntry     uint8 = 2
	recHardState uint8 = 3
	recSynced    uint8 = 4 // version 2 on
)

// syncedPayloadBytes is a synced record's payload (the offset it vouches for, u64), and
// syncedRecordBytes the whole record.
const (
	syncedPayloadBytes = 8
	syncedRecordBytes  = recordHeaderBytes + syncedPayloadBytes
)

const recordHeaderBytes = 4 + 1 + 4

// maxRecordBytes bounds one record; a larger length field is corruption, not a reason to
// allocate.
const maxRecordBytes = 256 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt wraps every corruption found on open or read: the member must not start on it.
var ErrCorrupt = errors.New("archive: corrupt")

type segment struct {
	seq      uint64
	path     string
	f        vfs.File
	version  uint8 // of the segment's format (its header's)
	end      int64 // end of the records
	size     int64 // allocated size (records, then zeros)
	first    uint64
	prevTerm uint64
	reset    bool
	dirty    bool // written since the last sync
	// syncedEnd is end as the last successful sync left it: every byte before it is durable.
	// vouched is the largest offset a synced record in the segment names (each names its own
	// offset, so vouched < end). The first write after a sync that moved syncedEnd past vouched
	// starts with a synced record naming syncedEnd (markSynced).
	syncedEnd int64
	vouched   int64
}

type loc struct {
	term uint64
	seg  *segment
	off  int64
	n    uint32
}

type snapMeta struct {
	index, term uint64
	path        string
}

// Archive is the durable raft log and snapshot store. It is used from one goroutine, with one
// exception: Sync may run on another goroutine while this one reads (Term, Entries, FirstIndex,
// LastIndex, Snapshot) or records a snapshot (CreateSnapshot), but neither appends nor saves a
// snapshot. Sync therefore touches only the segments' files and dirty marks, dirDirty, durable and
// the sticky error (behind errMu); deleting what compaction released is left to Reclaim, which
// runs on the owning goroutine after the sync.
type Archive struct {
	fs   vfs.FS
	dir  string
	opts Options
	log  *slog.Logger

	segs     []*segment // in log order; the last one is written
	first    uint64     // index of ents[0]
	prevTerm uint64     // term of first-1
	// Invariant: ents[i] is the entry at index first+i; indexes are contiguous.
	ents []loc
	hs   *pb.HardState

	snaps  []snapMeta   // retained snapshots, oldest first
	latest *pb.Snapshot // the newest snapshot, data included

	cache      map[uint64]*pb.Entry
	cacheFIFO  []uint64
	cacheBytes int64

	surplus  []string // snapshot files the prepared snapshot's job deletes
	dirDirty bool
	floor    uint64 // entries at or below it may be deleted with their segments
	durable  uint64
	errMu    sync.Mutex
	err      error // sticky; behind errMu, as Sync may set it on another goroutine
	buf      []byte
	readOnly bool // Verify: change nothing

	// The spare is the next segment's file, prepared ahead of need by a job the driver runs
	// beside everything (TakeSpareJob): zero-filled and synced, so that a roll writes no zeros
	// and every append into it overwrites allocated blocks. It is the oldest segment, recycled
	// once compaction released it (deleting it instead stalled every sync on the disk for
	// ~30 ms here), or a new file when there is none to recycle and the current segment is half
	// full.
	spareState    atomic.Int32 // spareNone, spareBusy (the job runs) or spareReady
	spareWant     bool         // a job may be offered (owner only): set by Open, rolls and recycling
	spareRecycled int64        // the spare's file is a released segment of this size, to zero (owner only)
	spareStop     atomic.Bool  // StopSpareJob: a running job stops after its current step
}

// SparePaceDefault paces a spare's zeros to at most ~100 MiB/s: a 65 MiB segment takes about a
// second. Unpaced, the zeros of three members' spares on one disk stalled their commits for up to
// 0.1 s (p99 of increments at 200 000/s open loop, members as processes: 109 ms unpaced, 16–41 ms
// paced, 29 ms with segments grown as they fill).
const SparePaceDefault = 10 * time.Millisecond

// Spare states.
const (
	spareNone int32 = iota
	spareBusy
	spareReady
)

// spareName is the spare's file in the log directory (not a segment name: recovery ignores it;
// after a restart its job zero-fills it again).
const spareName = "next-segment.spare"

// Open opens (or initialises) the archive in dir, recovering from a crash: a torn tail is cut,
// corruption anywhere else is refused with the file and offset.
func Open(fsys vfs.FS, dir string, opts Options) (*Archive, error) {
	opts.defaults()
	a := &Archive{fs: fsys, dir: dir, opts: opts, log: opts.Logger, cache: map[uint64]*pb.Entry{}, first: 1}
	for _, d := range []string{dir, a.logDir(), a.snapDir()} {
		if err := fsys.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
	}
	if err := a.checkIdentity(); err != nil {
		return nil, err
	}
	if err := a.loadSnapshots(); err != nil {
		return nil, err
	}
	if err := a.recoverLog(true, nil); err != nil {
		a.closeFiles()
		return nil, err
	}
	// A spare left by the last run may be unfinished: its job zero-fills it again (deleting it
	// would stall the disk, as deleting a segment does).
	if fi, err := fsys.Stat(a.sparePath()); err == nil && fi.Size() > 0 {
		a.spareRecycled = fi.Size()
	} else if err := fsys.Remove(a.sparePath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.closeFiles()
		return nil, fmt.Errorf("archive: %w", err)
	}
	a.spareWant = true
	// What survived the crash may sit in the page cache only: make it durable before anything
	// new depends on it.
	for _, s := range a.segs {
		s.dirty = true
	}
	a.dirDirty = true
	if err := a.Sync(); err != nil {
		a.closeFiles()
		return nil, err
	}
	return a, nil
}

func (a *Archive) logDir() string    { return filepath.Join(a.dir, "log") }
func (a *Archive) sparePath() string { return filepath.Join(a.logDir(), spareName) }
func (a *Archive) snapDir() string   { return filepath.Join(a.dir, "snap") }

// ---- identity ----

func identityText(cluster string, member int) string {
	return fmt.Sprintf("tandem-archive %d\ncluster %s\nmember %d\n", formatVersion, cluster, member)
}

func (a *Archive) checkIdentity() error {
	path := filepath.Join(a.dir, "IDENTITY")
	want := identityText(a.opts.ClusterID, a.opts.MemberID)
	got, err := readFile(a.fs, path)
	if errors.Is(err, fs.ErrNotExist) {
		segs, _ := a.fs.ReadDir(a.logDir())
		snaps, _ := a.fs.ReadDir(a.snapDir())
		if len(segs) > 0 || len(snaps) > 0 {
			return fmt.Errorf("archive: %s holds data but no IDENTITY file: refusing to guess whose it is", a.dir)
		}
		body := []byte(want)
		body = binary.LittleEndian.AppendUint32(body, crc32.Checksum([]byte(want), castagnoli))
		return writeFileDurably(a.fs, a.dir, "IDENTITY", ".tmp", body)
	}
	if err != nil {
		return fmt.Errorf("archive: reading %s: %w", path, err)
	}
	if len(got) < 4 || crc32.Checksum(got[:len(got)-4], castagnoli) != binary.LittleEndian.Uint32(got[len(got)-4:]) {
		return fmt.Errorf("%w: %s fails its checksum", ErrCorrupt, path)
	}
	text := string(got[:len(got)-4])
	if text != want {
		var v, member int
		var cluster string
		_, _ = fmt.Sscanf(strings.ReplaceAll(text, "\n", " "), "tandem-archive %d cluster %s member %d", &v, &cluster, &member)
		return fmt.Errorf("archive: %s belongs to cluster %q member %d (format %d), not cluster %q member %d",
			a.dir, cluster, member, v, a.opts.ClusterID, a.opts.MemberID)
	}
	return nil
}

func readFile(fsys vfs.FS, path string) ([]byte, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if n > 0 {
		if _, err := f.ReadAt(b, 0); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// writeFileDurably writes dir/name through the temporary file name+tmpSuffix (which must end in
// .tmp: Open deletes such leftovers): write, sync, rename, sync the directory.
func writeFileDurably(fsys vfs.FS, dir, name, tmpSuffix string, data []byte) error {
	tmp := filepath.Join(dir, name+tmpSuffix)
	f, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fsys.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return fsys.SyncDir(dir)
}

// ---- records ----

func appendRecord(dst []byte, typ uint8, payload []byte) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, typ, 0, 0, 0, 0)
	dst = append(dst, payload...)
	// The CRC is taken over dst's own bytes, so that neither the type byte nor the payload is
	// moved to the heap for crc32 (an allocation per record on the append path).
	crc := crc32.Update(crc32.Update(0, castagnoli, dst[start+4:start+5]), castagnoli, dst[start+recordHeaderBytes:])
	binary.LittleEndian.PutUint32(dst[start+5:], crc)
	return dst
}

// parseRecord parses the record at off. ok=false means no valid record there; end=true means
// the zero end marker.
func parseRecord(b []byte, off int64) (typ uint8, payload []byte, next int64, ok, end bool) {
	if int64(len(b))-off < recordHeaderBytes {
		return 0, nil, 0, false, allZero(b[off:])
	}
	h := b[off : off+recordHeaderBytes]
	n := binary.LittleEndian.Uint32(h)
	typ = h[4]
	crc := binary.LittleEndian.Uint32(h[5:])
	if n == 0 && typ == 0 && crc == 0 {
		return 0, nil, 0, false, true
	}
	if n > maxRecordBytes || int64(n) > int64(len(b))-off-recordHeaderBytes || typ < recHeader || typ > recSynced {
		return 0, nil, 0, false, false
	}
	payload = b[off+recordHeaderBytes : off+recordHeaderBytes+int64(n)]
	if crc32.Update(crc32.Update(0, castagnoli, b[off+4:off+5]), castagnoli, payload) != crc {
		return 0, nil, 0, false, false
	}
	return typ, payload, off + recordHeaderBytes + int64(n), true, false
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func encodeHeader(version uint8, first, prevTerm uint64, reset bool) []byte {
	b := []byte{version}
	b = binary.LittleEndian.AppendUint64(b, first)
	b = binary.LittleEndian.AppendUint64(b, prevTerm)
	r := uint8(0)
	if reset {
		r = 1
	}
	return append(b, r)
}

func decodeHeader(p []byte) (version uint8, first, prevTerm uint64, reset bool, err error) {
	if len(p) != 18 || p[17] > 1 {
		return 0, 0, 0, false, errors.New("bad segment header")
	}
	if p[0] < segmentV1 || p[0] > segmentV2 {
		return 0, 0, 0, false, fmt.Errorf("segment format %d, this build reads %d to %d", p[0], segmentV1, segmentV2)
	}
	return p[0], binary.LittleEndian.Uint64(p[1:]), binary.LittleEndian.Uint64(p[9:]), p[17] == 1, nil
}

// ---- recovery ----

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
}

// recoverLog replays every segment into the in-memory index. With cut, a torn tail is cut from
// the last segment; rep, if not nil, is filled in.
func (a *Archive) recoverLog(cut bool, rep *Report) error {
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
	started := false
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
		var off int64
		for off < int64(len(b)) {
			typ, payload, next, ok, end := parseRecord(b, off)
			if ok && typ == recSynced && s.version == segmentV1 {
				ok = false // no such record before version 2: bad, as an older build saw it
			}
			if end || !ok {
				torn, err := a.badRecord(s, b, off, end, last)
				if err != nil {
					return err
				}
				if torn {
					if rep != nil {
						rep.TornTail = fmt.Sprintf("%s offset %d (%d bytes after it)", path, off, int64(len(b))-off)
					}
					a.log.Warn("archive: cutting a torn tail", "file", path, "offset", off)
					if cut {
						if err := a.cutTail(path, off, int64(len(b))); err != nil {
							return err
						}
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
				if at := int64(binary.LittleEndian.Uint64(payload)); at != off {
					return fmt.Errorf("%w: %s offset %d: a synced record names offset %d, not its own", ErrCorrupt, path, off, at)
				}
				s.vouched = off
			}
			off = next
		}
		s.end = off
		if s.end == 0 {
			// A segment whose header never reached the disk (the last one, after a crash in a
			// roll), or one all zeros (no valid record follows them: checked above): nothing in it
			// counts, and it goes, so that no later start reads it again and no compaction must
			// find it.
			if cut {
				_ = a.fs.Remove(path)
				a.dirDirty = true
			}
			continue
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
		return false, fmt.Errorf("%w: %s offset %d: bad record in a segment that is not the last", ErrCorrupt, s.path, off)
	}
	if last && s.version >= segmentV2 && off > 0 {
		// Every synced record names the offset it lies at, and everything before it was durable
		// when it was written. One after off says off lies in synced data: damage, not a crash.
		// None says nothing from off on was ever synced: a crash wrote some of it back and not
		// the rest, in any order, and all of it goes, valid records after off included.
		if at, found := syncedRecordAfter(b, off); found {
			return false, fmt.Errorf("%w: %s offset %d: a bad record in data the synced record at offset %d says was durable: refusing to cut the middle of the log",
				ErrCorrupt, s.path, off, at)
		}
		return true, nil
	}
	// A version-1 segment, one that is not the last (its records end with zeros, then junk),
	// or a header that cannot be read, so that neither the version nor any synced record counts.
	// A segment's header is durable before anything else is written to it (roll), so in a
	// segment of this build a bad header followed by a valid record is damage too.
	maxType := recHardState
	if s.version >= segmentV2 || off == 0 {
		maxType = recSynced
	}
	if p, found := validRecordAfter(b, off, maxType); found {
		return false, fmt.Errorf("%w: %s offset %d: a bad record precedes a valid one at offset %d: refusing to cut the middle of the log",
			ErrCorrupt, s.path, off, p)
	}
	return true, nil
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

func (a *Archive) closeFiles() {
	for _, s := range a.segs {
		if s.f != nil {
			_ = s.f.Close()
		}
	}
}

// ---- raft.Storage ----

func (a *Archive) lastIndex() uint64 { return a.first + uint64(len(a.ents)) - 1 }

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

func (a *Archive) forgetFrom(i uint64) {
	for idx, e := range a.cache {
		if idx >= i {
			a.cacheBytes -= int64(proto.Size(e)) + 64
			delete(a.cache, idx)
		}
	}
}

// ---- writing ----

// Err returns the sticky error, if any.
func (a *Archive) Err() error {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	return a.err
}

// DurableIndex returns the last index known to be synced.
func (a *Archive) DurableIndex() uint64 { return a.durable }

func (a *Archive) fail(err error) error {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	if a.err == nil {
		a.err = fmt.Errorf("archive %s failed, refusing all further writes: %w", a.dir, err)
		a.log.Error("archive failed; no further writes", "dir", a.dir, "err", err)
	}
	return a.err
}

func (a *Archive) current() *segment {
	if len(a.segs) == 0 {
		return nil
	}
	return a.segs[len(a.segs)-1]
}

// roll starts a new segment whose entries start at first.
func (a *Archive) roll(first, prevTerm uint64, reset bool) error {
	seq := uint64(1)
	if c := a.current(); c != nil {
		seq = c.seq + 1
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
	a.segs = append(a.segs, s)
	a.dirDirty = true
	if _, err := a.write(s, appendRecord(nil, recHeader, encodeHeader(s.version, first, prevTerm, reset))); err != nil {
		return err
	}
	// The header is durable before anything else is written to the segment: then a crash never
	// leaves a segment whose header is lost but whose later records survive, and recovery can
	// take a bad header followed by a valid record for what it is, damage (see badRecord).
	if !a.opts.NoSync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if a.hs != nil {
		raw, _ := proto.Marshal(a.hs)
		if _, err := a.write(s, appendRecord(nil, recHardState, raw)); err != nil {
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
	var payload [syncedPayloadBytes]byte
	binary.LittleEndian.PutUint64(payload[:], uint64(s.end))
	return appendRecord(buf, recSynced, payload[:])
}

// newSegmentFile creates the segment file at path: the spare renamed, if it is ready (its size is
// then allocated already), else a new empty file. Either way the name is durable once the
// directory is synced (roll marks it dirty).
func (a *Archive) newSegmentFile(path string) (vfs.File, int64, error) {
	a.spareWant = true // the next roll wants a spare too
	if a.spareState.Load() == spareReady {
		a.spareState.Store(spareNone)
		if err := a.fs.Rename(a.sparePath(), path); err != nil {
			return nil, 0, err
		}
		f, err := a.fs.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, 0, err
		}
		size, err := f.Size()
		if err != nil {
			_ = f.Close()
			return nil, 0, err
		}
		return f, size, nil
	}
	f, err := a.fs.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	return f, 0, err
}

// TakeSpareJob returns, at most once per segment, the job that prepares the next segment's file
// ahead of need: it writes zeros over the segment compaction released last (see release), or
// SegmentBytes+GrowBytes of them to a new file, in the log directory under a name of its own,
// and syncs them. The driver runs it beside everything else (it touches nothing the other
// calls use) and need not report: the next roll uses the spare if the job finished, and creates
// and grows a segment as before otherwise. A failed job (a full disk, say) leaves no spare and
// no error: the segment that needs the space reports it, and the archive fails then. It returns
// nil when no job is wanted: a spare is ready or being prepared, the archive failed, or there is
// no segment to recycle and the current one is less than half full.
func (a *Archive) TakeSpareJob() func() error {
	if !a.spareWant || a.readOnly || a.Err() != nil || a.spareState.Load() != spareNone {
		return nil
	}
	if cur := a.current(); a.spareRecycled == 0 && (cur == nil || cur.end < a.opts.SegmentBytes/2) {
		// A new file costs a segment of disk and of writes: not before the current segment is
		// half full (a short-lived or small log never pays for it).
		return nil
	}
	a.spareWant = false
	a.spareState.Store(spareBusy)
	size, recycled := a.opts.SegmentBytes+a.opts.GrowBytes, a.spareRecycled > 0
	if recycled {
		size = a.spareRecycled
	}
	a.spareRecycled = 0
	return func() error {
		err := a.prepareSpare(size, recycled)
		if errors.Is(err, errSpareStopped) {
			// The file stays as it is, a spare in name only: the next Open finds it and its job
			// zero-fills it again. The state stays busy: a closing archive prepares no other.
			return nil
		}
		if err != nil {
			_ = a.fs.Remove(a.sparePath())
			a.spareState.Store(spareNone)
			a.log.Warn("archive: could not prepare the next segment ahead; it will be grown as it fills", "dir", a.dir, "err", err)
			return err
		}
		a.spareState.Store(spareReady)
		return nil
	}
}

// StopSpareJob makes a spare job that runs stop after the step it is writing (at most 1 MiB and
// its sync), so a member that shuts down need not wait for a whole segment of zeros, and offers no
// further job. The driver calls it before it waits for its jobs and closes the archive.
func (a *Archive) StopSpareJob() {
	a.spareStop.Store(true)
	a.spareWant = false
}

// spareStep is how many bytes of zeros the spare's job writes and syncs at a time (a variable
// only so that tests can cut a job short within their small segments).
var spareStep int64 = 1 << 20

// errSpareStopped is how prepareSpare reports StopSpareJob.
var errSpareStopped = errors.New("archive: spare job stopped")

// prepareSpare writes size bytes of zeros to the spare's file: over a recycled segment's records
// (which the zeros make unreadable as a log), or into a new file.
func (a *Archive) prepareSpare(size int64, recycled bool) error {
	flag := os.O_CREATE | os.O_TRUNC | os.O_RDWR
	if recycled {
		flag = os.O_RDWR
		// The rename that made the released segment the spare (release) is durable only at the
		// next sync of the log directory. Were the zeros to reach the disk first, a crash could
		// bring the segment's old name back over a file that starts with zeros and still holds
		// records further on, and recovery would refuse it as a log corrupt in the middle (the
		// member could not start). So the rename is made durable before the first zero is
		// written. (Syncing the directory beside the owner's renames and creates is harmless: any
		// of them may reach the disk early on a real file system, and recovery allows for that.)
		if !a.opts.NoSync {
			if err := a.fs.SyncDir(a.logDir()); err != nil {
				return err
			}
		}
	}
	f, err := a.fs.OpenFile(a.sparePath(), flag, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	// A step at a time, synced, and paced (Options.SparePace): writing a whole segment's zeros
	// at once would keep the disk busy for a second and stall the commit path's syncs beside it.
	for off := int64(0); off < size; {
		n := min(size-off, spareStep)
		if err := writeZeros(f, off, n); err != nil {
			return err
		}
		off += n
		if !a.opts.NoSync {
			if err := f.Sync(); err != nil {
				return err
			}
		}
		if a.spareStop.Load() {
			return errSpareStopped
		}
		if a.opts.SparePace > 0 {
			time.Sleep(a.opts.SparePace)
		}
	}
	return nil
}

// write appends buf to segment s, growing the file in large steps.
func (a *Archive) write(s *segment, buf []byte) (int64, error) {
	off := s.end
	if need := off + int64(len(buf)); need > s.size {
		grow := max(a.opts.GrowBytes, need-s.size)
		if err := writeZeros(s.f, s.size, grow); err != nil {
			return 0, err
		}
		s.size += grow
	}
	if _, err := s.f.WriteAt(buf, off); err != nil {
		return 0, err
	}
	s.end += int64(len(buf))
	s.dirty = true
	return off, nil
}

// zeroBlock is what segments are grown with.
var zeroBlock = make([]byte, 256<<10)

// writeZeros extends f from off by n bytes of written zeros. Writing them, rather than extending
// the file with Truncate, allocates the blocks once: appends then overwrite allocated blocks, and
// a sync after an append flushes data without committing new file metadata each time (on ext4,
// three writers of 32 KiB appends measured fsync p50 404–415 µs instead of 529–951 µs: see
// docs/PERFORMANCE.md). The zeros are synced with the next append's data.
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

// Append writes entries (superseding any from the first one's index on), then the hard state.
func (a *Archive) Append(hs *pb.HardState, ents []*pb.Entry) error {
	if err := a.Err(); err != nil {
		return err
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
		a.buf = a.markSynced(a.buf[:0], s)
		offs := make([]int64, len(ents))
		for i, e := range ents {
			raw, err := proto.Marshal(e)
			if err != nil {
				return err
			}
			offs[i] = int64(len(a.buf))
			a.buf = appendRecord(a.buf, recEntry, raw)
		}
		base, err := a.write(s, a.buf)
		if err != nil {
			return a.fail(err)
		}
		for i, e := range ents {
			end := int64(len(a.buf))
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
		if _, err := a.write(s, appendRecord(a.markSynced(nil, s), recHardState, raw)); err != nil {
			return a.fail(err)
		}
		a.hs = proto.Clone(hs).(*pb.HardState)
	}
	return nil
}

// Sync makes everything written durable: the data of every segment written since the last sync,
// then the log directory if segments were created. It may run on another goroutine than the
// archive's (see Archive); what compaction released is deleted by the next Reclaim.
func (a *Archive) Sync() error {
	if err := a.Err(); err != nil {
		return err
	}
	if !a.opts.NoSync && !bugs.Active("skip-fsync") {
		for _, s := range a.segs {
			if s.dirty {
				if err := s.f.Sync(); err != nil {
					return a.fail(err)
				}
			}
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

// Reclaim deletes the leading segments whose entries are all at or below the floor (or voided by
// a later reset segment). Call it after a Sync returned nil, so the snapshot and reset segments
// they depend on are durable.
func (a *Archive) Reclaim() error {
	if err := a.Err(); err != nil {
		return err
	}
	return a.compact()
}

// ---- snapshots ----

func snapshotName(index, term uint64) string { return fmt.Sprintf("%016x-%016x.snap", index, term) }

func encodeSnapshot(snap *pb.Snapshot) ([]byte, error) {
	md, err := proto.Marshal(snap.GetMetadata())
	if err != nil {
		return nil, err
	}
	b := append([]byte("TNDS"), formatVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(md)))
	b = append(b, md...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(snap.GetData())))
	b = append(b, snap.GetData()...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// DecodeSnapshot decodes and verifies a snapshot file's bytes.
func DecodeSnapshot(b []byte) (*pb.Snapshot, error) {
	if len(b) < 4+1+4+8+4 || string(b[:4]) != "TNDS" {
		return nil, fmt.Errorf("%w: not a snapshot", ErrCorrupt)
	}
	if b[4] != formatVersion {
		return nil, fmt.Errorf("%w: snapshot format %d, this build reads %d", ErrCorrupt, b[4], formatVersion)
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, fmt.Errorf("%w: snapshot checksum mismatch", ErrCorrupt)
	}
	mdLen := int(binary.LittleEndian.Uint32(body[5:]))
	if mdLen > len(body)-9-8 {
		return nil, fmt.Errorf("%w: snapshot metadata length %d", ErrCorrupt, mdLen)
	}
	md := new(pb.SnapshotMetadata)
	if err := proto.Unmarshal(body[9:9+mdLen], md); err != nil {
		return nil, fmt.Errorf("%w: snapshot metadata: %v", ErrCorrupt, err)
	}
	rest := body[9+mdLen:]
	dataLen := binary.LittleEndian.Uint64(rest)
	if dataLen != uint64(len(rest)-8) {
		return nil, fmt.Errorf("%w: snapshot data length %d, %d bytes present", ErrCorrupt, dataLen, len(rest)-8)
	}
	return &pb.Snapshot{Metadata: md, Data: append([]byte(nil), rest[8:]...)}, nil
}

func (a *Archive) loadSnapshots() error {
	names, err := a.fs.ReadDir(a.snapDir())
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	for _, n := range names {
		path := filepath.Join(a.snapDir(), n)
		if strings.HasSuffix(n, ".tmp") {
			if !a.readOnly {
				_ = a.fs.Remove(path) // an unfinished write: never renamed, never relied on
			}
			continue
		}
		var idx, term uint64
		if _, err := fmt.Sscanf(n, "%016x-%016x.snap", &idx, &term); err != nil {
			return fmt.Errorf("%w: unexpected file %s", ErrCorrupt, path)
		}
		a.snaps = append(a.snaps, snapMeta{index: idx, term: term, path: path})
	}
	if len(a.snaps) == 0 {
		return nil
	}
	newest := a.snaps[len(a.snaps)-1]
	b, err := readFile(a.fs, newest.path)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	snap, err := DecodeSnapshot(b)
	if err != nil {
		return fmt.Errorf("%s: %w", newest.path, err)
	}
	if snap.GetMetadata().GetIndex() != newest.index || snap.GetMetadata().GetTerm() != newest.term {
		return fmt.Errorf("%w: %s holds index %d term %d", ErrCorrupt, newest.path, snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm())
	}
	a.latest = snap
	return nil
}

func (a *Archive) writeSnapshot(snap *pb.Snapshot) error {
	md := snap.GetMetadata()
	b, err := encodeSnapshot(snap)
	if err != nil {
		return err
	}
	name := snapshotName(md.GetIndex(), md.GetTerm())
	if err := writeFileDurably(a.fs, a.snapDir(), name, ".tmp", b); err != nil {
		return err
	}
	a.snaps = append(a.snaps, snapMeta{index: md.GetIndex(), term: md.GetTerm(), path: filepath.Join(a.snapDir(), name)})
	a.latest = snap
	// Retention: the newest few.
	removed := false
	for len(a.snaps) > a.opts.SnapshotsRetained {
		if err := a.fs.Remove(a.snaps[0].path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		a.snaps = a.snaps[1:]
		removed = true
	}
	if removed {
		return a.fs.SyncDir(a.snapDir())
	}
	return nil
}

// SaveSnapshot stores a snapshot received from the leader and restarts the log after it. The
// snapshot file is durable before the reset segment that points at it is written.
func (a *Archive) SaveSnapshot(snap *pb.Snapshot) error {
	if err := a.Err(); err != nil {
		return err
	}
	md := snap.GetMetadata()
	if a.latest != nil && md.GetIndex() <= a.latest.GetMetadata().GetIndex() {
		return nil
	}
	if err := a.writeSnapshot(snap); err != nil {
		return a.fail(err)
	}
	if err := a.roll(md.GetIndex()+1, md.GetTerm(), true); err != nil {
		return a.fail(err)
	}
	a.ents = a.ents[:0]
	a.first, a.prevTerm = md.GetIndex()+1, md.GetTerm()
	a.forgetFrom(0)
	a.durable = md.GetIndex()
	a.floor = max(a.floor, md.GetIndex())
	return nil
}

// CreateSnapshot records this member's snapshot at index and releases the log behind the oldest
// retained snapshot minus the margin (deleted at the next Reclaim): PrepareSnapshot, its write
// and AddSnapshot in one call.
func (a *Archive) CreateSnapshot(index uint64, cs *pb.ConfState, data []byte) error {
	snap, write, err := a.PrepareSnapshot(index, cs, data)
	if err != nil || snap == nil {
		return err
	}
	if err := write(); err != nil {
		return a.fail(err)
	}
	return a.AddSnapshot(snap)
}

// PrepareSnapshot builds this member's snapshot at index (which the log must still hold) and
// returns it with the job that writes it durably and deletes the snapshots it makes surplus. The
// job makes only file system calls in the snapshot directory, under names nothing else uses: it
// may run on another goroutine beside every other call, one such job at a time. Once it returned
// nil, AddSnapshot records the snapshot; if it failed, nothing was recorded (the caller decides
// whether that stops the member). A nil snapshot means there is nothing to do: a snapshot at
// index or later is already recorded.
func (a *Archive) PrepareSnapshot(index uint64, cs *pb.ConfState, data []byte) (*pb.Snapshot, func() error, error) {
	if err := a.Err(); err != nil {
		return nil, nil, err
	}
	if a.latest != nil && index <= a.latest.GetMetadata().GetIndex() {
		return nil, nil, nil
	}
	term, err := a.Term(index)
	if err != nil {
		return nil, nil, fmt.Errorf("archive: snapshot at %d: %w", index, err)
	}
	snap := &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: &index, Term: &term,
		ConfState: proto.Clone(cs).(*pb.ConfState)}}
	b, err := encodeSnapshot(snap)
	if err != nil {
		return nil, nil, err
	}
	var surplus []string
	for i := 0; i < len(a.snaps)+1-a.opts.SnapshotsRetained; i++ {
		surplus = append(surplus, a.snaps[i].path)
	}
	a.surplus = surplus
	fsys, dir, name := a.fs, a.snapDir(), snapshotName(index, term)
	write := func() error {
		// The temporary name is this job's own: a leader's snapshot installed meanwhile
		// (SaveSnapshot) at the same index and term writes through name.tmp.
		if err := writeFileDurably(fsys, dir, name, ".own.tmp", b); err != nil {
			return err
		}
		for _, path := range surplus {
			if err := fsys.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		if len(surplus) > 0 {
			return fsys.SyncDir(dir)
		}
		return nil
	}
	return snap, write, nil
}

// AddSnapshot records a snapshot PrepareSnapshot built, once its job wrote it: raft is served it
// from now on, and the log behind the oldest retained snapshot minus the margin is released
// (deleted at the next Reclaim).
func (a *Archive) AddSnapshot(snap *pb.Snapshot) error {
	if err := a.Err(); err != nil {
		return err
	}
	md := snap.GetMetadata()
	path := filepath.Join(a.snapDir(), snapshotName(md.GetIndex(), md.GetTerm()))
	// The job deleted the oldest beyond retention (a leader's snapshot installed meanwhile may
	// have had some of them deleted already, and forgotten).
	a.snaps = slices.DeleteFunc(a.snaps, func(sm snapMeta) bool { return slices.Contains(a.surplus, sm.path) })
	a.surplus = nil
	if !slices.ContainsFunc(a.snaps, func(sm snapMeta) bool { return sm.path == path }) {
		a.snaps = append(a.snaps, snapMeta{index: md.GetIndex(), term: md.GetTerm(), path: path})
		slices.SortFunc(a.snaps, func(x, y snapMeta) int { return cmp.Compare(x.index, y.index) })
	}
	if a.latest == nil || md.GetIndex() > a.latest.GetMetadata().GetIndex() {
		a.latest = snap
	}
	oldest := a.snaps[0].index
	if oldest > a.opts.LogMarginEntries {
		a.floor = max(a.floor, oldest-a.opts.LogMarginEntries)
	}
	return nil
}

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

// release disposes of a segment compaction no longer needs: it becomes the spare (renamed; its job
// zero-fills it) when no spare is ready or being prepared, and is deleted otherwise. Either way
// the change of names is durable at the next directory sync, and until then recovery finds the
// segment where it was and skips it as compacted.
func (a *Archive) release(s *segment) error {
	if a.spareState.Load() == spareNone && a.spareRecycled == 0 && s.size > 0 {
		// (A spare job taken but not run yet would prepare a new file: it is busy, not none.)
		if err := a.fs.Rename(s.path, a.sparePath()); err != nil {
			return err
		}
		a.spareRecycled, a.spareWant = s.size, true
		return nil
	}
	if err := a.fs.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Close closes the files. It does not sync.
func (a *Archive) Close() error {
	a.closeFiles()
	return nil
}

// Verify checks every record and snapshot under dir without changing anything, writes a summary
// to w, and returns the first corruption found.
func Verify(fsys vfs.FS, dir string, w interface{ Write([]byte) (int, error) }) (Report, error) {
	a := &Archive{fs: fsys, dir: dir, cache: map[uint64]*pb.Entry{}, first: 1, readOnly: true}
	a.opts.defaults()
	a.log = a.opts.Logger
	var rep Report
	if _, err := fsys.Stat(filepath.Join(dir, "IDENTITY")); err != nil {
		return rep, fmt.Errorf("archive: %s is not a Tandem data directory: %w", dir, err)
	}
	id, _ := readFile(fsys, filepath.Join(dir, "IDENTITY"))
	if len(id) > 4 {
		fmt.Fprintf(w, "identity: %s\n", strings.ReplaceAll(strings.TrimSpace(string(id[:len(id)-4])), "\n", ", "))
	}
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
	fmt.Fprintln(w, "ok")
	return rep, nil
}
