package node

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/consensus"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/ratelog"
	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/internal/tlsconf"
	"github.com/tandem-cluster/tandem/internal/transport"
	"github.com/tandem-cluster/tandem/internal/vfs"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// EventKind classifies node events.
type EventKind uint8

// Event kinds.
const (
	// EventRoleChange: this member's role, the leader or the term changed.
	EventRoleChange EventKind = iota + 1
	// EventSnapshotTaken: this member wrote a snapshot.
	EventSnapshotTaken
	// EventSnapshotInstalled: this member installed a snapshot from the leader.
	EventSnapshotInstalled
	// EventMemberUnreachable / EventMemberReachable: the transport found a peer unreachable, or
	// reachable again (transport.Reachable; tandem_network_peer_reachable says the same).
	EventMemberUnreachable
	EventMemberReachable
	// EventClusterVersion: the entry at Index raised the cluster version to ClusterVersion.
	EventClusterVersion
	// EventClusterIdentity: the cluster's identity (ClusterUUID) is known here: the entry at
	// Index recorded it, a snapshot at Index held it, or (Index 0) the member started knowing it.
	EventClusterIdentity
	// EventMembership: the membership change at Index was applied (Status.Members is the new
	// membership).
	EventMembership
	// EventStarted: the member is up: its data directory was accepted, its ports are bound (and,
	// with Join, it joined), and it serves. Once per Run that gets this far; a Run that fails
	// before it (a port in use, a directory refused) emits none. Events of the start itself (the
	// log's replay, the identity read from the directory) may come before it.
	EventStarted
)

func (k EventKind) String() string {
	switch k {
	case EventRoleChange:
		return "role-change"
	case EventSnapshotTaken:
		return "snapshot-taken"
	case EventSnapshotInstalled:
		return "snapshot-installed"
	case EventMemberUnreachable:
		return "member-unreachable"
	case EventMemberReachable:
		return "member-reachable"
	case EventClusterVersion:
		return "cluster-version"
	case EventClusterIdentity:
		return "cluster-identity"
	case EventMembership:
		return "membership"
	case EventStarted:
		return "started"
	}
	return "unknown"
}

// Event is something an operator may want to see. The node never prints; the CLI renders these.
type Event struct {
	Kind   EventKind
	Time   time.Time
	Role   service.Role
	Leader int // -1 when unknown
	Term   uint64
	Index  uint64 // snapshot index for snapshot events; the raise's, for EventClusterVersion
	Member int    // the peer, for reachability events
	// ClusterVersion is the cluster version now in force, for EventClusterVersion.
	ClusterVersion uint16
	// ClusterUUID is the cluster's identity, for EventClusterIdentity (as in Status).
	ClusterUUID string
}

// Status is a summary of the member's state.
type Status struct {
	ID int
	// RaftID is this member's raft id: ID+1 for a founding member; a member that joined later
	// got one never used before.
	RaftID        uint64
	Role          service.Role
	Term          uint64
	Leader        int // -1 when unknown
	Commit        uint64
	Applied       uint64
	SnapshotIndex uint64
	Members       []Member
	// ClusterVersion is the cluster version in force at Applied: how entries are applied
	// (docs/COMPATIBILITY.md). ClusterVersionMax is the highest this member applies and reports.
	ClusterVersion    uint16
	ClusterVersionMax uint16
	// ClusterUUID is the cluster's identity: 32 lowercase hex digits (16 random bytes a leader
	// drew once, when the cluster was new and ran cluster version 3), "" until this member knows
	// it. Unlike the human cluster name (Config.ClusterID), no two clusters share one: members
	// refuse a peer of another identity at the handshake, and clients an endpoint of another.
	// A string, so that it prints and compares as operators read it.
	ClusterUUID string
	// Unverified: this member started on an empty log (a new founder, or a data directory that
	// was wiped) and neither votes nor campaigns until it is verified; VoteFloor: once verified
	// so, it grants no vote in a term up to this one (README, "When a member refuses to start").
	Unverified bool
	VoteFloor  uint64
	// Suspended: the cluster is suspended (tandem cluster suspend): commands
	// are refused. Preferred: the cluster's preferred leaders, most preferred first.
	Suspended bool
	Preferred []int
	// EventsDropped counts events lost because nobody read Events fast enough.
	EventsDropped int
	// RaftMessagesDropped counts raft messages from peers that were received but not stepped:
	// refused by raft, or arriving as the member stopped. Client load drops none: raft's input
	// has a path of its own, with back-pressure on the peer's connection when it is full.
	RaftMessagesDropped int
	// RaftSendsDropped counts raft messages to peers dropped because the peer's outbound queue was
	// full (the peer is reported unreachable and raft retransmits).
	RaftSendsDropped int
	// MemberConnsRefused and ClientConnsRefused count connections closed at once because their
	// port had MaxMemberConns / MaxClientConns open; AcceptFailures counts failed accepts on
	// either port (e.g. too many open files), each retried after a backoff.
	MemberConnsRefused int
	ClientConnsRefused int
	AcceptFailures     int
	// RaftRefused counts raft messages from the member port refused as invalid (something raft
	// would crash on, or no honest member sends); each closed the connections of its claimed sender.
	RaftRefused int
	// ErrorsLogDropped counts warnings and errors logged but not written to the data directory's
	// errors.log, because its writer was behind (a flood); ErrorsLogFailures the writes of the
	// file that failed. Both only mean less to read in tandem cluster errors (errlog.go).
	ErrorsLogDropped  int
	ErrorsLogFailures int
}

