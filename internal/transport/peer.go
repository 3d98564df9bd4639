package transport

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/internal/ratelog"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Config configures the member transport.
type Config struct {
	ClusterID string
	// SelfID is this member's raft id.
	SelfID uint64
	// Peers maps raft ids of the other members to their advertised member addresses.
	Peers map[uint64]string
	// Listener accepts member connections (bound by the caller, so "address in use" is reported
	// where the port is known).
	Listener net.Listener
	// MaxFrameBytes bounds one frame (default 4 MiB); a larger one closes the connection.
	MaxFrameBytes int
	// QueueBytes bounds each peer's outbound queue (default 16 MiB of encoded frames); a message
	// that does not fit is dropped and the peer reported unreachable (raft retransmits). Raft
	// bounds the log in flight to a follower (replica: 4 MiB), so the queue holds that, one more
	// append and heartbeats; the bound is for what raft does not count (probes, which it resends
	// for each heartbeat answer).
	QueueBytes int
	// DialTimeout bounds one connection attempt (default 1 s).
	DialTimeout time.Duration
	// BackoffMin/Max bound reconnect backoff (defaults 50 ms and 2 s), with jitter.
	BackoffMin, BackoffMax time.Duration
	// SnapshotChunkBytes is the size of one snapshot chunk (default 1 MiB).
	SnapshotChunkBytes int
	// MaxConcurrentSnapshots caps snapshot transfers sent at once (default 2).
	MaxConcurrentSnapshots int
	// MaxConns bounds the inbound connections served at once (default 1024; a peer needs two,
	// one for messages and one for a snapshot transfer). One over it is closed at once, logged
	// and counted (Refused).
	MaxConns int
	// SnapshotDir receives incoming snapshots; they are fsynced and verified before raft sees them.
	SnapshotDir string
	Logger      *slog.Logger

	// MemberProtocol is the member protocol versions this member speaks (zero: this build's,
	// wire.MemberProtocol). Narrower only in tests of mixed versions.
	MemberProtocol wire.Range
	// ClusterVersionMax is the highest cluster (log) version this member can apply, which its
	// handshakes and handshake replies report to the peers (the node passes
	// container.ClusterVersionMax).
	ClusterVersionMax uint16
	// PeerClusterVersion, if set, is told the highest cluster version a peer can apply each time
	// a connection with it is accepted, in either direction (the handshake, the handshake
	// reply). Called from the connection's goroutine, never from Send: it may wait.
	PeerClusterVersion func(raftID uint64, max uint16)
	// ClusterUUID is the cluster's identity as this member knows it at start (zero: none yet);
	// SetClusterUUID sets it later. Once known, every handshake and reply carries it, and a peer
	// that names another is refused (identity.go).
	ClusterUUID wire.ClusterUUID
	// Members, if set, returns the digests of this member's founding member ids and of its
	// list with addresses, and the list's text: every handshake and reply carries the digests,
	// a peer whose id digest differs is refused, an address difference logged (identity.go).
	// Called from the connections' goroutines.
	Members func() (ids, addrs wire.MembersDigest, text string)
	// Standing, if set, returns what this member's handshakes and replies say of it
	// (wire.Standing: its term and last index, whether it is blank or unverified);
	// PeerStanding, if set, is told what a peer's said of it, each time a
	// connection with it is accepted, before anything from that connection is delivered (a
	// member on an empty log decides from it whether it may vote: consensus/verify.go). Called
	// from the connections' goroutines.
	Standing     func() wire.Standing
	PeerStanding func(raftID uint64, s wire.Standing)
}

func (c *Config) defaults() {
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = 4 << 20
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = 16 << 20
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = time.Second
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = 50 * time.Millisecond
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 2 * time.Second
	}
	if c.SnapshotChunkBytes == 0 {
		c.SnapshotChunkBytes = 1 << 20
	}
	if c.MaxConcurrentSnapshots == 0 {
		c.MaxConcurrentSnapshots = 2
	}
	if c.MaxConns == 0 {
		c.MaxConns = 1024
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.MemberProtocol = c.MemberProtocol.OrDefault(wire.MemberProtocol)
}

