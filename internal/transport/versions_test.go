package transport

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// logBuffer is a log destination tests can search while transports write to it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type clusterVersionReport struct {
	id  uint64
	max uint16
}

// startTwo starts the transports of raft ids 1 and 2 with configs of their own, each logging to
// its own buffer and reporting peers' cluster versions on a channel.
func startTwo(t *testing.T, ca, cb Config) (a, b *Transport, ra, rb *peerRecorder, la, lb *logBuffer, va, vb chan clusterVersionReport) {
	t.Helper()
	lna, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnb, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peers := map[uint64]string{1: lna.Addr().String(), 2: lnb.Addr().String()}
	rec := func() *peerRecorder {
		return &peerRecorder{msgs: make(chan *pb.Message, 1024), unreachable: make(chan uint64, 1)}
	}
	ra, rb = rec(), rec()
	la, lb = &logBuffer{}, &logBuffer{}
	va, vb = make(chan clusterVersionReport, 1024), make(chan clusterVersionReport, 1024)
	report := func(ch chan clusterVersionReport) func(uint64, uint16) {
		return func(id uint64, max uint16) {
			select {
			case ch <- clusterVersionReport{id, max}:
			default:
			}
		}
	}
	ca.ClusterID, ca.SelfID, ca.Peers, ca.Listener, ca.SnapshotDir = "test", 1, peers, lna, t.TempDir()
	cb.ClusterID, cb.SelfID, cb.Peers, cb.Listener, cb.SnapshotDir = "test", 2, peers, lnb, t.TempDir()
	ca.Logger, cb.Logger = la.logger(), lb.logger()
	ca.PeerClusterVersion, cb.PeerClusterVersion = report(va), report(vb)
	ca.BackoffMax, cb.BackoffMax = 100*time.Millisecond, 100*time.Millisecond
	a, b = New(ca, ra), New(cb, rb)
	a.Start()
	b.Start()
	t.Cleanup(func() { a.Stop(); b.Stop() })
	return
}

func msgFrom(from, to uint64) *pb.Message {
	return &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(from), To: new(to)}
}

