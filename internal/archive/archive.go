package archive

import (
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

// Options configures an archive.
type Options struct {
	ClusterID string
	MemberID  int
	// RaftID: the raft id of a member that joined a running cluster, written in a new
	// directory's IDENTITY (format 3) and checked against an existing one's; 0 for a founding
	// member, or to take whatever the directory holds (RaftID()).
	RaftID uint64
	// SegmentBytes: once a segment holds this much, the next append starts a new one (default
	// 64 MiB).
	SegmentBytes int64
	// GrowBytes: a segment that was not prepared ahead (the first after Open, or one needed
	// before its spare was ready: see TakeSpareJob) grows in steps of this size (default
	// 1 MiB), not record by record. The zeros of a step are synced before records go into them
	// (so that a file cut shorter is told from a crash: doc.go, Recovery), on the commit path,
	// which they make much slower (docs/PERFORMANCE.md): hence the spare.
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

// defaults fills in the zero fields.
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

// The formats this build reads and writes, for `tandem version`: every kind of file carries its
// format version (doc.go), and a build reads the formats of the build before it as well as its
// own. It writes only the newest, upgrading on write: a log opened with an older last segment
// goes on in a new segment of the current format.
const (
	IdentityFormat   = identityFormat3 // the IDENTITY file (identity.go)
	SnapshotFormat   = formatVersion   // snapshot files (their container part has its own format)
	SegmentFormatMin = segmentV1       // oldest log segment format read
	SegmentFormatMax = segmentV3       // the log segment format written
)

// castagnoli is the CRC-32C table of every checksum the archive writes: records, IDENTITY,
// snapshot files.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt wraps every corruption found on open or read: the member must not start on it.
var ErrCorrupt = errors.New("archive: corrupt")

// segment is a log segment file: recovery finds it (recoverLog) or a roll starts it (roll).
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
	// durableSize is how long the file is known to be durably (its zeros synced: grow, or the
	// spare's job); claimed is the largest size an allocated record in the segment names (the
	// first write after durableSize grew past it carries one: prefix). Invariant: claimed <=
	// durableSize <= size.
	durableSize int64
	claimed     int64
	// voteEnd is the end of the last hard-state record that changed the term or the vote (0 if
	// none since the segment started): Sync vouches for it at once (vouchVote). vouchTail is the
	// length of the synced record Sync wrote at end for it, which the owner adds to end at its
	// next write (settle): Sync never moves end, which the owner reads beside it.
	voteEnd   int64
	vouchTail int64
}

// loc is where an entry lies: its term, and its record in a segment (off, n bytes).
type loc struct {
	term uint64
	seg  *segment
	off  int64
	n    uint32
}

// Archive is the durable raft log and snapshot store. One goroutine owns it; the calls that may
// run beside the owner's (Sync, the snapshot's write job, the spare's job) are listed in doc.go
// under Concurrency. Sync therefore touches only the segments' files and sync marks, dirDirty,
// durable and the sticky error (behind errMu); deleting what compaction released is left to
// Reclaim, which runs on the owning goroutine after the sync.
//
// What the parts rely on from one another:
//   - Only the last segment can hold unsynced data: roll syncs the current segment before it
//     starts the next, and makes the new header durable before anything else is written to it.
//     Recovery (badRecord) cuts a torn tail only there, and reads a bad header followed by a
//     valid record as damage.
//   - Every segment's header is exact: a truncation or a full segment starts a new one (Append),
//     so replay (applyHeader) never guesses where entries start.
//   - What a record depends on is durable first: a snapshot file before the reset segment that
//     points at it (SaveSnapshot), a sync before the deletion of what compaction released
//     (the driver calls Reclaim after a Sync), the rename of a released segment to the spare before its zeros
//     (prepareSpare).
//   - The spare is never read as log: its name is not a segment's (spareName), and it becomes one
//     only by a rename once its job made it all zeros (newSegmentFile).
//   - A file is durably as long as its allocated records say: grow syncs its zeros before the
//     record that names them, and the spare is synced before it becomes a segment. The
//     newest-segment file names a segment only once its header, first allocated record and name
//     are durable (roll). Recovery (checkLength, checkEnd) reads anything less as lost synced data.
//   - A hard state that changed the term or the vote is vouched for by a synced record before
//     Sync returns (vouchVote): a damaged one is never cut as torn.
//   - After any write or sync error the archive is failed (fail): every mutating call returns it.
type Archive struct {
	fs   vfs.FS
	dir  string
	opts Options
	log  *slog.Logger

	// The log: recovery builds it (recover.go), Append extends it and compaction shortens it
	// (append.go), the raft.Storage reads serve it (read.go).
	segs     []*segment // in log order; the last one is written
	first    uint64     // index of ents[0]
	prevTerm uint64     // term of first-1
	// Invariant: ents[i] is the entry at index first+i; indexes are contiguous.
	ents  []loc
	hs    *pb.HardState // the last hard state written
	floor uint64        // entries at or below it may be deleted with their segments
	buf   []byte        // Append's records, reused

	// Written by Sync, which may run beside the owner's reads.
	dirDirty bool   // the log directory changed (a segment created, renamed, deleted) since its last sync
	durable  uint64 // the last index known to be synced
	errMu    sync.Mutex
	err      error // sticky; behind errMu, as Sync may set it on another goroutine

	// The entry cache (read.go), bounded by opts.CacheBytes, evicted oldest first.
	cache      map[uint64]*pb.Entry
	cacheFIFO  []uint64
	cacheBytes int64

	// Snapshots (snapshot.go).
	snaps   []snapMeta   // retained snapshots, oldest first
	latest  *pb.Snapshot // the newest snapshot, data included
	surplus []string     // snapshot files the prepared snapshot's job deletes

	readOnly bool // Verify: change nothing
	// raftID is the raft id the IDENTITY file holds (identity.go), 0 for a founding member's;
	// joinedNow: this Open wrote it, for a member that joined just now.
	raftID    uint64
	joinedNow bool
	// clusterUUID is the cluster's identity the IDENTITY file holds (identity.go), zero if none.
	clusterUUID ClusterUUID
	// unverified and voteFloor are what the VERIFICATION file holds (verification.go).
	unverified bool
	voteFloor  uint64
	// newest is the sequence number the newest-segment file names (lost.go), 0 if none: every
	// segment up to it had its header and first allocated record durable.
	newest uint64

	// The spare (spare.go) is the next segment's file, prepared ahead of need by a job the driver
	// runs beside everything (TakeSpareJob): zero-filled and synced, so that a roll writes no
	// zeros and every append into it overwrites allocated blocks. It is the oldest segment,
	// recycled once compaction released it (deleting it instead stalled every sync on the disk
	// beside it: docs/PERFORMANCE.md), or a new file when there is none to recycle and the
	// current segment is half full.
	spareState    atomic.Int32 // spareNone, spareBusy (the job runs) or spareReady
	spareWant     bool         // a job may be offered (owner only): set by Open, rolls and recycling
	spareRecycled int64        // the spare's file is a released segment of this size, to zero (owner only)
	spareStop     atomic.Bool  // StopSpareJob: a running job stops after its current step
}

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
	if err := a.loadVerification(); err != nil {
		a.closeFiles()
		return nil, err
	}
	if err := a.adoptSpare(); err != nil {
		a.closeFiles()
		return nil, err
	}
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

// Close closes the files. It does not sync.
func (a *Archive) Close() error {
	a.closeFiles()
	return nil
}

// closeFiles closes the segments' files.
func (a *Archive) closeFiles() {
	for _, s := range a.segs {
		if s.f != nil {
			_ = s.f.Close()
		}
	}
}

// logDir, sparePath and snapDir are the archive's paths (see the package doc, Directory layout).
func (a *Archive) logDir() string    { return filepath.Join(a.dir, "log") }
func (a *Archive) sparePath() string { return filepath.Join(a.logDir(), spareName) }
func (a *Archive) snapDir() string   { return filepath.Join(a.dir, "snap") }

// lastIndex is the index of the last entry (first-1 when the log holds none).
func (a *Archive) lastIndex() uint64 { return a.first + uint64(len(a.ents)) - 1 }

// current is the segment written to, nil before the first.
func (a *Archive) current() *segment {
	if len(a.segs) == 0 {
		return nil
	}
	return a.segs[len(a.segs)-1]
}

// Err returns the sticky error, if any.
func (a *Archive) Err() error {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	return a.err
}

// fail makes err the sticky error, unless there is one already, and returns the sticky error:
// every later mutating call returns it (see the package doc, Failure).
func (a *Archive) fail(err error) error {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	if a.err == nil {
		a.err = fmt.Errorf("archive %s failed, refusing all further writes: %w", a.dir, err)
		a.log.Error("archive failed; no further writes", "dir", a.dir, "err", err)
	}
	return a.err
}

// readFile reads the whole file at path.
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