// Handler receives what the transport learns, to hand it to the member's loop. Its methods are
// called from transport goroutines, and Unreachable also from Send: Receive and SnapshotStatus
// may wait for the loop to take what they hand over, Unreachable must not wait.
type Handler interface {
	// Receive delivers a raft message from an authenticated peer. For MsgSnap the snapshot data
	// is complete, fsynced and verified. It may block (back-pressure on the peer's connection);
	// it returns false if the message was not taken because the receiver is stopping, and a
	// snapshot is then not acknowledged to its sender. A message the member refuses (it judges
	// them later, on its loop) is answered with DropInbound.
	Receive(m *pb.Message) bool
	// Unreachable reports that messages to the peer could not be sent. It is also called from
	// Send, on the member's loop: it must not block.
	Unreachable(id uint64)
	// SnapshotStatus reports whether a snapshot reached the peer. Never called from Send: it may
	// block until the report is taken (raft waits for it).
	SnapshotStatus(id uint64, ok bool)
}

// Transport carries raft messages between members over TCP: one outbound connection per peer
// with a queue that batches writes, inbound connections authenticated by a handshake.
type Transport struct {
	cfg   Config
	h     Handler
	log   *slog.Logger
	peers map[uint64]*peer
	order []*peer       // the peers by raft id, for flushing in a fixed order
	snaps chan struct{} // semaphore of outbound snapshot transfers

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	acc *accepter

	mu      sync.Mutex
	inbound map[net.Conn]struct{}
	// authed maps each inbound connection whose handshake was accepted to its sender; DropInbound
	// closes them by sender.
	authed map[net.Conn]*inboundPeer
	// Rejected counts inbound connections closed for a protocol violation (for tests and
	// metrics).
	rejected int

	// sendsDropped counts messages Send dropped because their peer's queue was full (read by
	// SendsDropped from any goroutine); dropLog limits the lines saying so.
	sendsDropped atomic.Int64
	dropLog      ratelog.Limiter
	// versionLog limits the lines about peers refused for their versions.
	versionLog ratelog.Limiter
	// clusterUUID is this member's cluster identity (identity.go): read by every connection's
	// goroutine, set by the member's loop (SetClusterUUID).
	clusterUUID atomic.Pointer[wire.ClusterUUID]
}

// New creates a transport; Start runs it.
func New(cfg Config, h Handler) *Transport {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg: cfg, h: h, log: cfg.Logger,
		peers:   map[uint64]*peer{},
		snaps:   make(chan struct{}, cfg.MaxConcurrentSnapshots),
		ctx:     ctx,
		cancel:  cancel,
		inbound: map[net.Conn]struct{}{},
		dropLog: ratelog.Limiter{Every: acceptLogEvery}, versionLog: ratelog.Limiter{Every: acceptLogEvery},
		authed: map[net.Conn]*inboundPeer{},
	}
	t.acc = newAccepter("member", cfg.Listener, cfg.MaxConns, cfg.Logger, ctx.Done())
	t.SetClusterUUID(cfg.ClusterUUID)
	for id, addr := range cfg.Peers {
		if id == cfg.SelfID {
			continue
		}
		p := &peer{t: t, id: id, addr: addr, q: newOutq(), snapq: make(chan *pb.Message, 1),
			refuseLog: ratelog.Limiter{Every: acceptLogEvery}}
		t.peers[id] = p
		t.order = append(t.order, p)
	}
	slices.SortFunc(t.order, func(a, b *peer) int { return cmp.Compare(a.id, b.id) })
	return t
}

// Start launches the accept loop and one sender per peer.
func (t *Transport) Start() {
	t.wg.Add(1)
	go t.acceptLoop()
	for _, p := range t.peers {
		t.wg.Add(2)
		go p.run()
		go p.runSnapshots()
	}
}

