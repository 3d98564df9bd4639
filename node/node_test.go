package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type member struct {
	cfg Config
	// client and member are the ports bound for the member's first start (WithListeners); a
	// restart binds its addresses again, as a restarted process does.
	client, member net.Listener

	n      *Node
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
	events chan Event
}

type cluster struct {
	t       *testing.T
	members []*member
	clients []string
	// opts are added to every member's options when it starts.
	opts func(i int) []Option
}

// newCluster configures n members on ephemeral loopback ports, bound now and handed to each
// member's first Run (WithListeners).
func newCluster(t *testing.T, n int, tune func(*Config)) *cluster {
	var ms []Member
	c := &cluster{t: t}
	for i := range n {
		c.members = append(c.members, &member{client: listenLocal(t), member: listenLocal(t)})
		ms = append(ms, Member{ID: i, ClientAddr: c.members[i].client.Addr().String(), MemberAddr: c.members[i].member.Addr().String()})
		c.clients = append(c.clients, ms[i].ClientAddr)
	}
	dir := t.TempDir()
	for i, m := range c.members {
		cfg := DefaultConfig()
		cfg.ID, cfg.Members, cfg.DataDir = i, ms, fmt.Sprintf("%s/node-%d", dir, i)
		if tune != nil {
			tune(&cfg)
		}
		m.cfg = cfg
	}
	t.Cleanup(func() {
		for i := range c.members {
			c.stopNow(i)
		}
	})
	return c
}

