package transport

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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
	"github.com/tandem-cluster/tandem/internal/tlsconf"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Config configures the member transport.
type Config struct {
	ClusterID string
	// SelfID is this member's raft id.
	SelfID uint64
	// Peers maps raft ids of the other members to their advertised member addresses, as the
	// member knows them at start; SetPeers replaces them when the membership changes.
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
	// HeardWindow: a peer heard from (a handshake or a frame on one of its connections to this
	// member) within this long is reachable whatever this member's own dials say (default 1 s;
	// the node passes its election timeout). See Reachable.
	HeardWindow time.Duration
	// IdleTimeout closes an inbound member connection on which the peer sent nothing for this
	// long (default 30 s), quietly: a connection between two followers carries nothing while raft
	// has nothing for it. Snapshot streams are bounded by the default whatever this says.
	IdleTimeout time.Duration
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
	// MemberOf, if set, returns the member id of a peer's raft id, and whether it knows it: log
	// lines name peers as people see them, by member id (key "member"), and fall back to the raft
	// id (key "raft_id") only for one the member does not know (names.go). Called from any
	// goroutine.
	MemberOf func(raftID uint64) (int, bool)

	// TLS, if set, makes every member connection mutual TLS 1.3, in both directions, snapshot
	// streams included (tls.go); nil: plaintext. Its material is read at each handshake, so a
	// reload of its Source reaches the next connection.
	TLS *tlsconf.Member
	// tlsLogEvery, if set, replaces acceptLogEvery for the lines about failed TLS handshakes
	// (tests: every refusal logged).
	tlsLogEvery time.Duration
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
	if c.HeardWindow == 0 {
		c.HeardWindow = time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = idleTimeoutDefault
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
	cfg Config
	h   Handler
	log *slog.Logger
	// peers is the current peer set. A published set is never changed (SetPeers publishes a new
	// one), so Send, on the member's loop for every batch, and the accept path read it with one
	// atomic load and no lock.
	peers atomic.Pointer[peerSet]
	// peersMu serializes the writers of peers (Start, SetPeers, Stop): started and stopped tell
	// SetPeers whether to launch a new peer's senders, or to do nothing.
	peersMu          sync.Mutex
	started, stopped bool
	snaps            chan struct{} // semaphore of outbound snapshot transfers

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

	// sendsDropped counts messages Send dropped because their peer's queue was full or their
	// receiver was not a peer (read by SendsDropped from any goroutine); dropLog and notPeerLog
	// limit the lines saying so.
	sendsDropped        atomic.Int64
	dropLog, notPeerLog ratelog.Limiter
	// versionLog limits the lines about peers refused for their versions.
	versionLog ratelog.Limiter
	// tlsLog limits the lines about inbound connections whose TLS handshake failed, per remote
	// host (tls.go).
	tlsLog ratelog.Keyed
	// clusterUUID is this member's cluster identity (identity.go): read by every connection's
	// goroutine, set by the member's loop (SetClusterUUID).
	clusterUUID atomic.Pointer[wire.ClusterUUID]

	// stats are the counters of each peer's traffic, by raft id (stats.go), under statsMu;
	// snapsSent and snapsFailed count the snapshot transfers to followers.
	statsMu                sync.Mutex
	stats                  map[uint64]*peerCounters
	snapsSent, snapsFailed atomic.Int64
	// outages holds each raft id's ratelog.Outage (names.go): one for every raft id that was
	// ever a peer, which the membership bounds (raft ids are never reused, and added one by one).
	outages sync.Map
}

// New creates a transport; Start runs it.
func New(cfg Config, h Handler) *Transport {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg: cfg, h: h, log: cfg.Logger,
		snaps:   make(chan struct{}, cfg.MaxConcurrentSnapshots),
		ctx:     ctx,
		cancel:  cancel,
		inbound: map[net.Conn]struct{}{},
		dropLog: ratelog.Limiter{Every: acceptLogEvery}, notPeerLog: ratelog.Limiter{Every: acceptLogEvery},
		versionLog: ratelog.Limiter{Every: acceptLogEvery},
		tlsLog:     ratelog.Keyed{Every: cmp.Or(cfg.tlsLogEvery, acceptLogEvery)},
		authed:     map[net.Conn]*inboundPeer{},
	}
	t.acc = newAccepter("member", cfg.Listener, cfg.MaxConns, cfg.Logger, ctx.Done())
	t.SetClusterUUID(cfg.ClusterUUID)
	byID := map[uint64]*peer{}
	for id, addr := range cfg.Peers {
		if id != cfg.SelfID {
			byID[id] = t.newPeer(id, addr)
		}
	}
	t.peers.Store(newPeerSet(byID))
	return t
}

