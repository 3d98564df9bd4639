package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/replica"
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
	// EventMemberUnreachable / EventMemberReachable: a peer stopped or started answering.
	EventMemberUnreachable
	EventMemberReachable
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
	Index  uint64 // snapshot index for snapshot events
	Member int    // the peer, for reachability events
}

// Status is a summary of the member's state.
type Status struct {
	ID            int
	Role          service.Role
	Term          uint64
	Leader        int // -1 when unknown
	Commit        uint64
	Applied       uint64
	SnapshotIndex uint64
	Members       []Member
	// EventsDropped counts events lost because nobody read Events fast enough.
	EventsDropped int
}

// Node is one running member: the replica behind a real clock, TCP and the archive.
type Node struct {
	cfg    Config
	svc    service.Service
	log    *slog.Logger
	events chan Event

	inbox chan input
	quit  chan struct{} // closed when the loop has ended: nobody reads inbox any more

	mu          sync.Mutex
	status      Status
	unreachable map[int]bool
	dropped     int
}

// Option adjusts a node.
type Option func(*Node)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(n *Node) { n.log = l } }

// New checks the configuration and prepares a member running svc. Nothing is opened until Run.
func New(cfg Config, svc service.Service, opts ...Option) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("node: invalid configuration: %w", err)
	}
	n := &Node{
		cfg:         cfg,
		svc:         svc,
		log:         slog.New(slog.DiscardHandler),
		events:      make(chan Event, 1024),
		inbox:       make(chan input, 64<<10),
		quit:        make(chan struct{}),
		unreachable: map[int]bool{},
		status:      Status{ID: cfg.ID, Leader: -1},
	}
	for _, o := range opts {
		o(n)
	}
	return n, nil
}

// Events returns the event stream. It is buffered; when nobody reads it, events are dropped
// rather than stalling the member.
func (n *Node) Events() <-chan Event { return n.events }

// Status returns the member's state as of its last loop iteration.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.status
	st.Members = append([]Member(nil), st.Members...)
	st.EventsDropped = n.dropped
	return st
}

type inputKind uint8

const (
	inRaft inputKind = iota
	inClient
	inClientGone
	inUnreachable
	inSnapStatus
)

type input struct {
	kind inputKind
	msg  *pb.Message
	cms  []wire.ClientMsg
	conn uint64
	peer uint64
	ok   bool
}

// handler adapts transport callbacks to the node's inbox.
type handler struct{ n *Node }

func (h handler) Receive(m *pb.Message) {
	select {
	case h.n.inbox <- input{kind: inRaft, msg: m}:
	default: // overloaded: raft retransmits
	}
}
func (h handler) Unreachable(id uint64) {
	select {
	case h.n.inbox <- input{kind: inUnreachable, peer: id}:
	default:
	}
}

// deliver waits for room in the inbox (back-pressure on the sender) unless the loop has ended.
func (n *Node) deliver(in input) {
	select {
	case n.inbox <- in:
	case <-n.quit:
	}
}

func (h handler) SnapshotStatus(id uint64, ok bool) {
	h.n.deliver(input{kind: inSnapStatus, peer: id, ok: ok}) // must not be lost: raft waits for it
}
func (h handler) ClientRequests(conn uint64, ms []wire.ClientMsg) {
	h.n.deliver(input{kind: inClient, conn: conn, cms: ms}) // back-pressure on the client's reader
}
func (h handler) ClientGone(conn uint64) { h.n.deliver(input{kind: inClientGone, conn: conn}) }

type wallClock struct{}

func (wallClock) Now() int64 { return time.Now().UnixNano() }

// outbox connects the replica's output to the transports.
type outbox struct {
	n       *Node
	peers   *transport.Transport
	clients *transport.ClientServer
}

