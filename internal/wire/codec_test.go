package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

var sid = SessionID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

func sampleBatches() []Batch {
	return []Batch{
		{TimestampNanos: 0},
		{TimestampNanos: -5, Items: []Item{{Kind: ItemOpen, Session: sid}}},
		{TimestampNanos: 1 << 62, Items: []Item{
			{Kind: ItemOpen, Session: sid},
			{Kind: ItemCommand, Session: sid, Seq: 7, LowestUnacked: 5, Payload: []byte("inc")},
			{Kind: ItemCommand, Session: sid, Seq: 1<<64 - 1, LowestUnacked: 1, Payload: []byte{}},
			{Kind: ItemClose, Session: sid, Reason: 3},
		}},
		{TimestampNanos: 9, Items: []Item{{Kind: ItemCommand, Session: sid, Seq: 1, Payload: bytes.Repeat([]byte{0xab}, MaxPayloadBytes)}}},
	}
}

func sampleClientMsgs() []ClientMsg {
	return []ClientMsg{
		{Kind: COpen, Session: sid},
		{Kind: CAttach, Session: sid},
		{Kind: CKeepAlive, Session: sid},
		{Kind: CClose, Session: sid},
		{Kind: CAttached, Session: sid},
		{Kind: CAttached, Session: sid, CommandBytesMax: MaxPayloadBytes, WindowMax: 1024},
		{Kind: CKeepAliveAck, Session: sid, Status: StatusSessionExpired},
		{Kind: CCommand, Session: sid, Seq: 3, LowestUnacked: 2, Payload: []byte("x")},
		{Kind: CResponse, Session: sid, Seq: 3, Status: StatusOK, Payload: []byte("OK")},
		{Kind: CQuery, RequestID: 99, Payload: []byte("get")},
		{Kind: CQueryResponse, RequestID: 99, Status: StatusUnavailable, Payload: []byte("no quorum")},
		{Kind: CRedirect, Session: sid, Seq: 4, RequestID: 5, Status: StatusNotLeader, LeaderID: -1, Term: 7},
		{Kind: CRedirect, LeaderID: 2, Term: 8, LeaderAddr: "10.0.0.2:9002"},
		{Kind: CSessionEvent, Session: sid, Status: StatusRejected, Reason: 3},
		{Kind: CSessionEvent, Session: sid, Status: StatusRejected, Payload: []byte("session limit reached")},
		{Kind: CPush, Session: sid, Payload: []byte("hello")},
	}
}

// normalize makes nil and empty payloads compare equal (the encoding does not tell them apart).
func normalize(m ClientMsg) ClientMsg {
	if len(m.Payload) == 0 {
		m.Payload = nil
	}
	return m
}

func TestBatchRoundTrip(t *testing.T) {
	for i, b := range sampleBatches() {
		enc := AppendBatch(nil, &b)
		got, err := DecodeBatch(enc)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		size := 2 + 8 + 1
		for j := range b.Items {
			size += BatchItemBytes(&b.Items[j])
			if len(got.Items[j].Payload) == 0 {
				got.Items[j].Payload, b.Items[j].Payload = nil, nil
			}
		}
		if !reflect.DeepEqual(got, b) && !(len(b.Items) == 0 && len(got.Items) == 0) {
			t.Fatalf("batch %d: round trip gave %+v", i, got)
		}
		if len(b.Items) < 128 && len(enc) != size {
			t.Fatalf("batch %d: %d bytes, BatchItemBytes predicts %d", i, len(enc), size)
		}
	}
}

func TestClientMsgRoundTrip(t *testing.T) {
	for _, m := range sampleClientMsgs() {
		got, err := DecodeClientMsg(AppendClientMsg(nil, &m))
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(m)) {
			t.Fatalf("round trip of %+v gave %+v", m, got)
		}
	}
}

