package archive

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

// Describe is `tandem archive describe`: what a data directory holds and what Open would do with
// it, found without changing anything and without taking the directory's lock, so that it may
// look at a running member's directory.
//
// It never disagrees with Open because it runs Open's own steps, in Open's order (readIdentity
// and checkOwner, loadSnapshots, recoverLog, loadVerification), read-only: recoverLog without
// its cuts, the others with readOnly set. On top of that it reads through readOnlyFS, which
// fails every call that would change the directory, so that no path through recovery's code can
// write even if a later change forgets readOnly. The first error in Open's order is the one Open
// would return (Plan.Err); Describe goes on past it where it can, to list every file.
//
// While a member holds the directory (Description.InUse), it is writing beside the reading:
// what the last segment holds may be a write in flight, seen as a torn tail, and a roll between
// the reading of the segments and of newest-segment may read as a missing newest segment. Such
// findings are what the files said at that moment, not what Open would find once the member
// stopped.

// ErrNotDataDir: Describe was given a path that is not a Tandem data directory: missing, not a
// directory, or holding neither an IDENTITY file nor any log or snapshot.
var ErrNotDataDir = errors.New("not a Tandem data directory")

// ErrEmptyDir, wrapped with ErrNotDataDir: the directory exists and holds no Tandem data (a new
// member's, or one tandem clean emptied). A member starts on it — as a founder (unverified until
// its peers say the cluster is new), or joining with --join — rather than refusing it.
var ErrEmptyDir = errors.New("empty: no IDENTITY file, no log, no snapshot")

// DescribeOptions are what Describe compares the directory with.
type DescribeOptions struct {
	// ClusterID and MemberID, when ClusterID is not "", are the configuration a member would be
	// started with on the directory: one whose IDENTITY names another cluster or member is
	// refused, as Open refuses it (another cluster's data must never be served as this one's).
	ClusterID string
	MemberID  int
}

// Description is what Describe found.
type Description struct {
	Dir string `json:"dir"`
	// InUse: a process holds the directory's lock (LockDir): a member runs on it, and Open is
	// refused until it stops. InUsePID is the pid the holder wrote (0 if none yet).
	InUse    bool `json:"in_use"`
	InUsePID int  `json:"in_use_pid,omitempty"`
	// LockProblem: the lock could not be probed (no write permission on LOCK, a read-only
	// mount): whether a member holds the directory is not known.
	LockProblem  string           `json:"lock_problem,omitempty"`
	Identity     IdentityInfo     `json:"identity"`
	Verification VerificationInfo `json:"verification"`
	// Segments: every file of the log directory named like a segment, in log order.
	Segments []SegmentInfo `json:"segments"`
	// SpareBytes is the size of the spare segment (doc.go, Directory layout), 0 if none.
	SpareBytes int64 `json:"spare_bytes,omitempty"`
	// Snapshots: every file of the snapshot directory, unfinished ones included, by index.
	Snapshots []SnapshotInfo `json:"snapshots"`
	// HardState is the hard state raft starts from (InitialState): the last one the log holds,
	// its commit raised to the snapshot's index.
	HardState HardStateInfo `json:"hard_state"`
	Plan      Plan          `json:"plan"`
}

// IdentityInfo is what the IDENTITY file holds (identity.go).
type IdentityInfo struct {
	Present bool   `json:"present"`
	Format  uint8  `json:"format,omitempty"`
	Cluster string `json:"cluster,omitempty"`
	Member  int    `json:"member"`
	// UUID is the cluster's identity in hex, "" if the file holds none yet.
	UUID string `json:"uuid,omitempty"`
	// RaftID is a joined member's raft id, 0 for a founding member (whose raft id is Member+1).
	RaftID  uint64 `json:"raft_id,omitempty"`
	Problem string `json:"problem,omitempty"`
}

// VerificationInfo is what the VERIFICATION file holds (verification.go). No file is a member
// that may vote, with no floor.
type VerificationInfo struct {
	Present    bool   `json:"present"`
	Unverified bool   `json:"unverified"`
	VoteFloor  uint64 `json:"vote_floor"`
	Problem    string `json:"problem,omitempty"`
}