func (c *cluster) start(i int) {
	m := c.members[i]
	m.logs = &syncBuffer{}
	var opts []Option
	if m.client != nil {
		opts = append(opts, WithListeners(m.client, m.member))
		m.client, m.member = nil, nil // Run closes them
	}
	if c.opts != nil {
		opts = append(opts, c.opts(i)...)
	}
	cfg := m.cfg
	cfg.Logger = slog.New(slog.NewTextHandler(m.logs, nil))
	n, err := New(cfg, counter.New(), opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// (The goroutines keep their own references: a restart replaces the member's fields.)
	events, done := make(chan Event, 4096), make(chan error, 1)
	m.n, m.cancel, m.done, m.events = n, cancel, done, events
	go func() {
		for ev := range n.Events() { // closed when Run returns
			select {
			case events <- ev:
			default:
			}
		}
	}()
	go func() { done <- n.Run(ctx) }()
}

func (c *cluster) stop(i int) {
	m := c.members[i]
	if m.cancel == nil {
		return
	}
	m.cancel()
	if err := <-m.done; err != nil {
		c.t.Errorf("member %d: %v", i, err)
	}
	m.cancel = nil
}

// stopNow stops member i without a leader's hand-over (Config.ShutdownTransferTimeout). When a
// test has ended nobody waits for a successor, and the member stopped last, leading with its
// followers gone, would wait out the whole timeout (3 s, in every test) for one to take over.
// The tests of the hand-over itself stop their leader with stop.
func (c *cluster) stopNow(i int) {
	if m := c.members[i]; m.cancel != nil {
		// No lock needed: only handOver reads the field, in Run's goroutine, once ctx is done
		// (which happens after this write: stop cancels ctx).
		m.n.cfg.ShutdownTransferTimeout = 0
	}
	c.stop(i)
}

func (c *cluster) leader(timeout time.Duration) (int, uint64) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for i, m := range c.members {
			if m.cancel == nil {
				continue
			}
			if st := m.n.Status(); st.Role == service.Leader {
				return i, st.Term
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("no leader within %s", timeout)
	return -1, 0
}

func (c *cluster) dial(ctx context.Context) *client.Client {
	c.t.Helper()
	return c.dialWith(ctx, client.Config{})
}

// dialWith dials the cluster's client endpoints with cfg's other settings; the client is closed
// when the test ends.
func (c *cluster) dialWith(ctx context.Context, cfg client.Config) *client.Client {
	c.t.Helper()
	cfg.Endpoints = c.clients
	cl, err := client.Dial(ctx, cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// startAll starts every member and waits (up to timeout) for a leader.
func (c *cluster) startAll(timeout time.Duration) (int, uint64) {
	c.t.Helper()
	for i := range c.members {
		c.start(i)
	}
	return c.leader(timeout)
}

func inc(ctx context.Context, t *testing.T, cl *client.Client) int64 {
	t.Helper()
	raw, err := cl.Send(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement}))
	if err != nil {
		t.Fatal(err)
	}
	r, err := counter.DecodeResponse(raw)
	if err != nil || !r.OK {
		t.Fatalf("increment: %v %v", r, err)
	}
	return r.Value
}

// expectClosed waits until the server closes conn (reads return EOF or a reset).
func expectClosed(t *testing.T, conn net.Conn, what string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%s: the member kept the connection open", what)
	}
}

// attack sends bytes on a fresh connection to addr and expects the member to close it and to log
// a line containing reason.
func attack(t *testing.T, addr string, bytes []byte, halfClose bool, logs *syncBuffer, name, reason string) {
	t.Helper()
	attackVia(t, dialPlain, addr, bytes, halfClose, logs, name, reason)
}

// dialPlain dials addr over TCP; dialTLS (peertls_test.go) through TLS.
func dialPlain(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// attackVia is attack on a connection dial makes.
func attackVia(t *testing.T, dial func(*testing.T, string) net.Conn, addr string, bytes []byte, halfClose bool, logs *syncBuffer, name, reason string) {
	t.Helper()
	conn := dial(t, addr)
	defer conn.Close()
	// A write may fail when the member closed the connection first: at a TLS handshake whose
	// verdict (TLS 1.3) reaches the dialler after its own handshake completed.
	if _, err := conn.Write(bytes); err == nil {
		if halfClose {
			_ = conn.(interface{ CloseWrite() error }).CloseWrite()
		}
		expectClosed(t, conn, name)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), reason) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no log line with %q; logs:\n%s", name, reason, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func handshake(cluster string, from, to uint64) []byte {
	return wire.AppendFrame(nil, wire.FrameHandshake, wire.AppendHandshake(nil, &wire.Handshake{ClusterID: cluster, SenderID: from, ReceiverID: to, Protocol: wire.MemberProtocol}))
}

func raftFrame(m *pb.Message) []byte {
	raw, _ := proto.Marshal(m)
	return wire.AppendFrame(nil, wire.FrameRaft, raw)
}

func TestHostileInputOnMemberPort(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	hostileInputOnMemberPort(t, c, dialPlain, nil)
}

// hostileInputOnMemberPort sends the member port's hostile inputs, each on a connection dial
// makes (plaintext, or TLS with a member's certificate: the same checks stand behind TLS), then
// each of more (bytes to send, and the reason the member must log) to the leader, and checks
// that nothing changed: no leader change, nothing lost, the cluster keeps serving.
func hostileInputOnMemberPort(t *testing.T, c *cluster, dial func(*testing.T, string) net.Conn, more func(leader int)) {
	l, term := c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	before := inc(ctx, t, cl)
	follower := (l + 1) % 3
	huge := make([]byte, 4)
	binary.LittleEndian.PutUint32(huge, 1<<30)
	lraft := uint64(l + 1)
	attacks := []struct {
		name   string
		target int
		bytes  []byte
		reason string
	}{
		{"garbage", l, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "no valid handshake"},
		{"wrong cluster", l, handshake("other", 2, lraft), "handshake from cluster"},
		{"forged vote from an unknown sender", l, append(handshake("tandem", 99, lraft),
			raftFrame(&pb.Message{Type: pb.MsgVote.Enum(), From: new(uint64(99)), To: &lraft, Term: new(term + 100)})...), "not a peer"},
		{"sender mismatch", l, append(handshake("tandem", uint64(follower+1), lraft),
			raftFrame(&pb.Message{Type: pb.MsgVote.Enum(), From: new(uint64(7)), To: &lraft, Term: new(term + 100)})...), "claims from=7"},
		{"oversized frame", follower, append(handshake("tandem", lraft, uint64(follower+1)), append(huge, 1, 2)...), "frame too large"},
		{"truncated frame", follower, append(handshake("tandem", lraft, uint64(follower+1)), wire.AppendFrame(nil, wire.FrameRaft, []byte("abcdef"))[:8]...), "unexpected EOF"},
		{"bad checksum", follower, append(handshake("tandem", lraft, uint64(follower+1)), func() []byte {
			f := wire.AppendFrame(nil, wire.FrameRaft, []byte("abcdef"))
			f[len(f)-1] ^= 1
			return f
		}()...), "checksum"},
	}
	for _, a := range attacks {
		attackVia(t, dial, c.members[a.target].cfg.Members[a.target].MemberAddr, a.bytes, a.name == "truncated frame",
			c.members[a.target].logs, a.name, a.reason)
	}
	if more != nil {
		more(l)
	}
	// No leader change, nothing lost, the cluster keeps serving.
	after := inc(ctx, t, cl)
	if after != before+1 {
		t.Fatalf("counter went from %d to %d", before, after)
	}
	if nl, nt := c.leader(time.Second); nl != l || nt != term {
		t.Fatalf("leader/term changed from %d/%d to %d/%d", l, term, nl, nt)
	}
}

func TestFarBehindFollowerGetsStreamedSnapshot(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotIntervalEntries = 20
		cfg.LogMarginEntries = 5
		cfg.SnapshotsRetained = 1
		cfg.SegmentBytes = 4 << 10
	})
	l, _ := c.startAll(15 * time.Second)
	lag := (l + 1) % 3
	c.stop(lag)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	var last int64
	for range 300 {
		last = inc(ctx, t, cl)
	}
	c.start(lag)
	m := c.members[lag]
	deadline := time.After(30 * time.Second)
	installed := false
	for !installed {
		select {
		case ev := <-m.events:
			installed = ev.Kind == EventSnapshotInstalled
		case <-deadline:
			t.Fatalf("the lagging member installed no snapshot; logs:\n%s", m.logs.String())
		}
	}
	leaderCommit := c.members[l].n.Status().Commit
	for m.n.Status().Applied < leaderCommit {
		select {
		case <-deadline:
			t.Fatalf("member %d applied %d, leader commit %d", lag, m.n.Status().Applied, leaderCommit)
		case <-time.After(10 * time.Millisecond):
		}
	}
	// It serves from the installed state: stop the others one at a time is not needed; check
	// that a further command reaches it and it reports the same membership.
	if v := inc(ctx, t, cl); v != last+1 {
		t.Fatalf("counter %d after %d", v, last)
	}
	if got := len(m.n.Status().Members); got != 3 {
		t.Fatalf("the member knows %d members after installing the snapshot", got)
	}
}