// Start launches the accept loop and one sender per peer.
func (t *Transport) Start() {
	t.peersMu.Lock()
	defer t.peersMu.Unlock()
	if t.started || t.stopped {
		return
	}
	t.started = true
	t.wg.Add(1)
	go t.acceptLoop()
	for _, p := range t.peers.Load().order {
		t.startPeer(p)
	}
}

// Stop closes every connection and waits for the goroutines, those of peers removed meanwhile
// too. SetPeers does nothing once Stop began.
func (t *Transport) Stop() {
	t.peersMu.Lock()
	t.stopped = true // from now on nobody adds to wg: Wait below sees every goroutine
	t.peersMu.Unlock()
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

// SendsDropped returns how many messages Send dropped because their peer's queue was full or
// their receiver was not a peer.
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
	ps := t.peers.Load()
	urgent := false
	for _, m := range msgs {
		p, ok := ps.byID[m.GetTo()]
		if !ok {
			t.dropNotPeer(m)
			continue
		}
		if m.GetType() == pb.MsgSnap {
			if !p.handSnapshot(m) {
				// A transfer to this peer is under way (raft will ask again), or the peer was
				// just removed. Reported from another goroutine: Send runs on the member's loop,
				// which the report goes to.
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
			p.c.sentFailures.Add(1)
			n := t.sendsDropped.Add(1)
			if ok, held := t.dropLog.Allow(time.Now()); ok {
				t.log.Warn("raft message dropped: the peer's queue is full; raft retransmits", t.memberAttr(p.id),
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
	for _, p := range ps.order {
		if p.urgent {
			p.urgent, p.queued = false, false
			p.q.flush()
		}
	}
}

// dropNotPeer drops a message whose receiver is not a peer: one removed (raft, which no longer
// tracks it, may still have had messages for it in the round that removed it), one not added
// yet, or a caller's mistake. It is counted (SendsDropped) and logged, rate-limited; raft is not
// told it is unreachable, as it does not track the id. A MsgSnap is still answered with a failed
// SnapshotStatus, so that every MsgSnap gets exactly one report (raft ignores one for an id it
// does not track).
func (t *Transport) dropNotPeer(m *pb.Message) {
	n := t.sendsDropped.Add(1)
	if ok, held := t.notPeerLog.Allow(time.Now()); ok {
		t.log.Info("raft message dropped: its receiver is not a peer (removed, or not added yet)", t.memberAttr(m.GetTo()),
			"type", m.GetType().String(), "dropped_total", n, "drops_not_logged", held)
	}
	if m.GetType() == pb.MsgSnap {
		go t.h.SnapshotStatus(m.GetTo(), false) // not from the loop, which the report goes to
	}
}

// Flush hands what Send queued without flushing to the peers' writers. Loop only.
func (t *Transport) Flush() {
	for _, p := range t.peers.Load().order {
		if p.queued {
			p.urgent, p.queued = false, false
			p.q.signal()
		}
	}
}

var errQueueFull = errors.New("transport: peer queue full")

type peer struct {
	t  *Transport
	id uint64
	// ctx ends when the peer is removed (cancel) or the transport stops: its goroutines end, and
	// its dials and connections are cut short.
	ctx    context.Context
	cancel context.CancelFunc
	// addr is the peer's advertised address; SetPeers stores a new pointer when it changes, and
	// signals moved, so that the connection dialled at the old one (a different pointer) is
	// closed and the next one dialled at the new one.
	addr  atomic.Pointer[string]
	moved chan struct{} // 1-buffered
	// back (1-buffered) is signalled when the peer connects to this member: it is up, so a
	// dialler sleeping in its backoff dials at once. Why: a peer that was down a few seconds
	// left the backoff at BackoffMax (2 s), and a restarted member then heard nothing from
	// this one — no appends, no vote requests — for up to that long after it was back (measured:
	// 0.8-1 s; TestRestartedPeerIsReachedAtOnce). A restarted member dials every peer as it
	// starts, so its handshake is the earliest sign that it is back.
	back  chan struct{}
	c     *peerCounters // this peer's traffic (stats.go)
	q     *outq         // frames for the current connection, or for the next while it is dialled
	snapq chan *pb.Message
	// snapMu orders Send's hand-over of a MsgSnap (snapq) with the peer's removal (gone), so that
	// every MsgSnap is reported exactly once: by runSnapshots, or by whoever abandons it.
	snapMu sync.Mutex
	gone   bool
	// queued: Send queued frames since the last flush; urgent: one of them is urgent. Loop only.
	queued, urgent bool
	// version is the member protocol version negotiated on the current outbound connection (0:
	// none). Every version so far frames messages alike; a later one that does not reads it.
	version atomic.Uint32
	// refuseLog limits the lines about handshakes this peer refused or left unanswered.
	refuseLog ratelog.Limiter
	// dialState is the outcome of the latest dial of the outbound connection (Reachable);
	// heard is when the peer was last heard from on one of its connections to this member (Unix
	// nanoseconds, 0: never), written by their readers.
	dialState atomic.Int32
	heard     atomic.Int64
	// outage follows the dials that fail in a row: logged when they start, at most once per
	// unreachableLogEvery while they go on, and when a dial succeeds again. The transport's, by
	// raft id (outageOf): a peer removed and added again (a member replaying its log at start
	// does that) goes on with its outage rather than logging it again.
	outage *ratelog.Outage
}

// PeerVersion returns the member protocol version negotiated on the outbound connection to the
// peer with raft id id, 0 while there is none.
func (t *Transport) PeerVersion(id uint64) uint16 {
	if p, ok := t.peers.Load().byID[id]; ok {
		return uint16(p.version.Load())
	}
	return 0
}

// peerSet is the transport's peers at one moment. Never changed once published (Transport.peers):
// a change publishes a new set, which shares the peers that stay.
type peerSet struct {
	byID  map[uint64]*peer
	order []*peer // by raft id, for flushing in a fixed order
}

func newPeerSet(byID map[uint64]*peer) *peerSet {
	order := make([]*peer, 0, len(byID))
	for _, p := range byID {
		order = append(order, p)
	}
	slices.SortFunc(order, func(a, b *peer) int { return cmp.Compare(a.id, b.id) })
	return &peerSet{byID: byID, order: order}
}

func (t *Transport) newPeer(id uint64, addr string) *peer {
	ctx, cancel := context.WithCancel(t.ctx)
	p := &peer{t: t, id: id, ctx: ctx, cancel: cancel, moved: make(chan struct{}, 1), back: make(chan struct{}, 1), q: newOutq(),
		snapq: make(chan *pb.Message, 1), refuseLog: ratelog.Limiter{Every: acceptLogEvery}, c: t.countersOf(id),
		outage: t.outageOf(id)}
	p.q.sent = &p.c.sent
	p.addr.Store(&addr)
	return p
}

// startPeer launches the peer's senders. Under peersMu, before Stop: Stop's Wait sees them.
func (t *Transport) startPeer(p *peer) {
	t.wg.Add(2)
	go p.run()
	go p.runSnapshots()
}

// SetPeers replaces the peer set (raft id -> advertised member address; SelfID, if present, is
// ignored): the member calls it each time it applied a membership change. A new peer gets its
// senders, and its handshakes are accepted from now on. A peer whose address changed has its
// outbound connection closed and the next one dialled at the new address (what was queued for it
// is dropped; raft retransmits). A removed peer's senders end, its queue is dropped, a snapshot
// transfer to it is abandoned (and reported failed), its inbound connections are closed as by
// DropInbound, and its handshakes are refused from now on.
//
// Safe from any goroutine, and it never waits for a goroutine or a connection: the removed
// peers' goroutines end on their own, and Stop waits for them. Before Start it only replaces the
// set (Start launches its senders); once Stop began it does nothing.
func (t *Transport) SetPeers(peers map[uint64]string) {
	t.peersMu.Lock()
	defer t.peersMu.Unlock()
	if t.stopped {
		return
	}
	old := t.peers.Load()
	byID := make(map[uint64]*peer, len(peers))
	var added, moved, removed []uint64
	for id, addr := range peers {
		if id == t.cfg.SelfID {
			continue
		}
		p, ok := old.byID[id]
		if !ok {
			p = t.newPeer(id, addr)
			added = append(added, id)
		} else if p.setAddr(addr) {
			moved = append(moved, id)
		}
		byID[id] = p
	}
	// Publish first: from here on Send drops what is addressed to a removed peer, and a
	// handshake of one is refused (serve checks the set again when it registers a connection,
	// so one that passed its check before is among those DropInbound closes below).
	t.peers.Store(newPeerSet(byID))
	for _, id := range added {
		if t.started {
			t.startPeer(byID[id])
		}
	}
	for id, p := range old.byID {
		if _, ok := byID[id]; ok {
			continue
		}
		removed = append(removed, id)
		p.cancel()
		p.removedLine()
		if !t.started && p.abandonSnapshots() {
			// No runSnapshots to report it: a MsgSnap sent before Start.
			go t.h.SnapshotStatus(id, false)
		}
		t.DropInbound(id)
	}
	if len(added)+len(moved)+len(removed) > 0 {
		slices.Sort(added)
		slices.Sort(moved)
		slices.Sort(removed)
		t.log.Info("member transport: the peers changed", "added", t.memberIDs(added), "moved", t.memberIDs(moved),
			"removed", t.memberIDs(removed))
	}
}

// Peers returns a copy of the peer set: raft id -> advertised member address.
func (t *Transport) Peers() map[uint64]string {
	ps := t.peers.Load()
	out := make(map[uint64]string, len(ps.byID))
	for id, p := range ps.byID {
		out[id] = *p.addr.Load()
	}
	return out
}

// setAddr records the peer's address and reports whether it changed; the peer's sender then
// closes a connection dialled at the old one. Under peersMu.
func (p *peer) setAddr(addr string) bool {
	if *p.addr.Load() == addr {
		return false
	}
	p.addr.Store(&addr)
	select {
	case p.moved <- struct{}{}:
	default:
	}
	return true
}

// handSnapshot hands a MsgSnap to runSnapshots; false if a transfer is under way or the peer was
// removed: the caller reports it failed.
func (p *peer) handSnapshot(m *pb.Message) bool {
	p.snapMu.Lock()
	defer p.snapMu.Unlock()
	if p.gone {
		return false
	}
	select {
	case p.snapq <- m:
		return true
	default:
		return false
	}
}

// abandonSnapshots marks the peer gone, so that Send hands it no more snapshots, and reports
// whether a MsgSnap was waiting for runSnapshots: its caller reports it failed.
func (p *peer) abandonSnapshots() bool {
	p.snapMu.Lock()
	defer p.snapMu.Unlock()
	p.gone = true
	select {
	case <-p.snapq:
		return true
	default:
		return false
	}
}

func (p *peer) backoff(attempt int) time.Duration {
	d := p.t.cfg.BackoffMin << min(attempt, 16)
	d = min(d, p.t.cfg.BackoffMax)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1)) // jitter: [d/2, d]
}

// dial connects and performs the handshake: it sends its own and waits for the peer's reply
// (bounded by handshakeTimeout) before anything else is sent. It returns the negotiated version
// and the address it dialled (the pointer SetPeers stored: a new one means the peer moved since).
// The peer's removal, or Stop, cuts it short.
func (p *peer) dial() (net.Conn, uint16, *string, error) {
	addr := p.addr.Load()
	d := net.Dialer{Timeout: p.t.cfg.DialTimeout}
	raw, err := d.DialContext(p.ctx, "tcp", *addr)
	if err != nil {
		return nil, 0, nil, err
	}
	stop := context.AfterFunc(p.ctx, func() { _ = raw.Close() })
	defer stop()
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
		_ = tc.SetKeepAlivePeriod(5 * time.Second)
	}
	conn := raw
	if p.t.cfg.TLS != nil {
		// The TCP options are set on the TCP connection, above; everything else goes through TLS.
		if conn, err = p.dialTLS(raw, *addr); err != nil {
			return nil, 0, nil, err
		}
	}
	hs := wire.Handshake{ClusterID: p.t.cfg.ClusterID, SenderID: p.t.cfg.SelfID, ReceiverID: p.id,
		Protocol: p.t.cfg.MemberProtocol, ClusterVersionMax: p.t.cfg.ClusterVersionMax,
		Extensions: p.t.handshakeExtensions()}
	frame := wire.AppendFrame(nil, wire.FrameHandshake, wire.AppendHandshake(nil, &hs))
	_ = conn.SetWriteDeadline(time.Now().Add(p.t.cfg.DialTimeout))
	n, err := conn.Write(frame)
	p.c.sent.Add(int64(n))
	if err != nil {
		_ = conn.Close()
		return nil, 0, nil, err
	}
	_ = conn.SetWriteDeadline(time.Time{})
	v, err := p.awaitReply(conn)
	if err == nil && !stop() {
		err = p.ctx.Err() // removed, or stopping, as the handshake passed: conn is closed
	}
	if err != nil {
		_ = conn.Close()
		return nil, 0, nil, err
	}
	return conn, v, addr, nil
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
		switch {
		case p.ctx.Err() != nil:
		case p.t.cfg.TLS != nil && remoteAlert(err):
			// TLS 1.3: the acceptor's verdict on this member's certificate comes after the
			// dialler's handshake completed, with the first read.
			err = fmt.Errorf("%w: the peer refused this member's certificate (%v): see its log", errTLSFailed, err)
			p.logRefusal(err)
		case closedEarly(err): // (a reset too: a peer that closes with the handshake unread resets)
			hint := "or it runs a build from before version negotiation (045a031 or older)"
			if p.t.cfg.TLS == nil {
				hint = "or it runs a build from before version negotiation (045a031 or older), or its member port uses TLS"
			}
			err = fmt.Errorf("the peer closed the connection without answering the handshake: it refused it "+
				"(see its log), %s", hint)
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
		p.t.log.Warn("member connection failed at the handshake; retrying with backoff", p.t.memberAttr(p.id),
			"addr", *p.addr.Load(), "err", err, "failures_not_logged", held)
	}
}

// sleep waits for d, or less if the peer's address changed meanwhile (the new one is dialled at
// once) or the peer connected to this member (it is up: isBack); false if the peer was removed
// or the transport stopped.
func (p *peer) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-p.moved:
	case <-p.back:
	case <-t.C:
	}
	return true
}

