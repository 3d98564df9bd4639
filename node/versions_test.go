package node

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// A client of a build from before version negotiation (045a031) sends its open with version byte
// 1 and no range, and its commands in version 1: the member answers in version 1 — the attached
// message is the session alone, no limits — and applies the command.
func TestPreNegotiationClientIsServedInVersion1(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.startAll(15 * time.Second)
	conn, err := net.Dial("tcp", c.clients[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sid := wire.SessionID{0x45, 0xa0, 0x31}
	open := append([]byte{1, byte(wire.COpen)}, sid[:]...) // 045a031's bytes
	cmd := wire.AppendClientMsg(nil, &wire.ClientMsg{Kind: wire.CCommand, Session: sid, Seq: 1, LowestUnacked: 1,
		Payload: counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})}, 1)
	out := wire.AppendFrame(wire.AppendFrame(nil, wire.FrameClient, open), wire.FrameClient, cmd)
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var attached, response bool
	for !attached || !response {
		_, body, _, err := wire.ReadFrame(r, 1<<20, nil)
		if err != nil {
			t.Fatalf("reading answers: %v", err)
		}
		if body[0] != 1 {
			t.Fatalf("answer in version %d to a version-1 client: %x", body[0], body)
		}
		m, err := wire.DecodeClientMsg(body)
		if err != nil {
			t.Fatal(err)
		}
		switch m.Kind {
		case wire.CAttached:
			if len(body) != 2+16 || m.Session != sid {
				t.Fatalf("attached message %x: want 045a031's, the session only", body)
			}
			attached = true
		case wire.CResponse:
			if !attached || m.Seq != 1 || m.Status != wire.StatusOK {
				t.Fatalf("response %+v (%q), attached first: %v", m, m.Payload, attached)
			}
			response = true
		default:
			t.Fatalf("unexpected %+v", m)
		}
	}
}
