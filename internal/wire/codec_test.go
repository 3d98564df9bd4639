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
			{Kind: ItemOpenPrincipal, Session: sid, Principal: "alice"},
		}},
		{TimestampNanos: 9, Items: []Item{{Kind: ItemCommand, Session: sid, Seq: 1, Payload: bytes.Repeat([]byte{0xab}, MaxPayloadBytes)}}},
	}
}

// sampleClientMsgs are messages of every kind, in both versions, as DecodeClientMsg returns them
// (Version set): encoded at their Version, they decode to themselves.
func sampleClientMsgs() []ClientMsg {
	ms := []ClientMsg{
		{Kind: COpen, Session: sid, Protocol: Range{1, 2}},
		{Kind: CAttach, Session: sid, Protocol: Range{1, 2}},
		{Kind: CKeepAlive, Session: sid},
		{Kind: CClose, Session: sid},
		{Kind: CAttached, Session: sid},
		{Kind: CAttached, Session: sid, CommandBytesMax: MaxPayloadBytes, WindowMax: 1024},
		{Kind: CAttached, Session: sid, CommandBytesMax: 64, WindowMax: 8, ClusterUUID: ClusterUUID{0x3f, 0x2a, 15: 9}},
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
		{Kind: CVersionRefused, Protocol: Range{1, 2}, Payload: []byte("client protocol: no common version")},
		{Kind: CAdmin, RequestID: 7, Protocol: Range{1, 4}, Payload: []byte(`{"op":"status"}`)},
		{Kind: CAdminResponse, RequestID: 7, Status: StatusRejected, Payload: []byte(`{"error":"no"}`)},
	}
	for i := range ms {
		ms[i].Version = ClientProtocolMax
	}
	return append(ms,
		ClientMsg{Version: 1, Kind: COpen, Session: sid, Protocol: Range{1, 1}},
		ClientMsg{Version: 1, Kind: CAttached, Session: sid},
		ClientMsg{Version: 2, Kind: CAttached, Session: sid, CommandBytesMax: 64, WindowMax: 8},
		ClientMsg{Version: 1, Kind: CSessionEvent, Session: sid, Status: StatusSessionExpired, Reason: 2},
		ClientMsg{Version: 1, Kind: CCommand, Session: sid, Seq: 3, LowestUnacked: 2, Payload: []byte("x")},
		ClientMsg{Version: 1, Kind: CResponse, Session: sid, Seq: 3, Payload: []byte("OK")},
		ClientMsg{Version: 3, Kind: COpen, Session: sid, Protocol: Range{3, 3}}, // frozen: any version
		ClientMsg{Version: 9, Kind: CVersionRefused, Protocol: Range{9, 9}, Payload: []byte("no")},
	)
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
		got, err := DecodeClientMsg(AppendClientMsg(nil, &m, m.Version))
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(m)) {
			t.Fatalf("round trip of %+v gave %+v", m, got)
		}
	}
}

