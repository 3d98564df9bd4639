// Package vfs is the file-system seam of the archive: the real os file system in production, and
// a model in tests that keeps synced and unsynced data apart, so a simulated crash can drop, cut,
// tear or write back out of order what was never synced and a test can prove that nothing
// acknowledged was lost.
package vfs

import (
	"errors"
	"io"
	"os"
)

// ErrLocked is returned by FS.Lock when another open file holds the lock.
var ErrLocked = errors.New("vfs: locked by another open file")

// File is an open file.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Closer
	// Sync makes the file's data durable (fdatasync semantics).
	Sync() error
	// Truncate changes the size of the file.
	Truncate(size int64) error
	// Size returns the current size of the file.
	Size() (int64, error)
	// Name is the path the file was opened with.
	Name() string
}

// FS is a file system. Paths use the OS separator.
type FS interface {
	// OpenFile opens a file like os.OpenFile. A file created here survives a crash only once
	// its directory was synced.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Remove removes a file; durable once the directory is synced.
	Remove(name string) error
	// Rename renames a file atomically; durable once the directory is synced.
	Rename(oldName, newName string) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(dir string, perm os.FileMode) error
	// ReadDir returns the names of the entries of dir, sorted.
	ReadDir(dir string) ([]string, error)
	// Stat reports whether name exists and its size.
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes the directory's entries (creates, removes, renames) durable.
	SyncDir(dir string) error
	// Lock opens the file name for reading and writing (creating it) and takes an exclusive
	// advisory lock on it (flock(2)), held until the returned file is closed or the process
	// ends, however it ends: the kernel releases it, the file stays. If another open file holds
	// the lock (in another process, or from another Lock in this one: the lock belongs to the
	// open file, not to the process) it fails at once with an error wrapping ErrLocked. The
	// lock binds only those who take it: reads and writes are not checked.
	Lock(name string) (File, error)
}
