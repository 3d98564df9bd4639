package wire

import "fmt"

// EntryKind is the kind of a log entry's data (the byte after its version byte).
type EntryKind uint8

// Log entry kinds. A kind, like an item kind or a change to how one is applied, belongs to a
// cluster version: it is proposed only once the cluster version allows it (container.doc.go),
// and a member that meets one it does not know stops at that index (never skips it).
const (
	EntryBatch          EntryKind = 1 // client items behind a leader timestamp (Batch)
	EntryClusterVersion EntryKind = 2 // raises the cluster version (cluster version 1 and up)
)

const entryKindBatch = uint8(EntryBatch)

// EntryKindOf returns the kind of a log entry's data, checking its version byte. An unknown kind
// is not an error here: the caller names it with the entry's index.
func EntryKindOf(data []byte) (EntryKind, error) {
	r := &reader{b: data, what: "log entry"}
	r.version()
	k := EntryKind(r.u8())
	return k, r.err
}

// AppendClusterVersion appends the encoding of an entry that raises the cluster version to v:
// version u8 | kind u8 = 2 | cluster version u16.
func AppendClusterVersion(dst []byte, v uint16) []byte {
	dst = append(dst, Version, uint8(EntryClusterVersion))
	return append(dst, byte(v), byte(v>>8))
}

// DecodeClusterVersion decodes an entry that raises the cluster version.
func DecodeClusterVersion(data []byte) (uint16, error) {
	r := &reader{b: data, what: "cluster version entry"}
	r.version()
	if k := EntryKind(r.u8()); r.err == nil && k != EntryClusterVersion {
		r.fail("entry kind %d", k)
	}
	lo, hi := r.u8(), r.u8()
	v := uint16(lo) | uint16(hi)<<8
	if r.err == nil && v == 0 {
		r.fail("cluster version 0")
	}
	if err := r.end(); err != nil {
		return 0, err
	}
	return v, nil
}

// String names the kind.
func (k EntryKind) String() string {
	switch k {
	case EntryBatch:
		return "batch"
	case EntryClusterVersion:
		return "cluster version"
	}
	return fmt.Sprintf("unknown kind %d", uint8(k))
}