// The two client protocol versions differ in CAttached (version 1: the session only) and
// CSessionEvent (version 1: no text); the bytes of version 1 are 045a031's.
func TestClientMsgVersion1Layouts(t *testing.T) {
	attached := ClientMsg{Kind: CAttached, Session: sid, CommandBytesMax: 1000, WindowMax: 64}
	want := append([]byte{1, byte(CAttached)}, sid[:]...)
	if got := AppendClientMsg(nil, &attached, 1); !bytes.Equal(got, want) {
		t.Fatalf("v1 attached: %x, want %x (the session only)", got, want)
	}
	if got := AppendClientMsg(nil, &attached, 2); len(got) != len(want)+8 || got[0] != 2 {
		t.Fatalf("v2 attached: %x, want the limits after the session", got)
	}
	ev := ClientMsg{Kind: CSessionEvent, Session: sid, Status: StatusRejected, Reason: 4, Payload: []byte("why")}
	want = append(append([]byte{1, byte(CSessionEvent)}, sid[:]...), byte(StatusRejected), 4)
	if got := AppendClientMsg(nil, &ev, 1); !bytes.Equal(got, want) {
		t.Fatalf("v1 session event: %x, want %x (no text)", got, want)
	}
	m, err := DecodeClientMsg(AppendClientMsg(nil, &ev, 2))
	if err != nil || string(m.Payload) != "why" || m.Version != 2 {
		t.Fatalf("v2 session event: %+v %v", m, err)
	}
	// A v2 attached read as v1 has trailing bytes; a v1 one read as v2 is truncated.
	v2 := AppendClientMsg(nil, &attached, 2)
	v2[0] = 1
	if _, err := DecodeClientMsg(v2); !errors.Is(err, ErrMalformed) {
		t.Fatalf("v2 attached under a version-1 byte: %v", err)
	}
	// A 045a031 client's open: no range, which means [1,1].
	open := append([]byte{1, byte(COpen)}, sid[:]...)
	m, err = DecodeClientMsg(open)
	if err != nil || m.Kind != COpen || m.Protocol != (Range{1, 1}) || m.Version != 1 {
		t.Fatalf("045a031 open: %+v %v", m, err)
	}
	if got := AppendClientMsg(nil, &ClientMsg{Kind: COpen, Session: sid}, 1); !bytes.Equal(got, open) {
		t.Fatalf("an open with no range: %x, want 045a031's %x", got, open)
	}
	// Versions this build does not speak: refused, naming what it speaks; the frozen kinds read.
	for _, v := range []uint16{0, 6, 255} {
		_, err := DecodeClientMsg(AppendClientMsg(nil, &ClientMsg{Kind: CCommand, Session: sid, Seq: 1}, v))
		if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "[1,5]") {
			t.Fatalf("command at version %d: %v", v, err)
		}
		m, err := DecodeClientMsg(AppendClientMsg(nil, &ClientMsg{Kind: CAttach, Session: sid, Protocol: Range{v, v + 1}}, v))
		if v == 0 {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("attach with range [0,1]: %v", err)
			}
			continue
		}
		if err != nil || m.Protocol != (Range{v, v + 1}) || m.Version != v {
			t.Fatalf("attach at version %d: %+v %v", v, m, err)
		}
	}
	bad := AppendClientMsg(nil, &ClientMsg{Kind: COpen, Session: sid, Protocol: Range{3, 2}}, 1)
	if _, err := DecodeClientMsg(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("open with range [3,2]: %v", err)
	}
}

// Version 3 adds the cluster's identity to CAttached, after the limits; versions 1 and 2 keep
// their layouts (no identity: it is dropped when encoding for them).
func TestClientMsgVersion3Attached(t *testing.T) {
	u := ClusterUUID{1, 2, 3, 15: 0xff}
	attached := ClientMsg{Kind: CAttached, Session: sid, CommandBytesMax: 1000, WindowMax: 64, ClusterUUID: u}
	v2 := AppendClientMsg(nil, &attached, 2)
	v3 := AppendClientMsg(nil, &attached, 3)
	if len(v3) != len(v2)+16 || v3[0] != 3 || !bytes.Equal(v3[2:len(v2)], v2[2:]) || !bytes.Equal(v3[len(v2):], u[:]) {
		t.Fatalf("v3 attached %x: want v2's fields (%x) then the uuid", v3, v2)
	}
	m, err := DecodeClientMsg(v3)
	if err != nil || m.ClusterUUID != u || m.CommandBytesMax != 1000 || m.WindowMax != 64 {
		t.Fatalf("v3 attached decodes as %+v, %v", m, err)
	}
	m, err = DecodeClientMsg(v2)
	if err != nil || !m.ClusterUUID.IsZero() {
		t.Fatalf("v2 attached decodes as %+v, %v: want no uuid", m, err)
	}
	// A v3 attached cut before its uuid is truncated.
	if _, err := DecodeClientMsg(v3[:len(v3)-1]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("v3 attached without its last byte: %v", err)
	}
}