func (o *outbox) SendRaft(msgs []*pb.Message) { o.peers.Send(msgs) }
func (o *outbox) SendClient(conn replica.ConnID, m *wire.ClientMsg) {
	o.clients.Send(uint64(conn), m)
}
func (o *outbox) Event(ev replica.Event) {
	kind := EventRoleChange
	switch ev.Kind {
	case replica.EventSnapshotTaken:
		kind = EventSnapshotTaken
	case replica.EventSnapshotInstalled:
		kind = EventSnapshotInstalled
	}
	o.n.emit(Event{Kind: kind, Role: ev.Role, Leader: ev.Leader, Term: ev.Term, Index: ev.Index})
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
// storage failure stops the member with an error that says why: it never acknowledges again.
func (n *Node) Run(ctx context.Context) error {
	cfg := n.cfg
	self, _ := cfg.self()
	clientBind, memberBind := cfg.ClientBind, cfg.MemberBind
	if clientBind == "" {
		clientBind = self.ClientAddr
	}
	if memberBind == "" {
		memberBind = self.MemberAddr
	}
	ml, err := listen("member", cfg.ID, memberBind)
	if err != nil {
		return err
	}
	cl, err := listen("client", cfg.ID, clientBind)
	if err != nil {
		_ = ml.Close()
		return err
	}
	arch, err := archive.Open(vfs.OS(), cfg.DataDir, archive.Options{
		ClusterID:         cfg.ClusterID,
		MemberID:          cfg.ID,
		SnapshotsRetained: cfg.SnapshotsRetained,
		LogMarginEntries:  cfg.LogMarginEntries,
		SegmentBytes:      cfg.SegmentBytes,
		SparePace:         archive.SparePaceDefault,
		Logger:            n.log,
	})
	if err != nil {
		_ = ml.Close()
		_ = cl.Close()
		return fmt.Errorf("member %d: %w", cfg.ID, err)
	}
	peers := map[uint64]string{}
	for _, m := range cfg.Members {
		peers[replica.RaftID(m.ID)] = m.MemberAddr
	}
	h := handler{n}
	tr := transport.New(transport.Config{
		ClusterID:     cfg.ClusterID,
		SelfID:        replica.RaftID(cfg.ID),
		Peers:         peers,
		Listener:      ml,
		MaxFrameBytes: cfg.MaxFrameBytes,
		SnapshotDir:   filepath.Join(cfg.DataDir, "incoming"),
		Logger:        n.log,
	}, h)
	rcfg := cfg.replicaConfig()
	// The client port takes a command as large as the replica accepts (and announces), and
	// answers a larger one with a refusal that names the limit.
	cs := transport.NewClientServer(transport.ClientConfig{Listener: cl, Logger: n.log,
		MaxFrameBytes: rcfg.MaxCommandBytes + wire.CommandOverheadBytes}, h)
	rcfg.Logger = n.log
	out := &outbox{n: n, peers: tr, clients: cs}
	r, err := replica.New(rcfg, n.svc, arch, wallClock{}, out)
	if err != nil {
		_ = arch.Close()
		_ = ml.Close()
		_ = cl.Close()
		return fmt.Errorf("member %d: %w", cfg.ID, err)
	}
	tr.Start()
	cs.Start()
	err = n.loop(ctx, r, newJobs(arch.TakeSpareJob, arch.StopSpareJob), tr, cs)
	close(n.quit)
	cs.Stop()
	tr.Stop()
	if cerr := r.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// maxInputsPerRound bounds how many inputs are taken before the replica processes them, so a
// flood of input cannot delay ticks or the persisting of what came first.
const maxInputsPerRound = 4096

func (n *Node) loop(ctx context.Context, r *replica.Replica, jobs *jobs, tr *transport.Transport, cs *transport.ClientServer) error {
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	defer jobs.wait() // the storage is closed after the loop: no job may still run on it
	n.updateStatus(r)
	for {
		select {
		case <-ctx.Done():
			n.handOver(r, jobs, tr, cs)
			return nil
		case <-ticker.C:
			r.Tick()
			n.updateStatus(r)
		case in := <-n.inbox:
			n.handle(r, in)
		drain:
			for i := 1; i < maxInputsPerRound; i++ {
				select {
				case in := <-n.inbox:
					n.handle(r, in)
				default:
					break drain
				}
			}
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
		}
		// The disk work starts as soon as Process leaves it (a leader's appends went out inside
		// Process, ahead of its own write), then the round's answers go out together, then what
		// was not urgent for the followers: announcing a commit must not delay telling the
		// client.
		err := r.Process()
		if err == nil {
			err = jobs.start(r)
		}
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
}

func newJobs(takeSpare func() func() error, stopSpare func()) *jobs {
	return &jobs{sync: runner{res: make(chan error, 1)}, snap: runner{res: make(chan error, 1)},
		spare: runner{res: make(chan error, 1)}, takeSpare: takeSpare, stopSpare: stopSpare}
}

// start starts the sync and the snapshot write the replica waits for, if any, and then lets the
// replica apply what was durable before the sync (Replica.TakeSync).
func (j *jobs) start(r *replica.Replica) error {
	synced := false
	if !j.sync.busy {
		synced = j.sync.start(r.TakeSync())
	}
	if !j.snap.busy {
		j.snap.start(r.TakeSnapshotWrite())
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
		n.reachable(r, replica.MemberID(in.msg.GetFrom()), true)
		if err := r.Step(in.msg); err != nil {
			n.log.Warn("dropped raft message", "from", replica.MemberID(in.msg.GetFrom()), "err", err)
		}
	case inClient:
		for i := range in.cms {
			r.ClientRequest(replica.ConnID(in.conn), &in.cms[i])
		}
	case inClientGone:
		r.ClientGone(replica.ConnID(in.conn))
	case inUnreachable:
		n.reachable(r, replica.MemberID(in.peer), false)
		r.ReportUnreachable(replica.MemberID(in.peer))
	case inSnapStatus:
		r.ReportSnapshot(replica.MemberID(in.peer), in.ok)
	}
}

func (n *Node) reachable(r *replica.Replica, id int, ok bool) {
	n.mu.Lock()
	was := !n.unreachable[id]
	if was == ok {
		n.mu.Unlock()
		return
	}
	n.unreachable[id] = !ok
	n.mu.Unlock()
	kind := EventMemberReachable
	if !ok {
		kind = EventMemberUnreachable
	}
	st := r.Status()
	n.emit(Event{Kind: kind, Member: id, Role: st.Role, Leader: st.Leader, Term: st.Term})
}

func (n *Node) updateStatus(r *replica.Replica) {
	st := r.Status()
	ms := make([]Member, 0, len(st.Members))
	for _, m := range st.Members {
		ms = append(ms, Member{ID: m.ID, ClientAddr: m.ClientEndpoint, MemberAddr: m.MemberEndpoint})
	}
	n.mu.Lock()
	n.status = Status{ID: st.MemberID, Role: st.Role, Term: st.Term, Leader: st.Leader, Commit: st.Commit,
		Applied: st.Applied, SnapshotIndex: st.SnapshotIndex, Members: ms}
	n.mu.Unlock()
}

// handOver, on a leader, transfers leadership to the most caught-up follower and waits (bounded)
// for it to take over, so clients see a quick, clean failover rather than an election timeout.
func (n *Node) handOver(r *replica.Replica, jobs *jobs, tr *transport.Transport, cs *transport.ClientServer) {
	if r.Status().Role != service.Leader || len(n.cfg.Members) < 2 || n.cfg.ShutdownTransferTimeout == 0 {
		return
	}
	to, ok := r.BestFollower()
	if !ok {
		return
	}
	r.TransferLeadership(to)
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
		case in := <-n.inbox:
			// Client requests are answered too: during the transfer raft refuses proposals,
			// so they are redirected to the new leader instead of waiting for a timeout.
			n.handle(r, in)
		}
		err := r.Process()
		if err == nil {
			err = jobs.start(r)
		}
		cs.Flush()
		tr.Flush()
		if err != nil {
			return
		}
		if r.Status().Role != service.Leader {
			n.updateStatus(r)
			return
		}
	}
	n.log.Warn("leadership transfer did not complete before shutdown", "to", to)
}