// SegmentState is what recovery makes of a segment file.
type SegmentState string

const (
	// SegmentIntact: every record up to the zeros that end them is good.
	SegmentIntact SegmentState = "intact"
	// SegmentTorn: the last segment's unsynced tail is torn from TornOffset on; Open cuts it.
	SegmentTorn SegmentState = "torn"
	// SegmentDamaged: recovery refuses the directory here (Problem says why).
	SegmentDamaged SegmentState = "damaged"
	// SegmentEmpty: no record (a roll a crash undid, or all zeros); Open removes the file.
	SegmentEmpty SegmentState = "empty"
	// SegmentUnread: recovery stopped at a refusal before it.
	SegmentUnread SegmentState = "unread"
)

// SegmentInfo is what recovery found in one segment file.
type SegmentInfo struct {
	Name    string `json:"name"`
	Seq     uint64 `json:"seq"`
	Bytes   int64  `json:"bytes"`
	Version uint8  `json:"version,omitempty"`
	// FirstIndex..LastIndex are the entries recovery keeps from the file (LastIndex is
	// FirstIndex-1 if none); a later segment may supersede some of them (a raft truncation).
	FirstIndex uint64 `json:"first_index"`
	LastIndex  uint64 `json:"last_index"`
	Entries    int    `json:"entries"`
	// Reset: the segment starts the log afresh after a snapshot received from the leader.
	Reset bool `json:"reset,omitempty"`
	// RecordsEnd is where its records end (before any cut); SyncedOffset the largest offset a
	// synced record in it names (0 if none).
	RecordsEnd   int64        `json:"records_end"`
	SyncedOffset int64        `json:"synced_offset,omitempty"`
	State        SegmentState `json:"state"`
	TornOffset   int64        `json:"torn_offset,omitempty"`
	Problem      string       `json:"problem,omitempty"`
}

// SnapshotInfo is one file of the snapshot directory.
type SnapshotInfo struct {
	Name  string `json:"name"`
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	Bytes int64  `json:"bytes"`
	// Decodes: the file decodes, its checksum holds and it holds the index and term its name
	// says. Only the newest is read by Open; an older one that fails is never used but is named.
	Decodes bool `json:"decodes"`
	// Newest: the one recovery starts from (Open refuses the directory if it does not decode).
	Newest bool `json:"newest,omitempty"`
	// Unfinished: a .tmp file, a write that never completed; Open deletes it.
	Unfinished bool   `json:"unfinished,omitempty"`
	Problem    string `json:"problem,omitempty"`
}

// HardStateInfo is a raft hard state.
type HardStateInfo struct {
	Term   uint64 `json:"term"`
	Vote   uint64 `json:"vote"`
	Commit uint64 `json:"commit"`
}

// PlanAction is what Open would do.
type PlanAction string

const (
	PlanStart  PlanAction = "start"  // open the directory and start on what it holds
	PlanRefuse PlanAction = "refuse" // refuse it: Plan.Refusal says why
)

// Plan is what Open would do with the directory (once a member holding it stopped).
type Plan struct {
	Action PlanAction `json:"action"`
	// Refusal is Open's error; LostSyncedData: it is ErrLostSyncedData (rebuild the member).
	Refusal        string `json:"refusal,omitempty"`
	LostSyncedData bool   `json:"lost_synced_data,omitempty"`
	Err            error  `json:"-"`
	// The snapshot the state machine starts from ("" if none).
	Snapshot      string `json:"snapshot,omitempty"`
	SnapshotIndex uint64 `json:"snapshot_index,omitempty"`
	SnapshotTerm  uint64 `json:"snapshot_term,omitempty"`
	// FirstIndex..LastIndex: the entries the log holds (none if LastIndex < FirstIndex); the
	// log may keep some behind the snapshot (Options.LogMarginEntries).
	FirstIndex uint64 `json:"first_index"`
	LastIndex  uint64 `json:"last_index"`
	// ReplayFrom..ReplayTo: the committed entries after the snapshot, which the member applies
	// again on start (none if ReplayTo < ReplayFrom); the entries after ReplayTo wait in the log
	// until a leader says they are committed.
	ReplayFrom uint64 `json:"replay_from"`
	ReplayTo   uint64 `json:"replay_to"`
	// CutFile, CutOffset: a torn tail zero-filled from there on ("" if none).
	CutFile   string `json:"cut_file,omitempty"`
	CutOffset int64  `json:"cut_offset,omitempty"`
	// Removes: files Open deletes: segments without a record, unfinished snapshots, an empty
	// spare.
	Removes []string `json:"removes,omitempty"`
	// WritesUnverified: the log holds nothing, and Open records the member unverified before
	// anything else (it votes once verified: verification.go).
	WritesUnverified bool `json:"writes_unverified,omitempty"`
}

