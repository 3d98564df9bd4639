package container

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// Snapshot layout (all integers little-endian):
//
//	magic "TNDC" | version u8 | applied u64 | clusterTime i64
//	format 2 and 3: cluster version u16
//	format 3 on: cluster uuid [16] (zero: none recorded yet)
//	format 4 on: suspended u8 | preferred set u8 | preferred: count u8, each member id u32
//	             | last shutdown index u64 (0: none)
//	sessions: count u32, each: id [16] | format 5 on: principal len u16 | bytes ("": anonymous;
//	          at most wire.MaxPrincipalBytes) | floor u64 | replies u32, each: seq u64 | len u32 | bytes
//	timers:   count u32, each (by correlation id): id i64 | deadline i64
//	members:  count u32, each (by raft id): raft id u64 | removed u8 | len u32 | addrs (Member.Addrs)
//	closed:   count u32, each (oldest close first): session id [16]
//	          format 2 only, after each id: close reason u8 (0: closed before it was recorded)
//	service:  len u64 | bytes
//	crc u32: CRC-32C of everything before it
//
// Everything is sorted, so two members that applied the same index write the same bytes.
//
// Format 1 is what every build up to 045a031 wrote, and what this one writes while the cluster
// version is 1 (a member that applies only version 1 may install it); at cluster version 2 it
// writes format 2, from cluster version 3 on format 3 (which adds the cluster's identity), and from
// cluster version 5 on format 4 (which adds the operator's controls: suspension and preference),
// and from cluster version 6 on format 5 (which adds each session's principal). The format
// follows replicated state, so members still write equal bytes at equal indexes. It reads all
// five: format 1 holds cluster version 1, format 2 a version of 2, format 3 one of 3 or 4, format
// 4 one of 5, format 5 one of 6 or more. A session of a format older than 5 is anonymous: no
// session had a principal below cluster version 6.
var snapshotMagic = [4]byte{'T', 'N', 'D', 'C'}

// Snapshot formats this build reads; it writes the one the cluster version asks for.
const (
	snapshotFormat1 uint8 = 1
	snapshotFormat2 uint8 = 2
	snapshotFormat3 uint8 = 3
	snapshotFormat4 uint8 = 4
	snapshotFormat5 uint8 = 5

	// SnapshotFormatMin and SnapshotFormatMax bound the formats this build reads.
	SnapshotFormatMin = snapshotFormat1
	SnapshotFormatMax = snapshotFormat5
)

// ErrBadSnapshot wraps every snapshot decoding error.
var ErrBadSnapshot = errors.New("container: bad snapshot")

