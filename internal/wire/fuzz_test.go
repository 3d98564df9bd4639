package wire

import (
	"bytes"
	"reflect"
	"testing"
)

func FuzzDecodeBatch(f *testing.F) {
	for _, b := range sampleBatches()[:3] {
		f.Add(AppendBatch(nil, &b))
	}
	f.Add(AppendClusterVersion(nil, 2))
	f.Add(AppendClusterIdentity(nil, ClusterUUID{0x3f, 15: 1}))
	f.Add(AppendControl(nil, &Control{Op: ControlShutdown, Abort: true, Token: "c3.1"}))
	f.Add(AppendControl(nil, &Control{Op: ControlPreferred, Preferred: []int{2, 0}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if k, err := EntryKindOf(data); err == nil && k == EntryControl {
			if c, err := DecodeControl(data); err == nil {
				if c2, err := DecodeControl(AppendControl(nil, &c)); err != nil || !reflect.DeepEqual(c2, c) {
					t.Fatalf("control %+v re-decodes as %+v, %v", c, c2, err)
				}
			}
		}
		// Every log entry kind: what the replica decodes at apply.
		if k, err := EntryKindOf(data); err == nil && k == EntryClusterVersion {
			if v, err := DecodeClusterVersion(data); err == nil {
				if v2, err := DecodeClusterVersion(AppendClusterVersion(nil, v)); err != nil || v2 != v {
					t.Fatalf("cluster version %d re-decodes as %d, %v", v, v2, err)
				}
			}
		}
		if k, err := EntryKindOf(data); err == nil && k == EntryClusterIdentity {
			if u, err := DecodeClusterIdentity(data); err == nil {
				if u2, err := DecodeClusterIdentity(AppendClusterIdentity(nil, u)); err != nil || u2 != u {
					t.Fatalf("cluster identity %v re-decodes as %v, %v", u, u2, err)
				}
			}
		}
		b, err := DecodeBatch(data)
		if err != nil {
			return
		}
		b2, err := DecodeBatch(AppendBatch(nil, &b))
		if err != nil || len(b2.Items) != len(b.Items) || b2.TimestampNanos != b.TimestampNanos {
			t.Fatalf("re-decode: %v", err)
		}
		for i := range b.Items {
			if !bytes.Equal(b.Items[i].Payload, b2.Items[i].Payload) || b.Items[i].Seq != b2.Items[i].Seq ||
				b.Items[i].Principal != b2.Items[i].Principal {
				t.Fatalf("item %d differs after a round trip", i)
			}
		}
	})
}

func FuzzDecodeClientMsg(f *testing.F) {
	for _, m := range sampleClientMsgs() {
		f.Add(AppendClientMsg(nil, &m, m.Version))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeClientMsg(data)
		if err != nil {
			return
		}
		m2, err := DecodeClientMsg(AppendClientMsg(nil, &m, m.Version))
		if err != nil || !reflect.DeepEqual(normalize(m), normalize(m2)) {
			t.Fatalf("round trip of %+v: %+v, %v", m, m2, err)
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	f.Add(AppendFrame(nil, FrameRaft, []byte("abc")))
	f.Add(AppendFrame(nil, FrameClient, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		kind, body, _, err := ReadFrame(bytes.NewReader(data), 1<<16, nil)
		if err != nil {
			return
		}
		k2, b2, _, err := ReadFrame(bytes.NewReader(AppendFrame(nil, kind, body)), 1<<16, nil)
		if err != nil || k2 != kind || !bytes.Equal(b2, body) {
			t.Fatalf("frame round trip: %v", err)
		}
	})
}

func FuzzDecodeHandshake(f *testing.F) {
	f.Add(AppendHandshake(nil, &Handshake{ClusterID: "tandem", SenderID: 1, ReceiverID: 3, Protocol: Range{1, 2}, ClusterVersionMax: 2}))
	f.Add(AppendHandshake(nil, &Handshake{ClusterID: "tandem", SenderID: 1, ReceiverID: 3, Protocol: Range{1, 2}, ClusterVersionMax: 2,
		Extensions: []Extension{{Tag: 1, Value: []byte("id")}, {Tag: 7, Value: []byte{}}}}))
	f.Add(AppendHandshake(nil, &Handshake{ClusterID: "tandem", SenderID: 1, ReceiverID: 3, Protocol: Range{1, 2}, ClusterVersionMax: 3,
		Extensions: ClusterUUIDExtensions(ClusterUUID{0x9c, 0x1d, 15: 2})}))
	f.Add(AppendLegacyHandshake(nil, &Handshake{ClusterID: "tandem", SenderID: 1, ReceiverID: 3}))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := DecodeHandshake(data)
		if err != nil {
			return
		}
		h2, err := DecodeHandshake(AppendHandshake(nil, &h))
		if err != nil || !reflect.DeepEqual(h2, h) {
			t.Fatalf("handshake round trip: %+v %v", h2, err)
		}
	})
}

func FuzzDecodeHandshakeReply(f *testing.F) {
	f.Add(AppendHandshakeReply(nil, &HandshakeReply{Accepted: true, Version: 1, Protocol: Range{1, 1}, ClusterVersionMax: 2}))
	f.Add(AppendHandshakeReply(nil, &HandshakeReply{Protocol: Range{3, 3}, Text: "no common version"}))
	f.Add(AppendHandshakeReply(nil, &HandshakeReply{Accepted: true, Version: 1, Protocol: Range{1, 1}, ClusterVersionMax: 3,
		Extensions: ClusterUUIDExtensions(ClusterUUID{0x3f, 0x2a, 15: 3})}))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := DecodeHandshakeReply(data)
		if err != nil {
			return
		}
		h2, err := DecodeHandshakeReply(AppendHandshakeReply(nil, &h))
		if err != nil || !reflect.DeepEqual(h2, h) {
			t.Fatalf("handshake reply round trip: %+v %v", h2, err)
		}
	})
}

func FuzzDecodeSnapshotChunk(f *testing.F) {
	f.Add(AppendSnapshotChunk(nil, &SnapshotChunk{Index: 9, Term: 2, Offset: 3, Total: 6, Last: true, Data: []byte("xyz"), CRC: 1}))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeSnapshotChunk(data)
		if err != nil {
			return
		}
		c2, err := DecodeSnapshotChunk(AppendSnapshotChunk(nil, &c))
		if err != nil || !bytes.Equal(c.Data, c2.Data) || c.Offset != c2.Offset || c.Total != c2.Total || c.Last != c2.Last {
			t.Fatalf("chunk round trip: %v", err)
		}
	})
}
