package archive

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

// LockName is the lock file of a data directory (doc.go, Directory layout).
const LockName = "LOCK"

// lockPIDBytesMax bounds what is read of a lock file for the holder's pid: a decimal pid and a
// newline are far shorter; anything longer is not one of ours.
const lockPIDBytesMax = 32

// ErrInUse: another process (or another LockDir in this one) holds the data directory's lock.
var ErrInUse = errors.New("data directory in use")

// InUseError says who holds the lock of a data directory. It wraps ErrInUse.
type InUseError struct {
	Dir string
	// PID is the holder's process id as it wrote it into the lock file; 0 when the file did not
	// hold one (the holder took the lock a moment ago and has not written it yet).
	PID int
}

func (e *InUseError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = "process " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("data directory %s is in use by %s: one process per directory; stop it first", e.Dir, who)
}

func (e *InUseError) Unwrap() error { return ErrInUse }

// DirLock is a held lock on a data directory (LockDir).
type DirLock struct {
	f vfs.File
}

// Close releases the lock. The lock file stays (removing it would race with the next holder,
// who may have opened it already); a later LockDir takes it again.
func (l *DirLock) Close() error { return l.f.Close() }

// LockDir creates the data directory dir if needed and takes its lock, <dir>/LOCK, through
// fsys.Lock (flock(2) on the OS), then writes the process id into the file so that the next
// one to try can say who holds it. A held lock fails at once with an *InUseError naming the
// holder's pid.
//
// Open does not lock: the directory is the member's, not only the archive's (node.Run also
// receives snapshots into it), so the member takes the lock for its whole life, before anything
// else, and releases it last. Whoever opens an archive for writing must hold the lock first;
// Verify, which changes nothing, does not take it, and Describe only probes it (probeLock).
//
// A lock file left by a process that died is no obstacle: the kernel released its lock, and the
// file's old pid is overwritten. The pid is written but never synced: it only names the holder
// to whoever is refused, while the holder lives.
func LockDir(fsys vfs.FS, dir string) (*DirLock, error) {
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	path := filepath.Join(dir, LockName)
	f, err := fsys.Lock(path)
	if errors.Is(err, vfs.ErrLocked) {
		return nil, &InUseError{Dir: dir, PID: lockHolder(fsys, path)}
	}
	if err != nil {
		return nil, fmt.Errorf("archive: locking the data directory: %w", err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("archive: writing the pid into %s: %w", path, err)
	}
	return &DirLock{f: f}, nil
}

// lockHolder reads the pid the lock's holder wrote into path: 0 if there is none.
func lockHolder(fsys vfs.FS, path string) int {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, lockPIDBytesMax))
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