// ErrNewerFormat: the snapshot is of a format newer than this build reads (a newer build wrote
// it, at a cluster version this build does not apply). It comes wrapped with ErrBadSnapshot.
var ErrNewerFormat = errors.New("a newer build's snapshot format")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// TakeSnapshot returns the snapshot of the state at the applied index.
func (c *Container) TakeSnapshot() ([]byte, error) {
	le := binary.LittleEndian
	b := append([]byte(nil), snapshotMagic[:]...)
	format := snapshotFormat1
	switch {
	case c.clusterVersion >= ClusterVersionPrincipal:
		format = snapshotFormat5
	case c.clusterVersion >= ClusterVersionControl:
		format = snapshotFormat4
	case c.clusterVersion >= 3:
		format = snapshotFormat3
	case c.clusterVersion == 2:
		format = snapshotFormat2
	}
	b = append(b, format)
	b = le.AppendUint64(b, c.applied)
	b = le.AppendUint64(b, uint64(c.clusterTime))
	if format >= snapshotFormat2 {
		b = le.AppendUint16(b, c.clusterVersion)
	}
	if format >= snapshotFormat3 {
		b = append(b, c.clusterUUID[:]...)
	}
	if format >= snapshotFormat4 {
		b = append(b, boolByte(c.suspended), boolByte(c.preferredSet), uint8(len(c.preferred)))
		for _, id := range c.preferred {
			b = le.AppendUint32(b, uint32(id))
		}
		b = le.AppendUint64(b, c.lastShutdown)
	}
	b = le.AppendUint32(b, uint32(len(c.sessions)))
	for _, id := range c.SessionIDs() {
		s := c.sessions[id]
		b = append(b, id[:]...)
		if format >= snapshotFormat5 {
			b = le.AppendUint16(b, uint16(len(s.principal)))
			b = append(b, s.principal...)
		}
		b = le.AppendUint64(b, uint64(s.win.floor))
		b = le.AppendUint32(b, uint32(s.win.count))
		s.win.each(func(seq wire.Seq, reply []byte) {
			b = le.AppendUint64(b, uint64(seq))
			b = le.AppendUint32(b, uint32(len(reply)))
			b = append(b, reply...)
		})
	}
	ids := make([]int64, 0, len(c.timers))
	for id := range c.timers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b = le.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		b = le.AppendUint64(b, uint64(id))
		b = le.AppendUint64(b, uint64(c.timers[id]))
	}
	ms := c.Members()
	b = le.AppendUint32(b, uint32(len(ms)))
	for _, m := range ms {
		b = le.AppendUint64(b, m.RaftID)
		removed := uint8(0)
		if m.Removed {
			removed = 1
		}
		b = append(b, removed)
		b = le.AppendUint32(b, uint32(len(m.Addrs)))
		b = append(b, m.Addrs...)
	}
	b = le.AppendUint32(b, uint32(len(c.closedOrder)))
	for _, id := range c.closedOrder {
		b = append(b, id[:]...)
		if format >= snapshotFormat2 {
			b = append(b, c.closed[id])
		}
	}
	var svc bytes.Buffer
	c.inLog = false
	if err := c.svc.OnTakeSnapshot(&svc); err != nil {
		return nil, fmt.Errorf("container: service snapshot: %w", err)
	}
	b = le.AppendUint64(b, uint64(svc.Len()))
	b = append(b, svc.Bytes()...)
	return le.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

