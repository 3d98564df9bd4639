package vfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// CrashMode says what a simulated power loss does to data that was written but not synced.
type CrashMode uint8

// Crash modes.
const (
	// CrashDrop loses every unsynced write.
	CrashDrop CrashMode = iota
	// CrashTruncate keeps unsynced writes up to a random point of each file.
	CrashTruncate
	// CrashTear keeps unsynced writes up to a random point and scribbles garbage or zeros over a
	// random part of the unsynced region, as a torn sector write would.
	CrashTear
	// CrashReorder writes unsynced data back out of order, as a page cache does: each unsynced
	// block of ReorderBlockBytes of a file independently reached the disk (it holds what was
	// written) or did not (it holds what the disk had: the synced bytes, or zeros where the file
	// had none, as an allocated but unwritten extent reads). So a later block may survive where
	// an earlier one did not. The file is as long as its synced length or the end of its last
	// block that reached the disk, whichever is larger (a truncation that was not synced is
	// lost). Sometimes one block that reached the disk is torn: a part of what was being written
	// to it (never its synced bytes) holds garbage or zeros.
	CrashReorder
)

// ReorderBlockBytes is the unit CrashReorder writes back. A page cache writes 4 KiB pages; the
// model uses 512 B (a disk sector) because the simulator's log segments are only 2 KiB, and a
// 4 KiB unit would keep or lose a whole segment at once: it could never leave a hole in one.
const ReorderBlockBytes = 512

// ErrStaleHandle is returned by a file handle opened before a crash.
var ErrStaleHandle = errors.New("vfs: file handle from before a crash")

// node is one file's data: what a crash would keep (synced) and what readers see (data).
type node struct {
	synced []byte
	data   []byte
}

// Mem is an in-memory file system that models durability: file data survives a crash only once
// the file was synced, and a created, removed or renamed name only once its directory was
// synced. Safe for concurrent use.
type Mem struct {
	mu sync.Mutex
	// names maps a path to its node as readers see it; syncedNames as a crash would keep it.
	names       map[string]*node
	syncedNames map[string]*node
	dirs        map[string]bool
	epoch       int // bumped by every crash: older handles are stale
	// locks maps a file to the open file that holds its lock (Lock), as flock(2) locks the file,
	// whatever its name. Invariant: every holder is open and of the current epoch (Close and
	// Crash, which ends every process, release).
	locks map[*node]*memFile

	spaceLimit int64 // 0: unlimited
	syncErr    error
	failSyncIn int // the n-th next sync fails (0: none)
	// Syncs counts successful file syncs.
	Syncs int
}

// NewMem returns an empty model file system.
func NewMem() *Mem {
	return &Mem{names: map[string]*node{}, syncedNames: map[string]*node{}, dirs: map[string]bool{"/": true, ".": true},
		locks: map[*node]*memFile{}}
}

// SetSpaceLimit makes writes fail with ENOSPC once the total size of all files would exceed
// limit bytes (0: unlimited). The failing write writes what still fits, like a real disk.
func (m *Mem) SetSpaceLimit(limit int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.spaceLimit = limit
}

// InjectSyncError makes the n-th next file sync (1: the next one) fail with err. As on Linux,
// the failed sync loses the file's unsynced data: retrying would "succeed" without it.
func (m *Mem) InjectSyncError(n int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failSyncIn, m.syncErr = n, err
}

func (m *Mem) used() int64 {
	var n int64
	for _, nd := range m.names {
		n += int64(len(nd.data))
	}
	return n
}