// Node is one running member: the replica behind a real clock, TCP and the archive.
type Node struct {
	cfg Config
	// founding is the founding member list's digest the member handshakes carry (members.go).
	founding foundingMembers
	svc      service.Service
	log      *slog.Logger
	events   chan Event
	// errs keeps what log says at WARN and above, for tandem cluster errors (errlog.go).
	errs *errorLog

	// raftIn carries what raft hears from the transport: peers' messages and snapshot reports.
	// clientIn carries client requests and departures. The loop takes raftIn first, every round,
	// and clientIn only up to a bound per round, so no client load delays raft's input behind
	// its own. Both block their senders when full (back-pressure on the connection's reader);
	// only Unreachable, which the loop itself calls, never blocks (keepUnreachable).
	raftIn   chan input
	clientIn chan input
	quit     chan struct{} // closed when the loop has ended: nobody reads the inputs any more

	ran atomic.Bool // Run was called: a Node runs once

	// kept lists peers reported unreachable while raftIn was full, for the loop's next round;
	// keptAny says the list may be non-empty, so that the loop need not lock to see it is not.
	keptMu  sync.Mutex
	kept    []uint64
	keptAny atomic.Bool

	// raftDropped counts raft messages received and not stepped (Status.RaftMessagesDropped);
	// dropLog limits the lines saying so.
	raftDropped atomic.Int64
	dropLog     ratelog.Limiter
	// identityErr: keeping the cluster's identity in IDENTITY failed (or it differs from the one
	// there), or keeping whether this member may vote in VERIFICATION failed; the loop stops the
	// member with it. The loop's goroutine only.
	identityErr error
	// standing is what this member's handshakes say of it (replica.Standing), kept by the loop
	// (noteStanding) for the transport's goroutines; unverified is whether the member may not
	// vote yet, which the loop's goroutine alone reads: meanwhile the standing's last index is
	// kept after every round (consensus/verify.go).
	standing   atomic.Pointer[wire.Standing]
	unverified bool
	// leaderKnown and leaderTerm: the leader this member last knew (member id; -1: none) and
	// its term, for the lines "new leader elected" and "leader lost" (noteLeader). Loop only.
	leaderKnown int
	leaderTerm  uint64
	// refuseLog limits the lines about messages refused as invalid (Status.RaftRefused).
	refuseLog ratelog.Limiter

	mu     sync.Mutex
	status Status
	// unreachable: the peers, by member id, the transport found unreachable at the last tick
	// (checkReachable); a peer it has not judged yet is absent (reachable).
	unreachable map[int]bool
	dropped     int
	// tr and cs are the running transports (nil before Run), for their counters in Status.
	tr *transport.Transport
	cs *transport.ClientServer
	// rep is the running replica (nil before Run), for the metrics' counters that are safe to
	// read from any goroutine (ProposalsFailed, SessionCounts) and nothing else.
	rep *replica.Replica

	// clientL and memberL are the listeners given with WithListeners (nil: Run binds the port);
	// httpL the HTTP endpoint's, given with WithHTTPListener (nil: Run binds Config.HTTPAddr, if set).
	clientL, memberL, httpL net.Listener
	// httpDefault is the HTTP endpoint's best-effort address (WithHTTPDefault).
	httpDefault string
	// adminTLS: how this member connects to the others' client ports (auth.go); set by Run.
	adminTLS  *tls.Config
	adminPeer *tlsconf.Member
	// metrics is what the HTTP endpoint reads beyond Status (metrics.go).
	metrics *metrics

	wrapListener func(port string, l net.Listener) net.Listener // tests only
	refused      int                                            // Status.RaftRefused, behind mu
	// peerCertPoll is how often the member port's TLS files are looked at for a renewal
	// (peertls.go; 0: peerCertPollDefault; tests: shorter).
	peerCertPoll time.Duration

	// learnt receives what watchMembership learnt from the others; hinted are the peers it
	// named (raft id → member address), which the transport keeps beside the recorded ones.
	// The loop's goroutine only.
	learnt chan learnt
	hinted map[uint64]string
	// peersPending: a membership change was applied this round. The transport got its
	// additions and moves at once (a message to a new peer may go out in the same round), its
	// removals wait for the round's end (settlePeers): applying a bootstrap, whose conf changes
	// add the founders one at a time, or replaying a log moves the membership through its
	// history, and removing peers that the next entries add back closed their connections,
	// logged them removed (while unreachable, if they had not started yet) and added them again.
	// The loop's goroutine only.
	peersPending bool

	// memberIDs maps the raft ids the member knows to their member ids, for the log lines of the
	// transport's goroutines (names.go): written by the loop, read anywhere.
	memberIDs atomic.Pointer[map[uint64]int]

	// memberProtocol, clientProtocol and clusterVersionMax narrow what the member speaks and
	// reports (WithVersions; zero: this build's).
	memberProtocol, clientProtocol wire.Range
	clusterVersionMax              uint16
}

// Errors Run returns when the member stops itself (wrapped, with the cause: test with errors.Is).
// They are the consensus core's, under public names.
var (
	// ErrStopped: the member stopped rather than acknowledge what it might not keep: its storage
	// failed (a write, sync or snapshot write error; a failed sync is never retried, as the
	// kernel may have dropped the data), or it lost data (ErrLostData). It never acknowledged
	// anything after the failure. Fix the cause (a full or failing disk) before restarting it.
	ErrStopped = consensus.ErrStopped
	// ErrLostData: the member's log lacks entries it had acknowledged — the leader keeps saying
	// entries beyond the end of its log are committed — so its data directory was wiped, replaced
	// or restored from an older copy. Restarting it as it is cannot help: restore the directory.
	// The others keep serving while they are a majority. Run's error wraps ErrStopped too.
	ErrLostData = consensus.ErrLostData
	// ErrCannotApply: the member met a committed entry, or a snapshot, that its build cannot
	// apply — a cluster version above what it applies (MaxClusterVersion, or the build's
	// highest), or an entry kind it does not know: a newer build wrote it. The member stops at
	// that index rather than skip what the others applied. Run it on a build that applies it
	// (docs/COMPATIBILITY.md); its data is intact.
	ErrCannotApply = replica.ErrCannotApply
	// ErrMembersDiffer: the configured member ids (Config.Members) differ from the cluster's
	// membership recorded in the data directory, which wins: the member stops at start, naming
	// both lists. Start it with the recorded list. (Addresses that differ are only logged: a
	// member dials its configured addresses, so a cluster can move by a restart.)
	ErrMembersDiffer = replica.ErrMembersDiffer
	// ErrShutdown: the cluster was shut down (tandem cluster shutdown): the member stopped at the
	// shutdown's index, after a snapshot there unless it was aborted. Its data is intact: start
	// it again to resume.
	ErrShutdown = replica.ErrShutdown
)

// ErrRunTwice is returned by a second call of Run: a Node runs once (its inputs, events and
// listeners end with the run). To run the member again, make another Node with New.
var ErrRunTwice = errors.New("node: Run was called twice: a Node runs once; make another with New")

// ErrDataDirInUse is returned by Run when another process, or another Node in this one, runs on
// Config.DataDir (the lock file DataDir/LOCK is held): two members on one directory would each
// overwrite what the other wrote. The error names the holder's pid: stop it first.
var ErrDataDirInUse = archive.ErrInUse

// Option adjusts a node.
type Option func(*Node)

// WithListeners makes Run serve clients on client and members on member instead of binding
// Config.ClientBind and Config.MemberBind (or the advertised addresses); either may be nil, and
// that port is bound as usual. Run closes them when it returns, however it ends, as
// http.Server.Serve does; if Run is never called they stay the caller's to close.
//
// It lets a test or an embedder bind "127.0.0.1:0" first and put the port it got into Members
// (which still say where the others reach this member), with no moment in which another process
// could take the port, and lets a supervisor hand over sockets it bound (socket activation).
func WithListeners(client, member net.Listener) Option {
	return func(n *Node) { n.clientL, n.memberL = client, member }
}

// WithVersions makes the member speak only the member protocol versions member and the client
// protocol versions client, and apply (and report) cluster versions up to clusterMax only, as
// MaxClusterVersion does; a zero range or 0 keeps this build's. It is for tests of mixed versions, inside this module
// (package wire is internal): one build playing an older or a newer one.
func WithVersions(member, client wire.Range, clusterMax uint16) Option {
	return func(n *Node) { n.memberProtocol, n.clientProtocol, n.clusterVersionMax = member, client, clusterMax }
}