type snapshotState struct {
	applied        uint64
	clusterTime    int64
	sessions       []*session
	timers         map[int64]int64
	members        []Member
	clusterVersion uint16
	clusterUUID    wire.ClusterUUID
	suspended      bool
	preferredSet   bool
	preferred      []int
	lastShutdown   uint64
	closed         []wire.SessionID
	closedReasons  []uint8 // one per closed id
	service        []byte
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

type snapReader struct {
	b   []byte
	off int
	err error
}

func (r *snapReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = fmt.Errorf("%w: truncated at byte %d", ErrBadSnapshot, r.off)
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *snapReader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}
func (r *snapReader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}
func (r *snapReader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}
func (r *snapReader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// count reads a count and checks that at least min bytes per element remain, so a forged count
// cannot make the decoder allocate more than the snapshot's size.
func (r *snapReader) count(minBytes int) int {
	n := int(r.u32())
	if r.err == nil && n > (len(r.b)-r.off)/minBytes {
		r.err = fmt.Errorf("%w: count %d does not fit in the remaining %d bytes", ErrBadSnapshot, n, len(r.b)-r.off)
		return 0
	}
	return n
}

func decodeSnapshot(data []byte) (*snapshotState, error) {
	if len(data) < 4+1+4 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrBadSnapshot, len(data))
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if !bytes.Equal(body[:4], snapshotMagic[:]) {
		return nil, fmt.Errorf("%w: bad magic", ErrBadSnapshot)
	}
	format := body[4]
	if format > SnapshotFormatMax {
		return nil, fmt.Errorf("%w: %w: format %d, this build reads formats %d to %d", ErrBadSnapshot, ErrNewerFormat, format, SnapshotFormatMin, SnapshotFormatMax)
	}
	if format < SnapshotFormatMin {
		return nil, fmt.Errorf("%w: format %d, this build reads formats %d to %d", ErrBadSnapshot, format, SnapshotFormatMin, SnapshotFormatMax)
	}
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	r := &snapReader{b: body, off: 5}
	st := &snapshotState{timers: map[int64]int64{}}
	st.applied = r.u64()
	st.clusterTime = int64(r.u64())
	st.clusterVersion = 1
	if format >= snapshotFormat2 {
		st.clusterVersion = r.u16()
		if r.err == nil && (st.clusterVersion < 2 || format == snapshotFormat2 && st.clusterVersion != 2 ||
			format == snapshotFormat3 && (st.clusterVersion < 3 || st.clusterVersion >= ClusterVersionControl) ||
			format == snapshotFormat4 && st.clusterVersion != ClusterVersionControl ||
			format == snapshotFormat5 && st.clusterVersion < ClusterVersionPrincipal) {
			r.err = fmt.Errorf("%w: format %d with cluster version %d", ErrBadSnapshot, format, st.clusterVersion)
		}
	}
	if format >= snapshotFormat3 {
		copy(st.clusterUUID[:], r.take(len(st.clusterUUID)))
	}
	if format >= snapshotFormat4 {
		sus, set, k := r.u8(), r.u8(), int(r.u8())
		if r.err == nil && (sus > 1 || set > 1 || k > wire.MaxPreferred || k > 0 && set == 0) {
			r.err = fmt.Errorf("%w: controls %d, %d, %d preferred", ErrBadSnapshot, sus, set, k)
		}
		st.suspended, st.preferredSet = sus == 1, set == 1
		for range k {
			id := r.u32()
			if r.err == nil && (id > 1<<31-1 || slices.Contains(st.preferred, int(id))) {
				r.err = fmt.Errorf("%w: preferred member %d", ErrBadSnapshot, id)
			}
			st.preferred = append(st.preferred, int(id))
		}
		st.lastShutdown = r.u64()
		if r.err == nil && st.lastShutdown > st.applied {
			r.err = fmt.Errorf("%w: a shutdown at index %d, past the snapshot's %d", ErrBadSnapshot, st.lastShutdown, st.applied)
		}
	}
	sessionBytes := 16 + 8 + 4
	if format >= snapshotFormat5 {
		sessionBytes += 2
	}
	n := r.count(sessionBytes)
	var prev *wire.SessionID
	for range n {
		s := &session{}
		copy(s.id[:], r.take(16))
		if format >= snapshotFormat5 {
			k := int(r.u16())
			if r.err == nil && k > wire.MaxPrincipalBytes {
				r.err = fmt.Errorf("%w: a principal of %d bytes (at most %d)", ErrBadSnapshot, k, wire.MaxPrincipalBytes)
			}
			s.principal = string(r.take(k))
		}
		s.win.floor = wire.Seq(r.u64())
		k := r.count(8 + 4)
		next := s.win.floor // replies are recorded in increasing order, at or above the floor
		for range k {
			seq := wire.Seq(r.u64())
			reply := slices.Clone(r.take(int(r.u32())))
			if reply == nil {
				reply = []byte{}
			}
			if r.err != nil {
				break
			}
			if seq < next || uint64(seq-s.win.floor) >= maxWindowSpan {
				r.err = fmt.Errorf("%w: reply number %d out of order or out of the window (floor %d)", ErrBadSnapshot, seq, s.win.floor)
				break
			}
			s.win.put(seq, reply)
			next = seq + 1
		}
		if r.err == nil && prev != nil && compareIDs(*prev, s.id) >= 0 {
			r.err = fmt.Errorf("%w: sessions out of order", ErrBadSnapshot)
		}
		prev = &s.id
		st.sessions = append(st.sessions, s)
	}
	n = r.count(16)
	for range n {
		id := int64(r.u64())
		st.timers[id] = int64(r.u64())
	}
	n = r.count(8 + 1 + 4)
	for range n {
		m := Member{RaftID: r.u64(), Removed: r.u8() == 1}
		m.Addrs = slices.Clone(r.take(int(r.u32())))
		st.members = append(st.members, m)
	}
	closedBytes := 16
	if format >= snapshotFormat2 {
		closedBytes++
	}
	n = r.count(closedBytes)
	for range n {
		var id wire.SessionID
		copy(id[:], r.take(16))
		reason := uint8(0)
		if format >= snapshotFormat2 {
			reason = r.u8()
		}
		st.closed = append(st.closed, id)
		st.closedReasons = append(st.closedReasons, reason)
	}
	svcLen := r.u64()
	if r.err == nil && svcLen != uint64(len(body)-r.off) {
		r.err = fmt.Errorf("%w: service section of %d bytes, %d remain", ErrBadSnapshot, svcLen, len(body)-r.off)
	}
	st.service = slices.Clone(r.take(int(svcLen)))
	if r.err != nil {
		return nil, r.err
	}
	return st, nil
}
