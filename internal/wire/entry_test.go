package wire

import (
	"errors"
	"testing"
)

func TestClusterVersionEntry(t *testing.T) {
	b := AppendClusterVersion(nil, 2)
	if k, err := EntryKindOf(b); err != nil || k != EntryClusterVersion {
		t.Fatalf("kind %v, %v", k, err)
	}
	if v, err := DecodeClusterVersion(b); err != nil || v != 2 {
		t.Fatalf("decoded %d, %v", v, err)
	}
	if k, err := EntryKindOf(AppendBatch(nil, &Batch{})); err != nil || k != EntryBatch {
		t.Fatalf("a batch's kind %v, %v", k, err)
	}
	for name, data := range map[string][]byte{
		"version 0":      AppendClusterVersion(nil, 0),
		"truncated":      b[:3],
		"trailing bytes": append(AppendClusterVersion(nil, 2), 0),
		"a batch":        AppendBatch(nil, &Batch{}),
	} {
		if _, err := DecodeClusterVersion(data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// A kind this build does not know is not an error of EntryKindOf (the caller names it with
	// its index), but another version byte is.
	if k, err := EntryKindOf([]byte{Version, 99}); err != nil || k.String() != "unknown kind 99" {
		t.Fatalf("unknown kind: %v, %v", k, err)
	}
	if _, err := EntryKindOf([]byte{Version + 1, 1}); !errors.Is(err, ErrVersion) {
		t.Fatalf("another version byte: %v", err)
	}
}