// Members that share a version connect at the highest common one, and each learns the other's
// highest cluster version, on its own connection (the reply) and on the peer's (the handshake).
func TestMemberHandshakeNegotiatesAndReportsClusterVersions(t *testing.T) {
	a, b, ra, rb, _, _, va, vb := startTwo(t,
		Config{MemberProtocol: wire.Range{Min: 1, Max: 3}, ClusterVersionMax: 2},
		Config{MemberProtocol: wire.Range{Min: 2, Max: 5}, ClusterVersionMax: 7})
	a.Send([]*pb.Message{msgFrom(1, 2)})
	b.Send([]*pb.Message{msgFrom(2, 1)})
	for _, r := range []*peerRecorder{ra, rb} {
		select {
		case <-r.msgs:
		case <-time.After(10 * time.Second):
			t.Fatal("a message did not pass")
		}
	}
	if va, vb := a.PeerVersion(2), b.PeerVersion(1); va != 3 || vb != 3 {
		t.Fatalf("negotiated versions %d and %d, want 3 (the highest common) on both connections", va, vb)
	}
	// Each side hears of the other twice: as acceptor (the handshake) and as dialler (the reply).
	for _, c := range []struct {
		ch   chan clusterVersionReport
		want clusterVersionReport
	}{{va, clusterVersionReport{2, 7}}, {vb, clusterVersionReport{1, 2}}} {
		for range 2 {
			select {
			case got := <-c.ch:
				if got != c.want {
					t.Fatalf("reported %+v, want %+v", got, c.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no report of %+v", c.want)
			}
		}
	}
}

// A member two versions away is refused at the handshake, on both sides, with a message naming
// both ranges; no raft message passes either way, and the dialler keeps retrying.
func TestMemberProtocolRefusedWithoutCommonVersion(t *testing.T) {
	a, b, ra, rb, la, lb, _, _ := startTwo(t, Config{}, Config{MemberProtocol: wire.Range{Min: 3, Max: 3}})
	for _, l := range []*logBuffer{la, lb} {
		waitFor(t, "both sides log the refusal, as acceptor and as dialler", func() bool {
			s := l.String()
			return strings.Count(s, "no common version") >= 2 && strings.Contains(s, "speaks [1,1]") &&
				strings.Contains(s, "speaks [3,3]") && strings.Contains(s, "failed at the handshake")
		})
	}
	for range 20 {
		a.Send([]*pb.Message{msgFrom(1, 2)})
		b.Send([]*pb.Message{msgFrom(2, 1)})
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, "both sides refused a retry", func() bool { return a.Rejected() >= 2 && b.Rejected() >= 2 })
	select {
	case m := <-ra.msgs:
		t.Fatalf("a received %v across a refused handshake", m)
	case m := <-rb.msgs:
		t.Fatalf("b received %v across a refused handshake", m)
	default:
	}
	if va, vb := a.PeerVersion(2), b.PeerVersion(1); va != 0 || vb != 0 {
		t.Fatalf("negotiated versions %d and %d on refused connections", va, vb)
	}
}

// The handshake of a build from before version negotiation (layout 1) is refused with a message
// that says what to do, without a reply, and nothing after it is read.
func TestLegacyHandshakeRefused(t *testing.T) {
	_, b, _, rb, _, lb, _, _ := startTwo(t, Config{}, Config{})
	nc, err := net.Dial("tcp", b.cfg.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	hs := wire.AppendLegacyHandshake(nil, &wire.Handshake{ClusterID: "test", SenderID: 1, ReceiverID: 2})
	out := wire.AppendFrame(nil, wire.FrameHandshake, hs)
	raw, err := proto.Marshal(&pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(uint64(1)), To: new(uint64(2)), Term: new(uint64(99))})
	if err != nil {
		t.Fatal(err)
	}
	out = wire.AppendFrame(out, wire.FrameRaft, raw)
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	// (A close with the raft frame unread may arrive as a reset: a close too.)
	var ne net.Error
	if got, err := io.ReadAll(nc); len(got) > 0 || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the acceptor answered a legacy handshake with %x (%v), want a close", got, err)
	}
	waitFor(t, "the refusal is logged", func() bool {
		s := lb.String()
		return strings.Contains(s, "the peer runs a build from before version negotiation (045a031 or older): "+
			"stop the whole cluster and restart it on this build (docs/COMPATIBILITY.md)")
	})
	for _, m := range drain(rb.msgs) {
		if m.GetTerm() == 99 {
			t.Fatal("a raft message behind a legacy handshake was delivered")
		}
	}
}

func drain(ch chan *pb.Message) (ms []*pb.Message) {
	for {
		select {
		case m := <-ch:
			ms = append(ms, m)
		default:
			return ms
		}
	}
}

// readClientFrames reads client messages from nc until it has n or the connection ends.
func readClientFrames(t *testing.T, nc net.Conn, n int) (ms []wire.ClientMsg, err error) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(nc)
	for len(ms) < n {
		kind, body, _, err := wire.ReadFrame(r, 1<<20, nil)
		if err != nil {
			return ms, err
		}
		if kind != wire.FrameClient {
			t.Fatalf("frame kind %d", kind)
		}
		m, err := wire.DecodeClientMsg(body)
		if err != nil {
			t.Fatalf("undecodable answer: %v", err)
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// A client from before negotiation (an open with no range, version byte 1) gets everything in
// version 1: the attached message without limits, a session event without text. A client whose
// open says [1,2] gets version 2; one that speaks 3 gets version 3 (the attached message carries
// the cluster's identity), one that speaks more the highest. The answers are what the member's loop sends, unchanged.
func TestClientPortNegotiatesAndEncodesAtTheVersion(t *testing.T) {
	s, rec, addr := startClientServer(t, ClientConfig{})
	for _, c := range []struct {
		open    []byte
		version uint16
	}{
		{append([]byte{1, byte(wire.COpen)}, make([]byte, 16)...), 1},
		{wire.AppendClientMsg(nil, &wire.ClientMsg{Kind: wire.COpen, Protocol: wire.Range{Min: 1, Max: 2}}, 1), 2},
		{wire.AppendClientMsg(nil, &wire.ClientMsg{Kind: wire.CAttach, Protocol: wire.Range{Min: 2, Max: 2}}, 2), 2},
		{wire.AppendClientMsg(nil, &wire.ClientMsg{Kind: wire.CAttach, Protocol: wire.Range{Min: 2, Max: 3}}, 2), 3},
		{wire.AppendClientMsg(nil, &wire.ClientMsg{Kind: wire.CAttach, Protocol: wire.Range{Min: 2, Max: 9}}, 2), wire.ClientProtocolMax},
	} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		cmd := wire.AppendClientMsg(nil, &wire.ClientMsg{Kind: wire.CCommand, Seq: 1, LowestUnacked: 1, Payload: []byte("x")}, 1)
		if _, err := nc.Write(append(wire.AppendFrame(nil, wire.FrameClient, c.open), wire.AppendFrame(nil, wire.FrameClient, cmd)...)); err != nil {
			t.Fatal(err)
		}
		var conn uint64
		select {
		case b := <-rec.batches:
			conn = <-rec.conns
			if b[0].Kind != wire.COpen && b[0].Kind != wire.CAttach {
				t.Fatalf("first request %v", b[0].Kind)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the open was not handed over")
		}
		drainBatches(rec)
		s.Send(conn, &wire.ClientMsg{Kind: wire.CAttached, CommandBytesMax: 1000, WindowMax: 64, ClusterUUID: wire.ClusterUUID{7, 15: 7}})
		s.Send(conn, &wire.ClientMsg{Kind: wire.CSessionEvent, Status: wire.StatusRejected, Payload: []byte("why")})
		s.Flush()
		ms, err := readClientFrames(t, nc, 2)
		if err != nil {
			t.Fatal(err)
		}
		att, ev := ms[0], ms[1]
		if att.Version != c.version || ev.Version != c.version {
			t.Fatalf("answers at versions %d and %d, want %d", att.Version, ev.Version, c.version)
		}
		if c.version == 1 && (att.CommandBytesMax != 0 || att.WindowMax != 0 || ev.Payload != nil) {
			t.Fatalf("version 1 answers carry version 2 fields: %+v %+v", att, ev)
		}
		if c.version >= 2 && (att.CommandBytesMax != 1000 || att.WindowMax != 64 || string(ev.Payload) != "why") {
			t.Fatalf("version %d answers lost fields: %+v %+v", c.version, att, ev)
		}
		if uuid := (wire.ClusterUUID{7, 15: 7}); c.version < 3 && !att.ClusterUUID.IsZero() || c.version == 3 && att.ClusterUUID != uuid {
			t.Fatalf("version %d attached carries cluster uuid %v", c.version, att.ClusterUUID)
		}
	}
}

// drainBatches drops what the recorder received (and the connection ids it noted) until it is
// quiet for 50 ms.
func drainBatches(rec *clientRecorder) {
	for {
		select {
		case <-rec.batches:
		case <-rec.conns:
		case <-time.After(50 * time.Millisecond):
			return
		}
	}
}

// A client two versions away is refused at its open, with a message naming both ranges, and
// nothing behind the open (the commands it pipelined, in a version the member cannot read) is
// handed over; the member closes the connection.
func TestClientPortRefusesWithoutCommonVersion(t *testing.T) {
	_, rec, addr := startClientServer(t, ClientConfig{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	out := wire.AppendClientFrame(nil, &wire.ClientMsg{Kind: wire.COpen, Protocol: wire.Range{Min: 6, Max: 6}}, 6)
	out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CCommand, Seq: 1}, 6)
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	ms, err := readClientFrames(t, nc, 2)
	if len(ms) != 1 || !errors.Is(err, io.EOF) {
		t.Fatalf("answers %+v, then %v: want one refusal, then the end of the connection", ms, err)
	}
	m := ms[0]
	if m.Kind != wire.CVersionRefused || m.Protocol != wire.ClientProtocol ||
		!strings.Contains(string(m.Payload), "this member speaks [1,5], the client speaks [6,6]: no common version") {
		t.Fatalf("refusal %+v (%q)", m, m.Payload)
	}
	select {
	case b := <-rec.batches:
		t.Fatalf("handed over %+v from a refused connection", b)
	case <-time.After(100 * time.Millisecond):
	}
}

// Each side hears what the other says of itself (wire.Standing), in the handshake and in the
// reply, and the acceptor hears it before any message from that connection is delivered: a
// member on an empty log decides from it whether it may vote (consensus/verify.go).
func TestHandshakesCarryStanding(t *testing.T) {
	type report struct {
		from uint64
		s    wire.Standing
	}
	sa, sb := make(chan report, 16), make(chan report, 16)
	ca := Config{Standing: func() wire.Standing { return wire.Standing{Term: 7} },
		PeerStanding: func(id uint64, s wire.Standing) { sa <- report{id, s} }}
	cb := Config{Standing: func() wire.Standing { return wire.Standing{Term: 1, Blank: true} },
		PeerStanding: func(id uint64, s wire.Standing) { sb <- report{id, s} }}
	a, _, _, rb, _, _, _, _ := startTwo(t, ca, cb)
	a.Send([]*pb.Message{msgFrom(1, 2)})
	select {
	case <-rb.msgs:
	case <-time.After(10 * time.Second):
		t.Fatal("a message did not pass")
	}
	select { // b accepted a's connection: a's standing came with the handshake, before the message
	case got := <-sb:
		if want := (report{1, wire.Standing{Term: 7}}); got != want {
			t.Fatalf("b heard %+v, want %+v", got, want)
		}
	default:
		t.Fatal("a message was delivered before the standing of the connection it came on")
	}
	select { // a's reply from b
	case got := <-sa:
		if want := (report{2, wire.Standing{Term: 1, Blank: true}}); got != want {
			t.Fatalf("a heard %+v, want %+v", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a never heard b's standing")
	}
}