// isBack wakes the peer's dialler if it sleeps in its backoff (the peer connected to this
// member: it is up). Any goroutine.
func (p *peer) isBack() {
	select {
	case p.back <- struct{}{}:
	default:
	}
}

// errMoved: the connection was closed because the peer's address changed.
var errMoved = errors.New("the peer's address changed; reconnecting at the new one")

// errPeerClosed: the peer closed the outbound connection (after IdleTimeout without messages,
// when its member refused one, or when its process ended); it is dialled again at once, and
// that dial says whether the peer is still there.
var errPeerClosed = errors.New("the peer closed the connection")

// The outcomes of a peer's latest dial (peer.dialState).
const (
	dialNone   int32 = iota // not dialled yet
	dialOK                  // connected, handshake accepted
	dialFailed              // the connection or its handshake failed
)

// Reachable reports whether the peer of raft id id is reachable, and whether the transport
// knows yet (false before its first dial ended, unless the peer was heard from). Reachable:
// the peer was heard from within HeardWindow (a handshake or a frame on one of its connections
// to this member), or the latest dial of this member's outbound connection to it succeeded.
// That connection is dialled at start and again at once whenever it ends — a write failed, or
// the peer closed it (its IdleTimeout closes a connection that carried nothing, as one between
// two followers does; its process ending closes them all) — so a peer that went away is found
// unreachable by the next dial, within DialTimeout, and one that came back is dialled at once
// (its own dials wake this member's backoff). A peer this member has nothing to send, and whose
// connection stays open, is what the last dial found: nothing is sent to test it. Unreachable
// also for an id that is not a peer. Safe from any goroutine.
func (t *Transport) Reachable(id uint64) (reachable, known bool) {
	p, ok := t.peers.Load().byID[id]
	if !ok {
		return false, true
	}
	if h := p.heard.Load(); h != 0 && time.Since(time.Unix(0, h)) < t.cfg.HeardWindow {
		return true, true
	}
	switch p.dialState.Load() {
	case dialOK:
		return true, true
	case dialFailed:
		return false, true
	}
	return false, false
}

