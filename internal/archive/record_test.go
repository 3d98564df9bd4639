package archive

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func FuzzParseRecord(f *testing.F) {
	f.Add(appendRecord(nil, recEntry, []byte("payload")))
	f.Add(appendRecord(nil, recHeader, encodeHeader(segmentV2, 1, 0, false)))
	f.Add(appendRecord(nil, recHeader, encodeHeader(segmentV1, 1, 0, false)))
	f.Add(appendRecord(nil, recSynced, binary.LittleEndian.AppendUint64(nil, 0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		var off int64
		for i := 0; i < 1000 && off < int64(len(b)); i++ {
			typ, payload, next, ok, _ := parseRecord(b, off)
			if !ok {
				break
			}
			if next <= off || !bytes.Equal(appendRecord(nil, typ, payload), b[off:next]) {
				t.Fatalf("record at %d does not re-encode to its bytes", off)
			}
			off = next
		}
		// The linear scan finds what parseRecord at every offset finds.
		for _, maxType := range []uint8{recHardState, recSynced} {
			p, found := validRecordAfter(b, 0, maxType)
			wantP, wantFound := naiveValidRecordAfter(b, 0, maxType)
			if found != wantFound || p != wantP {
				t.Fatalf("validRecordAfter(max type %d) = %d, %v; parsing every offset finds %d, %v", maxType, p, found, wantP, wantFound)
			}
		}
		_, _, _, _, _ = decodeHeader(b)
	})
}