// Stop closes every connection and waits for the goroutines.
func (t *Transport) Stop() {
	t.cancel()
	_ = t.cfg.Listener.Close()
	t.mu.Lock()
	for c := range t.inbound {
		_ = c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// inboundPeer is an authenticated inbound connection's sender, the version negotiated on it, and
// whether DropInbound closed it.
type inboundPeer struct {
	id      uint64
	version uint16
	dropped bool
}

// DropInbound closes every inbound connection from the peer with raft id id: the member refused
// a message that came in on one of them (Handler.Receive cannot refuse at once: only the member's
// loop can judge a message). Messages already read from them are still delivered. The peer's
// own connections reconnect; a forger's must handshake again. Safe from any goroutine: a
// connection that has closed meanwhile is simply not there any more.
func (t *Transport) DropInbound(id uint64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for conn, p := range t.authed {
		if p.id == id && !p.dropped {
			p.dropped = true
			_ = conn.Close()
			n++
		}
	}
	return n
}

// Rejected returns how many inbound connections were closed for a protocol violation.
func (t *Transport) Rejected() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rejected
}

// Refused returns how many inbound connections were closed at once because MaxConns were open.
func (t *Transport) Refused() int { return int(t.acc.refused.Load()) }

// AcceptFailures returns how many accepts on the member port failed (and were retried).
func (t *Transport) AcceptFailures() int { return int(t.acc.failed.Load()) }

// SendsDropped returns how many messages Send dropped because their peer's queue was full.
func (t *Transport) SendsDropped() int { return int(t.sendsDropped.Load()) }

// Send queues messages for their peers, each framed into its peer's queue, and flushes at once
// the queues that received an urgent message — anything but a leader's append without entries,
// which only carries the commit index forward (outq: written at once, on the loop, when the
// connection is idle). Flush hands the rest to the peers' writer goroutines; the member's loop
// calls it after the round's answers to clients went out. Announcing a commit is not on any
// command's path, and a write on the loop costs it more than the system call: on a machine whose
// cores the members share, the receiver woken by a loopback write often takes the writer's core
// for its own work first (several times the cost of the call: docs/PERFORMANCE.md).
//
// Send and Flush must be called from the member's loop only: messages are marshalled here,
// because raft's messages share memory with its log. Neither blocks.
func (t *Transport) Send(msgs []*pb.Message) {
	urgent := false
	for _, m := range msgs {
		p, ok := t.peers[m.GetTo()]
		if !ok {
			continue
		}
		if m.GetType() == pb.MsgSnap {
			select {
			case p.snapq <- m:
			default:
				// A transfer to this peer is under way; raft will ask again. Reported from
				// another goroutine: Send runs on the member's loop, which the report goes to.
				go t.h.SnapshotStatus(p.id, false)
			}
			continue
		}
		var merr error
		p.q.appendFrames(func(b []byte) []byte {
			start := len(b)
			out, err := proto.MarshalOptions{}.MarshalAppend(append(b, make([]byte, wire.FrameHeaderBytes)...), m)
			switch {
			case err != nil:
				merr = err
				return b[:start]
			case len(out) > t.cfg.QueueBytes:
				merr = errQueueFull
				return out[:start]
			}
			wire.SealFrame(out[start:], wire.FrameRaft)
			return out
		})
		if errors.Is(merr, errQueueFull) {
			n := t.sendsDropped.Add(1)
			if ok, held := t.dropLog.Allow(time.Now()); ok {
				t.log.Warn("raft message dropped: the peer's queue is full; raft retransmits", "peer", p.id,
					"queue_bytes", t.cfg.QueueBytes, "dropped_total", n, "drops_not_logged", held)
			}
			t.h.Unreachable(p.id)
			continue
		}
		if merr != nil {
			t.log.Error("marshal raft message", "err", merr)
			continue
		}
		p.queued = true
		if m.GetType() != pb.MsgApp || len(m.GetEntries()) > 0 {
			p.urgent, urgent = true, true
		}
	}
	if !urgent {
		return
	}
	for _, p := range t.order {
		if p.urgent {
			p.urgent, p.queued = false, false
			p.q.flush()
		}
	}
}

// Flush hands what Send queued without flushing to the peers' writers. Loop only.
func (t *Transport) Flush() {
	for _, p := range t.order {
		if p.queued {
			p.urgent, p.queued = false, false
			p.q.signal()
		}
	}
}

var errQueueFull = errors.New("transport: peer queue full")

type peer struct {
	t     *Transport
	id    uint64
	addr  string
	q     *outq // frames for the current connection, or for the next while it is dialled
	snapq chan *pb.Message
	// queued: Send queued frames since the last flush; urgent: one of them is urgent. Loop only.
	queued, urgent bool
	// version is the member protocol version negotiated on the current outbound connection (0:
	// none). Every version so far frames messages alike; a later one that does not reads it.
	version atomic.Uint32
	// refuseLog limits the lines about handshakes this peer refused or left unanswered.
	refuseLog ratelog.Limiter
}

// PeerVersion returns the member protocol version negotiated on the outbound connection to the
// peer with raft id id, 0 while there is none.
func (t *Transport) PeerVersion(id uint64) uint16 {
	if p, ok := t.peers[id]; ok {
		return uint16(p.version.Load())
	}
	return 0
}

func (p *peer) backoff(attempt int) time.Duration {
	d := p.t.cfg.BackoffMin << min(attempt, 16)
	d = min(d, p.t.cfg.BackoffMax)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1)) // jitter: [d/2, d]
}