// heardNow records that the peer was heard from (Reachable).
func (p *peer) heardNow() { p.heard.Store(time.Now().UnixNano()) }

// run owns the outbound connection: connect (with backoff and jitter), then write batches of
// queued messages with one flush per batch. It ends when the peer is removed or the transport
// stops, and then tells raft nothing: raft is told of a removed peer by its own configuration.
func (p *peer) run() {
	defer p.t.wg.Done()
	attempt := 0
	for p.ctx.Err() == nil {
		conn, v, addr, err := p.dial()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			p.c.sentFailures.Add(1)
			p.dialState.Store(dialFailed)
			p.dialFailed(err)
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
		p.dialState.Store(dialOK)
		p.dialed()
		p.version.Store(uint32(v))
		// Removed, the peer gets no more: a write under way is cut short too.
		stop := context.AfterFunc(p.ctx, func() { _ = conn.Close() })
		err = p.write(conn, addr)
		stop()
		p.version.Store(0)
		_ = conn.Close()
		if err != nil && p.ctx.Err() == nil {
			// What was queued is dropped: raft, told the peer is unreachable, probes it and
			// sends again what matters.
			switch {
			case errors.Is(err, errMoved):
				p.t.log.Info("member connection closed: the peer's address changed; reconnecting at the new one",
					p.t.memberAttr(p.id), "old_addr", *addr, "addr", *p.addr.Load())
			case errors.Is(err, errPeerClosed):
				// No failure of this member's: the redial says whether the peer is there.
				p.t.log.Debug("member connection closed by the peer; dialling again", p.t.memberAttr(p.id))
			default:
				p.t.log.Debug("member connection lost", p.t.memberAttr(p.id), "err", err)
				p.c.sentFailures.Add(1)
			}
			p.t.h.Unreachable(p.id)
			// A peer that closes each connection as soon as it is made is not dialled in a
			// tight loop: the shortest backoff first (BackoffMin at most).
			if errors.Is(err, errPeerClosed) && !p.sleep(p.backoff(0)) {
				return
			}
		}
	}
}