// Capacities of the loop's inputs. raftInputsCap holds several rounds of what the peers send;
// clientInputsCap is in client batches (of up to 1024 requests each).
const (
	raftInputsCap   = 4 << 10
	clientInputsCap = 64 << 10
)

// wrapListeners wraps the member's listeners ("member", "client"), so a test can make them fail.
func wrapListeners(wrap func(port string, l net.Listener) net.Listener) Option {
	return func(n *Node) { n.wrapListener = wrap }
}

// withPeerCertPoll makes the member look at its TLS files every d (tests: a reload seen at once).
func withPeerCertPoll(d time.Duration) Option {
	return func(n *Node) { n.peerCertPoll = d }
}

// withInputCaps shrinks the loop's inputs, so a test can fill them.
func withInputCaps(raft, client int) Option {
	return func(n *Node) { n.raftIn, n.clientIn = make(chan input, raft), make(chan input, client) }
}

// New checks the configuration and prepares a member running svc. Nothing is opened until Run.
func New(cfg Config, svc service.Service, opts ...Option) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("node: invalid configuration: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Every line at WARN and above is kept in the data directory too, whatever Logger's level.
	errs := newErrorLog(log.Handler())
	n := &Node{
		cfg: cfg,
		svc: svc,
		// Every line carries the member's own id ("self"); a line about another member names
		// it by member id, "member" (names.go).
		log:         slog.New(&teeHandler{inner: log.Handler(), errs: errs}).With(selfKey, cfg.ID),
		errs:        errs,
		events:      make(chan Event, 1024),
		raftIn:      make(chan input, raftInputsCap),
		clientIn:    make(chan input, clientInputsCap),
		quit:        make(chan struct{}),
		dropLog:     ratelog.Limiter{Every: 5 * time.Second},
		refuseLog:   ratelog.Limiter{Every: 5 * time.Second},
		unreachable: map[int]bool{},
		status:      Status{ID: cfg.ID, Leader: -1},
		leaderKnown: -1,
		metrics:     newMetrics(),
	}
	for _, o := range opts {
		o(n)
	}
	if n.clientL != nil && cfg.ClientBind != "" {
		return nil, fmt.Errorf("node: ClientBind (%q) and a client listener (WithListeners) are both given: one or the other", cfg.ClientBind)
	}
	if n.httpL != nil && cfg.HTTPAddr != "" {
		return nil, fmt.Errorf("node: HTTPAddr (%q) and an HTTP listener (WithHTTPListener) are both given: one or the other", cfg.HTTPAddr)
	}
	if n.memberL != nil && cfg.MemberBind != "" {
		return nil, fmt.Errorf("node: MemberBind (%q) and a member listener (WithListeners) are both given: one or the other", cfg.MemberBind)
	}
	return n, nil
}

// Events returns the event stream. It is buffered; when nobody reads it, events are dropped
// rather than stalling the member (Status.EventsDropped counts them). It is closed when Run
// returns, however it ends, so `for ev := range n.Events()` ends with the member; a Node that
// never runs never closes it.
func (n *Node) Events() <-chan Event { return n.events }

// Logger is the member's own log: Config.Logger, every line carrying the member's id ("self"),
// and what it says at WARN and above kept in the data directory's errors.log too (while Run
// runs; in memory, for tandem cluster errors, before and after). For a caller that logs the
// member's events, so that a warning among them is kept as the member's own are.
func (n *Node) Logger() *slog.Logger { return n.log }

// Status returns the member's state as of its last loop iteration.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.status
	st.Members = append([]Member(nil), st.Members...)
	st.EventsDropped = n.dropped
	st.RaftMessagesDropped = int(n.raftDropped.Load())
	if n.tr != nil {
		st.RaftSendsDropped = n.tr.SendsDropped()
		st.MemberConnsRefused = n.tr.Refused()
		st.ClientConnsRefused = n.cs.Refused()
		st.AcceptFailures = n.tr.AcceptFailures() + n.cs.AcceptFailures()
	}
	st.RaftRefused = n.refused
	st.ErrorsLogDropped, st.ErrorsLogFailures = int(n.errs.dropped.Load()), int(n.errs.failures.Load())
	return st
}

type inputKind uint8

// The kinds before inClient travel on raftIn, the others on clientIn.
const (
	inRaft inputKind = iota
	inUnreachable
	inSnapStatus
	inPeerClusterVersion
	inPeerStanding
	inClient
	inClientGone
)

type input struct {
	kind inputKind
	msg  *pb.Message
	cms  []wire.ClientMsg
	conn uint64
	peer uint64
	ok   bool
	// clusterMax: inPeerClusterVersion's, the highest cluster version the peer can apply.
	clusterMax uint16
	// standing: inPeerStanding's, what the peer said of itself.
	standing wire.Standing
}

// handler adapts transport callbacks to the loop's inputs.
//
// When raft's input is full — the loop is behind, which raft-first rounds make rare — a peer's
// message waits for room on its connection's reader rather than being dropped: the reader stops
// reading, TCP slows the peer, whose bounded queue then drops and reports this member unreachable
// (raft's own remedy: it probes and retransmits). Dropping here instead would lose what was
// already sent, and a snapshot that was received, synced and then acknowledged to its sender.
type handler struct{ n *Node }

// Receive takes a peer's message, waiting for room (back-pressure on the peer's connection);
// false if the member stopped first.
func (h handler) Receive(m *pb.Message) bool {
	if h.n.deliver(h.n.raftIn, input{kind: inRaft, msg: m}) {
		return true
	}
	h.n.dropRaft(m, "the member is stopping")
	return false
}

// Unreachable never blocks: Transport.Send calls it from the loop, which is the one that would
// make room. A report that does not fit is kept for the loop's next round; reports of one peer
// are alike, so keeping one per peer loses nothing.
func (h handler) Unreachable(id uint64) {
	select {
	case h.n.raftIn <- input{kind: inUnreachable, peer: id}:
	default:
		h.n.keepUnreachable(id)
	}
}

// SnapshotStatus must not be lost: raft sends the peer nothing more until it hears the outcome.
// The transport never calls it from the loop, so it can wait for room.
func (h handler) SnapshotStatus(id uint64, ok bool) {
	h.n.deliver(h.n.raftIn, input{kind: inSnapStatus, peer: id, ok: ok})
}

// peerClusterVersion hands the loop what a peer said, in a handshake or its reply, about the
// highest cluster version it can apply. Called from the transport's connection goroutines.
func (h handler) peerClusterVersion(id uint64, max uint16) {
	h.n.deliver(h.n.raftIn, input{kind: inPeerClusterVersion, peer: id, clusterMax: max})
}

// peerStanding hands the loop what a peer said of itself in a handshake or its reply: before
// anything from that connection (consensus/verify.go). Called from the transport's connection
// goroutines.
func (h handler) peerStanding(id uint64, s wire.Standing) {
	h.n.deliver(h.n.raftIn, input{kind: inPeerStanding, peer: id, standing: s})
}

