package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

// SparePaceDefault paces a spare's zeros to at most ~100 MiB/s (a MiB per 10 ms pause): a 65 MiB
// segment takes about a second. Unpaced, the zeros of three members' spares on one disk stalled
// their commits (the p99 latencies are in docs/PERFORMANCE.md).
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

// adoptSpare, on Open, takes up the spare the last run left. It may be unfinished: its job
// zero-fills it again (deleting it would stall the disk, as deleting a segment does). An empty one
// is removed.
func (a *Archive) adoptSpare() error {
	if fi, err := a.fs.Stat(a.sparePath()); err == nil && fi.Size() > 0 {
		a.spareRecycled = fi.Size()
	} else if err := a.fs.Remove(a.sparePath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("archive: %w", err)
	}
	a.spareWant = true
	return nil
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
	// at once would keep the disk busy for long and stall the commit path's syncs beside it.
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