// Describe describes the data directory dir (see the comment at the top of this file). It
// returns an error wrapping ErrNotDataDir for a path that is not a data directory, and other
// errors only for what keeps it from reading at all; everything Open would refuse is in
// Plan, with Plan.Action PlanRefuse.
func Describe(fsys vfs.FS, dir string, opts DescribeOptions) (*Description, error) {
	if fi, err := fsys.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("archive: %s: %w (it does not exist)", dir, ErrNotDataDir)
	} else if err != nil {
		return nil, fmt.Errorf("archive: reading %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("archive: %s: %w (not a directory)", dir, ErrNotDataDir)
	}
	ro := readOnlyFS{fsys}
	d := &Description{Dir: dir, Segments: []SegmentInfo{}, Snapshots: []SnapshotInfo{}}
	d.InUse, d.InUsePID, d.LockProblem = probeLock(fsys, dir)
	refuse := func(err error) {
		if d.Plan.Err == nil && err != nil {
			d.Plan.Err = err
		}
	}

	// IDENTITY (Open: checkIdentity).
	id, err := readIdentity(ro, dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		derr := checkDataWithoutIdentity(ro, dir)
		if derr == nil {
			return nil, fmt.Errorf("archive: %s: %w: %w", dir, ErrNotDataDir, ErrEmptyDir)
		}
		d.Identity.Problem = "missing"
		refuse(derr)
	case err != nil:
		d.Identity = IdentityInfo{Present: true, Problem: err.Error()}
		refuse(err)
	default:
		d.Identity = IdentityInfo{Present: true, Format: id.format, Cluster: id.cluster, Member: id.member, RaftID: id.raftID}
		if id.uuid != (ClusterUUID{}) {
			d.Identity.UUID = hex.EncodeToString(id.uuid[:])
		}
		if opts.ClusterID != "" {
			refuse(id.checkOwner(dir, Options{ClusterID: opts.ClusterID, MemberID: opts.MemberID}))
		}
	}

	a := &Archive{fs: ro, dir: dir, cache: map[uint64]*pb.Entry{}, first: 1, readOnly: true}
	a.opts.defaults()
	a.log = a.opts.Logger
	// Snapshots (Open: loadSnapshots), then every file of the directory on its own.
	snapErr := a.loadSnapshots()
	refuse(snapErr)
	d.Snapshots = describeSnapshots(ro, a.snapDir(), a.latest)
	if snapErr != nil {
		// Open stops here; the log is still read, to list it, as if there were no snapshot.
		a.snaps, a.latest = nil, nil
	}
	// The log (Open: recoverLog, without its cuts).
	var rep Report
	refuse(a.recoverLog(false, &rep))
	d.Segments = append(d.Segments, rep.Files...)
	d.Segments = append(d.Segments, unreadSegments(ro, a.logDir(), rep.Files)...)
	if fi, err := ro.Stat(a.sparePath()); err == nil {
		d.SpareBytes = fi.Size()
	}
	// VERIFICATION (Open: loadVerification; read-only, it writes nothing).
	d.Verification = describeVerification(ro, dir)
	refuse(a.loadVerification())

	d.Plan.Action = PlanStart
	if d.Plan.Err != nil {
		d.Plan.Action, d.Plan.Refusal = PlanRefuse, d.Plan.Err.Error()
		d.Plan.LostSyncedData = errors.Is(d.Plan.Err, ErrLostSyncedData)
		return d, nil
	}
	h, _, _ := a.InitialState()
	d.HardState = HardStateInfo{Term: h.GetTerm(), Vote: h.GetVote(), Commit: h.GetCommit()}
	d.planStart(a, &rep)
	return d, nil
}