func TestClusterIdentityEntry(t *testing.T) {
	u := ClusterUUID{0x3f, 0x2a, 15: 1}
	enc := AppendClusterIdentity(nil, u)
	want := append([]byte{Version, 3}, u[:]...)
	if !bytes.Equal(enc, want) {
		t.Fatalf("identity entry %x, want %x", enc, want)
	}
	if k, err := EntryKindOf(enc); err != nil || k != EntryClusterIdentity || k.String() != "cluster identity" {
		t.Fatalf("kind %v, %v", k, err)
	}
	got, err := DecodeClusterIdentity(enc)
	if err != nil || got != u {
		t.Fatalf("decoded %v, %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"zero uuid":    AppendClusterIdentity(nil, ClusterUUID{}),
		"short":        enc[:len(enc)-1],
		"trailing":     append(append([]byte(nil), enc...), 0),
		"another kind": AppendClusterVersion(nil, 3),
		"version 9":    append([]byte{9}, enc[1:]...),
		"no uuid":      enc[:2],
	} {
		if _, err := DecodeClusterIdentity(bad); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if s := u.String(); len(s) != 32 || s[:4] != "3f2a" {
		t.Fatalf("String %q", s)
	}
	if p, err := ParseClusterUUID(u.String()); err != nil || p != u {
		t.Fatalf("ParseClusterUUID: %v %v", p, err)
	}
	if _, err := ParseClusterUUID("3f2a"); err == nil {
		t.Fatalf("a short uuid parsed")
	}
	if (ClusterUUID{}).String() != "none" {
		t.Fatalf("zero uuid String %q", ClusterUUID{}.String())
	}
}

// The cluster uuid extension of the handshake and its reply: absent when not known, 16 bytes
// when known; another length, or zero, is malformed.
func TestClusterUUIDExtension(t *testing.T) {
	u := ClusterUUID{9, 8, 7, 15: 6}
	h := Handshake{ClusterID: "tandem", SenderID: 1, ReceiverID: 2, Protocol: Range{1, 1}, ClusterVersionMax: 3,
		Extensions: ClusterUUIDExtensions(u)}
	got, err := DecodeHandshake(AppendHandshake(nil, &h))
	if err != nil {
		t.Fatal(err)
	}
	if g, err := ClusterUUIDOf(got.Extensions); err != nil || g != u {
		t.Fatalf("handshake uuid %v, %v", g, err)
	}
	rep := HandshakeReply{Accepted: true, Version: 1, Protocol: Range{1, 1}, ClusterVersionMax: 3, Extensions: ClusterUUIDExtensions(u)}
	gotRep, err := DecodeHandshakeReply(AppendHandshakeReply(nil, &rep))
	if err != nil {
		t.Fatal(err)
	}
	if g, err := ClusterUUIDOf(gotRep.Extensions); err != nil || g != u {
		t.Fatalf("reply uuid %v, %v", g, err)
	}
	if exts := ClusterUUIDExtensions(ClusterUUID{}); exts != nil {
		t.Fatalf("extensions for the zero uuid: %v", exts)
	}
	if g, err := ClusterUUIDOf(nil); err != nil || !g.IsZero() {
		t.Fatalf("no extension: %v, %v", g, err)
	}
	for _, v := range [][]byte{{1, 2}, make([]byte, 16), make([]byte, 17)} {
		if _, err := ClusterUUIDOf([]Extension{{Tag: ExtClusterUUID, Value: v}}); !errors.Is(err, ErrMalformed) {
			t.Fatalf("uuid extension of %d bytes %x: %v", len(v), v, err)
		}
	}
}

func TestRange(t *testing.T) {
	for _, c := range []struct {
		a, b Range
		v    uint16
		ok   bool
	}{
		{Range{1, 2}, Range{1, 1}, 1, true},
		{Range{1, 2}, Range{1, 5}, 2, true},
		{Range{2, 4}, Range{3, 9}, 4, true},
		{Range{1, 1}, Range{3, 3}, 0, false},
		{Range{3, 3}, Range{1, 2}, 0, false},
		{Range{0, 2}, Range{1, 2}, 0, false},
		{Range{2, 1}, Range{1, 2}, 0, false},
	} {
		if v, ok := c.a.Common(c.b); v != c.v || ok != c.ok {
			t.Fatalf("%s common %s = %d %v, want %d %v", c.a, c.b, v, ok, c.v, c.ok)
		}
	}
	if s := (Range{1, 2}).String(); s != "[1,2]" {
		t.Fatalf("String = %q", s)
	}
}

func TestHandshakeLayouts(t *testing.T) {
	h := Handshake{ClusterID: "tandem", SenderID: 1, ReceiverID: 3, Protocol: Range{1, 4}, ClusterVersionMax: 2}
	enc := AppendHandshake(nil, &h)
	want := append([]byte("TNDM\x02\x06tandem"), 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 4, 0, 2, 0, 0)
	if !bytes.Equal(enc, want) {
		t.Fatalf("layout 2: %x, want %x", enc, want)
	}
	got, err := DecodeHandshake(enc)
	if err != nil || !reflect.DeepEqual(got, h) {
		t.Fatalf("layout 2 round trip: %+v %v", got, err)
	}
	// Extensions: what a later build adds; a receiver finds the ones it knows and skips the rest.
	h.Extensions = []Extension{{Tag: 1, Value: []byte("cluster")}, {Tag: 9, Value: []byte{}}}
	got, err = DecodeHandshake(AppendHandshake(nil, &h))
	if v, ok := got.Extension(1); err != nil || !ok || string(v) != "cluster" || len(got.Extensions) != 2 {
		t.Fatalf("extensions: %+v %v", got, err)
	}
	if _, ok := got.Extension(2); ok {
		t.Fatalf("an extension that was not sent was found")
	}
	h.Extensions = []Extension{{Tag: 9}, {Tag: 1}}
	if _, err := DecodeHandshake(AppendHandshake(nil, &h)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("extensions out of order: %v", err)
	}
	h.Extensions = make([]Extension, MaxExtensions+1)
	for i := range h.Extensions {
		h.Extensions[i].Tag = uint8(i)
	}
	if _, err := DecodeHandshake(AppendHandshake(nil, &h)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("%d extensions: %v", len(h.Extensions), err)
	}
	h.Extensions = nil
	// Layout 1, as 045a031 writes it: refused with its own error, what it says still read.
	legacy := append([]byte("TNDM\x01\x06tandem"), 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0)
	if !bytes.Equal(AppendLegacyHandshake(nil, &Handshake{ClusterID: "tandem", SenderID: 2, ReceiverID: 1}), legacy) {
		t.Fatal("AppendLegacyHandshake does not write 045a031's bytes")
	}
	got, err = DecodeHandshake(legacy)
	if !errors.Is(err, ErrLegacyHandshake) || !errors.Is(err, ErrVersion) || got.SenderID != 2 || got.ClusterID != "tandem" {
		t.Fatalf("layout 1: %+v %v, want ErrLegacyHandshake and the sender", got, err)
	}
	if _, err := DecodeHandshake(legacy[:10]); !errors.Is(err, ErrLegacyHandshake) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated layout 1: %v", err)
	}
	for _, layout := range []byte{0, 3, 255} {
		bad := bytes.Clone(enc)
		bad[4] = layout
		if _, err := DecodeHandshake(bad); !errors.Is(err, ErrVersion) || errors.Is(err, ErrLegacyHandshake) {
			t.Fatalf("layout %d: %v", layout, err)
		}
	}
	h.Protocol = Range{2, 1}
	if _, err := DecodeHandshake(AppendHandshake(nil, &h)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("range [2,1]: %v", err)
	}
}

func TestHandshakeReply(t *testing.T) {
	for _, h := range []HandshakeReply{
		{Accepted: true, Version: 1, Protocol: Range{1, 1}, ClusterVersionMax: 2},
		{Protocol: Range{3, 3}, ClusterVersionMax: 7, Text: "member protocol: this member speaks [3,3], member 1 speaks [1,1]: no common version"},
		{Accepted: true, Version: 1, Protocol: Range{1, 1}, ClusterVersionMax: 2, Extensions: []Extension{{Tag: 3, Value: []byte("x")}}},
	} {
		enc := AppendHandshakeReply(nil, &h)
		got, err := DecodeHandshakeReply(enc)
		if err != nil || !reflect.DeepEqual(got, h) {
			t.Fatalf("round trip of %+v: %+v %v", h, got, err)
		}
		for n := range len(enc) {
			if _, err := DecodeHandshakeReply(enc[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("truncated to %d: %v", n, err)
			}
		}
		if _, err := DecodeHandshakeReply(append(bytes.Clone(enc), 0)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("trailing byte: %v", err)
		}
	}
	for _, bad := range []HandshakeReply{
		{Accepted: true, Version: 0, Protocol: Range{1, 1}},
		{Version: 1, Protocol: Range{1, 1}},
		{Accepted: true, Version: 1},
		{Protocol: Range{1, 1}, Text: strings.Repeat("x", MaxRefusalTextBytes+1)},
	} {
		if _, err := DecodeHandshakeReply(AppendHandshakeReply(nil, &bad)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%+v decoded: %v", bad, err)
		}
	}
	status := AppendHandshakeReply(nil, &HandshakeReply{Accepted: true, Version: 1, Protocol: Range{1, 1}})
	status[0] = 2
	if _, err := DecodeHandshakeReply(status); !errors.Is(err, ErrMalformed) {
		t.Fatalf("status 2: %v", err)
	}
}

// A refusal's text is cut to its limit by the encoder, so it always decodes.
func TestVersionRefusedTextBounded(t *testing.T) {
	m := ClientMsg{Kind: CVersionRefused, Protocol: Range{1, 2}, Payload: bytes.Repeat([]byte("x"), 3*MaxRefusalTextBytes)}
	got, err := DecodeClientMsg(AppendClientMsg(nil, &m, 2))
	if err != nil || len(got.Payload) != MaxRefusalTextBytes {
		t.Fatalf("long refusal: %d bytes of text, %v", len(got.Payload), err)
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
		cases["client"] = append(cases["client"], AppendClientMsg(nil, &m, m.Version))
	}
	cases["handshake"] = [][]byte{AppendHandshake(nil, &Handshake{ClusterID: "tandem", SenderID: 1, ReceiverID: 2, Protocol: Range{1, 1}})}
	cases["chunk"] = [][]byte{AppendSnapshotChunk(nil, &SnapshotChunk{Index: 5, Term: 2, Offset: 0, Total: 3, Last: true, Data: []byte("abc"), CRC: 7})}
	for name, encs := range cases {
		for _, enc := range encs {
			for n := 0; n < len(enc); n++ {
				if name == "client" && n == 2+16 && (ClientKind(enc[1]) == COpen || ClientKind(enc[1]) == CAttach) {
					continue // an open or attach without its range: a 045a031 client's, [1,1]
				}
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
			if name == "client" && frozenClientKind(ClientKind(enc[1])) {
				continue // the same layout at every version
			}
			if err := decs[name](bad); !errors.Is(err, ErrVersion) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s with version 99: %v", name, err)
			}
		}
	}
}

func TestOversizedLengthsRejected(t *testing.T) {
	m := ClientMsg{Kind: CCommand, Session: sid, Seq: 1, Payload: make([]byte, MaxPayloadBytes+1)}
	if _, err := DecodeClientMsg(AppendClientMsg(nil, &m, 2)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("payload over MaxPayloadBytes accepted: %v", err)
	}
	r := ClientMsg{Kind: CRedirect, LeaderID: 1, LeaderAddr: strings.Repeat("a", MaxAddrBytes+1)}
	if _, err := DecodeClientMsg(AppendClientMsg(nil, &r, 2)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("address over MaxAddrBytes accepted: %v", err)
	}
	h := Handshake{ClusterID: strings.Repeat("c", MaxClusterIDBytes+1), SenderID: 1, ReceiverID: 2, Protocol: Range{1, 1}}
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
		want := AppendFrame(bytes.Clone(prefix), FrameClient, AppendClientMsg(nil, &m, m.Version))
		got := AppendClientFrame(bytes.Clone(prefix), &m, m.Version)
		if !bytes.Equal(got, want) {
			t.Fatalf("%+v: in-place frame %x, want %x", m, got, want)
		}
	}
	m := ClientMsg{Kind: CCommand, Seq: 7, Payload: []byte("x")}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = AppendClientFrame(buf[:0], &m, 2) }); n != 0 {
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
		out = AppendClientFrame(out[:0], &m, ClientProtocolMax)
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
	frame := AppendClientFrame(nil, &cmd, 2)
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
	q := AppendClientMsg(nil, &ClientMsg{Kind: CQuery, RequestID: 77, Payload: make([]byte, 100)}, 1)
	if m, ok := DecodeClientHead(q[:ClientHeadBytes]); !ok || m.Kind != CQuery || m.RequestID != 77 {
		t.Fatalf("query head: %+v %v", m, ok)
	}
	for _, bad := range [][]byte{body[:10], AppendClientMsg(nil, &ClientMsg{Kind: COpen, Session: sid}, 2), {99, 2}, {3, 2}} {
		if m, ok := DecodeClientHead(bad); ok {
			t.Fatalf("head %x decoded as %+v", bad, m)
		}
	}
	if _, err := DecodeClientMsg(AppendClientMsg(nil, &ClientMsg{Kind: CAttached, Session: sid, WindowMax: MaxWindow + 1}, 2)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("an announced window over MaxWindow decoded: %v", err)
	}
}