// write owns conn, dialled at addr, while it lasts: the queue writes to it directly from the
// loop when it is idle, and this goroutine writes what the loop could not (one write for
// everything queued). It returns errMoved once the peer's address is no longer addr, and
// errPeerClosed once the peer closed conn (a goroutine reads it: the peer sends nothing on it
// after its handshake reply, so a read ends only when the connection does).
func (p *peer) write(conn net.Conn, addr *string) error {
	p.q.attach(conn)
	defer p.q.reset()
	closed := make(chan struct{})
	p.t.wg.Add(1) // run's own goroutine is counted: Stop's Wait sees this one too
	go func() {
		defer p.t.wg.Done()
		defer close(closed)
		var b [64]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				return // the peer closed it, or run did (after write returned)
			}
		}
	}()
	for {
		select {
		case <-p.ctx.Done():
			return nil
		case <-closed:
			return errPeerClosed
		case <-p.moved:
			if p.addr.Load() != addr {
				return errMoved
			}
			continue // a move the dial already saw: this connection is at the new address
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
	t.closeRefused(conn, nil, reason, args...)
}

// refusePeer is refuse for a connection whose handshake named its sender, raft id id: the line
// names it as a field too.
func (t *Transport) refusePeer(conn net.Conn, id uint64, reason string, args ...any) {
	t.closeRefused(conn, []any{t.memberAttr(id)}, reason, args...)
}

func (t *Transport) closeRefused(conn net.Conn, attrs []any, reason string, args ...any) {
	t.mu.Lock()
	t.rejected++
	t.mu.Unlock()
	if ok, held := t.versionLog.Allow(time.Now()); ok {
		t.log.Error("closing member connection: "+fmt.Sprintf(reason, args...), append(attrs, "remote", conn.RemoteAddr().String(),
			"refusals_not_logged", held)...)
	}
	_ = conn.Close()
}

// reject closes a connection for a protocol violation, counted (Rejected) and logged.
func (t *Transport) reject(conn net.Conn, reason string, args ...any) {
	t.closeRejected(conn, nil, reason, args...)
}

// rejectPeer is reject for a connection whose sender is known (its handshake named raft id
// id): the line names it as a field too ("member", or "raft_id" if the member cannot name it).
func (t *Transport) rejectPeer(conn net.Conn, id uint64, reason string, args ...any) {
	t.closeRejected(conn, []any{t.memberAttr(id)}, reason, args...)
}

func (t *Transport) closeRejected(conn net.Conn, attrs []any, reason string, args ...any) {
	t.mu.Lock()
	t.rejected++
	t.mu.Unlock()
	t.log.Warn("closing member connection: "+fmt.Sprintf(reason, args...), append(attrs, "remote", conn.RemoteAddr().String())...)
	_ = conn.Close()
}

// idle reports whether a read failed on its deadline: the peer sent nothing for that long.
func idle(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