// planStart fills in the plan of a directory Open starts on, from the archive recovery built.
func (d *Description) planStart(a *Archive, rep *Report) {
	p := &d.Plan
	if a.latest != nil {
		md := a.latest.GetMetadata()
		p.Snapshot = snapshotName(md.GetIndex(), md.GetTerm())
		p.SnapshotIndex, p.SnapshotTerm = md.GetIndex(), md.GetTerm()
	}
	p.FirstIndex, p.LastIndex = a.first, a.lastIndex()
	p.ReplayFrom, p.ReplayTo = max(p.FirstIndex, p.SnapshotIndex+1), min(p.LastIndex, d.HardState.Commit)
	p.CutFile, p.CutOffset = rep.TornFile, rep.TornOffset
	for _, s := range d.Segments {
		if s.State == SegmentEmpty {
			p.Removes = append(p.Removes, filepath.Join(a.logDir(), s.Name))
		}
	}
	for _, s := range d.Snapshots {
		if s.Unfinished {
			p.Removes = append(p.Removes, filepath.Join(a.snapDir(), s.Name))
		}
	}
	if fi, err := a.fs.Stat(a.sparePath()); err == nil && fi.Size() == 0 {
		p.Removes = append(p.Removes, a.sparePath()) // adoptSpare
	}
	p.WritesUnverified = !a.unverified && a.lastIndex() == 0 && len(a.snaps) == 0
}

// describeSnapshots reads every file of the snapshot directory. latest is the snapshot
// loadSnapshots read (nil if none or if it failed): the one recovery starts from.
func describeSnapshots(fsys vfs.FS, snapDir string, latest *pb.Snapshot) []SnapshotInfo {
	out := []SnapshotInfo{}
	names, _ := fsys.ReadDir(snapDir)
	for _, n := range names {
		path := filepath.Join(snapDir, n)
		s := SnapshotInfo{Name: n}
		if fi, err := fsys.Stat(path); err == nil {
			s.Bytes = fi.Size()
		}
		if strings.HasSuffix(n, ".tmp") {
			s.Unfinished = true
			out = append(out, s)
			continue
		}
		if _, err := fmt.Sscanf(n, "%016x-%016x.snap", &s.Index, &s.Term); err != nil || n != snapshotName(s.Index, s.Term) {
			s.Problem = "not a snapshot's name"
			out = append(out, s)
			continue
		}
		b, err := readFile(fsys, path)
		var snap *pb.Snapshot
		if err == nil {
			snap, err = DecodeSnapshot(b)
		}
		switch {
		case err != nil:
			s.Problem = err.Error()
		case snap.GetMetadata().GetIndex() != s.Index || snap.GetMetadata().GetTerm() != s.Term:
			s.Problem = fmt.Sprintf("holds index %d term %d", snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm())
		default:
			s.Decodes = true
		}
		s.Newest = latest != nil && latest.GetMetadata().GetIndex() == s.Index && latest.GetMetadata().GetTerm() == s.Term
		out = append(out, s)
	}
	return out
}

// unreadSegments lists the segment files of logDir recovery did not reach (it stopped at a
// refusal before them), with their sizes.
func unreadSegments(fsys vfs.FS, logDir string, read []SegmentInfo) []SegmentInfo {
	seen := map[string]bool{}
	for _, s := range read {
		seen[s.Name] = true
	}
	var out []SegmentInfo
	names, _ := fsys.ReadDir(logDir)
	for _, n := range names {
		if !strings.HasSuffix(n, ".seg") || seen[n] {
			continue
		}
		s := SegmentInfo{Name: n, State: SegmentUnread}
		_, _ = fmt.Sscanf(n, "%016x.seg", &s.Seq)
		if fi, err := fsys.Stat(filepath.Join(logDir, n)); err == nil {
			s.Bytes = fi.Size()
		}
		out = append(out, s)
	}
	return out
}