// standing is what this member's handshakes say of it.
func (h handler) standing() wire.Standing {
	if s := h.n.standing.Load(); s != nil {
		return *s
	}
	return wire.Standing{}
}

// noteStanding keeps what this member's handshakes say of it. Loop only.
func (n *Node) noteStanding(r *replica.Replica) {
	s := r.Standing()
	if old := n.standing.Load(); old == nil || *old != s {
		n.standing.Store(&s)
	}
}

func (h handler) ClientRequests(conn uint64, ms []wire.ClientMsg) {
	h.n.deliver(h.n.clientIn, input{kind: inClient, conn: conn, cms: ms}) // back-pressure on the client's reader
}
func (h handler) ClientGone(conn uint64) {
	h.n.deliver(h.n.clientIn, input{kind: inClientGone, conn: conn})
}

// deliver waits for room in ch unless the loop has ended; false if it has.
func (n *Node) deliver(ch chan<- input, in input) bool {
	select {
	case ch <- in:
		return true
	case <-n.quit:
		return false
	}
}

func (n *Node) keepUnreachable(id uint64) {
	n.keptMu.Lock()
	if !slices.Contains(n.kept, id) {
		n.kept = append(n.kept, id)
	}
	n.keptAny.Store(true)
	n.keptMu.Unlock()
}

// takeKept hands the kept unreachable reports to handle. Loop only.
func (n *Node) takeKept(handle func(input)) {
	if !n.keptAny.Load() {
		return
	}
	n.keptMu.Lock()
	kept := n.kept
	n.kept = nil
	n.keptAny.Store(false)
	n.keptMu.Unlock()
	for _, id := range kept {
		handle(input{kind: inUnreachable, peer: id})
	}
}

// dropRaft counts a received raft message that will not be stepped, and logs it (rate-limited).
func (n *Node) dropRaft(m *pb.Message, why string, args ...any) {
	total := n.raftDropped.Add(1)
	if ok, held := n.dropLog.Allow(time.Now()); ok {
		n.log.Warn("dropped raft message: "+why, append(args, n.memberAttr(m.GetFrom()),
			"type", m.GetType().String(), "dropped_total", total, "drops_not_logged", held)...)
	}
}

type wallClock struct{}

func (wallClock) Now() int64 { return time.Now().UnixNano() }

// outbox connects the replica's output to the transports.
type outbox struct {
	n       *Node
	r       *replica.Replica // set once the replica exists
	peers   *transport.Transport
	clients *transport.ClientServer
	arch    *archive.Archive
}

func (o *outbox) SendRaft(msgs []*pb.Message) { o.peers.Send(msgs) }
func (o *outbox) SendClient(conn replica.ConnID, m *wire.ClientMsg) {
	o.clients.Send(uint64(conn), m)
}

// Changed turns the replica's changes into the node's events (replica.Change says why the two
// are named apart).
func (o *outbox) Changed(ch replica.Change) {
	if o.r != nil && (ch.Kind == replica.ChangeRole || ch.Kind == replica.ChangeVerification) {
		o.n.noteStanding(o.r)
	}
	if ch.Kind == replica.ChangeRole {
		o.n.noteLeader(ch.Leader, ch.Term)
	}
	kind := EventRoleChange
	switch ch.Kind {
	case replica.ChangeVerification:
		// Kept in the data directory, so that a restart neither forgets that this member may
		// not vote yet nor its vote floor (consensus/verify.go).
		o.n.unverified = ch.Unverified
		if err := o.arch.SetVerification(ch.Unverified, ch.VoteFloor); err != nil && o.n.identityErr == nil {
			o.n.identityErr = err
		}
		return
	case replica.ChangeSnapshotTaken:
		kind = EventSnapshotTaken
		o.n.metrics.snapshotsTaken.Add(1)
	case replica.ChangeSnapshotInstalled:
		kind = EventSnapshotInstalled
		o.n.metrics.snapshotsInstalled.Add(1)
	case replica.ChangeMembers:
		if o.r != nil {
			o.n.noteReplicaMembers(o.r)
			peers := o.n.peerSet(o.r)
			for id, addr := range o.peers.Peers() {
				if _, ok := peers[id]; !ok {
					peers[id] = addr // removed at the round's end, unless added back by then
				}
			}
			o.peers.SetPeers(peers)
			o.n.peersPending = true
		}
		kind = EventMembership
	case replica.ChangeClusterVersion:
		kind = EventClusterVersion
	case replica.ChangeClusterIdentity:
		kind = EventClusterIdentity
		// Kept in the data directory before anything else learns it, then checked in every
		// member handshake from now on.
		if err := o.arch.SetClusterUUID(ch.ClusterUUID); err != nil {
			if o.n.identityErr == nil {
				o.n.identityErr = err
			}
			return
		}
		o.peers.SetClusterUUID(ch.ClusterUUID)
	}
	o.n.emit(Event{Kind: kind, Role: ch.Role, Leader: ch.Leader, Term: ch.Term, Index: ch.Index,
		ClusterVersion: ch.ClusterVersion, ClusterUUID: uuidString(ch.ClusterUUID)})
}

// noteLeader logs the transitions of the leader this member knows, once each (as etcd's
// "lost leader" and "elected leader"): "new leader elected" when it learns of a leader, or of a
// new term's; "leader lost" when it knew one and knows none any more (its election timeout
// passed without a word from the leader, or a candidate's later term arrived), naming the leader
// it lost and that leader's term. A change of the leader within one round (a follower that
// hears the new leader before it heard of the election) is one "new leader elected" line.
// The role changes themselves are events (EventRoleChange), which the CLI renders. Loop only.
func (n *Node) noteLeader(leader int, term uint64) {
	switch {
	case leader >= 0 && (leader != n.leaderKnown || term != n.leaderTerm):
		n.log.Info("new leader elected", "leader", leader, "term", term)
		n.leaderKnown, n.leaderTerm = leader, term
	case leader < 0 && n.leaderKnown >= 0:
		n.log.Info("leader lost", memberKey, n.leaderKnown, "term", n.leaderTerm)
		n.leaderKnown = -1
	}
}

// uuidString is a cluster identity as Status and Event show it: "" when not known.
func uuidString(u wire.ClusterUUID) string {
	if u.IsZero() {
		return ""
	}
	return u.String()
}

func (n *Node) emit(ev Event) {
	ev.Time = time.Now()
	select {
	case n.events <- ev:
	default:
		n.mu.Lock()
		n.dropped++
		n.mu.Unlock()
	}
}

func listen(what string, id int, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("member %d: cannot listen on the %s port %s: %w", id, what, addr, err)
	}
	return l, nil
}