// dial connects and performs the handshake: it sends its own and waits for the peer's reply
// (bounded by handshakeTimeout) before anything else is sent. It returns the negotiated version.
func (p *peer) dial() (net.Conn, uint16, error) {
	d := net.Dialer{Timeout: p.t.cfg.DialTimeout}
	conn, err := d.DialContext(p.t.ctx, "tcp", p.addr)
	if err != nil {
		return nil, 0, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
		_ = tc.SetKeepAlivePeriod(5 * time.Second)
	}
	hs := wire.Handshake{ClusterID: p.t.cfg.ClusterID, SenderID: p.t.cfg.SelfID, ReceiverID: p.id,
		Protocol: p.t.cfg.MemberProtocol, ClusterVersionMax: p.t.cfg.ClusterVersionMax,
		Extensions: p.t.handshakeExtensions()}
	frame := wire.AppendFrame(nil, wire.FrameHandshake, wire.AppendHandshake(nil, &hs))
	_ = conn.SetWriteDeadline(time.Now().Add(p.t.cfg.DialTimeout))
	if _, err := conn.Write(frame); err != nil {
		_ = conn.Close()
		return nil, 0, err
	}
	_ = conn.SetWriteDeadline(time.Time{})
	v, err := p.awaitReply(conn)
	if err != nil {
		_ = conn.Close()
		return nil, 0, err
	}
	return conn, v, nil
}

// handshakeReplyBytesMax bounds the frame of a handshake reply: its fields and its text.
const handshakeReplyBytesMax = 64 + wire.MaxRefusalTextBytes

// awaitReply reads the peer's answer to the handshake. A refusal, or no answer, is logged
// (rate-limited per peer: the dialler retries with its backoff, as the peer may be upgraded or
// reconfigured meanwhile) and returned as an error: the connection failed.
func (p *peer) awaitReply(conn net.Conn) (uint16, error) {
	_ = conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	defer conn.SetReadDeadline(time.Time{})
	// Read from conn itself, not through a buffer: what follows on a snapshot connection (the
	// acknowledgement) is read by another reader.
	kind, body, _, err := wire.ReadFrame(conn, handshakeReplyBytesMax, nil)
	if err != nil {
		if p.t.ctx.Err() == nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			err = fmt.Errorf("the peer closed the connection without answering the handshake: it refused it " +
				"(see its log), or it runs a build from before version negotiation (045a031 or older)")
			p.logRefusal(err)
		}
		return 0, err
	}
	if kind != wire.FrameHandshakeReply {
		return 0, fmt.Errorf("answered the handshake with frame kind %d", kind)
	}
	rep, err := wire.DecodeHandshakeReply(body)
	if err != nil {
		return 0, err
	}
	if !rep.Accepted {
		err := fmt.Errorf("%w: %s", errHandshakeRefused, rep.Text)
		p.logRefusal(err)
		return 0, err
	}
	theirs, err := wire.ClusterUUIDOf(rep.Extensions)
	if err != nil {
		return 0, err
	}
	if text, ok := p.t.otherCluster(p.id, theirs); !ok {
		err := fmt.Errorf("%w: %s", errOtherCluster, text)
		p.logRefusal(err)
		return 0, err
	}
	text, ok, err := p.t.otherMembers(p.id, rep.Extensions)
	if err != nil {
		return 0, err
	}
	if !ok {
		err := fmt.Errorf("%w: %s", errOtherMembers, text)
		p.logRefusal(err)
		return 0, err
	}
	if !p.t.cfg.MemberProtocol.Contains(rep.Version) || !rep.Protocol.Contains(rep.Version) {
		err := fmt.Errorf("the peer chose member protocol version %d, outside this member's %s or its own %s",
			rep.Version, p.t.cfg.MemberProtocol, rep.Protocol)
		p.logRefusal(err)
		return 0, err
	}
	if f := p.t.cfg.PeerClusterVersion; f != nil {
		f(p.id, rep.ClusterVersionMax)
	}
	if err := p.t.reportStanding(p.id, rep.Extensions); err != nil {
		return 0, err
	}
	return rep.Version, nil
}