// describeVerification reads the VERIFICATION file as loadVerification does, keeping what it
// holds even when loadVerification refuses it.
func describeVerification(fsys vfs.FS, dir string) VerificationInfo {
	b, err := readFile(fsys, filepath.Join(dir, verificationName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return VerificationInfo{}
	case err != nil:
		return VerificationInfo{Present: true, Problem: err.Error()}
	case len(b) != verificationBytes || crc32.Checksum(b[:10], castagnoli) != binary.LittleEndian.Uint32(b[10:]) || b[1] > 1:
		return VerificationInfo{Present: true, Problem: fmt.Sprintf("damaged (%d bytes, checksum fails)", len(b))}
	case b[0] != verificationFormat:
		return VerificationInfo{Present: true, Problem: fmt.Sprintf("format %d, this build reads format %d", b[0], verificationFormat)}
	}
	return VerificationInfo{Present: true, Unverified: b[1] == 1, VoteFloor: binary.LittleEndian.Uint64(b[2:])}
}

// probeLock reports whether a process holds dir's lock, and the pid it wrote, or why it cannot
// tell. It takes the lock and releases it at once if it is free, writing nothing; a LOCK file
// that does not exist is not created (no member ever held the directory, or one of a build
// before the lock).
//
// The probe holds the lock for the moment between the two system calls: a member started at that
// very moment is refused as if the directory were in use, and may be started again. Linux has no
// way to ask about a flock without taking it.
func probeLock(fsys vfs.FS, dir string) (inUse bool, pid int, problem string) {
	path := filepath.Join(dir, LockName)
	if _, err := fsys.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return false, 0, ""
	}
	f, err := fsys.Lock(path)
	switch {
	case errors.Is(err, vfs.ErrLocked):
		return true, lockHolder(fsys, path), ""
	case err != nil:
		return false, 0, err.Error()
	}
	_ = f.Close()
	return false, 0, ""
}

// errReadOnly is what readOnlyFS returns for every call that would change the directory.
var errReadOnly = errors.New("archive: describing a data directory changes nothing")

// readOnlyFS is the file system Describe reads through: every call that would change anything
// fails, and a missing log or snapshot directory reads as empty (Open would create it).
type readOnlyFS struct{ fs vfs.FS }

func (r readOnlyFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errReadOnly}
	}
	f, err := r.fs.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return readOnlyFile{f}, nil
}

func (r readOnlyFS) ReadDir(dir string) ([]string, error) {
	names, err := r.fs.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return names, err
}

func (r readOnlyFS) Stat(name string) (os.FileInfo, error) { return r.fs.Stat(name) }
func (r readOnlyFS) Remove(name string) error {
	return &fs.PathError{Op: "remove", Path: name, Err: errReadOnly}
}
func (r readOnlyFS) Rename(oldName, _ string) error {
	return &fs.PathError{Op: "rename", Path: oldName, Err: errReadOnly}
}
func (r readOnlyFS) MkdirAll(dir string, _ os.FileMode) error {
	return &fs.PathError{Op: "mkdir", Path: dir, Err: errReadOnly}
}
func (r readOnlyFS) SyncDir(dir string) error {
	return &fs.PathError{Op: "sync", Path: dir, Err: errReadOnly}
}
func (r readOnlyFS) Lock(name string) (vfs.File, error) {
	return nil, &fs.PathError{Op: "lock", Path: name, Err: errReadOnly}
}

// readOnlyFile is a file opened through readOnlyFS: reads only.
type readOnlyFile struct{ vfs.File }

func (f readOnlyFile) Write([]byte) (int, error) {
	return 0, &fs.PathError{Op: "write", Path: f.Name(), Err: errReadOnly}
}
func (f readOnlyFile) WriteAt([]byte, int64) (int, error) {
	return 0, &fs.PathError{Op: "write", Path: f.Name(), Err: errReadOnly}
}
func (f readOnlyFile) Truncate(int64) error {
	return &fs.PathError{Op: "truncate", Path: f.Name(), Err: errReadOnly}
}
func (f readOnlyFile) Sync() error {
	return &fs.PathError{Op: "sync", Path: f.Name(), Err: errReadOnly}
}