func TestBusyPortNamesPortAndMember(t *testing.T) {
	c := newCluster(t, 1, nil)
	// The cluster bound the member's ports for its first start; this Run, given none, binds them
	// itself and finds the client port busy (still held by the test).
	c.members[0].member.Close()
	n, _ := New(c.members[0].cfg, counter.New())
	err := n.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "member 0") || !strings.Contains(err.Error(), c.members[0].cfg.Members[0].ClientAddr) {
		t.Fatalf("busy port error: %v", err)
	}
}

func TestValidateNamesFields(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ID = 5
	cfg.Members = LocalCluster(3)
	cfg.ElectionTicks = 1
	cfg.MaxMemberConns, cfg.MaxClientConns = 3, 0
	err := cfg.Validate()
	for _, want := range []string{"DataDir", "ID (5)", "ElectionTicks (1)", "MaxMemberConns (3) must be at least 4",
		"MaxClientConns (0)"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Validate() = %v, want it to name %q", err, want)
		}
	}
	// Said once, in the node's words (the replica's MemberID is not the user's field).
	if strings.Contains(err.Error(), "MemberID") {
		t.Fatalf("Validate() = %v: names the replica's field", err)
	}
	// Every error is a *FieldError naming its fields, which a caller can name its own way.
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "DataDir" {
		t.Fatalf("Validate() = %v: the first error is not a *FieldError about DataDir (%+v)", err, fe)
	}
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a *FieldError", e)
		}
		if fe.Field == "ElectionTicks" {
			got := fe.Describe(func(f string) string { return "<" + f + ">" })
			if got != "<ElectionTicks> (1) must be larger than <HeartbeatTicks> (1)" || !slices.Equal(fe.Fields(), []string{"ElectionTicks", "HeartbeatTicks"}) {
				t.Fatalf("Describe: %q, Fields %q", got, fe.Fields())
			}
		}
	}
}

