package archive

import (
	"encoding/binary"
	"hash/crc32"
	"sync"
	"sync/atomic"
)

// Recovery must know whether a valid record starts anywhere after a bad one: such a record is
// looked for at every byte offset. Checking the CRC of what each offset's header claims, as
// parseRecord does, costs up to the claimed length, so a tail of crafted bytes (a client's
// command is written verbatim into the log) where every fifth offset claims a record running to
// the end of the segment cost time quadratic in its size (timings in docs/RELIABILITY.md). The
// scan below costs a bounded amount per offset, whatever the claimed length, because CRC-32C is
// linear:
//
//	with Q[i] the CRC register after the bytes b[o:i] from a zero start, and S(v, n) the
//	register v after n more zero bytes (v·x^(8n) modulo the polynomial), the record at p with
//	type t, length n and payload b[p+9:e], e = p+9+n, has the checksum
//	S(T[t] ^ Q[p+9], n) ^ Q[e] ^ 0xffffffff, where T[t] is the register after the type byte
//	from crc32's initial value.
//
// Q is kept every scanStrideBytes (a quarter of the scanned bytes in memory, for the scan's
// duration) and completed from there by at most scanStrideBytes-1 bytes; S costs two
// multiplications in GF(2)[x] by tabled powers of x. Records of up to scanDirectBytes are still
// checked directly (cheaper).

// scanStrideBytes is the distance between the scan's stored CRC registers.
const scanStrideBytes = 16

// scanDirectBytes: a record claiming at most this many payload bytes is checked by hashing them.
const scanDirectBytes = 256

// scanPowBits: x^(8n) is the product of a table entry for the low scanPowBits bits of n and one
// for the rest.
const scanPowBits = 12

// scanWork counts the bytes hashed and the multiplications made by scans, for the tests that
// show the scan's cost is linear.
var scanWork atomic.Int64

// gfMul returns a·b modulo the CRC-32C polynomial, both in hash/crc32's bit order (bit 31 is the
// coefficient of x^0).
func gfMul(a, b uint32) uint32 {
	var p uint32
	for i := 31; i >= 0; i-- {
		p ^= b & -(a >> i & 1)
		b = b>>1 ^ crc32.Castagnoli&-(b&1) // b·x
	}
	return p
}

// crcZero advances the CRC register v by one zero byte: v·x^8.
func crcZero(v uint32) uint32 { return castagnoli[byte(v)] ^ v>>8 }

// crcRaw advances the CRC register v over p (no pre- or post-inversion).
func crcRaw(v uint32, p []byte) uint32 { return ^crc32.Update(^v, castagnoli, p) }

// powLow[k] is x^(8k) for k < 1<<scanPowBits.
var powLow = sync.OnceValue(func() []uint32 {
	t := make([]uint32, 1<<scanPowBits)
	t[0] = 1 << 31
	for k := 1; k < len(t); k++ {
		t[k] = crcZero(t[k-1])
	}
	return t
})

// recordScan finds valid records after a bad one in b.
type recordScan struct {
	b      []byte
	origin int64
	// regs[j] is the register Q at origin + j*scanStrideBytes, powHigh[j] is
	// x^(8·j<<scanPowBits); both are made when a first record too long to hash directly needs
	// them (a tail of zeros, the common case, never does).
	regs    []uint32
	powHigh []uint32
	work    int64
}

// tables makes regs and powHigh, once.
func (sc *recordScan) tables() {
	if sc.regs != nil {
		return
	}
	b, n := sc.b, int64(len(sc.b))-sc.origin
	sc.regs = make([]uint32, 0, n/scanStrideBytes+1)
	var v uint32
	for i := sc.origin; ; i += scanStrideBytes {
		sc.regs = append(sc.regs, v)
		if i >= int64(len(b)) {
			break
		}
		v = crcRaw(v, b[i:min(i+scanStrideBytes, int64(len(b)))])
	}
	step := crcZero(powLow()[len(powLow())-1]) // x^(8<<scanPowBits)
	sc.powHigh = make([]uint32, n>>scanPowBits+1)
	sc.powHigh[0] = 1 << 31
	for j := 1; j < len(sc.powHigh); j++ {
		sc.powHigh[j] = gfMul(sc.powHigh[j-1], step)
	}
	sc.work += n + int64(len(sc.powHigh))
}

// reg returns Q at i (origin <= i <= len(b)).
func (sc *recordScan) reg(i int64) uint32 {
	j := (i - sc.origin) / scanStrideBytes
	from := sc.origin + j*scanStrideBytes
	sc.work += i - from
	return crcRaw(sc.regs[j], sc.b[from:i])
}

// typeRegs[t] is the CRC register after the type byte t from crc32's initial value.
var typeRegs = sync.OnceValue(func() [256]uint32 {
	var t [256]uint32
	for i := range t {
		t[i] = crcRaw(^uint32(0), []byte{byte(i)})
	}
	return t
})

// valid reports whether a record of a type up to maxType starts at p, exactly as parseRecord
// would find it.
func (sc *recordScan) valid(p int64, maxType uint8) bool {
	b := sc.b
	if int64(len(b))-p < recordHeaderBytes {
		return false
	}
	n := int64(binary.LittleEndian.Uint32(b[p:]))
	typ := b[p+4]
	if typ < recHeader || typ > maxType || n > maxRecordBytes || n > int64(len(b))-p-recordHeaderBytes {
		return false // cheap: most garbage ends here
	}
	if n <= scanDirectBytes {
		sc.work += n + 1
		_, _, _, ok, _ := parseRecord(b, p)
		return ok
	}
	sc.tables()
	start := p + recordHeaderBytes
	v := typeRegs()[typ] ^ sc.reg(start)
	v = gfMul(gfMul(v, powLow()[n&(1<<scanPowBits-1)]), sc.powHigh[n>>scanPowBits])
	sc.work += 2
	return v^sc.reg(start+n)^0xffffffff == binary.LittleEndian.Uint32(b[p+5:])
}

// validRecordAfter returns the first offset after off where a valid record of a type up to
// maxType starts: then a bad record at off is damage in the middle of the log, not a torn tail.
// Its cost is linear in len(b)-off.
func validRecordAfter(b []byte, off int64, maxType uint8) (int64, bool) {
	if off+1 >= int64(len(b)) {
		return 0, false
	}
	sc := &recordScan{b: b, origin: off + 1}
	defer func() { scanWork.Add(sc.work) }()
	for p := off + 1; p+recordHeaderBytes <= int64(len(b)); p++ {
		if sc.valid(p, maxType) {
			return p, true
		}
	}
	return 0, false
}

// syncedRecordAfter returns the first synced record after off that lies at the offset it names,
// as every synced record the archive writes does (one that does not is not one of ours: bytes of
// a payload, say, and is passed over). It checks 17 bytes at offsets that look like one: linear.
func syncedRecordAfter(b []byte, off int64) (at int64, found bool) {
	for p := off + 1; p+syncedRecordBytes <= int64(len(b)); p++ {
		if binary.LittleEndian.Uint32(b[p:]) != syncedPayloadBytes || b[p+4] != recSynced {
			continue
		}
		if _, payload, _, ok, _ := parseRecord(b, p); ok && syncedOffset(payload) == p {
			return p, true
		}
	}
	return 0, false
}
