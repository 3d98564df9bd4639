package archive

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

// The algebra the scan rests on: x^8 by the table equals x^8 by multiplication, and the register
// after a message is what hashing it gives.
func TestGFArithmetic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for range 1000 {
		v := rng.Uint32()
		if got, want := crcZero(v), gfMul(v, 1<<23); got != want {
			t.Fatalf("v·x^8: table %08x, multiplication %08x", got, want)
		}
		if gfMul(v, 1<<31) != v || gfMul(1<<31, v) != v {
			t.Fatalf("1 is not the unit for %08x", v)
		}
		n := rng.IntN(1 << 16)
		zeros := make([]byte, n)
		shifted := gfMul(gfMul(v, powLow()[n&(1<<scanPowBits-1)]), (&recordScan{}).pow(t, n>>scanPowBits))
		if want := crcRaw(v, zeros); shifted != want {
			t.Fatalf("v·x^(8·%d): %08x, hashing zeros gives %08x", n, shifted, want)
		}
	}
}

func (sc *recordScan) pow(t *testing.T, j int) uint32 {
	t.Helper()
	step := crcZero(powLow()[len(powLow())-1])
	p := uint32(1 << 31)
	for range j {
		p = gfMul(p, step)
	}
	return p
}

// crafted returns bytes in which every record claims to run to the end of b, one record header
// every five bytes, with a type and length that pass every cheap check: the case that made the
// old scan quadratic (and a client can write such bytes into the log: a command is stored
// verbatim).
func crafted(n int) []byte {
	b := make([]byte, n)
	for p := 0; p+5 <= n; p += 5 {
		l := uint32(max(0, n-p-recordHeaderBytes))
		b[p], b[p+1], b[p+2], b[p+3] = byte(l), byte(l>>8), byte(l>>16), 0
		b[p+4] = recEntry
	}
	return b
}

// The linear scan finds exactly what parseRecord at every offset finds: records short and long
// (past scanDirectBytes, where the algebra decides), in garbage, zeros and crafted headers, with
// bits flipped.
func TestScanMatchesParsingEveryOffset(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	found, long := 0, 0
	for i := range 3000 {
		var b []byte
		for len(b) < 4000 {
			switch rng.IntN(5) {
			case 0:
				b = append(b, make([]byte, rng.IntN(300))...)
			case 1:
				g := make([]byte, rng.IntN(300))
				for k := range g {
					g[k] = byte(rng.Uint32())
				}
				b = append(b, g...)
			case 2:
				b = append(b, crafted(5*rng.IntN(60))...)
			default:
				p := make([]byte, []int{0, 8, 100, scanDirectBytes, scanDirectBytes + 1, 3000}[rng.IntN(6)])
				for k := range p {
					p[k] = byte(rng.Uint32())
				}
				b = appendRecord(b, uint8(1+rng.IntN(4)), p)
			}
		}
		if rng.IntN(2) == 0 {
			b[rng.IntN(len(b))] ^= 1 << rng.IntN(8)
		}
		off := int64(rng.IntN(len(b)))
		for _, maxType := range []uint8{recHardState, recSynced} {
			p, ok := validRecordAfter(b, off, maxType)
			wp, wok := naiveValidRecordAfter(b, off, maxType)
			if p != wp || ok != wok {
				t.Fatalf("case %d from %d (max type %d): scan finds %d, %v; parsing every offset %d, %v", i, off, maxType, p, ok, wp, wok)
			}
			if ok {
				found++
				if binary.LittleEndian.Uint32(b[p:]) > scanDirectBytes {
					long++ // found by the algebra, not by hashing
				}
			}
		}
	}
	if found < 1000 || long < 100 {
		t.Fatalf("only %d cases had a valid record to find, %d of them past scanDirectBytes", found, long)
	}
}

// oldScanBytes is what the old scan (parseRecord at every offset) hashes on b from off: the
// claimed length of every offset whose header passes the cheap checks.
func oldScanBytes(b []byte, off int64) int64 {
	var sum int64
	for p := off + 1; p+recordHeaderBytes <= int64(len(b)); p++ {
		n := int64(binary.LittleEndian.Uint32(b[p:]))
		if typ := b[p+4]; typ >= recHeader && typ <= recHardState && n <= int64(len(b))-p-recordHeaderBytes {
			sum += n + 1
		}
	}
	return sum
}

// A last segment whose records are followed by 2 MiB of crafted bytes (every fifth offset a
// plausible header claiming a record to the end of the file) recovers in work linear in the
// tail: the tail is cut and the member starts. The old scan (naiveValidRecordAfter) hashes
// 4·10^11 bytes here (four times as many for every doubling of the tail); the new one does a few
// units of work per tail byte.
func TestGarbageTailRecoversInLinearTime(t *testing.T) {
	const tailBytes = 2 << 20
	for _, tc := range []struct {
		name    string
		version uint8
		at      func(ends []int64) int64 // where the tail starts
	}{
		{"format 1, after the records", segmentV1, func(ends []int64) int64 { return ends[len(ends)-1] }},
		{"format 2, after the records", segmentV2, func(ends []int64) int64 { return ends[len(ends)-1] }},
		{"format 2, from the header on", segmentV2, func([]int64) int64 { return 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(v uint8) { segmentVersionWritten = v }(segmentVersionWritten)
			segmentVersionWritten = tc.version
			m := vfs.NewMem()
			a := mustOpen(t, m, opts())
			appendRange(t, a, 1, 5, 1)
			if err := a.Sync(); err != nil {
				t.Fatal(err)
			}
			a.Close()
			if tc.version < segmentV3 {
				// As an older build left it: no file names the newest segment, so nothing says
				// the header was durable, and a bad one is looked past.
				if err := m.Remove(filepath.Join(dir, "log", newestName)); err != nil {
					t.Fatal(err)
				}
			}
			seg := lastSeg(m)
			var at int64
			var tail []byte
			m.Corrupt(seg, func(b []byte) []byte {
				at = tc.at(recordEnds(b))
				b = append(b[:at], crafted(tailBytes)...)
				tail = bytes.Clone(b) // Open's cut zeroes b
				return b
			})
			scanWork.Store(0)
			start := time.Now()
			a, err := Open(m, dir, opts())
			took := time.Since(start)
			if err != nil {
				t.Fatalf("a garbage tail must be cut: %v", err)
			}
			a.Close()
			work, old := scanWork.Load(), oldScanBytes(tail, at)
			t.Logf("recovery took %v, scan work %d (%.1f per tail byte); the old scan would hash %d bytes", took, work, float64(work)/tailBytes, old)
			if work > 16*tailBytes {
				t.Fatalf("the scan did %d units of work on a %d-byte tail: not linear", work, tailBytes)
			}
			if tc.version == segmentV1 || at == 0 {
				if work < tailBytes || old < 1000*work {
					t.Fatalf("the crafted tail is not the hard case: scan work %d, old scan %d bytes", work, old)
				}
			}
		})
	}
}

// naiveValidRecordAfter is validRecordAfter as it was: parseRecord at every offset (quadratic on
// a crafted tail). The tests hold the linear scan to its results.
func naiveValidRecordAfter(b []byte, off int64, maxType uint8) (int64, bool) {
	for p := off + 1; p+recordHeaderBytes <= int64(len(b)); p++ {
		if typ, _, _, ok, _ := parseRecord(b, p); ok && typ <= maxType {
			return p, true
		}
	}
	return 0, false
}