// Every address is host:port with a port a member can use (0 only where it binds), and a tick
// is not shorter than a millisecond; each error names the field, and the member.
func TestValidateAddressesAndTick(t *testing.T) {
	for _, tc := range []struct {
		set  func(c *Config)
		want string
	}{
		{func(c *Config) { c.Members[1].MemberAddr = "127.0.0.1:-1" }, `Members: member 1's member address "127.0.0.1:-1": port -1 is not 1 to 65535`},
		{func(c *Config) { c.Members[2].ClientAddr = "127.0.0.1:99999" }, `Members: member 2's client address "127.0.0.1:99999": port 99999 is not 1 to 65535`},
		{func(c *Config) { c.Members[0].ClientAddr = "my host:9000" }, `host "my host" is not a host name or an IP address`},
		{func(c *Config) { c.HTTPAddr = "localhost" }, `HTTPAddr ("localhost"): missing port in address`},
		{func(c *Config) { c.ClientBind = "0.0.0.0:70000" }, `ClientBind ("0.0.0.0:70000"): port 70000 is not 0 to 65535`},
		{func(c *Config) { c.MemberBind = "a b:1" }, `MemberBind ("a b:1"): host "a b" is not`},
		{func(c *Config) { c.Join = []string{"127.0.0.1:9000", "127.0.0.1:0"} }, `Join: address "127.0.0.1:0": port 0 is not 1 to 65535`},
		{func(c *Config) { c.TickInterval = time.Nanosecond }, "TickInterval (1ns) must be at least 1ms: a member that ticks faster than it can process"},
		{func(c *Config) { c.TickInterval = -time.Second }, "TickInterval (-1s) must be at least 1ms"},
		{func(c *Config) { c.SessionTimeout = time.Second }, "SessionTimeout (1s) must be at least two election timeouts"},
		{func(c *Config) { c.MaxClusterVersion = 60000 }, "MaxClusterVersion (60000) is above what this build applies"},
	} {
		cfg := DefaultConfig()
		cfg.Members, cfg.DataDir = LocalCluster(3), "d"
		tc.set(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want %q", err, tc.want)
		}
	}
	// Port 0 where the member binds (an ephemeral port), an empty host there (every interface),
	// and a tick of exactly the floor are accepted.
	cfg := DefaultConfig()
	cfg.Members, cfg.DataDir = LocalCluster(3), "d"
	cfg.ClientBind, cfg.MemberBind, cfg.HTTPAddr, cfg.TickInterval = "127.0.0.1:0", ":9100", "[::1]:0", TickIntervalMin
	cfg.SessionTimeout = time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
}

func TestParseMembers(t *testing.T) {
	aeron := "0,localhost:9000,localhost:9100,localhost:9200,localhost:9300,localhost:8010|\n" +
		"1,localhost:9001,localhost:9101,localhost:9201,localhost:9301,localhost:8011|\n" +
		"2,localhost:9002,localhost:9102,localhost:9202,localhost:9302,localhost:8012|"
	ms, err := ParseMembers(aeron)
	if err != nil || len(ms) != 3 || ms[2].ClientAddr != "localhost:9002" || ms[2].MemberAddr != "localhost:9102" {
		t.Fatalf("Aeron member string: %+v %v", ms, err)
	}
	if ms, err := ParseMembers("0,a:1,a:2"); err != nil || len(ms) != 1 {
		t.Fatalf("one member: %+v %v", ms, err)
	}
	for _, tc := range []struct{ list, want string }{
		{"", "member list is empty"},
		{"x,a:1,a:2", `entry 1 "x,a:1,a:2": id "x" is not a member id`},
		{"0,a:1,a:2|0,a:1", `entry 2 "0,a:1": want id,clientAddr,memberAddr`},
		{"0,nohost,a:2", `member 0's client address "nohost": missing port in address`},
		{"0,a:1,a:2|7,a:99999,a:3", `member 7's client address "a:99999": port 99999 is not 1 to 65535`},
		{"0,a:1,a:2|7,a:3,a:-1", `member 7's member address "a:-1": port -1 is not 1 to 65535`},
		{"0,a:0,a:2", `member 0's client address "a:0": port 0 is not 1 to 65535`},
		{"0,a:http,a:2", `port "http" is not a number`},
		{"0,:1,a:2", `member 0's client address ":1": no host`},
		{"0,a!b:1,a:2", `host "a!b" is not a host name or an IP address`},
		{"0, my host:1 ,a:2", `member 0's client address "my host:1": host "my host" is not a host name`},
	} {
		if _, err := ParseMembers(tc.list); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("ParseMembers(%q) = %v, want %q", tc.list, err, tc.want)
		}
	}
	if ms, err := ParseMembers(" 0, [::1]:1 ,[fe80::1%eth0]:2 |\n 1,host-1.example_x.org:65535,10.0.0.1:3|\n"); err != nil || len(ms) != 2 || ms[0].ClientAddr != "[::1]:1" {
		t.Fatalf("IPv6 and host names: %+v %v", ms, err)
	}
}