// Run opens the archive, binds the ports and runs the member until ctx is cancelled or it fails.
// On cancellation a leader first hands leadership to a caught-up follower (bounded by
// ShutdownTransferTimeout), then the member stops and the service's OnTerminate is called. A
// storage failure stops the member with an error that says why: it never acknowledges again. So
// does finding that its log lost entries it had acknowledged (ErrLostData: the leader keeps
// saying entries beyond its log are committed — a wiped or restored data directory).
func (n *Node) Run(ctx context.Context) error {
	if !n.ran.CompareAndSwap(false, true) {
		return ErrRunTwice
	}
	// Every event is emitted from this goroutine (the loop's), so nothing sends once Run returns.
	defer close(n.events)
	cfg := n.cfg
	// The data directory is the member's for as long as Run runs: its lock (archive.LockDir) is
	// taken here, before anything else — before the ports, so that a second process on the
	// directory is told who holds it rather than that a port is in use — and released last (the
	// defers run after the archive is closed and the transport, which receives snapshots into
	// incoming/, has stopped). It is held by Run, not by the archive, because the archive is not
	// all that lives in the directory.
	lock, err := archive.LockDir(vfs.OS(), cfg.DataDir)
	if err != nil {
		for _, l := range []net.Listener{n.memberL, n.clientL, n.httpL} {
			if l != nil {
				_ = l.Close()
			}
		}
		return fmt.Errorf("member %d: %w", cfg.ID, err)
	}
	defer lock.Close()
	// The member port's TLS material, loaded before anything is served: a member that cannot
	// load it does not start (peertls.go).
	peerTLS, err := n.loadPeerTLS(&cfg)
	// The client port's certificates and tokens too: a member that cannot read them must not
	// start (it would serve clients unauthenticated, or not at all). A member's certificate
	// authenticates on the client port (a joining member's), and is what this member presents
	// to the others' client ports (adminOptions).
	var sec *clientSecurity
	if err == nil {
		var peerCA *tlsconf.Source
		if peerTLS != nil {
			peerCA = peerTLS.Source
		}
		if sec, err = loadClientSecurity(&cfg, peerCA); err == nil {
			n.logClientSecurity(&cfg, sec)
		}
		n.adminTLS, n.adminPeer = adminTLS(&cfg, peerTLS), peerTLS
	}
	if err != nil {
		for _, l := range []net.Listener{n.memberL, n.clientL, n.httpL} {
			if l != nil {
				_ = l.Close()
			}
		}
		return fmt.Errorf("member %d: %w", cfg.ID, err)
	}
	// The HTTP endpoint serves from the start (a member joining or asking the cluster whether it
	// may start is alive, and not ready) until Run returns.
	hl := n.httpL
	if hl == nil && cfg.HTTPAddr != "" {
		if hl, err = listen("HTTP", cfg.ID, cfg.HTTPAddr); err != nil {
			for _, l := range []net.Listener{n.memberL, n.clientL} {
				if l != nil {
					_ = l.Close()
				}
			}
			return err
		}
	}
	if hl == nil && cfg.HTTPAddr == "" && n.httpDefault != "" {
		if hl, err = net.Listen("tcp", n.httpDefault); err != nil {
			n.log.Warn("no HTTP endpoint: its default address is taken", "addr", n.httpDefault, "err", err)
			hl, err = nil, nil
		}
	}
	if hl != nil {
		defer n.serveHTTP(hl)()
	}
	// The warnings and errors go to the directory's errors.log while the lock is held (this
	// deferred close runs before the lock's).
	n.errs.open(cfg.DataDir)
	defer n.errs.close()
	self, _ := cfg.self()
	clientBind, memberBind := cfg.ClientBind, cfg.MemberBind
	if clientBind == "" {
		clientBind = self.ClientAddr
	}
	if memberBind == "" {
		memberBind = self.MemberAddr
	}
	ml, cl := n.memberL, n.clientL
	if ml == nil {
		ml, err = listen("member", cfg.ID, memberBind)
	}
	if err == nil && cl == nil {
		cl, err = listen("client", cfg.ID, clientBind)
	}
	if err != nil {
		// Run owns the listeners it was given: it closes them however it ends.
		for _, l := range []net.Listener{ml, cl} {
			if l != nil {
				_ = l.Close()
			}
		}
		return err
	}
	if n.wrapListener != nil {
		ml, cl = n.wrapListener("member", ml), n.wrapListener("client", cl)
	}
	// A member on an empty directory with Join joins the running cluster first: the raft id it is
	// given goes into its IDENTITY before anything else (join.go).
	// A member on an empty directory without Join asks the cluster first (checkEmptyStart).
	var joined *wire.AdminResponse
	has, herr := hasData(cfg.DataDir)
	switch {
	case herr != nil: // (the archive says what is wrong with the directory)
	case len(cfg.Join) > 0 && !has:
		stopRefusing := n.refuseWhileJoining(cl)
		resp, jerr := n.join(ctx)
		stopRefusing()
		if jerr != nil {
			_ = ml.Close()
			_ = cl.Close()
			return fmt.Errorf("member %d: %w", cfg.ID, jerr)
		}
		joined = &resp
	case len(cfg.Join) > 0:
		n.log.Info("the data directory holds this member's data: Join is not used (the membership comes from the data)")
	case !has:
		if err := n.checkEmptyStart(ctx); err != nil {
			_ = ml.Close()
			_ = cl.Close()
			return fmt.Errorf("member %d: %w", cfg.ID, err)
		}
	}
	aopts := archive.Options{
		ClusterID:         cfg.ClusterID,
		MemberID:          cfg.ID,
		SnapshotsRetained: cfg.SnapshotsRetained,
		LogMarginEntries:  cfg.LogMarginEntries,
		SegmentBytes:      cfg.SegmentBytes,
		SparePace:         archive.SparePaceDefault,
		Logger:            n.log,
	}
	if joined != nil {
		aopts.RaftID = joined.RaftID
	}
	arch, err := archive.Open(vfs.OS(), cfg.DataDir, aopts)
	if err == nil && joined != nil && joined.ClusterUUID != "" {
		var u wire.ClusterUUID
		if u, err = wire.ParseClusterUUID(joined.ClusterUUID); err == nil {
			err = arch.SetClusterUUID(u)
		}
	}
	if err != nil {
		if arch != nil {
			_ = arch.Close()
		}
		_ = ml.Close()
		_ = cl.Close()
		return fmt.Errorf("member %d: %w", cfg.ID, err)
	}
	selfRaft := replica.RaftID(cfg.ID)
	if id := arch.RaftID(); id != 0 {
		selfRaft = id // a member that joined a running cluster
		last, _ := arch.LastIndex()
		if snap, _ := arch.Snapshot(); joined == nil && len(cfg.Join) == 0 && last == 0 && snap.GetMetadata().GetIndex() == 0 {
			// It joined, and holds nothing yet: without Join's addresses it would know no member
			// and refuse the leader's connections for ever.
			_ = arch.Close()
			_ = ml.Close()
			_ = cl.Close()
			return fmt.Errorf("member %d: %w: it joined as raft id %d and holds nothing yet: start it again with --join "+
				"<the others' client addresses> (its first command line)", cfg.ID, ErrRejoinWithJoin, id)
		}
	}
	peers := map[uint64]string{}
	if arch.RaftID() == 0 {
		for _, m := range cfg.Members {
			peers[replica.RaftID(m.ID)] = m.MemberAddr
		}
	}
	if joined != nil {
		peers = n.peersOf(fromAdmin(joined.Members), selfRaft)
	}
	if last, _ := arch.LastIndex(); last == 0 && arch.RaftID() == 0 {
		if snap, _ := arch.Snapshot(); snap.GetMetadata().GetIndex() == 0 {
			// An empty directory: this member founds with its configured list (members.go).
			n.founding.p.Store(digestOf(cfg.replicaConfig().Members))
		}
	}
	n.noteMembers(cfg.Members, joined)
	h := handler{n}
	// The highest cluster version this member applies is the one it reports: a member that
	// reported less than it applies would only hold the cluster back, and one that reported more
	// would stop at the raise it allowed.
	clusterMax := container.ClusterVersionMax
	if cfg.MaxClusterVersion != 0 {
		clusterMax = cfg.MaxClusterVersion
	}
	if n.clusterVersionMax != 0 {
		clusterMax = min(clusterMax, n.clusterVersionMax)
	}
	tr := transport.New(transport.Config{
		ClusterID:          cfg.ClusterID,
		ClusterUUID:        wire.ClusterUUID(arch.ClusterUUID()),
		SelfID:             selfRaft,
		Peers:              peers,
		Listener:           ml,
		MaxFrameBytes:      cfg.MaxFrameBytes,
		MaxConns:           cfg.MaxMemberConns,
		HeardWindow:        time.Duration(cfg.ElectionTicks) * cfg.TickInterval, // a follower hears its leader well within it
		SnapshotDir:        filepath.Join(cfg.DataDir, "incoming"),
		Logger:             n.log,
		MemberOf:           n.memberOf,
		MemberProtocol:     n.memberProtocol,
		ClusterVersionMax:  clusterMax,
		PeerClusterVersion: h.peerClusterVersion,
		Members:            n.founding.get,
		Standing:           h.standing,
		PeerStanding:       h.peerStanding,
		TLS:                peerTLS,
	}, h)
	rcfg := cfg.replicaConfig()
	rcfg.Container.ClusterVersionMax = clusterMax
	rcfg.Unverified, rcfg.VoteFloor = arch.Verification()
	rcfg.PreferredLeaders = cfg.PreferredLeaders
	rcfg.RaftID, rcfg.Joined, rcfg.Joining, rcfg.ClusterID, rcfg.DescribeSelf = selfRaft, arch.RaftID() != 0, joined != nil,
		cfg.ClusterID, n.describeSelf
	rcfg.RecentErrors = n.errs.describe
	// The client port takes a command as large as the replica accepts (and announces), and
	// answers a larger one with a refusal that names the limit.
	ccfg := transport.ClientConfig{Listener: cl, MaxConns: cfg.MaxClientConns, Logger: n.log,
		MaxFrameBytes: rcfg.MaxCommandBytes + wire.CommandOverheadBytes, ClientProtocol: n.clientProtocol}
	sec.apply(&ccfg)
	cs := transport.NewClientServer(ccfg, h)
	rcfg.Logger = n.log
	rcfg.Meter = n.metrics
	out := &outbox{n: n, peers: tr, clients: cs, arch: arch}
	r, err := replica.New(rcfg, n.svc, arch, wallClock{}, out)
	if err == nil {
		out.r = r
		n.noteReplicaMembers(r)
		if ms := r.Members(); len(ms) > 0 {
			tr.SetPeers(n.peerSet(r)) // the membership the data holds (its log's replay may move it)
		}
		n.unverified = r.Summary().Unverified
		n.noteStanding(r)
		err = n.startIdentity(r, arch, tr)
	}
	if err != nil {
		_ = arch.Close()
		_ = ml.Close()
		_ = cl.Close()
		return fmt.Errorf("member %d: %w", cfg.ID, err)
	}
	n.mu.Lock()
	n.tr, n.cs, n.rep = tr, cs, r
	n.mu.Unlock()
	tr.Start()
	cs.Start()
	stopReload := n.reloadCredentials(&cfg, sec, cs)
	defer stopReload()
	if peerTLS != nil {
		defer n.watchPeerCert(ctx, peerTLS, cmp.Or(n.peerCertPoll, peerCertPollDefault))()
	}
	n.emit(Event{Kind: EventStarted, Leader: -1})
	wctx, stopWatch := context.WithCancel(ctx)
	n.learnt = make(chan learnt, 1)
	watched := make(chan struct{})
	// A member that joined and was restarted before it heard from the leader knows no member at
	// all: it asks at once (through Join's addresses); every other member only once it knows no
	// leader for a while.
	go n.watchMembership(wctx, selfRaft, len(r.Members()) == 0 && arch.RaftID() != 0, n.learnt, watched)
	err = n.loop(ctx, r, newJobs(arch.TakeSpareJob, arch.StopSpareJob, n.metrics), tr, cs)
	n.metrics.stopErr.Store(errors.Is(err, ErrStopped))
	n.metrics.ended.Store(true)
	stopWatch()
	<-watched
	close(n.quit)
	cs.Stop()
	tr.Stop()
	if cerr := r.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// Bounds of one round of input, so a flood of it cannot delay ticks or the persisting of what came
// first. Raft's input is taken first, every round, up to raftInputsPerRound; then client input,
// up to clientInputsPerRound batches or clientRequestsPerRound requests. A round's work grows
// with its requests (each is applied or served and answered in it): 16 Ki of them take less than
// a tick, and are still many times what a round holds at full throughput (a few thousand: the
// commands in flight of every client).
const (
	raftInputsPerRound     = 4096
	clientInputsPerRound   = 4096
	clientRequestsPerRound = 16 << 10
)

// takeRound takes one round of input, first being the input that woke the loop: raft's input
// first (first, if it is raft's, then what is queued), then client input (first, if it is a
// client's, then what is queued), each handed to handle in that order.
func (n *Node) takeRound(first input, handle func(input)) {
	n.takeKept(handle)
	firstIsRaft := first.kind < inClient
	i := 0
	if firstIsRaft {
		handle(first)
		i++
	}
raft:
	for ; i < raftInputsPerRound; i++ {
		select {
		case in := <-n.raftIn:
			handle(in)
		default:
			break raft
		}
	}
	batches, requests := 0, 0
	if !firstIsRaft {
		handle(first)
		batches, requests = 1, len(first.cms)
	}
	for batches < clientInputsPerRound && requests < clientRequestsPerRound {
		select {
		case in := <-n.clientIn:
			handle(in)
			batches++
			requests += len(in.cms)
		default:
			return
		}
	}
}

func (n *Node) loop(ctx context.Context, r *replica.Replica, jobs *jobs, tr *transport.Transport, cs *transport.ClientServer) error {
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	defer jobs.wait() // the storage is closed after the loop: no job may still run on it
	n.updateStatus(r)
	handle := func(in input) { n.handle(r, in) }
	n.metrics.heartbeat.Store(time.Now().UnixNano())
	tick := func() {
		n.metrics.heartbeat.Store(time.Now().UnixNano()) // for /livez: the loop turns
		n.takeKept(handle)
		r.Tick()
		n.checkReachable(r, tr)
		n.updateStatus(r)
	}
	for {
		select {
		case <-ctx.Done():
			n.handOver(r, jobs, tr, cs)
			return nil
		case <-ticker.C:
			tick()
		case in := <-n.raftIn:
			n.takeRound(in, handle)
		case in := <-n.clientIn:
			n.takeRound(in, handle)
		case err := <-jobs.sync.done():
			jobs.sync.busy = false
			r.SyncDone(err)
		case err := <-jobs.snap.done():
			jobs.snap.busy = false
			if err := r.SnapshotWritten(err); err != nil {
				n.updateStatus(r)
				return fmt.Errorf("member %d stopped: %w", n.cfg.ID, err)
			}
		case <-jobs.spare.done():
			jobs.spare.busy = false // a failed spare only means the next segment grows as it fills
		case l := <-n.learnt:
			if l.removedAt != 0 {
				n.updateStatus(r)
				return fmt.Errorf("member %d stopped: %w", n.cfg.ID, &replica.RemovedError{MemberID: n.cfg.ID,
					RaftID: r.SelfRaftID(), Seen: l.removedAt})
			}
			r.HintMembership(l.members)
			n.hinted = n.peersOf(l.members, r.SelfRaftID())
			tr.SetPeers(n.peerSet(r))
		}
		// Under a flood every case above is ready at once, and select picks one at random: a
		// tick must not wait several long rounds for its turn (a leader whose ticks lag sends
		// its heartbeats late, and its followers elect another).
		select {
		case <-ticker.C:
			tick()
		default:
		}
		// The disk work starts as soon as Process leaves it (a leader's appends went out inside
		// Process, ahead of its own write), then the round's answers go out together, then what
		// was not urgent for the followers: announcing a commit must not delay telling the
		// client.
		err := r.Process()
		if err == nil {
			err = n.identityErr // the cluster's identity could not be kept (outbox.Changed)
		}
		if err == nil {
			err = jobs.start(r)
		}
		if n.unverified {
			n.noteStanding(r) // its log grows as the leader repairs it
		}
		n.settlePeers(r, tr)
		cs.Flush()
		tr.Flush()
		if err != nil {
			n.updateStatus(r)
			return fmt.Errorf("member %d stopped: %w", n.cfg.ID, err)
		}
	}
}

// jobs runs the member's disk work on goroutines of its own: the syncs of its log, one at a time,
// the writes of its snapshots, one at a time, and the preparing of its next log segment
// (archive.TakeSpareJob). While the disk works the loop goes on taking input, and a leader
// applies and answers what commits meanwhile.
type jobs struct {
	sync, snap, spare runner
	takeSpare         func() func() error
	stopSpare         func()
	// m times the syncs and the snapshot writes, on their goroutines (metrics.go).
	m *metrics
}

func newJobs(takeSpare func() func() error, stopSpare func(), m *metrics) *jobs {
	return &jobs{sync: runner{res: make(chan error, 1)}, snap: runner{res: make(chan error, 1)},
		spare: runner{res: make(chan error, 1)}, takeSpare: takeSpare, stopSpare: stopSpare, m: m}
}

// start starts the sync and the snapshot write the replica waits for, if any, and then lets the
// replica apply what was durable before the sync (Replica.TakeSync).
func (j *jobs) start(r *replica.Replica) error {
	synced := false
	if !j.sync.busy {
		synced = j.sync.start(timed(r.TakeSync(), j.m.fsync))
	}
	if !j.snap.busy {
		j.snap.start(timed(r.TakeSnapshotWrite(), j.m.snapSave))
	}
	if !j.spare.busy {
		j.spare.start(j.takeSpare())
	}
	if synced {
		return r.Process()
	}
	return nil
}

// wait waits for what runs, without reporting it. The spare's job is told to stop first: it is
// only preparation, and its next start picks it up again.
func (j *jobs) wait() {
	j.stopSpare()
	j.sync.wait()
	j.snap.wait()
	j.spare.wait()
}

// runner runs one job at a time on a goroutine and reports its result on res.
type runner struct {
	res  chan error
	busy bool
}

func (r *runner) start(job func() error) bool {
	if job == nil {
		return false
	}
	r.busy = true
	go func() { r.res <- job() }()
	return true
}

// done is the channel the running job reports on (nil, which never delivers, when none runs);
// whoever receives from it sets busy to false.
func (r *runner) done() <-chan error {
	if !r.busy {
		return nil
	}
	return r.res
}

func (r *runner) wait() {
	if r.busy {
		<-r.res
		r.busy = false
	}
}

func (n *Node) handle(r *replica.Replica, in input) {
	switch in.kind {
	case inRaft:
		from := r.IDOf(in.msg.GetFrom())
		err := r.Step(in.msg)
		switch {
		case err == nil:
		case errors.Is(err, consensus.ErrInvalidMessage):
			// Until members authenticate, whoever can connect to the member port can claim to
			// be a member: raft never saw this message, and the connections it may have come
			// from are closed (the real member reconnects).
			closed := n.tr.DropInbound(in.msg.GetFrom())
			n.mu.Lock()
			n.refused++
			n.mu.Unlock()
			if ok, held := n.refuseLog.Allow(time.Now()); ok {
				n.log.Warn("refused an invalid raft message; closing the connections it may have come from",
					memberKey, from, "type", in.msg.GetType().String(), "closed", closed, "err", err,
					"refusals_not_logged", held)
			}
		case errors.Is(err, consensus.ErrLostData):
			// The core has stopped; Process returns the error and the loop ends with it.
		default:
			n.dropRaft(in.msg, "raft refused it", "err", err)
		}
	case inClient:
		commands, queries := int64(0), int64(0)
		for i := range in.cms {
			switch in.cms[i].Kind {
			case wire.CCommand:
				commands++
			case wire.CQuery:
				queries++
			}
			r.ClientRequest(replica.ConnID(in.conn), &in.cms[i])
		}
		n.metrics.commands.Add(commands) // one add per batch (metrics.go)
		n.metrics.queries.Add(queries)
	case inClientGone:
		r.ClientGone(replica.ConnID(in.conn))
	case inUnreachable:
		r.ReportUnreachable(in.peer) // raft's; whether the peer is reachable is checkReachable's
	case inSnapStatus:
		r.ReportSnapshot(in.peer, in.ok)
	case inPeerClusterVersion:
		r.PeerClusterVersion(in.peer, in.clusterMax)
	case inPeerStanding:
		r.PeerStanding(in.peer, in.standing)
	}
}

// settlePeers gives the transport, at the end of a round that applied membership changes, the
// peer set of the membership reached: the peers removed by the round's changes, and not added
// back, are removed now (peersPending). Loop only.
func (n *Node) settlePeers(r *replica.Replica, tr *transport.Transport) {
	if !n.peersPending {
		return
	}
	n.peersPending = false
	tr.SetPeers(n.peerSet(r))
}

// checkReachable brings the member's view of which peers are unreachable (Status, /status,
// tandem_network_peer_reachable, the admin channel) up to the transport's
// (transport.Reachable: heard from within an election timeout, or the latest dial of the
// outbound connection succeeded), and emits EventMemberUnreachable / EventMemberReachable for
// each peer that changed. A peer the transport knows nothing of yet (its first dial is under
// way) keeps what it was: reachable, at start. Called every tick. Loop only.
func (n *Node) checkReachable(r *replica.Replica, tr *transport.Transport) {
	type change struct {
		id int
		ok bool
	}
	var changes []change
	ms := r.Members()
	n.mu.Lock()
	peers := make(map[int]bool, len(ms))
	for _, m := range ms {
		if m.RaftID == r.SelfRaftID() {
			continue
		}
		ok, known := tr.Reachable(m.RaftID)
		if !known {
			continue
		}
		// A member rebuilt in place has two raft ids until the replacement ends: reachable
		// if either is.
		peers[m.ID] = peers[m.ID] || ok
	}
	for id, ok := range peers {
		if n.unreachable[id] == ok { // it was unreachable and is reachable, or the other way
			changes = append(changes, change{id, ok})
			n.unreachable[id] = !ok
		}
	}
	for id := range n.unreachable {
		if !slices.ContainsFunc(ms, func(m replica.Member) bool { return m.ID == id }) {
			delete(n.unreachable, id) // not a member any more
		}
	}
	n.mu.Unlock()
	if len(changes) == 0 {
		return
	}
	slices.SortFunc(changes, func(a, b change) int { return a.id - b.id })
	st := r.Summary()
	for _, c := range changes {
		kind := EventMemberReachable
		if !c.ok {
			kind = EventMemberUnreachable
		}
		n.emit(Event{Kind: kind, Member: c.id, Role: st.Role, Leader: st.Leader, Term: st.Term})
	}
}

// startIdentity reconciles, at start, the cluster's identity the data directory's IDENTITY file
// holds with the one the state (the snapshot started from) holds: the state's is written to
// IDENTITY if it holds none; two that differ stop the member (the directory mixes two clusters'
// data). The transport checks the one known from the start; the log's replay may teach it later.
func (n *Node) startIdentity(r *replica.Replica, arch *archive.Archive, tr *transport.Transport) error {
	u := r.Summary().ClusterUUID
	if !u.IsZero() {
		if err := arch.SetClusterUUID(u); err != nil {
			return err
		}
		tr.SetClusterUUID(u)
	}
	if known := wire.ClusterUUID(arch.ClusterUUID()); !known.IsZero() {
		n.log.Info("cluster identity", "cluster", n.cfg.ClusterID, "cluster_uuid", known.String())
		n.emit(Event{Kind: EventClusterIdentity, Leader: -1, ClusterUUID: known.String()})
	}
	return nil
}

func (n *Node) updateStatus(r *replica.Replica) {
	st := r.Summary()
	n.metrics.noteLeader(st.Leader)
	n.metrics.sessions.Store(int64(r.Container().Sessions()))
	n.founding.recorded(r.Founders())
	ms := make([]Member, 0, len(st.Members))
	for _, m := range st.Members {
		ms = append(ms, Member{ID: m.ID, ClientAddr: m.ClientAddr, MemberAddr: m.MemberAddr, RaftID: m.RaftID, Learner: m.Learner})
	}
	n.mu.Lock()
	n.status = Status{ID: st.MemberID, RaftID: r.SelfRaftID(), Role: st.Role, Term: st.Term, Leader: st.Leader, Commit: st.Commit,
		Applied: st.Applied, SnapshotIndex: st.SnapshotIndex, Members: ms,
		ClusterVersion: st.ClusterVersion, ClusterVersionMax: st.ClusterVersionMax,
		ClusterUUID: uuidString(st.ClusterUUID), Unverified: st.Unverified, VoteFloor: st.VoteFloor,
		Suspended: st.Suspended, Preferred: st.Preferred}
	n.mu.Unlock()
}

// handOver, on a leader, transfers leadership to the most caught-up follower and waits (bounded)
// for it to take over, so clients see a quick, clean failover rather than an election timeout.
//
// It waits until this member follows a leader of a later term, with no sync of its own under
// way — not merely until it stops leading. It stops leading when the target's vote request
// arrives (a later term), and its vote goes out only once that term and vote are synced: a
// member that stopped there, with the sync running, never sent its vote, and the target had to
// win with the third member's alone. Measured: when that member's link was stale (it had been
// restarted lately) the target's election failed and a second one followed, an election
// timeout later: 1.2-1.3 s without acknowledgements (docs/PERFORMANCE.md, "Leadership
// transfer").
func (n *Node) handOver(r *replica.Replica, jobs *jobs, tr *transport.Transport, cs *transport.ClientServer) {
	if r.Summary().Role != service.Leader || len(r.Members()) < 2 || n.cfg.ShutdownTransferTimeout == 0 {
		return
	}
	startTerm := r.Summary().Term
	to, ok := r.PreferredTarget()
	if !ok {
		return
	}
	r.TransferLeadership(to)
	handle := func(in input) { n.handle(r, in) }
	toID := r.IDOf(to)
	deadline := time.Now().Add(n.cfg.ShutdownTransferTimeout)
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-ticker.C:
			r.Tick()
		case err := <-jobs.sync.done():
			jobs.sync.busy = false
			r.SyncDone(err)
		case err := <-jobs.snap.done():
			jobs.snap.busy = false
			if r.SnapshotWritten(err) != nil {
				return
			}
		case <-jobs.spare.done():
			jobs.spare.busy = false
		case in := <-n.raftIn:
			n.takeRound(in, handle)
		case in := <-n.clientIn:
			// Client requests are answered too: during the transfer raft refuses proposals,
			// so they are redirected to the new leader instead of waiting for a timeout.
			n.takeRound(in, handle)
		}
		err := r.Process()
		if err == nil {
			err = n.identityErr // the cluster's identity could not be kept (outbox.Changed)
		}
		if err == nil {
			err = jobs.start(r)
		}
		n.settlePeers(r, tr)
		cs.Flush()
		tr.Flush()
		if err != nil {
			return
		}
		if st := r.Summary(); st.Role != service.Leader && st.Leader >= 0 && st.Term > startTerm && !jobs.sync.busy {
			n.updateStatus(r)
			return
		}
	}
	n.log.Warn("leadership transfer did not complete before shutdown", memberKey, toID)
}
