package transport

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
)

type clientRecorder struct {
	batches chan []wire.ClientMsg
	conns   chan uint64
	gone    chan uint64
}

func (r *clientRecorder) ClientRequests(conn uint64, ms []wire.ClientMsg) {
	r.batches <- ms
	select {
	case r.conns <- conn:
	default:
	}
}
func (r *clientRecorder) ClientGone(conn uint64) { r.gone <- conn }

func startClientServer(t *testing.T, cfg ClientConfig) (*ClientServer, *clientRecorder, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listener = l
	rec := &clientRecorder{batches: make(chan []wire.ClientMsg, 1024), conns: make(chan uint64, 1), gone: make(chan uint64, 16)}
	s := NewClientServer(cfg, rec)
	s.Start()
	t.Cleanup(s.Stop)
	return s, rec, l.Addr().String()
}

// Requests that arrive together are handed over together, in order, and their payloads stay
// intact after the connection's buffers are reused.
func TestClientRequestsBatchedInOrderWithStablePayloads(t *testing.T) {
	s, rec, addr := startClientServer(t, ClientConfig{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const n = 3000
	var out []byte
	for i := range n {
		out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CCommand, Seq: wire.Seq(i + 1),
			Payload: []byte(fmt.Sprintf("payload-%d-%s", i, bytes.Repeat([]byte("x"), i%97)))}, wire.ClientProtocolMax)
	}
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	var got []wire.ClientMsg
	batches := 0
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case b := <-rec.batches:
			if len(b) > maxRequestBatch {
				t.Fatalf("a batch of %d requests, limit %d", len(b), maxRequestBatch)
			}
			got = append(got, b...)
			batches++
		case <-deadline:
			t.Fatalf("received %d of %d requests", len(got), n)
		}
	}
	for i, m := range got {
		want := fmt.Sprintf("payload-%d-%s", i, bytes.Repeat([]byte("x"), i%97))
		if m.Seq != wire.Seq(i+1) || string(m.Payload) != want {
			t.Fatalf("request %d: seq %d payload %q, want seq %d payload %q", i, m.Seq, m.Payload, i+1, want)
		}
	}
	if batches >= n {
		t.Fatalf("%d requests arrived in %d hand-overs: not batched", n, batches)
	}

	// Answers queued together reach the client in order.
	conn := <-rec.conns
	for i := range n {
		s.Send(conn, &wire.ClientMsg{Kind: wire.CResponse, Seq: wire.Seq(i + 1), Payload: []byte("ok")})
		if i%7 == 0 {
			s.Flush() // some written at once, some left to the writer: the order holds across both
		}
	}
	s.Flush()
	r := bufio.NewReader(nc)
	var buf []byte
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		_, body, nb, err := wire.ReadFrame(r, 1<<20, buf)
		buf = nb
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		m, err := wire.DecodeClientMsg(body)
		if err != nil || m.Seq != wire.Seq(i+1) {
			t.Fatalf("answer %d: seq %d, %v", i, m.Seq, err)
		}
	}
}

// A client that does not read its answers is disconnected once too much waits for it; the member
// never blocks on it.
func TestClientThatDoesNotReadIsDisconnected(t *testing.T) {
	s, rec, addr := startClientServer(t, ClientConfig{MaxQueuedBytes: 1 << 20})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(wire.AppendClientFrame(nil, &wire.ClientMsg{Kind: wire.CKeepAlive}, wire.ClientProtocolMax)); err != nil {
		t.Fatal(err)
	}
	<-rec.batches
	conn := <-rec.conns
	big := bytes.Repeat([]byte("y"), 64<<10)
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.Send(conn, &wire.ClientMsg{Kind: wire.CResponse, Seq: 1, Payload: big})
		s.Flush()
		select {
		case g := <-rec.gone:
			if g != conn {
				t.Fatalf("connection %d gone, want %d", g, conn)
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("a client that never reads was not disconnected")
		}
	}
}