// An open or attach may name the cluster its session attached to before; the layout is frozen,
// so the field follows the range, and is absent (zero) before the first attach.
func TestOpenNamesItsCluster(t *testing.T) {
	u := ClusterUUID{0x17, 0x18}
	for _, m := range []ClientMsg{
		{Kind: CAttach, Session: SessionID{1}, Protocol: ClientProtocol, ClusterUUID: u},
		{Kind: COpen, Session: SessionID{2}, Protocol: ClientProtocol},
	} {
		got, err := DecodeClientMsg(AppendClientMsg(nil, &m, 1))
		if err != nil || got.ClusterUUID != m.ClusterUUID || got.Protocol != m.Protocol || got.Session != m.Session {
			t.Fatalf("round trip of %+v: %+v, %v", m, got, err)
		}
	}
	zero := append(AppendClientMsg(nil, &ClientMsg{Kind: CAttach, Protocol: ClientProtocol}, 1), make([]byte, 16)...)
	if _, err := DecodeClientMsg(zero); !errors.Is(err, ErrMalformed) {
		t.Fatalf("an attach naming the zero cluster: %v", err)
	}
	ev := ClientMsg{Kind: CSessionEvent, Status: StatusWrongCluster, Payload: []byte("this member belongs to cluster x")}
	if got, err := DecodeClientMsg(AppendClientMsg(nil, &ev, ClientProtocolMax)); err != nil || got.Status != StatusWrongCluster {
		t.Fatalf("a wrong-cluster event: %+v, %v", got, err)
	}
}