// Crash simulates a power loss: each file keeps its synced data plus, depending on mode, part of
// its unsynced writes; unsynced directory operations are lost. Open handles become stale, and
// every lock is released (the processes that held them are gone; the files stay).
func (m *Mem) Crash(rng *rand.Rand, mode CrashMode) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch++
	clear(m.locks)
	names := map[string]*node{}
	keys := make([]string, 0, len(m.syncedNames))
	for k := range m.syncedNames {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic use of rng
	done := map[*node]*node{}
	for _, name := range keys {
		nd := m.syncedNames[name]
		if nn, ok := done[nd]; ok {
			names[name] = nn
			continue
		}
		nn := &node{synced: crashData(rng, mode, nd)}
		nn.data = slices.Clone(nn.synced)
		done[nd] = nn
		names[name] = nn
	}
	m.names = names
	m.syncedNames = maps(names)
}

func maps(src map[string]*node) map[string]*node {
	dst := make(map[string]*node, len(src))
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

// crashData returns what survives of a file. The unsynced region starts at the first byte where
// data and synced differ.
func crashData(rng *rand.Rand, mode CrashMode, nd *node) []byte {
	start := 0
	for start < len(nd.synced) && start < len(nd.data) && nd.synced[start] == nd.data[start] {
		start++
	}
	end := max(len(nd.data), len(nd.synced))
	if mode == CrashDrop || start >= end {
		return slices.Clone(nd.synced)
	}
	if mode == CrashReorder {
		return crashReorder(rng, nd)
	}
	p := start + rng.IntN(end-start+1) // writes before p reached the disk, later ones did not
	out := slices.Clone(nd.data[:min(p, len(nd.data))])
	if p < len(nd.synced) {
		// The disk's bytes from where the writes stop, at their own offsets (a file cut
		// shorter than p keeps its synced bytes past the cut: the cut did not reach the disk).
		out = append(out, nd.synced[len(out):]...)
	}
	if mode == CrashTear && p < end {
		// A torn write: the sectors being written when the power went hold garbage or zeros.
		n := 1 + rng.IntN(min(512, end-p))
		zero := rng.IntN(2) == 0
		for i := p; i < p+n; i++ {
			b := byte(0)
			if !zero {
				b = byte(rng.Uint32())
			}
			if i < len(out) {
				out[i] = b
			} else {
				out = append(out, b)
			}
		}
	}
	return out
}

// crashReorder is CrashReorder: every unsynced block reached the disk or not, on its own.
func crashReorder(rng *rand.Rand, nd *node) []byte {
	// What the disk had: the synced bytes, and zeros beyond them.
	out := make([]byte, max(len(nd.data), len(nd.synced)))
	copy(out, nd.synced)
	size := len(nd.synced)
	// A block is unsynced if any of its bytes differs from the disk's or lies past the synced
	// length (zeros written to grow the file count: they make it longer).
	var dirty []int
	for b := 0; b < len(nd.data); b += ReorderBlockBytes {
		if lo, hi := dirtyRange(nd, b); lo < hi {
			dirty = append(dirty, b)
		}
	}
	if len(dirty) == 0 {
		return out[:size]
	}
	// How likely a block is to have reached the disk is drawn per file, so that crashes range
	// from "almost nothing written back" to "almost everything, with a few holes".
	keep := rng.Float64()
	torn := -1
	if rng.IntN(2) == 0 {
		torn = rng.IntN(len(dirty))
	}
	for i, b := range dirty {
		if i != torn && rng.Float64() >= keep {
			continue // not written back: the disk's bytes stay
		}
		e := min(b+ReorderBlockBytes, len(nd.data))
		copy(out[b:e], nd.data[b:e])
		size = max(size, e)
		if i == torn {
			// Torn: part of what was being written holds garbage or zeros.
			lo, hi := dirtyRange(nd, b)
			from := lo + rng.IntN(hi-lo)
			to := from + 1 + rng.IntN(hi-from)
			zero := rng.IntN(2) == 0
			for k := from; k < to; k++ {
				out[k] = 0
				if !zero {
					out[k] = byte(rng.Uint32())
				}
			}
		}
	}
	return out[:size]
}

// dirtyRange returns the part [lo, hi) of the block at b (within the file's current data) that
// was written since the last sync: from its first to its last byte that differs from the synced
// bytes or lies past them. lo == hi: the block is clean.
func dirtyRange(nd *node, b int) (lo, hi int) {
	e := min(b+ReorderBlockBytes, len(nd.data))
	differs := func(k int) bool { return k >= len(nd.synced) || nd.data[k] != nd.synced[k] }
	lo, hi = b, e
	for lo < e && !differs(lo) {
		lo++
	}
	for hi > lo && !differs(hi-1) {
		hi--
	}
	return lo, hi
}

func clean(name string) string { return filepath.Clean(name) }

func (m *Mem) dirExists(dir string) bool {
	dir = clean(dir)
	return m.dirs[dir] || dir == "." || dir == "/"
}

// OpenFile implements FS.
func (m *Mem) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = clean(name)
	if !m.dirExists(filepath.Dir(name)) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	nd, ok := m.names[name]
	switch {
	case !ok && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !ok:
		nd = &node{}
		m.names[name] = nd
	}
	if flag&os.O_TRUNC != 0 {
		nd.data = nd.data[:0]
	}
	f := &memFile{m: m, nd: nd, name: name, epoch: m.epoch, append: flag&os.O_APPEND != 0,
		write: flag&(os.O_WRONLY|os.O_RDWR) != 0}
	return f, nil
}

