package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Version is the version byte of frames, log batches and snapshot chunks. The client protocol's
// version byte is the version each message is encoded in (ClientProtocol); the handshake has a
// layout byte of its own.
const Version uint8 = 1

// Limits.
const (
	// MaxPayloadBytes bounds one command, query, reply or push payload.
	MaxPayloadBytes = 1 << 20
	// MaxBatchItems bounds the items of one log batch.
	MaxBatchItems = 1 << 16
	// MaxAddrBytes bounds an address (host:port); MaxClusterIDBytes a cluster id.
	MaxAddrBytes      = 255
	MaxClusterIDBytes = 64
	// FrameHeaderBytes is the size of a frame header: length, version, kind, CRC.
	FrameHeaderBytes = 4 + 1 + 1 + 4
	// CommandOverheadBytes is what a command's body adds to its payload, at most: version, kind,
	// session, seq, lowest unacknowledged, the payload's length. A client port that takes
	// commands of up to P payload bytes takes frame bodies of P+CommandOverheadBytes.
	CommandOverheadBytes = 1 + 1 + 16 + 8 + 8 + binary.MaxVarintLen32
	// MaxWindow bounds the response window a member announces (CAttached).
	MaxWindow = 1 << 20
)

// Errors. Every decode error wraps ErrMalformed (or ErrVersion for an unknown version byte).
var (
	ErrMalformed     = errors.New("wire: malformed")
	ErrVersion       = errors.New("wire: unknown version")
	ErrFrameTooLarge = fmt.Errorf("%w: frame too large", ErrMalformed)
	ErrChecksum      = fmt.Errorf("%w: checksum mismatch", ErrMalformed)
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ---- primitive writers ----

func putU64(dst []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(dst, v) }
func putU16(dst []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(dst, v) }
func putU32(dst []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(dst, v) }
func putBytes(dst []byte, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// reader decodes with bounds checks; the first error sticks.
type reader struct {
	b    []byte
	off  int
	err  error
	what string
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s: %s at byte %d", ErrMalformed, r.what, fmt.Sprintf(format, args...), r.off)
	}
}

func (r *reader) u8() uint8 {
	if r.err != nil || r.off+1 > len(r.b) {
		r.fail("truncated")
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *reader) u16() uint16 {
	if r.err != nil || r.off+2 > len(r.b) {
		r.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v
}

func (r *reader) u32() uint32 {
	if r.err != nil || r.off+4 > len(r.b) {
		r.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *reader) u64() uint64 {
	if r.err != nil || r.off+8 > len(r.b) {
		r.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

func (r *reader) session() (id SessionID) {
	if r.err != nil || r.off+16 > len(r.b) {
		r.fail("truncated")
		return
	}
	copy(id[:], r.b[r.off:])
	r.off += 16
	return
}

func (r *reader) bytes(limit int) []byte {
	if r.err != nil {
		return nil
	}
	n, k := binary.Uvarint(r.b[r.off:])
	if k <= 0 {
		r.fail("bad length")
		return nil
	}
	if n > uint64(limit) {
		r.fail("length %d over the limit %d", n, limit)
		return nil
	}
	r.off += k
	if uint64(len(r.b)-r.off) < n {
		r.fail("truncated")
		return nil
	}
	b := r.b[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return b
}

func (r *reader) end() error {
	if r.err == nil && r.off != len(r.b) {
		r.fail("%d trailing bytes", len(r.b)-r.off)
	}
	return r.err
}

func (r *reader) version() {
	v := r.u8()
	if r.err == nil && v != Version {
		r.err = fmt.Errorf("%w: %s: version %d, this build speaks %d", ErrVersion, r.what, v, Version)
	}
}

// ---- log batches ----

// BatchItemBytes returns the encoded size of one item.
func BatchItemBytes(it *Item) int {
	n := 1 + 16
	switch it.Kind {
	case ItemCommand:
		n += 8 + 8 + uvarintLen(uint64(len(it.Payload))) + len(it.Payload)
	case ItemClose:
		n++
	case ItemOpenPrincipal:
		n += uvarintLen(uint64(len(it.Principal))) + len(it.Principal)
	}
	return n
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// AppendBatch appends the encoding of b to dst.
func AppendBatch(dst []byte, b *Batch) []byte {
	dst = append(dst, Version, entryKindBatch)
	dst = putU64(dst, uint64(b.TimestampNanos))
	dst = binary.AppendUvarint(dst, uint64(len(b.Items)))
	for i := range b.Items {
		it := &b.Items[i]
		dst = append(dst, uint8(it.Kind))
		dst = append(dst, it.Session[:]...)
		switch it.Kind {
		case ItemCommand:
			dst = putU64(dst, uint64(it.Seq))
			dst = putU64(dst, uint64(it.LowestUnacked))
			dst = putBytes(dst, it.Payload)
		case ItemClose:
			dst = append(dst, it.Reason)
		case ItemOpenPrincipal:
			dst = binary.AppendUvarint(dst, uint64(len(it.Principal)))
			dst = append(dst, it.Principal...)
		}
	}
	return dst
}

// DecodeBatch decodes a log batch. Payload slices alias data.
func DecodeBatch(data []byte) (Batch, error) {
	r := &reader{b: data, what: "batch"}
	r.version()
	if k := r.u8(); r.err == nil && k != entryKindBatch {
		r.fail("entry kind %d", k)
	}
	var b Batch
	b.TimestampNanos = int64(r.u64())
	if r.err != nil {
		return Batch{}, r.err
	}
	n, k := binary.Uvarint(data[r.off:])
	if k <= 0 || n > MaxBatchItems {
		r.fail("bad item count")
		return Batch{}, r.err
	}
	r.off += k
	if n > 0 {
		b.Items = make([]Item, 0, min(n, uint64(len(data)-r.off)/17+1))
	}
	for range n {
		var it Item
		it.Kind = ItemKind(r.u8())
		it.Session = r.session()
		switch it.Kind {
		case ItemOpen:
		case ItemCommand:
			it.Seq = Seq(r.u64())
			it.LowestUnacked = Seq(r.u64())
			it.Payload = r.bytes(MaxPayloadBytes)
		case ItemClose:
			it.Reason = r.u8()
		case ItemOpenPrincipal:
			it.Principal = string(r.bytes(MaxPrincipalBytes))
			if r.err == nil && it.Principal == "" {
				r.fail("an open for an empty principal")
			}
		default:
			r.fail("item kind %d", it.Kind)
		}
		if r.err != nil {
			return Batch{}, r.err
		}
		b.Items = append(b.Items, it)
	}
	if err := r.end(); err != nil {
		return Batch{}, err
	}
	return b, nil
}

// ---- client messages ----

// AppendClientMsg appends the encoding of m in client protocol version version to dst: version,
// kind, then the kind's fields (see doc.go). version picks the layouts: 1 the first ones, any
// other today's; the caller passes the version negotiated on the connection (or, for an open or
// attach, whose layout is the same at every version, the lowest the client speaks).
func AppendClientMsg(dst []byte, m *ClientMsg, version uint16) []byte {
	dst = append(dst, uint8(version), uint8(m.Kind))
	if version < 5 && m.Status >= StatusDenied {
		// A client of an earlier version knows neither status: a refusal it takes as final.
		c := *m
		c.Status = StatusRejected
		m = &c
	}
	switch m.Kind {
	case COpen, CAttach:
		dst = append(dst, m.Session[:]...)
		if m.Protocol != (Range{}) {
			dst = putU16(dst, m.Protocol.Min)
			dst = putU16(dst, m.Protocol.Max)
			if !m.ClusterUUID.IsZero() {
				dst = append(dst, m.ClusterUUID[:]...) // the cluster the client attached to before
			}
		}
	case CKeepAlive, CClose:
		dst = append(dst, m.Session[:]...)
	case CAttached:
		dst = append(dst, m.Session[:]...)
		if version != 1 {
			dst = putU32(dst, uint32(m.CommandBytesMax))
			dst = putU32(dst, uint32(m.WindowMax))
		}
		if version >= 3 {
			dst = append(dst, m.ClusterUUID[:]...)
		}
	case CKeepAliveAck:
		dst = append(dst, m.Session[:]...)
		dst = append(dst, uint8(m.Status))
	case CCommand:
		dst = append(dst, m.Session[:]...)
		dst = putU64(dst, uint64(m.Seq))
		dst = putU64(dst, uint64(m.LowestUnacked))
		dst = putBytes(dst, m.Payload)
	case CResponse:
		dst = append(dst, m.Session[:]...)
		dst = putU64(dst, uint64(m.Seq))
		dst = append(dst, uint8(m.Status))
		dst = putBytes(dst, m.Payload)
	case CQuery:
		dst = putU64(dst, m.RequestID)
		dst = putBytes(dst, m.Payload)
	case CQueryResponse, CAdminResponse:
		dst = putU64(dst, m.RequestID)
		dst = append(dst, uint8(m.Status))
		dst = putBytes(dst, m.Payload)
	case CAdmin:
		dst = putU64(dst, m.RequestID)
		dst = putU16(dst, m.Protocol.Min)
		dst = putU16(dst, m.Protocol.Max)
		dst = putBytes(dst, m.Payload)
	case CRedirect:
		dst = append(dst, m.Session[:]...)
		dst = putU64(dst, uint64(m.Seq))
		dst = putU64(dst, m.RequestID)
		dst = append(dst, uint8(m.Status))
		dst = putU32(dst, uint32(int32(m.LeaderID)))
		dst = putU64(dst, m.Term)
		dst = putBytes(dst, []byte(m.LeaderAddr))
	case CSessionEvent:
		dst = append(dst, m.Session[:]...)
		dst = append(dst, uint8(m.Status), m.Reason)
		if version != 1 {
			dst = putBytes(dst, m.Payload)
		}
	case CPush:
		dst = append(dst, m.Session[:]...)
		dst = putBytes(dst, m.Payload)
	case CAuth:
		dst = putU16(dst, m.Protocol.Min)
		dst = putU16(dst, m.Protocol.Max)
		dst = putBytes(dst, m.Payload)
	case CAuthRefused:
		dst = append(dst, uint8(m.Status))
		dst = putBytes(dst, m.Payload[:min(len(m.Payload), MaxRefusalTextBytes)])
	case CVersionRefused:
		dst = putU16(dst, m.Protocol.Min)
		dst = putU16(dst, m.Protocol.Max)
		dst = putBytes(dst, m.Payload[:min(len(m.Payload), MaxRefusalTextBytes)])
	}
	return dst
}

// DecodeClientMsg decodes a client message of a version this build speaks (ClientProtocol), or
// of a kind whose layout is frozen (open, attach, version refused) whatever its version byte;
// another version is an error wrapping ErrVersion. m.Version is the message's version byte.
// Payload aliases data.
func DecodeClientMsg(data []byte) (ClientMsg, error) {
	r := &reader{b: data, what: "client message"}
	v := r.u8()
	var m ClientMsg
	m.Version = uint16(v)
	m.Kind = ClientKind(r.u8())
	if r.err != nil {
		return ClientMsg{}, r.err
	}
	if !frozenClientKind(m.Kind) && !ClientProtocol.Contains(m.Version) {
		return ClientMsg{}, errClientVersion(v)
	}
	switch m.Kind {
	case COpen, CAttach:
		m.Session = r.session()
		m.Protocol = Range{1, 1} // none: a client from before version negotiation
		if r.err == nil && r.off < len(data) {
			m.Protocol = Range{r.u16(), r.u16()}
			if r.err == nil && !m.Protocol.Valid() {
				r.fail("protocol range %s", m.Protocol)
			}
			if r.err == nil && r.off < len(data) {
				m.ClusterUUID = ClusterUUID(r.session())
				if r.err == nil && m.ClusterUUID.IsZero() {
					r.fail("a zero cluster identity")
				}
			}
		}
	case CKeepAlive, CClose:
		m.Session = r.session()
	case CAttached:
		m.Session = r.session()
		if m.Version != 1 {
			m.CommandBytesMax = int(r.u32())
			m.WindowMax = int(r.u32())
		}
		if m.Version >= 3 {
			m.ClusterUUID = ClusterUUID(r.session())
		}
		if r.err == nil && (m.CommandBytesMax > MaxPayloadBytes || m.WindowMax > MaxWindow) {
			r.fail("limits %d bytes, window %d", m.CommandBytesMax, m.WindowMax)
		}
	case CKeepAliveAck:
		m.Session = r.session()
		m.Status = r.status()
	case CCommand:
		m.Session = r.session()
		m.Seq = Seq(r.u64())
		m.LowestUnacked = Seq(r.u64())
		m.Payload = r.bytes(MaxPayloadBytes)
	case CResponse:
		m.Session = r.session()
		m.Seq = Seq(r.u64())
		m.Status = r.status()
		m.Payload = r.bytes(MaxPayloadBytes)
	case CQuery:
		m.RequestID = r.u64()
		m.Payload = r.bytes(MaxPayloadBytes)
	case CQueryResponse, CAdminResponse:
		m.RequestID = r.u64()
		m.Status = r.status()
		m.Payload = r.bytes(MaxPayloadBytes)
	case CAdmin:
		m.RequestID = r.u64()
		m.Protocol = Range{r.u16(), r.u16()}
		m.Payload = r.bytes(MaxAdminBytes)
		if r.err == nil && !m.Protocol.Valid() {
			r.fail("protocol range %s", m.Protocol)
		}
		if r.err == nil && m.Version < 4 {
			r.fail("an admin request in client protocol version %d (admin requests are version 4 on)", m.Version)
		}
	case CRedirect:
		m.Session = r.session()
		m.Seq = Seq(r.u64())
		m.RequestID = r.u64()
		m.Status = r.status()
		m.LeaderID = int(int32(r.u32()))
		m.Term = r.u64()
		m.LeaderAddr = string(r.bytes(MaxAddrBytes))
		if r.err == nil && m.LeaderID < -1 {
			r.fail("leader id %d", m.LeaderID)
		}
	case CSessionEvent:
		m.Session = r.session()
		m.Status = r.status()
		m.Reason = r.u8()
		if m.Version != 1 {
			m.Payload = r.bytes(MaxPayloadBytes)
		}
	case CPush:
		m.Session = r.session()
		m.Payload = r.bytes(MaxPayloadBytes)
	case CAuth:
		m.Protocol = Range{r.u16(), r.u16()}
		m.Payload = r.bytes(MaxTokenBytes)
		if r.err == nil && !m.Protocol.Valid() {
			r.fail("protocol range %s", m.Protocol)
		}
		if r.err == nil && m.Version < 5 {
			r.fail("a credential in client protocol version %d (credentials are version 5 on)", m.Version)
		}
	case CAuthRefused:
		m.Status = r.status()
		m.Payload = r.bytes(MaxRefusalTextBytes)
	case CVersionRefused:
		m.Protocol = Range{r.u16(), r.u16()}
		m.Payload = r.bytes(MaxRefusalTextBytes)
		if r.err == nil && !m.Protocol.Valid() {
			r.fail("protocol range %s", m.Protocol)
		}
	default:
		r.fail("message kind %d", m.Kind)
	}
	if r.err == nil && m.Version < 5 && m.Status >= StatusDenied && !frozenClientKind(m.Kind) {
		r.fail("status %d in client protocol version %d (version 5 on)", m.Status, m.Version)
	}
	if err := r.end(); err != nil {
		return ClientMsg{}, err
	}
	return m, nil
}

func (r *reader) status() Status {
	s := Status(r.u8())
	if r.err == nil && s > StatusUnauthenticated {
		r.fail("status %d", s)
	}
	return s
}

// ---- frames ----

// FrameKind is the type of a frame.
type FrameKind uint8

// Frame kinds.
const (
	FrameHandshake     FrameKind = 1 // member connection: the sender introduces itself
	FrameRaft          FrameKind = 2 // a raft message (protobuf)
	FrameSnapshotChunk FrameKind = 3 // a piece of a snapshot stream
	FrameSnapshotAck   FrameKind = 4 // the receiver synced and verified a snapshot
	FrameClient        FrameKind = 5 // a client-protocol message
	// FrameHandshakeReply: member connection: the acceptor's answer to the handshake.
	FrameHandshakeReply FrameKind = 6
)

const maxFrameKind = FrameHandshakeReply

// AppendFrame appends a frame: u32 length of everything after it, version, kind, CRC-32C of the
// body, body.
func AppendFrame(dst []byte, kind FrameKind, body []byte) []byte {
	dst = putU32(dst, uint32(1+1+4+len(body)))
	dst = append(dst, Version, uint8(kind))
	dst = putU32(dst, crc32.Checksum(body, castagnoli))
	return append(dst, body...)
}

// AppendClientFrame appends m, encoded in version, as a FrameClient frame, encoding the body in
// place: the same bytes as AppendFrame(dst, FrameClient, AppendClientMsg(nil, m, version))
// without the intermediate buffer.
func AppendClientFrame(dst []byte, m *ClientMsg, version uint16) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, FrameHeaderBytes)...)
	dst = AppendClientMsg(dst, m, version)
	SealFrame(dst[start:], FrameClient)
	return dst
}

// SealFrame fills in the header of frame, which holds FrameHeaderBytes of room followed by the
// body, so that a body can be encoded in place behind its header: AppendFrame's bytes without
// the copy.
func SealFrame(frame []byte, kind FrameKind) {
	body := frame[FrameHeaderBytes:]
	binary.LittleEndian.PutUint32(frame, uint32(1+1+4+len(body)))
	frame[4], frame[5] = Version, uint8(kind)
	binary.LittleEndian.PutUint32(frame[6:], crc32.Checksum(body, castagnoli))
}

// FrameBuffered reports whether r already holds a whole frame, so that reading it will not
// wait on the network.
func FrameBuffered(r *bufio.Reader) bool {
	if r.Buffered() < 4 {
		return false
	}
	hdr, err := r.Peek(4)
	if err != nil {
		return false
	}
	return uint64(r.Buffered()) >= 4+uint64(binary.LittleEndian.Uint32(hdr))
}

// ReadFrame reads one frame. A length above maxBytes is rejected before anything is allocated.
// The body aliases the returned buffer, which the next call may reuse.
func ReadFrame(r io.Reader, maxBytes int, buf []byte) (FrameKind, []byte, []byte, error) {
	var hdr [FrameHeaderBytes]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return 0, nil, buf, err // io.EOF on a clean end between frames
	}
	n := binary.LittleEndian.Uint32(hdr[:4])
	if n < 6 {
		return 0, nil, buf, fmt.Errorf("%w: frame length %d shorter than its header", ErrMalformed, n)
	}
	if int64(n)-6 > int64(maxBytes) {
		return 0, nil, buf, &FrameTooLargeError{BodyBytes: int64(n) - 6, Limit: maxBytes}
	}
	if _, err := io.ReadFull(r, hdr[4:]); err != nil {
		return 0, nil, buf, unexpected(err)
	}
	if hdr[4] != Version {
		return 0, nil, buf, fmt.Errorf("%w: frame version %d, this build speaks %d", ErrVersion, hdr[4], Version)
	}
	kind := FrameKind(hdr[5])
	if kind == 0 || kind > maxFrameKind {
		return 0, nil, buf, fmt.Errorf("%w: frame kind %d", ErrMalformed, kind)
	}
	size := int(n) - 6
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	body := buf[:size]
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, buf, unexpected(err)
	}
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(hdr[6:]) {
		return 0, nil, buf, ErrChecksum
	}
	return kind, body, buf, nil
}

// FrameTooLargeError is ReadFrame's error for a frame over its limit (errors.Is ErrFrameTooLarge).
// Only the frame's length was read: the rest of its header and BodyBytes of body follow on the
// stream, for a reader that chooses to skip them instead of closing the connection.
type FrameTooLargeError struct {
	BodyBytes int64
	Limit     int
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("%v: %d bytes, limit %d", ErrFrameTooLarge, e.BodyBytes, e.Limit)
}

func (e *FrameTooLargeError) Unwrap() error { return ErrFrameTooLarge }

// ClientHeadBytes is how much of a client message's body DecodeClientHead needs at most.
const ClientHeadBytes = 1 + 1 + 16 + 8 + 8

// DecodeClientHead decodes the head of a client message whose payload was not read (its frame
// was over the reader's limit): for a command its session, number and lowest unacknowledged
// number, for a query its request id. head holds the first bytes of the body (up to
// ClientHeadBytes; the frame's checksum could not be checked). ok is false for any other kind,
// and for a head too short or of another version.
func DecodeClientHead(head []byte) (m ClientMsg, ok bool) {
	r := &reader{b: head, what: "client message head"}
	v := r.u8()
	m.Version = uint16(v)
	m.Kind = ClientKind(r.u8())
	if r.err != nil || !ClientProtocol.Contains(m.Version) {
		return ClientMsg{}, false
	}
	switch m.Kind {
	case CCommand:
		m.Session = r.session()
		m.Seq = Seq(r.u64())
		m.LowestUnacked = Seq(r.u64())
	case CQuery:
		m.RequestID = r.u64()
	default:
		return ClientMsg{}, false
	}
	if r.err != nil {
		return ClientMsg{}, false
	}
	return m, true
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ---- snapshot chunks ----

// SnapshotChunk is one piece of a snapshot stream.
type SnapshotChunk struct {
	Index, Term uint64 // the snapshot's raft index and term
	Offset      uint64 // byte offset of Data in the snapshot
	Total       uint64 // total snapshot size
	Last        bool
	Data        []byte
	CRC         uint32 // CRC-32C of the whole snapshot
}

// AppendSnapshotChunk appends the encoding of c.
func AppendSnapshotChunk(dst []byte, c *SnapshotChunk) []byte {
	dst = append(dst, Version)
	dst = putU64(dst, c.Index)
	dst = putU64(dst, c.Term)
	dst = putU64(dst, c.Offset)
	dst = putU64(dst, c.Total)
	last := uint8(0)
	if c.Last {
		last = 1
	}
	dst = append(dst, last)
	dst = putU32(dst, c.CRC)
	return putBytes(dst, c.Data)
}

// DecodeSnapshotChunk decodes a chunk. Data aliases data.
func DecodeSnapshotChunk(data []byte) (SnapshotChunk, error) {
	r := &reader{b: data, what: "snapshot chunk"}
	r.version()
	var c SnapshotChunk
	c.Index = r.u64()
	c.Term = r.u64()
	c.Offset = r.u64()
	c.Total = r.u64()
	switch r.u8() {
	case 0:
	case 1:
		c.Last = true
	default:
		r.fail("last flag")
	}
	c.CRC = r.u32()
	c.Data = r.bytes(len(data))
	if r.err == nil && (c.Offset > c.Total || uint64(len(c.Data)) > c.Total-c.Offset) {
		r.fail("chunk beyond the total size")
	}
	if err := r.end(); err != nil {
		return SnapshotChunk{}, err
	}
	return c, nil
}
