package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Segment format versions (a segment header's first byte). Version 2 adds the synced record, and
// with it a recovery that tells an unsynced tail with holes from damage to synced data (see
// doc.go). Version 3 adds the allocated record, with which recovery tells a segment cut short
// from a crash. Segments of older versions, written by older builds, are read with the rules of
// their time.
const (
	segmentV1 uint8 = 1
	segmentV2 uint8 = 2
	segmentV3 uint8 = 3
)

// segmentVersionWritten is the version of the segments this build writes (a variable only so
// that tests can write version-1 segments as an older build did).
var segmentVersionWritten = segmentV3

// Record types.
const (
	recHeader    uint8 = 1
	recEntry     uint8 = 2
	recHardState uint8 = 3
	recSynced    uint8 = 4 // version 2 on
	recAllocated uint8 = 5 // version 3 on
)

// recTypeMax is the highest record type of a segment of the given version.
func recTypeMax(version uint8) uint8 {
	switch {
	case version >= segmentV3:
		return recAllocated
	case version >= segmentV2:
		return recSynced
	}
	return recHardState
}

// syncedPayloadBytes is a synced record's payload (the offset it vouches for, u64), and
// syncedRecordBytes the whole record.
const (
	syncedPayloadBytes = 8
	syncedRecordBytes  = recordHeaderBytes + syncedPayloadBytes
)

// allocatedPayloadBytes is an allocated record's payload (the size it vouches for, u64), and
// allocatedRecordBytes the whole record.
const (
	allocatedPayloadBytes = 8
	allocatedRecordBytes  = recordHeaderBytes + allocatedPayloadBytes
)

const recordHeaderBytes = 4 + 1 + 4

// maxRecordBytes bounds one record; a larger length field is corruption, not a reason to
// allocate.
const maxRecordBytes = 256 << 20

// appendRecord appends to dst a record of type typ carrying payload.
func appendRecord(dst []byte, typ uint8, payload []byte) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, typ, 0, 0, 0, 0)
	dst = append(dst, payload...)
	// The CRC is taken over dst's own bytes, so that neither the type byte nor the payload is
	// moved to the heap for crc32 (an allocation per record on the append path).
	crc := crc32.Update(crc32.Update(0, castagnoli, dst[start+4:start+5]), castagnoli, dst[start+recordHeaderBytes:])
	binary.LittleEndian.PutUint32(dst[start+5:], crc)
	return dst
}

// parseRecord parses the record at off. ok=false means no valid record there; end=true means
// the zero end marker.
func parseRecord(b []byte, off int64) (typ uint8, payload []byte, next int64, ok, end bool) {
	if int64(len(b))-off < recordHeaderBytes {
		return 0, nil, 0, false, allZero(b[off:])
	}
	h := b[off : off+recordHeaderBytes]
	n := binary.LittleEndian.Uint32(h)
	typ = h[4]
	crc := binary.LittleEndian.Uint32(h[5:])
	if n == 0 && typ == 0 && crc == 0 {
		return 0, nil, 0, false, true
	}
	if n > maxRecordBytes || int64(n) > int64(len(b))-off-recordHeaderBytes || typ < recHeader || typ > recAllocated {
		return 0, nil, 0, false, false
	}
	payload = b[off+recordHeaderBytes : off+recordHeaderBytes+int64(n)]
	if crc32.Update(crc32.Update(0, castagnoli, b[off+4:off+5]), castagnoli, payload) != crc {
		return 0, nil, 0, false, false
	}
	return typ, payload, off + recordHeaderBytes + int64(n), true, false
}

// allZero reports whether b holds only zeros.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// headerPayloadBytes is a segment header's payload: version u8 | first index u64 | prev term u64 |
// reset u8.
const headerPayloadBytes = 1 + 8 + 8 + 1

// encodeHeader returns a segment header's payload.
func encodeHeader(version uint8, first, prevTerm uint64, reset bool) []byte {
	b := []byte{version}
	b = binary.LittleEndian.AppendUint64(b, first)
	b = binary.LittleEndian.AppendUint64(b, prevTerm)
	r := uint8(0)
	if reset {
		r = 1
	}
	return append(b, r)
}

// decodeHeader reads a segment header's payload, refusing a version this build cannot read.
func decodeHeader(p []byte) (version uint8, first, prevTerm uint64, reset bool, err error) {
	if len(p) != headerPayloadBytes || p[17] > 1 {
		return 0, 0, 0, false, errors.New("bad segment header")
	}
	if p[0] < segmentV1 || p[0] > segmentV3 {
		return 0, 0, 0, false, fmt.Errorf("segment format %d, this build reads %d to %d", p[0], segmentV1, segmentV3)
	}
	return p[0], binary.LittleEndian.Uint64(p[1:]), binary.LittleEndian.Uint64(p[9:]), p[17] == 1, nil
}

// appendSynced appends to dst a synced record vouching for the bytes before off: it must be
// written at off, the offset it names.
func appendSynced(dst []byte, off int64) []byte {
	var payload [syncedPayloadBytes]byte
	binary.LittleEndian.PutUint64(payload[:], uint64(off))
	return appendRecord(dst, recSynced, payload[:])
}

// syncedOffset is the offset a synced record's payload (of syncedPayloadBytes) names.
func syncedOffset(payload []byte) int64 { return int64(binary.LittleEndian.Uint64(payload)) }

// appendAllocated appends to dst an allocated record: the segment's file was durably at least
// size bytes long (zeros beyond its records, synced) before the record was written.
func appendAllocated(dst []byte, size int64) []byte {
	var payload [allocatedPayloadBytes]byte
	binary.LittleEndian.PutUint64(payload[:], uint64(size))
	return appendRecord(dst, recAllocated, payload[:])
}