// A standing survives the handshake's extensions; a malformed one is refused; unknown flags are
// ignored.
func TestStandingExtension(t *testing.T) {
	for _, s := range []Standing{{}, {Term: 1, Last: 3, Blank: true, Unverified: true}, {Term: 1 << 40, Last: 1 << 50}} {
		got, ok, err := StandingOf([]Extension{StandingExtension(s)})
		if err != nil || !ok || got != s {
			t.Fatalf("%+v came back as %+v, %v, %v", s, got, ok, err)
		}
	}
	if _, ok, err := StandingOf(nil); ok || err != nil {
		t.Fatalf("no extension: %v, %v", ok, err)
	}
	if _, _, err := StandingOf([]Extension{{Tag: ExtStanding, Value: make([]byte, 9)}}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a 9-byte standing (an earlier draft's): %v", err)
	}
	e := StandingExtension(Standing{Term: 3})
	e.Value[16] |= 0x80
	if got, _, err := StandingOf([]Extension{e}); err != nil || got != (Standing{Term: 3}) {
		t.Fatalf("an unknown flag: %+v, %v", got, err)
	}
}

// Client protocol 5: a credential and its refusal round-trip; a credential under an earlier
// version byte is malformed; the new statuses reach an earlier connection as StatusRejected.
func TestClientAuthMessages(t *testing.T) {
	auth := ClientMsg{Kind: CAuth, Protocol: Range{1, 5}, Payload: []byte("s3cret")}
	m, err := DecodeClientMsg(AppendClientMsg(nil, &auth, 5))
	if err != nil || m.Kind != CAuth || m.Protocol != (Range{1, 5}) || string(m.Payload) != "s3cret" {
		t.Fatalf("auth: %+v %v", m, err)
	}
	if _, err := DecodeClientMsg(AppendClientMsg(nil, &auth, 4)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("auth in version 4: %v", err)
	}
	big := ClientMsg{Kind: CAuth, Protocol: Range{5, 5}, Payload: bytes.Repeat([]byte("x"), MaxTokenBytes+1)}
	if _, err := DecodeClientMsg(AppendClientMsg(nil, &big, 5)); err == nil {
		t.Fatal("a token over MaxTokenBytes was read")
	}
	ref := ClientMsg{Kind: CAuthRefused, Status: StatusUnauthenticated, Payload: []byte("unknown token")}
	m, err = DecodeClientMsg(AppendClientMsg(nil, &ref, 5))
	if err != nil || m.Kind != CAuthRefused || m.Status != StatusUnauthenticated || string(m.Payload) != "unknown token" {
		t.Fatalf("auth refused: %+v %v", m, err)
	}
	denied := ClientMsg{Kind: CResponse, Seq: 3, Status: StatusDenied, Payload: []byte("no")}
	for v, want := range map[uint16]Status{4: StatusRejected, 5: StatusDenied} {
		m, err := DecodeClientMsg(AppendClientMsg(nil, &denied, v))
		if err != nil || m.Status != want || string(m.Payload) != "no" {
			t.Fatalf("denied at version %d: %+v %v", v, m, err)
		}
	}
	if denied.Status != StatusDenied {
		t.Fatal("encoding for an earlier version changed the message")
	}
	var g *Grant
	if g.MayAdmin(AdminShutdown) != nil {
		t.Fatal("no grant (no authentication) refused an admin operation")
	}
	if (&Grant{Principal: "ro"}).MayAdmin(AdminStatus) == nil {
		t.Fatal("a grant without Admin allowed one")
	}
}

// An open for a principal (cluster version 6) round-trips; an empty principal, and one over
// MaxPrincipalBytes, do not decode.
func TestOpenForAPrincipal(t *testing.T) {
	long := strings.Repeat("p", MaxPrincipalBytes)
	b := Batch{TimestampNanos: 1, Items: []Item{{Kind: ItemOpenPrincipal, Session: sid, Principal: long}}}
	got, err := DecodeBatch(AppendBatch(nil, &b))
	if err != nil || got.Items[0].Principal != long || got.Items[0].Kind != ItemOpenPrincipal {
		t.Fatalf("an open for a principal of %d bytes: %+v, %v", len(long), got, err)
	}
	for _, p := range []string{"", long + "x"} {
		b.Items[0].Principal = p
		if _, err := DecodeBatch(AppendBatch(nil, &b)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("an open for a principal of %d bytes decoded: %v", len(p), err)
		}
	}
}