// Every decoder rejects every truncation, a wrong version and trailing bytes with a typed error.
func TestDecodersRejectDamage(t *testing.T) {
	type dec func([]byte) error
	cases := map[string][][]byte{}
	var decs = map[string]dec{
		"batch":     func(b []byte) error { _, err := DecodeBatch(b); return err },
		"client":    func(b []byte) error { _, err := DecodeClientMsg(b); return err },
		"handshake": func(b []byte) error { _, err := DecodeHandshake(b); return err },
		"chunk":     func(b []byte) error { _, err := DecodeSnapshotChunk(b); return err },
	}
	for _, b := range sampleBatches()[:3] {
		cases["batch"] = append(cases["batch"], AppendBatch(nil, &b))
	}
	for _, m := range sampleClientMsgs() {
		cases["client"] = append(cases["client"], AppendClientMsg(nil, &m))
	}
	cases["handshake"] = [][]byte{AppendHandshake(nil, &Handshake{ClusterID: "tandem", SenderID: 1, ReceiverID: 2})}
	cases["chunk"] = [][]byte{AppendSnapshotChunk(nil, &SnapshotChunk{Index: 5, Term: 2, Offset: 0, Total: 3, Last: true, Data: []byte("abc"), CRC: 7})}
	for name, encs := range cases {
		for _, enc := range encs {
			for n := 0; n < len(enc); n++ {
				if err := decs[name](enc[:n]); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) {
					t.Fatalf("%s truncated to %d of %d bytes: %v", name, n, len(enc), err)
				}
			}
			if err := decs[name](append(bytes.Clone(enc), 0)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s with a trailing byte: %v", name, err)
			}
			bad := bytes.Clone(enc)
			vpos := 0
			if name == "handshake" {
				vpos = 4
			}
			bad[vpos] = 99
			if err := decs[name](bad); !errors.Is(err, ErrVersion) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s with version 99: %v", name, err)
			}
		}
	}
}

func TestOversizedLengthsRejected(t *testing.T) {
	m := ClientMsg{Kind: CCommand, Session: sid, Seq: 1, Payload: make([]byte, MaxPayloadBytes+1)}
	if _, err := DecodeClientMsg(AppendClientMsg(nil, &m)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("payload over MaxPayloadBytes accepted: %v", err)
	}
	r := ClientMsg{Kind: CRedirect, LeaderID: 1, LeaderAddr: strings.Repeat("a", MaxAddrBytes+1)}
	if _, err := DecodeClientMsg(AppendClientMsg(nil, &r)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("address over MaxAddrBytes accepted: %v", err)
	}
	h := Handshake{ClusterID: strings.Repeat("c", MaxClusterIDBytes+1), SenderID: 1, ReceiverID: 2}
	if _, err := DecodeHandshake(AppendHandshake(nil, &h)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("cluster id over the limit accepted: %v", err)
	}
}

func TestReadFrame(t *testing.T) {
	body := []byte("hello frame")
	frame := AppendFrame(nil, FrameClient, body)
	kind, got, _, err := ReadFrame(bytes.NewReader(frame), 1024, nil)
	if err != nil || kind != FrameClient || !bytes.Equal(got, body) {
		t.Fatalf("ReadFrame = %d %q %v", kind, got, err)
	}
	// Two frames back to back, then a clean EOF.
	r := bufio.NewReader(bytes.NewReader(append(bytes.Clone(frame), frame...)))
	var buf []byte
	for range 2 {
		if _, _, buf, err = ReadFrame(r, 1024, buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, err = ReadFrame(r, 1024, buf); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
	flipped := bytes.Clone(frame)
	flipped[len(flipped)-1] ^= 1
	if _, _, _, err := ReadFrame(bytes.NewReader(flipped), 1024, nil); !errors.Is(err, ErrChecksum) {
		t.Fatalf("bad CRC: %v", err)
	}
	if _, _, _, err := ReadFrame(bytes.NewReader(frame), 5, nil); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized frame: %v", err)
	}
	huge := []byte{0xff, 0xff, 0xff, 0x7f, 1, 5}
	if _, _, _, err := ReadFrame(bytes.NewReader(huge), 1<<20, nil); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("a 2 GiB length must be refused before allocating: %v", err)
	}
	for n := 1; n < len(frame); n++ {
		if _, _, _, err := ReadFrame(bytes.NewReader(frame[:n]), 1024, nil); err != io.ErrUnexpectedEOF {
			t.Fatalf("frame truncated to %d bytes: %v, want io.ErrUnexpectedEOF", n, err)
		}
	}
	zero := []byte{0, 0, 0, 0}
	if _, _, _, err := ReadFrame(bytes.NewReader(zero), 1024, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("zero-length frame: %v", err)
	}
	badVersion := bytes.Clone(frame)
	badVersion[4] = 9
	if _, _, _, err := ReadFrame(bytes.NewReader(badVersion), 1024, nil); !errors.Is(err, ErrVersion) {
		t.Fatalf("bad frame version: %v", err)
	}
}

