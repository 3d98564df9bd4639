package archive

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

type snapMeta struct {
	index, term uint64
	path        string
}

// snapshotName is a snapshot's file name; names sort by index.
func snapshotName(index, term uint64) string { return fmt.Sprintf("%016x-%016x.snap", index, term) }

// encodeSnapshot returns a snapshot file's bytes (see the package doc, Snapshot format).
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

// loadSnapshots lists the retained snapshots and reads the newest, which must match its name;
// unfinished .tmp files are deleted (unless read-only).
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

// writeSnapshot writes a leader's snapshot durably and makes it the newest, then deletes the
// oldest beyond Options.SnapshotsRetained.
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