var errHandshakeRefused = errors.New("the peer refused the handshake")

func (p *peer) logRefusal(err error) {
	if ok, held := p.refuseLog.Allow(time.Now()); ok {
		p.t.log.Warn("member connection failed at the handshake; retrying with backoff", "peer", p.id,
			"addr", p.addr, "err", err, "failures_not_logged", held)
	}
}

func (p *peer) sleep(d time.Duration) bool {
	select {
	case <-p.t.ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// run owns the outbound connection: connect (with backoff and jitter), then write batches of
// queued messages with one flush per batch.
func (p *peer) run() {
	defer p.t.wg.Done()
	attempt := 0
	for p.t.ctx.Err() == nil {
		conn, v, err := p.dial()
		if err != nil {
			p.t.h.Unreachable(p.id)
			p.q.reset() // while the peer cannot be reached, stale messages must not pile up
			if !p.sleep(p.backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		if attempt > 0 {
			// What was queued while the peer could not be reached is stale: raft was told it is
			// unreachable and sends again what matters. Delivered now, the heartbeats of the
			// last backoff (up to BackoffMax of them) would each be answered, and raft answers
			// each answer to a probing leader with its probe again: up to MaxSizePerMsg of log
			// per heartbeat, 15 MiB at once when a follower came back after a few seconds.
			p.q.reset()
		}
		attempt = 0
		p.version.Store(uint32(v))
		err = p.write(conn)
		p.version.Store(0)
		_ = conn.Close()
		if err != nil && p.t.ctx.Err() == nil {
			p.t.log.Debug("member connection lost", "peer", p.id, "err", err)
			p.t.h.Unreachable(p.id)
		}
	}
}

// write owns conn while it lasts: the queue writes to it directly from the loop when it is
// idle, and this goroutine writes what the loop could not (one write for everything queued).
func (p *peer) write(conn net.Conn) error {
	p.q.attach(conn)
	defer p.q.reset()
	for {
		select {
		case <-p.t.ctx.Done():
			return nil
		case <-p.q.wake:
		}
		if err := p.q.drainTo(conn, 5*time.Second); err != nil {
			return err
		}
	}
}

// refuse closes a connection whose peer speaks no version this member speaks, counted as
// rejected and logged at most once per acceptLogEvery (the peer retries with its backoff, for as
// long as it runs).
func (t *Transport) refuse(conn net.Conn, reason string, args ...any) {
	t.mu.Lock()
	t.rejected++
	t.mu.Unlock()
	if ok, held := t.versionLog.Allow(time.Now()); ok {
		t.log.Error("closing member connection: "+fmt.Sprintf(reason, args...), "remote", conn.RemoteAddr().String(),
			"refusals_not_logged", held)
	}
	_ = conn.Close()
}

func (t *Transport) reject(conn net.Conn, reason string, args ...any) {
	t.mu.Lock()
	t.rejected++
	t.mu.Unlock()
	t.log.Warn("closing member connection: "+fmt.Sprintf(reason, args...), "remote", conn.RemoteAddr().String())
	_ = conn.Close()
}