func BenchmarkAppendBatch(b *testing.B) {
	batch := Batch{TimestampNanos: 1}
	for i := range 256 {
		batch.Items = append(batch.Items, Item{Kind: ItemCommand, Session: sid, Seq: Seq(i), LowestUnacked: 1, Payload: make([]byte, 16)})
	}
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendBatch(buf[:0], &batch)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeBatch(b *testing.B) {
	batch := Batch{TimestampNanos: 1}
	for i := range 256 {
		batch.Items = append(batch.Items, Item{Kind: ItemCommand, Session: sid, Seq: Seq(i), LowestUnacked: 1, Payload: make([]byte, 16)})
	}
	enc := AppendBatch(nil, &batch)
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := DecodeBatch(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAppendClientFrameMatchesTwoStepEncoding(t *testing.T) {
	prefix := []byte("earlier frames")
	for _, m := range sampleClientMsgs() {
		want := AppendFrame(bytes.Clone(prefix), FrameClient, AppendClientMsg(nil, &m))
		got := AppendClientFrame(bytes.Clone(prefix), &m)
		if !bytes.Equal(got, want) {
			t.Fatalf("%+v: in-place frame %x, want %x", m, got, want)
		}
	}
	m := ClientMsg{Kind: CCommand, Seq: 7, Payload: []byte("x")}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = AppendClientFrame(buf[:0], &m) }); n != 0 {
		t.Fatalf("AppendClientFrame into a buffer with room allocates %.0f times", n)
	}
}

// BenchmarkClientFrameRoundTrip: one client command framed into a reused buffer, then read
// back and decoded, as the client and the member's client port do per command.
func BenchmarkClientFrameRoundTrip(b *testing.B) {
	m := ClientMsg{Kind: CCommand, Session: SessionID{1}, Seq: 42, LowestUnacked: 40, Payload: []byte{1, 0, 1}}
	var out, buf []byte
	r := bytes.NewReader(nil)
	br := bufio.NewReader(r)
	b.ReportAllocs()
	for b.Loop() {
		out = AppendClientFrame(out[:0], &m)
		r.Reset(out)
		br.Reset(r)
		_, body, nb, err := ReadFrame(br, 1<<20, buf)
		buf = nb
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecodeClientMsg(body); err != nil {
			b.Fatal(err)
		}
	}
}

// A frame over the reader's limit says how long its body is (to skip it), and the head of a
// command or query decodes without its payload.
func TestOversizedFrameHead(t *testing.T) {
	cmd := ClientMsg{Kind: CCommand, Session: sid, Seq: 9, LowestUnacked: 7, Payload: make([]byte, 5000)}
	frame := AppendClientFrame(nil, &cmd)
	r := bytes.NewReader(frame)
	_, _, _, err := ReadFrame(r, 1000, nil)
	var tl *FrameTooLargeError
	if !errors.As(err, &tl) || !errors.Is(err, ErrFrameTooLarge) || tl.Limit != 1000 || tl.BodyBytes != int64(len(frame)-FrameHeaderBytes) {
		t.Fatalf("ReadFrame over the limit: %v (%+v)", err, tl)
	}
	if r.Len() != len(frame)-4 {
		t.Fatalf("ReadFrame consumed %d bytes of an oversized frame, want the length only", len(frame)-r.Len())
	}
	body := frame[FrameHeaderBytes:]
	m, ok := DecodeClientHead(body[:ClientHeadBytes])
	if !ok || m.Kind != CCommand || m.Session != sid || m.Seq != 9 || m.LowestUnacked != 7 || m.Payload != nil {
		t.Fatalf("command head: %+v %v", m, ok)
	}
	q := AppendClientMsg(nil, &ClientMsg{Kind: CQuery, RequestID: 77, Payload: make([]byte, 100)})
	if m, ok := DecodeClientHead(q[:ClientHeadBytes]); !ok || m.Kind != CQuery || m.RequestID != 77 {
		t.Fatalf("query head: %+v %v", m, ok)
	}
	for _, bad := range [][]byte{body[:10], AppendClientMsg(nil, &ClientMsg{Kind: COpen, Session: sid}), {99, 2}} {
		if m, ok := DecodeClientHead(bad); ok {
			t.Fatalf("head %x decoded as %+v", bad, m)
		}
	}
	if _, err := DecodeClientMsg(AppendClientMsg(nil, &ClientMsg{Kind: CAttached, Session: sid, WindowMax: MaxWindow + 1})); !errors.Is(err, ErrMalformed) {
		t.Fatalf("an announced window over MaxWindow decoded: %v", err)
	}
}