func TestHostileInputOnClientPort(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	l, term := c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	before := inc(ctx, t, cl)
	huge := binary.LittleEndian.AppendUint32(nil, 1<<30)
	badCRC := wire.AppendFrame(nil, wire.FrameClient, wire.AppendClientMsg(nil, &wire.ClientMsg{Kind: wire.CQuery, RequestID: 1}, wire.ClientProtocolMax))
	badCRC[len(badCRC)-1] ^= 1
	attacks := []struct {
		name, reason string
		bytes        []byte
	}{
		{"garbage", "reading", []byte("\x00\x01garbage garbage garbage garbage")},
		{"oversized", "frame too large", append(huge, 1, 5)},
		{"bad checksum", "checksum", badCRC},
		{"member frame on the client port", "unexpected frame kind", wire.AppendFrame(nil, wire.FrameRaft, []byte("x"))},
		{"unknown message kind", "bad request", wire.AppendFrame(nil, wire.FrameClient, []byte{wire.Version, 200})},
		{"truncated", "unexpected EOF", wire.AppendFrame(nil, wire.FrameClient, wire.AppendClientMsg(nil, &wire.ClientMsg{Kind: wire.CQuery, RequestID: 1, Payload: []byte("abc")}, wire.ClientProtocolMax))[:12]},
	}
	for _, a := range attacks {
		attack(t, c.clients[l], a.bytes, a.name == "truncated", c.members[l].logs, a.name, a.reason)
	}

	// Replayed and out-of-order commands on a raw session: each applied once.
	conn, err := net.Dial("tcp", c.clients[l])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sid := wire.SessionID{0xab, 0xcd}
	send := func(m wire.ClientMsg) {
		if _, err := conn.Write(wire.AppendFrame(nil, wire.FrameClient, wire.AppendClientMsg(nil, &m, wire.ClientProtocolMax))); err != nil {
			t.Fatal(err)
		}
	}
	incReq := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})
	send(wire.ClientMsg{Kind: wire.COpen, Session: sid})
	send(wire.ClientMsg{Kind: wire.CCommand, Session: sid, Seq: 2, LowestUnacked: 1, Payload: incReq}) // out of order
	send(wire.ClientMsg{Kind: wire.CCommand, Session: sid, Seq: 1, LowestUnacked: 1, Payload: incReq})
	send(wire.ClientMsg{Kind: wire.CCommand, Session: sid, Seq: 2, LowestUnacked: 1, Payload: incReq}) // replayed
	send(wire.ClientMsg{Kind: wire.CCommand, Session: sid, Seq: 1, LowestUnacked: 1, Payload: incReq}) // replayed
	replies := map[wire.Seq][]int64{}
	r := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for n := 0; n < 4; {
		_, body, _, err := wire.ReadFrame(r, 1<<20, nil)
		if err != nil {
			t.Fatalf("reading replies: %v (got %v)", err, replies)
		}
		m, err := wire.DecodeClientMsg(body)
		if err != nil {
			t.Fatal(err)
		}
		if m.Kind != wire.CResponse {
			continue
		}
		resp, _ := counter.DecodeResponse(m.Payload)
		replies[m.Seq] = append(replies[m.Seq], resp.Value)
		n++
	}
	for seq, vs := range replies {
		if len(vs) != 2 || vs[0] != vs[1] {
			t.Fatalf("seq %d answered %v: a replay must get the original answer", seq, vs)
		}
	}
	after := inc(ctx, t, cl)
	if after != before+3 {
		t.Fatalf("counter went from %d to %d: two commands, replayed, must count twice and the client's once more", before, after)
	}
	if nl, nt := c.leader(time.Second); nl != l || nt != term {
		t.Fatalf("leader/term changed from %d/%d to %d/%d", l, term, nl, nt)
	}
}
