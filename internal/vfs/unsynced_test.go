package vfs

import (
	"os"
	"slices"
	"testing"
)

func TestUnsyncedFiles(t *testing.T) {
	m := NewMem()
	if err := m.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := m.OpenFile("/d/a", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.OpenFile("/d/b", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.UnsyncedFiles("/d"); len(got) != 0 {
		t.Fatalf("empty files reported unsynced: %v", got)
	}
	for _, h := range []File{f, g} {
		if _, err := h.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.UnsyncedFiles("/d"); !slices.Equal(got, []string{"/d/a", "/d/b"}) {
		t.Fatalf("after writes: %v", got)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := m.UnsyncedFiles("/d"); !slices.Equal(got, []string{"/d/b"}) {
		t.Fatalf("after syncing a: %v", got)
	}
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if got := m.UnsyncedFiles("/d"); !slices.Equal(got, []string{"/d/a", "/d/b"}) {
		t.Fatalf("after cutting a: %v", got)
	}
	if got := m.UnsyncedFiles("/"); len(got) != 0 {
		t.Fatalf("files of /d reported for /: %v", got)
	}
}