// Lock implements FS: the model of flock(2), one lock per file held by one open file. A crash
// releases every lock (Crash).
func (m *Mem) Lock(name string) (File, error) {
	f, err := m.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	mf := f.(*memFile)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := mf.check(); err != nil { // a crash came between the open and here
		return nil, err
	}
	if _, held := m.locks[mf.nd]; held {
		mf.closed = true
		return nil, fmt.Errorf("lock %s: %w", mf.name, ErrLocked)
	}
	m.locks[mf.nd] = mf
	return mf, nil
}

// Remove implements FS.
func (m *Mem) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = clean(name)
	if _, ok := m.names[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.names, name)
	return nil
}

// Rename implements FS.
func (m *Mem) Rename(oldName, newName string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	oldName, newName = clean(oldName), clean(newName)
	nd, ok := m.names[oldName]
	if !ok {
		return &fs.PathError{Op: "rename", Path: oldName, Err: fs.ErrNotExist}
	}
	delete(m.names, oldName)
	m.names[newName] = nd
	return nil
}

// MkdirAll implements FS. Directories are durable at once (the archive creates them once).
func (m *Mem) MkdirAll(dir string, perm os.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := clean(dir); d != "." && d != "/"; d = filepath.Dir(d) {
		m.dirs[d] = true
	}
	return nil
}

// ReadDir implements FS.
func (m *Mem) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = clean(dir)
	if !m.dirExists(dir) {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var out []string
	for name := range m.names {
		if filepath.Dir(name) == dir {
			out = append(out, filepath.Base(name))
		}
	}
	for d := range m.dirs {
		if filepath.Dir(d) == dir && d != dir {
			out = append(out, filepath.Base(d))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Stat implements FS.
func (m *Mem) Stat(name string) (os.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = clean(name)
	if nd, ok := m.names[name]; ok {
		return memInfo{name: filepath.Base(name), size: int64(len(nd.data))}, nil
	}
	if m.dirs[name] {
		return memInfo{name: filepath.Base(name), dir: true}, nil
	}
	return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
}

// SyncDir implements FS: the directory's current names become the ones a crash keeps.
func (m *Mem) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = clean(dir)
	for name := range m.syncedNames {
		if filepath.Dir(name) == dir {
			delete(m.syncedNames, name)
		}
	}
	for name, nd := range m.names {
		if filepath.Dir(name) == dir {
			m.syncedNames[name] = nd
		}
	}
	return nil
}

// Files returns every file name with its size (for tests: disk usage).
func (m *Mem) Files() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int64{}
	for name, nd := range m.names {
		out[name] = int64(len(nd.data))
	}
	return out
}

// Corrupt lets a test change a file's bytes in place, synced and current alike.
func (m *Mem) Corrupt(name string, f func(data []byte) []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	nd := m.names[clean(name)]
	nd.data = f(nd.data)
	nd.synced = slices.Clone(nd.data)
}

type memInfo struct {
	name string
	size int64
	dir  bool
}

func (i memInfo) Name() string { return i.name }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() os.FileMode {
	if i.dir {
		return os.ModeDir | 0o755
	}
	return 0o644
}
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }

type memFile struct {
	m      *Mem
	nd     *node
	name   string
	epoch  int
	off    int64
	append bool
	write  bool
	closed bool
}

func (f *memFile) check() error {
	if f.closed {
		return os.ErrClosed
	}
	if f.epoch != f.m.epoch {
		return ErrStaleHandle
	}
	return nil
}

func (f *memFile) Name() string { return f.name }

func (f *memFile) Read(p []byte) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if f.off >= int64(len(f.nd.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.nd.data[f.off:])
	f.off += int64(n)
	return n, nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if off >= int64(len(f.nd.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.nd.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if !f.write {
		return 0, fmt.Errorf("vfs: %s not open for writing", f.name)
	}
	if f.append {
		f.off = int64(len(f.nd.data))
	}
	end := f.off + int64(len(p))
	grow := end - int64(len(f.nd.data))
	var err error
	if f.m.spaceLimit > 0 && grow > 0 && f.m.used()+grow > f.m.spaceLimit {
		fit := f.m.spaceLimit - f.m.used()
		p = p[:max(0, int64(len(p))-(grow-fit))]
		end = f.off + int64(len(p))
		err = &fs.PathError{Op: "write", Path: f.name, Err: syscall.ENOSPC}
	}
	if end > int64(len(f.nd.data)) {
		f.nd.data = append(f.nd.data, make([]byte, end-int64(len(f.nd.data)))...)
	}
	copy(f.nd.data[f.off:], p)
	f.off = end
	return len(p), err
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	saved := f.off
	f.off = off
	app := f.append
	f.append = false
	f.m.mu.Unlock()
	n, err := f.Write(p)
	f.m.mu.Lock()
	f.off, f.append = saved, app
	f.m.mu.Unlock()
	return n, err
}

func (f *memFile) Sync() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	if f.m.failSyncIn > 0 {
		f.m.failSyncIn--
		if f.m.failSyncIn == 0 {
			// Linux after a writeback error: the dirty pages are dropped.
			f.nd.data = slices.Clone(f.nd.synced)
			return &fs.PathError{Op: "sync", Path: f.name, Err: f.m.syncErr}
		}
	}
	f.nd.synced = slices.Clone(f.nd.data)
	f.m.Syncs++
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	if size <= int64(len(f.nd.data)) {
		f.nd.data = f.nd.data[:size]
		return nil
	}
	grow := size - int64(len(f.nd.data))
	if f.m.spaceLimit > 0 && f.m.used()+grow > f.m.spaceLimit {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: syscall.ENOSPC}
	}
	f.nd.data = append(f.nd.data, make([]byte, grow)...)
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	return int64(len(f.nd.data)), nil
}

func (f *memFile) Close() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	f.closed = true
	if f.m.locks[f.nd] == f {
		delete(f.m.locks, f.nd)
	}
	return nil
}

// String describes the model for debugging.
func (m *Mem) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	for name, nd := range m.names {
		fmt.Fprintf(&b, "%s: %d bytes (%d synced)\n", name, len(nd.data), len(nd.synced))
	}
	return b.String()
}

// UnsyncedFiles returns, sorted, the files directly in dir whose data differs from what a crash
// would keep of it (written or cut since their last sync). Names not yet made durable by a
// directory sync are not counted: only file data. A test checks with it that a storage's sync
// made durable what it wrote.
func (m *Mem) UnsyncedFiles(dir string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = clean(dir)
	var out []string
	for name, nd := range m.names {
		if filepath.Dir(name) == dir && !bytes.Equal(nd.data, nd.synced) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