// A command or query over the frame limit is handed over as its head, marked oversized, and the
// connection carries on with the next request; any other oversized frame closes it.
func TestOversizedCommandHandedOverAsItsHead(t *testing.T) {
	const limit = 1 << 10
	_, rec, addr := startClientServer(t, ClientConfig{MaxFrameBytes: limit})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var out []byte
	out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CCommand, Session: wire.SessionID{7}, Seq: 3, LowestUnacked: 2, Payload: make([]byte, 5*limit)}, wire.ClientProtocolMax)
	out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CQuery, RequestID: 11, Payload: make([]byte, 2*limit)}, wire.ClientProtocolMax)
	out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CCommand, Session: wire.SessionID{7}, Seq: 4, LowestUnacked: 2, Payload: []byte("small")}, wire.ClientProtocolMax)
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	var got []wire.ClientMsg
	for len(got) < 3 {
		select {
		case b := <-rec.batches:
			got = append(got, b...)
		case g := <-rec.gone:
			t.Fatalf("connection %d closed after %d requests", g, len(got))
		case <-time.After(10 * time.Second):
			t.Fatalf("received %d of 3 requests", len(got))
		}
	}
	cmd, q, small := got[0], got[1], got[2]
	if cmd.Kind != wire.CCommand || cmd.Seq != 3 || cmd.LowestUnacked != 2 || cmd.Session != (wire.SessionID{7}) || cmd.Payload != nil || cmd.OversizedBytes <= 5*limit {
		t.Fatalf("oversized command handed over as %+v", cmd)
	}
	if q.Kind != wire.CQuery || q.RequestID != 11 || q.OversizedBytes <= 2*limit {
		t.Fatalf("oversized query handed over as %+v", q)
	}
	if small.Seq != 4 || string(small.Payload) != "small" || small.OversizedBytes != 0 {
		t.Fatalf("the request after them: %+v", small)
	}

	// An oversized frame of another kind is not skipped.
	if _, err := nc.Write(wire.AppendClientFrame(nil, &wire.ClientMsg{Kind: wire.CPush, Payload: make([]byte, 2*limit)}, wire.ClientProtocolMax)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rec.gone:
	case b := <-rec.batches:
		t.Fatalf("an oversized push was handed over: %+v", b)
	case <-time.After(10 * time.Second):
		t.Fatal("an oversized push did not close the connection")
	}
}

// A port that speaks [2,2] meets a client of [1,2] that wrote its open, and a command behind it,
// in version 1: the open is refused with the port's range (the client reconnects writing in
// version 2), and nothing in version 1 is handed over. On a connection opened in version 2, a
// message in version 1 closes the connection unread.
func TestPortReadsOnlyVersionsItSpeaks(t *testing.T) {
	_, rec, addr := startClientServer(t, ClientConfig{ClientProtocol: wire.Range{Min: 2, Max: 2}})
	dial := func() (net.Conn, *bufio.Reader) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc, bufio.NewReader(nc)
	}
	nc, r := dial()
	out := wire.AppendClientFrame(nil, &wire.ClientMsg{Kind: wire.COpen, Protocol: wire.Range{Min: 1, Max: 2}}, 1)
	out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CCommand, Seq: 1, LowestUnacked: 1, Payload: []byte("x")}, 1)
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, body, _, err := wire.ReadFrame(r, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := wire.DecodeClientMsg(body)
	if err != nil || m.Kind != wire.CVersionRefused || m.Protocol != (wire.Range{Min: 2, Max: 2}) ||
		!strings.Contains(string(m.Payload), "wrote in version 1") {
		t.Fatalf("an open in version 1 to a [2,2] port was answered %+v (%q), %v", m, m.Payload, err)
	}

	nc, _ = dial()
	out = wire.AppendClientFrame(nil, &wire.ClientMsg{Kind: wire.COpen, Protocol: wire.Range{Min: 1, Max: 2}}, 2)
	out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CCommand, Seq: 1, LowestUnacked: 1, Payload: []byte("x")}, 1)
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	expectClientClosed(t, nc)
	deadline := time.After(time.Second)
	for {
		select {
		case b := <-rec.batches:
			for _, m := range b {
				if m.Kind == wire.CCommand {
					t.Fatalf("a command in version 1 was handed over by a [2,2] port: %+v", m)
				}
			}
		case <-deadline:
			return
		}
	}
}

// expectClientClosed waits until the port closes nc (a read returns EOF or a reset).
func expectClientClosed(t *testing.T, nc net.Conn) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, nc)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the port kept the connection open")
	}
}
