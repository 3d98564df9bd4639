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
	"syscall"
	"testing"
)

var allModes = []CrashMode{CrashDrop, CrashTruncate, CrashTear, CrashReorder}

func modeName(m CrashMode) string {
	return [...]string{"drop", "truncate", "tear", "reorder"}[m]
}

func mustWriteAt(t *testing.T, f File, b []byte, off int64) {
	t.Helper()
	if n, err := f.WriteAt(b, off); err != nil || n != len(b) {
		t.Fatalf("write %d bytes at %d: %d, %v", len(b), off, n, err)
	}
}

func mustSync(t *testing.T, f File) {
	t.Helper()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// contents reads a whole file of m, or nil if it does not exist.
func contents(t *testing.T, m FS, name string) []byte {
	t.Helper()
	f, err := m.OpenFile(name, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// A file's history before a crash: synced bytes, then unsynced writes (the "data" a reader saw).
type history struct {
	name          string
	synced, data  []byte
	writes        func(t *testing.T, rng *rand.Rand, f File) // the unsynced writes
	allSyncedKept bool                                       // no unsynced write touched a synced byte
}

// histories covers appends past the synced end, overwrites in place (a zero-filled file written
// into, written data zero-filled again), a cut and re-extended tail (truncate down and up) and a
// shrink that was never synced.
func histories() []history {
	return []history{
		{name: "append", writes: func(t *testing.T, rng *rand.Rand, f File) {
			mustWriteAt(t, f, randBytes(rng, 3000), 1500)
		}, allSyncedKept: true},
		{name: "append-with-gap", writes: func(t *testing.T, rng *rand.Rand, f File) {
			mustWriteAt(t, f, randBytes(rng, 700), 4000) // bytes 1500..4000 read as zeros
		}, allSyncedKept: true},
		{name: "overwrite-in-place", writes: func(t *testing.T, rng *rand.Rand, f File) {
			mustWriteAt(t, f, randBytes(rng, 1000), 200)
			mustWriteAt(t, f, randBytes(rng, 900), 1300)
		}},
		{name: "zero-fill-again", writes: func(t *testing.T, rng *rand.Rand, f File) {
			mustWriteAt(t, f, make([]byte, 1500), 0)
		}},
		{name: "cut-and-regrow", writes: func(t *testing.T, rng *rand.Rand, f File) {
			if err := f.Truncate(700); err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(2500); err != nil {
				t.Fatal(err)
			}
			mustWriteAt(t, f, randBytes(rng, 100), 2500)
		}},
		{name: "shrink", writes: func(t *testing.T, rng *rand.Rand, f File) {
			if err := f.Truncate(333); err != nil {
				t.Fatal(err)
			}
		}},
	}
}

// run makes the history on a fresh Mem: 1500 synced bytes of /d/f (name synced), then the
// unsynced writes; it returns the Mem and the synced and current bytes.
func (h history) run(t *testing.T, rng *rand.Rand) (*Mem, []byte, []byte) {
	m := NewMem()
	if err := m.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := m.OpenFile("/d/f", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	synced := randBytes(rng, 1500)
	mustWriteAt(t, f, synced, 0)
	mustSync(t, f)
	if err := m.SyncDir("/d"); err != nil {
		t.Fatal(err)
	}
	h.writes(t, rng, f)
	return m, synced, contents(t, m, "/d/f")
}

// prefixShape reports whether got is data up to some point p at or after the first unsynced
// byte, then the synced bytes from p on (CrashTruncate); with tear, up to 512 bytes from p on may
// be anything (CrashTear).
func prefixShape(got, synced, data []byte, tear bool) bool {
	start := 0
	for start < len(synced) && start < len(data) && synced[start] == data[start] {
		start++
	}
	for p := start; p <= max(len(data), len(synced)); p++ {
		want := slices.Clone(data[:min(p, len(data))])
		if p < len(synced) {
			want = append(want, synced[len(want):]...)
		}
		if len(want) < len(got) && tear {
			want = append(want, make([]byte, len(got)-len(want))...) // torn bytes past the end
		}
		if len(want) != len(got) {
			continue
		}
		ok := true
		for i := range got {
			if got[i] != want[i] && !(tear && i >= p && i < p+512) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// blockShape checks CrashReorder's promise: every block holds the disk's old bytes (synced, or
// zeros past them) or the new ones, except at most one torn block, whose other bytes lie only
// in its written range; the file ends at its synced length or at the end of an unsynced block,
// and no block that came back new lies past its end. It returns which unsynced blocks came out
// new and which old (blocks whose old and new bytes are equal count as old), and whether one was
// torn.
func blockShape(t *testing.T, got, synced, data []byte) (kept, lost []int, torn bool) {
	t.Helper()
	old := make([]byte, max(len(data), len(synced)))
	copy(old, synced)
	nd := &node{synced: synced, data: data}
	tornBlocks, ends := 0, []int{len(synced)}
	for b := 0; b < len(old) && b < len(got); b += ReorderBlockBytes {
		e := min(b+ReorderBlockBytes, len(old))
		lo, hi := b, b
		if b < len(data) {
			lo, hi = dirtyRange(nd, b)
		}
		g := got[b:min(e, len(got))]
		if lo == hi { // clean: the disk's bytes
			if !bytes.Equal(g, old[b:b+len(g)]) {
				t.Fatalf("clean block at %d changed", b)
			}
			continue
		}
		de := min(e, len(data))
		ends = append(ends, de)
		switch {
		case bytes.Equal(g, old[b:b+len(g)]):
			lost = append(lost, b)
		case len(g) == de-b && bytes.Equal(g, data[b:de]):
			kept = append(kept, b)
		case len(g) == de-b:
			tornBlocks++
			for k := b; k < de; k++ {
				if g[k-b] != data[k] && (k < lo || k >= hi) {
					t.Fatalf("torn block at %d: byte %d outside the written range %d..%d differs", b, k, lo, hi)
				}
			}
		default:
			t.Fatalf("block at %d is neither old nor new, and cut short", b)
		}
	}
	if tornBlocks > 1 {
		t.Fatalf("%d torn blocks, at most one allowed", tornBlocks)
	}
	if !slices.Contains(ends, len(got)) {
		t.Fatalf("length %d is neither the synced %d nor the end of an unsynced block", len(got), len(synced))
	}
	return kept, lost, tornBlocks == 1
}

// Every mode keeps synced data exactly, and unsynced data only in the shape the mode allows.
func TestCrashModesKeepSyncedAndShapeUnsynced(t *testing.T) {
	for _, mode := range allModes {
		for _, h := range histories() {
			t.Run(modeName(mode)+"/"+h.name, func(t *testing.T) {
				holes, torn := 0, 0 // reorder: a later block came back while an earlier one did not; tears
				for seed := uint64(1); seed <= 100; seed++ {
					rng := rand.New(rand.NewPCG(seed, 2))
					m, synced, data := h.run(t, rng)
					m.Crash(rng, mode)
					got := contents(t, m, "/d/f")
					if h.allSyncedKept && (len(got) < len(synced) || !bytes.Equal(got[:len(synced)], synced)) {
						t.Fatalf("seed %d: synced bytes lost (%d of %d bytes left)", seed, len(got), len(synced))
					}
					switch mode {
					case CrashDrop:
						if !bytes.Equal(got, synced) {
							t.Fatalf("seed %d: drop kept unsynced data", seed)
						}
					case CrashTruncate, CrashTear:
						if !prefixShape(got, synced, data, mode == CrashTear) {
							t.Fatalf("seed %d: %d bytes are not a prefix of the writes over the synced bytes", seed, len(got))
						}
					case CrashReorder:
						kept, lost, tore := blockShape(t, got, synced, data)
						if len(lost) > 0 && len(kept) > 0 && lost[0] < kept[len(kept)-1] {
							holes++
						}
						if tore {
							torn++
						}
					}
				}
				if mode == CrashReorder && h.name != "shrink" && h.name != "zero-fill-again" && (holes == 0 || torn == 0) {
					t.Fatalf("in 100 seeds: %d crashes where a later block survived an earlier lost one, %d torn blocks", holes, torn)
				}
			})
		}
	}
}

// A crash is a function of the seed.
func TestCrashIsDeterministic(t *testing.T) {
	for _, mode := range allModes {
		var first []byte
		for range 2 {
			rng := rand.New(rand.NewPCG(9, 9))
			m, _, _ := histories()[2].run(t, rng)
			m.Crash(rng, mode)
			got := contents(t, m, "/d/f")
			if first != nil && !bytes.Equal(got, first) {
				t.Fatalf("%s: two crashes from the same seed differ", modeName(mode))
			}
			first = got
		}
	}
}

// Creates, renames and removes survive a crash once the directory was synced, and only then.
func TestCrashDirectoryOperations(t *testing.T) {
	setup := func(t *testing.T) *Mem {
		m := NewMem()
		_ = m.MkdirAll("/d", 0o755)
		f, err := m.OpenFile("/d/old", os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		mustWriteAt(t, f, []byte("durable"), 0)
		mustSync(t, f)
		if err := m.SyncDir("/d"); err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name   string
		op     func(m *Mem) error
		before []string // names after a crash without SyncDir
		after  []string // names after a crash with SyncDir
	}{
		{"create", func(m *Mem) error {
			f, err := m.OpenFile("/d/new", os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
			if err == nil {
				_, err = f.Write([]byte("x"))
			}
			if err == nil {
				err = f.Sync() // the data is synced, the name is not
			}
			return err
		}, []string{"old"}, []string{"new", "old"}},
		{"rename", func(m *Mem) error { return m.Rename("/d/old", "/d/renamed") }, []string{"old"}, []string{"renamed"}},
		{"remove", func(m *Mem) error { return m.Remove("/d/old") }, []string{"old"}, nil},
	}
	for _, tc := range tests {
		for _, syncDir := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/syncdir=%v", tc.name, syncDir), func(t *testing.T) {
				m := setup(t)
				if err := tc.op(m); err != nil {
					t.Fatal(err)
				}
				want := tc.before
				if syncDir {
					want = tc.after
					if err := m.SyncDir("/d"); err != nil {
						t.Fatal(err)
					}
				}
				m.Crash(rand.New(rand.NewPCG(1, 1)), CrashReorder)
				got, err := m.ReadDir("/d")
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("names after the crash %v, want %v", got, want)
				}
				for _, n := range got {
					if n != "new" && string(contents(t, m, "/d/"+n)) != "durable" {
						t.Fatalf("%s lost its synced data", n)
					}
				}
			})
		}
	}
}

func TestStaleHandleAfterCrash(t *testing.T) {
	m := NewMem()
	f, err := m.OpenFile("/f", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	mustWriteAt(t, f, []byte("abc"), 0)
	m.Crash(rand.New(rand.NewPCG(1, 1)), CrashDrop)
	calls := map[string]func() error{
		"read":     func() error { _, err := f.Read(make([]byte, 1)); return err },
		"readat":   func() error { _, err := f.ReadAt(make([]byte, 1), 0); return err },
		"write":    func() error { _, err := f.Write([]byte("x")); return err },
		"writeat":  func() error { _, err := f.WriteAt([]byte("x"), 0); return err },
		"sync":     f.Sync,
		"truncate": func() error { return f.Truncate(0) },
		"size":     func() error { _, err := f.Size(); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrStaleHandle) {
			t.Errorf("%s on a handle from before the crash: %v, want ErrStaleHandle", name, err)
		}
	}
}

// A full disk: the write that does not fit writes what does and reports ENOSPC.
func TestSpaceLimit(t *testing.T) {
	m := NewMem()
	m.SetSpaceLimit(1000)
	f, err := m.OpenFile("/f", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	mustWriteAt(t, f, bytes.Repeat([]byte{1}, 600), 0)
	n, err := f.WriteAt(bytes.Repeat([]byte{2}, 600), 600)
	if !errors.Is(err, syscall.ENOSPC) || n != 400 {
		t.Fatalf("write past the limit: %d bytes, %v; want 400, ENOSPC", n, err)
	}
	if size, _ := f.Size(); size != 1000 {
		t.Fatalf("size %d after a partial write, want 1000", size)
	}
	if _, err := f.WriteAt([]byte{3, 3}, 10); err != nil {
		t.Fatalf("overwriting within the file needs no space: %v", err)
	}
	if err := f.Truncate(1001); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("growing by truncate past the limit: %v, want ENOSPC", err)
	}
	if err := f.Truncate(500); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{4}, 500), 500); err != nil {
		t.Fatalf("space freed by a truncate is usable again: %v", err)
	}
}

// A failed sync drops the dirty pages (Linux after a writeback error): a reader sees the synced
// bytes, the next sync "succeeds" without the lost writes, and a crash keeps the synced bytes.
func TestInjectSyncErrorDropsDirtyPages(t *testing.T) {
	m := NewMem()
	f, err := m.OpenFile("/f", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	_ = m.SyncDir("/")
	mustWriteAt(t, f, []byte("synced"), 0)
	mustSync(t, f)
	mustWriteAt(t, f, []byte("-lost-"), 6)
	m.InjectSyncError(2, syscall.EIO) // the second sync from now fails
	mustSync(t, f)                    // the first succeeds: "-lost-" is durable after all
	mustWriteAt(t, f, []byte("dropped"), 12)
	syncs := m.Syncs
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("injected sync error: %v", err)
	}
	if m.Syncs != syncs {
		t.Fatal("a failed sync was counted")
	}
	if got := string(contents(t, m, "/f")); got != "synced-lost-" {
		t.Fatalf("after the failed sync a reader sees %q", got)
	}
	mustSync(t, f)
	m.Crash(rand.New(rand.NewPCG(1, 1)), CrashReorder)
	if got := string(contents(t, m, "/f")); got != "synced-lost-" {
		t.Fatalf("after the failed sync, a sync and a crash: %q (the dropped write came back)", got)
	}
}

// The contract both file systems share, run against the model and the real one.
func TestMemBehavesLikeOS(t *testing.T) {
	type step struct {
		name string
		do   func(fsys FS, dir string) (string, error) // an observation to compare
	}
	at := func(dir, name string) string { return filepath.Join(dir, name) }
	read := func(fsys FS, path string) (string, error) {
		f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
		if err != nil {
			return "", err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		return string(b), err
	}
	steps := []step{
		{"open missing", func(fsys FS, dir string) (string, error) {
			_, err := fsys.OpenFile(at(dir, "a"), os.O_RDONLY, 0)
			return fmt.Sprint(errors.Is(err, fs.ErrNotExist)), nil
		}},
		{"create and write", func(fsys FS, dir string) (string, error) {
			f, err := fsys.OpenFile(at(dir, "a"), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
			if err != nil {
				return "", err
			}
			defer f.Close()
			n, err := f.Write([]byte("hello world"))
			if err != nil {
				return "", err
			}
			size, err := f.Size()
			return fmt.Sprint(n, size), err
		}},
		{"create exclusive again", func(fsys FS, dir string) (string, error) {
			_, err := fsys.OpenFile(at(dir, "a"), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
			return fmt.Sprint(errors.Is(err, fs.ErrExist)), nil
		}},
		{"read at and past the end", func(fsys FS, dir string) (string, error) {
			f, err := fsys.OpenFile(at(dir, "a"), os.O_RDONLY, 0)
			if err != nil {
				return "", err
			}
			defer f.Close()
			b := make([]byte, 8)
			n1, err1 := f.ReadAt(b, 6)
			n2, err2 := f.ReadAt(b, 11)
			return fmt.Sprint(n1, string(b[:n1]), err1 == io.EOF, n2, err2 == io.EOF), nil
		}},
		{"write at past the end leaves zeros", func(fsys FS, dir string) (string, error) {
			f, err := fsys.OpenFile(at(dir, "a"), os.O_RDWR, 0)
			if err != nil {
				return "", err
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("!"), 14); err != nil {
				return "", err
			}
			s, err := read(fsys, at(dir, "a"))
			return fmt.Sprintf("%q", s), err
		}},
		{"append", func(fsys FS, dir string) (string, error) {
			f, err := fsys.OpenFile(at(dir, "a"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return "", err
			}
			defer f.Close()
			if _, err := f.Write([]byte("++")); err != nil {
				return "", err
			}
			s, err := read(fsys, at(dir, "a"))
			return fmt.Sprintf("%q", s), err
		}},
		{"truncate down and up", func(fsys FS, dir string) (string, error) {
			f, err := fsys.OpenFile(at(dir, "a"), os.O_RDWR, 0)
			if err != nil {
				return "", err
			}
			defer f.Close()
			if err := f.Truncate(5); err != nil {
				return "", err
			}
			if err := f.Truncate(7); err != nil {
				return "", err
			}
			if err := f.Sync(); err != nil {
				return "", err
			}
			s, err := read(fsys, at(dir, "a"))
			return fmt.Sprintf("%q", s), err
		}},
		{"open truncating", func(fsys FS, dir string) (string, error) {
			f, err := fsys.OpenFile(at(dir, "b"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
			if err != nil {
				return "", err
			}
			_, _ = f.Write([]byte("first"))
			_ = f.Close()
			if f, err = fsys.OpenFile(at(dir, "b"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644); err != nil {
				return "", err
			}
			_, _ = f.Write([]byte("2nd"))
			_ = f.Close()
			s, err := read(fsys, at(dir, "b"))
			return s, err
		}},
		{"rename over an existing name", func(fsys FS, dir string) (string, error) {
			if err := fsys.Rename(at(dir, "b"), at(dir, "a")); err != nil {
				return "", err
			}
			if err := fsys.SyncDir(dir); err != nil {
				return "", err
			}
			s, err := read(fsys, at(dir, "a"))
			_, serr := fsys.Stat(at(dir, "b"))
			return fmt.Sprint(s, errors.Is(serr, fs.ErrNotExist)), err
		}},
		{"mkdir, readdir, stat", func(fsys FS, dir string) (string, error) {
			if err := fsys.MkdirAll(at(dir, "sub/deeper"), 0o755); err != nil {
				return "", err
			}
			names, err := fsys.ReadDir(dir)
			if err != nil {
				return "", err
			}
			fi, err := fsys.Stat(at(dir, "a"))
			if err != nil {
				return "", err
			}
			di, err := fsys.Stat(at(dir, "sub"))
			if err != nil {
				return "", err
			}
			return fmt.Sprint(names, fi.Name(), fi.Size(), fi.IsDir(), di.IsDir()), nil
		}},
		{"remove, then remove again", func(fsys FS, dir string) (string, error) {
			err1 := fsys.Remove(at(dir, "a"))
			err2 := fsys.Remove(at(dir, "a"))
			names, err := fsys.ReadDir(dir)
			return fmt.Sprint(err1, errors.Is(err2, fs.ErrNotExist), names), err
		}},
		{"read-only handle refuses writes", func(fsys FS, dir string) (string, error) {
			f, err := fsys.OpenFile(at(dir, "c"), os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return "", err
			}
			_ = f.Close()
			if f, err = fsys.OpenFile(at(dir, "c"), os.O_RDONLY, 0); err != nil {
				return "", err
			}
			defer f.Close()
			_, err = f.Write([]byte("x"))
			return fmt.Sprint(err != nil), nil
		}},
		{"closed handle", func(fsys FS, dir string) (string, error) {
			f, err := fsys.OpenFile(at(dir, "c"), os.O_RDWR, 0)
			if err != nil {
				return "", err
			}
			_ = f.Close()
			_, err = f.Write([]byte("x"))
			return fmt.Sprint(errors.Is(err, os.ErrClosed)), nil
		}},
	}
	mem, osDir := NewMem(), t.TempDir()
	memDir := "/data"
	if err := mem.MkdirAll(memDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		want, werr := s.do(OS(), osDir)
		got, gerr := s.do(mem, memDir)
		if (werr == nil) != (gerr == nil) || got != want {
			t.Fatalf("%s: the model gives %q (%v), the os %q (%v)", s.name, got, gerr, want, werr)
		}
	}
}
