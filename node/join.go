package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/tandem-cluster/tandem/internal/admin"
	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/internal/version"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Joining a running cluster (Config.Join): a member on an empty data directory asks the cluster,
// through any member's client address, to add it as a learner; the leader gives it a raft id
// never used before (replica's members.go) and answers once the change is applied. The member
// keeps the raft id in its IDENTITY before anything else, then starts like any member: the leader
// sends it a snapshot and the log, and promotes it to voter once it is caught up (unless
// Config.Learner). From then on its data directory is its membership: a restart needs no Join
// (and ignores it). A joiner that crashes before it kept the answer asks again, and the leader
// answers with the same raft id while it has sent the learner nothing it acknowledged: a crash
// anywhere in joining adds at most one member.

// ErrRemoved: this member was removed from the cluster (tandem cluster remove-member, or it was
// replaced). It stops, and its data directory cannot serve again: clean it and join anew.
var ErrRemoved = replica.ErrRemoved

// ErrJoin: joining the running cluster failed (Config.Join); the error says why.
var ErrJoin = errors.New("node: joining the cluster failed")

// hasData reports whether the data directory holds a member's data (its IDENTITY file).
func hasData(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, "IDENTITY"))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// join asks the cluster to add this member and returns the leader's answer.
func (n *Node) join(ctx context.Context) (wire.AdminResponse, error) {
	self, _ := n.cfg.self()
	req := wire.AdminRequest{Op: wire.AdminJoin, Learner: n.cfg.Learner,
		Member: &wire.AdminMember{ID: self.ID, ClientAddr: self.ClientAddr, MemberAddr: self.MemberAddr}}
	n.log.Info("joining the cluster", "through", n.cfg.Join)
	// Never to its own client address: the others may still name it as their leader, if it led
	// before it was rebuilt.
	resp, st, err := admin.Call(ctx, n.cfg.Join, req, n.adminOptions(admin.Options{Avoid: []string{self.ClientAddr}}))
	switch {
	case err != nil:
		return resp, fmt.Errorf("%w through %v: %w", ErrJoin, n.cfg.Join, err)
	case st != wire.StatusOK:
		return resp, fmt.Errorf("%w through %v: %s", ErrJoin, n.cfg.Join, resp.Error)
	case resp.RaftID == 0:
		return resp, fmt.Errorf("%w through %v: the answer gave no raft id", ErrJoin, n.cfg.Join)
	case resp.ClusterID != "" && resp.ClusterID != n.cfg.ClusterID:
		return resp, fmt.Errorf("%w: the cluster through %v is %q, this member's ClusterID is %q", ErrJoin, n.cfg.Join,
			resp.ClusterID, n.cfg.ClusterID)
	}
	n.log.Info("joined the cluster as a learner", "raft_id", resp.RaftID, "index", resp.Index)
	return resp, nil
}

// peersOf is the transport's peer set for a membership: raft id → member address, without self.
// A founding member (under its founding raft id) the configuration lists is dialled at its
// configured address: a whole cluster can move to new addresses by a restart with new flags
// (replica's configured.go), while members added later are where the membership says.
func (n *Node) peersOf(ms []replica.Member, self uint64) map[uint64]string {
	peers := map[uint64]string{}
	for _, m := range ms {
		if m.RaftID == self || m.RaftID == 0 {
			continue
		}
		peers[m.RaftID] = m.MemberAddr
		for _, c := range n.cfg.Members {
			if c.ID == m.ID && replica.RaftID(c.ID) == m.RaftID {
				peers[m.RaftID] = c.MemberAddr
			}
		}
	}
	return peers
}

// peerSet is the transport's peer set: the recorded membership's, and the members the others
// named that the recorded membership lacks (a member with a stale configuration: watchMembership),
// but never a raft id recorded as removed. Loop only.
func (n *Node) peerSet(r *replica.Replica) map[uint64]string {
	peers := n.peersOf(r.Members(), r.SelfRaftID())
	for id, addr := range n.hinted {
		if _, ok := peers[id]; !ok && !r.Removed(id) {
			peers[id] = addr
		}
	}
	return peers
}

// fromAdmin converts the members of a join's answer.
func fromAdmin(ams []wire.AdminMember) []replica.Member {
	ms := make([]replica.Member, 0, len(ams))
	for _, m := range ams {
		ms = append(ms, replica.Member{ID: m.ID, RaftID: m.RaftID, ClientAddr: m.ClientAddr, MemberAddr: m.MemberAddr,
			Learner: m.Role == "learner"})
	}
	return ms
}

// buildVersion is this build's version as status pages show it: internal/version's Version —
// what `tandem version` prints and tandem_build_info carries — and the commit it was built from,
// when the toolchain stamped it ("0.1.0-dev 2d9ff07"). Not the module version of the build
// information, which is "(devel)" for every build from a checkout.
func buildVersion() string {
	v := version.Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 7 {
				v += " " + s.Value[:7]
			}
		}
	}
	return v
}

// describeSelf adds what the node alone knows to its status on the admin channel. Loop only.
func (n *Node) describeSelf(st *wire.MemberStatus) {
	st.Build = buildVersion()
	n.mu.Lock()
	for id, down := range n.unreachable {
		if down {
			st.Unreachable = append(st.Unreachable, id)
		}
	}
	n.mu.Unlock()
	slices.Sort(st.Unreachable)
}

// A member removed while it was down, or a follower the leader stopped sending to before it
// learnt of its own removal (raft sends nothing to a member it removed), hears from no leader: it
// would campaign for ever, and the others refuse its handshakes. A member whose configuration is
// stale (it was down while members joined, or its directory was wiped and it knows only the
// founders) may not know the leader, nor whose terms it must hear to verify itself. So a member
// that knows no leader asks the others, every membershipCheckEvery, for the membership
// (list-members, which the leader answers): one of its own cluster that lacks its raft id means
// it was removed, and it stops with ErrRemoved like a member that applied its removal; otherwise
// its transport adds the members it did not know, and its core hears their terms
// (Replica.HintMembership). The simulator does the same (clustertest's learnMembership).
const membershipCheckEvery = 3 * time.Second

// learnt is what watchMembership learnt: the leader's membership, or that this member was
// removed (at the leader's applied index).
type learnt struct {
	members   []replica.Member
	removedAt uint64
}

// watchMembership runs beside the loop until ctx ends, handing the loop what it learns.
func (n *Node) watchMembership(ctx context.Context, self uint64, askNow bool, out chan<- learnt, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(membershipCheckEvery)
	defer t.Stop()
	first := askNow
	for {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		first = false
		st := n.Status()
		if st.Leader >= 0 && !st.Unverified {
			continue
		}
		var eps []string
		for _, m := range st.Members {
			if m.RaftID != self {
				eps = append(eps, m.ClientAddr)
			}
		}
		for _, c := range n.cfg.Join {
			if !slices.Contains(eps, c) {
				eps = append(eps, c)
			}
		}
		if len(eps) == 0 {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, membershipCheckEvery)
		resp, code, err := admin.Call(cctx, eps, wire.AdminRequest{Op: wire.AdminListMembers}, n.adminOptions(admin.Options{}))
		cancel()
		if err != nil || code != wire.StatusOK || len(resp.Members) == 0 || resp.ClusterID != n.cfg.ClusterID ||
			(st.ClusterUUID != "" && resp.ClusterUUID != st.ClusterUUID) {
			continue
		}
		l := learnt{members: fromAdmin(resp.Members)}
		if slices.Contains(resp.Removed, self) {
			// Listed as removed: never inferred from its absence, which a stale leader's answer
			// (partitioned, not yet deposed) may show for a member that joined since.
			l = learnt{removedAt: resp.Index}
		}
		select {
		case out <- l:
		case <-ctx.Done():
			return
		}
		if l.removedAt != 0 {
			return
		}
	}
}

// refuseWhileJoining serves the client port of a member that is joining (it bound the port
// first, so that a port in use is said at once): every request is answered as by a member that
// knows no leader — a redirect without one, so that clients and tandem cluster try the other
// members at once instead of waiting on a port nobody serves — and a status request says the
// member is joining. The returned stop ends it and leaves the listener to the client server.
// A listener without deadlines (not TCP) is left unserved meanwhile.
func (n *Node) refuseWhileJoining(l net.Listener) (stop func()) {
	dl, ok := l.(interface{ SetDeadline(time.Time) error })
	if !ok {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	var conns sync.WaitGroup
	go func() {
		defer close(stopped)
		for {
			c, err := l.Accept()
			if err != nil {
				select {
				case <-done:
					return
				default:
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return // the listener is closed: Run is ending
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				n.answerJoining(c, done)
			}()
		}
	}()
	return func() {
		close(done)
		_ = dl.SetDeadline(time.Now())
		<-stopped
		_ = dl.SetDeadline(time.Time{})
		conns.Wait()
	}
}

// answerJoining answers the requests of one client connection while the member joins.
func (n *Node) answerJoining(c net.Conn, done <-chan struct{}) {
	defer c.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-done:
			_ = c.SetDeadline(time.Now())
		case <-stop:
		}
	}()
	r := bufio.NewReader(c)
	var buf []byte
	ver := uint16(0)
	for {
		kind, body, nb, err := wire.ReadFrame(r, wire.MaxAdminBytes+1024, buf)
		buf = nb
		if err != nil || kind != wire.FrameClient {
			return
		}
		m, err := wire.DecodeClientMsg(body)
		if err != nil {
			return
		}
		if ver == 0 {
			ver = 1
			if v, ok := wire.ClientProtocol.Common(m.Protocol); ok && (m.Kind == wire.COpen || m.Kind == wire.CAttach || m.Kind == wire.CAdmin) {
				ver = v
			}
		}
		out := &wire.ClientMsg{Kind: wire.CRedirect, Session: m.Session, Seq: m.Seq, RequestID: m.RequestID, LeaderID: -1,
			Status: wire.StatusNotLeader}
		if m.Kind == wire.CAdmin {
			if req, err := wire.DecodeAdminRequest(m.Payload); err == nil && req.Op == wire.AdminStatus {
				self, _ := n.cfg.self()
				st := &wire.MemberStatus{ID: n.cfg.ID, Role: "joining", Leader: -1, ClientAddr: self.ClientAddr,
					MemberAddr: self.MemberAddr, Build: buildVersion()}
				out = &wire.ClientMsg{Kind: wire.CAdminResponse, RequestID: m.RequestID, Payload: wire.EncodeAdmin(&wire.AdminResponse{Status: st})}
			}
		}
		if _, err := c.Write(wire.AppendClientFrame(nil, out, ver)); err != nil {
			return
		}
	}
}

// ErrRejoinWithJoin: the member's data directory is empty and it was started without Join, but the
// running cluster knows its member id under another raft id than its founding one (it joined, or
// was rebuilt, since) or no longer counts it: starting as its founding raft id would make it
// another member's impostor, or a removed one. It must be rebuilt with Join.
var ErrRejoinWithJoin = errors.New("node: this member's directory is empty, and the cluster knows it otherwise: rebuild it with Join")

// checkEmptyStart, for a member starting on an empty directory without Join, asks the configured
// members for the cluster's membership (bounded: a new cluster's founders have no leader to
// answer, and start as before). If the cluster answers and knows this member id under another raft
// id, or knows this member's founding raft id as another member's, or not at all while it knows
// others, the member refuses to start (ErrRejoinWithJoin), saying how to rebuild it.
func (n *Node) checkEmptyStart(ctx context.Context) error {
	self, _ := n.cfg.self()
	var eps []string
	for _, m := range n.cfg.Members {
		if m.ID != n.cfg.ID {
			eps = append(eps, m.ClientAddr)
		}
	}
	if len(eps) == 0 {
		return nil
	}
	// A running cluster's leader answers in milliseconds; founders of a new cluster have none
	// (they redirect without one until the budget ends), and start as before.
	cctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	resp, code, err := admin.Call(cctx, eps, wire.AdminRequest{Op: wire.AdminListMembers},
		n.adminOptions(admin.Options{AttemptTimeout: 500 * time.Millisecond, DialTimeout: 500 * time.Millisecond, Avoid: []string{self.ClientAddr}}))
	if err != nil || code != wire.StatusOK || len(resp.Members) == 0 || resp.ClusterID != n.cfg.ClusterID {
		return nil // no answer: a new cluster, or the others are down (it starts unverified)
	}
	founding := replica.RaftID(n.cfg.ID)
	for _, m := range resp.Members {
		if (m.ID == n.cfg.ID) != (m.RaftID == founding) {
			return fmt.Errorf("%w: the running cluster knows member %d as raft id %d, and this member's founding raft id is %d: "+
				"start it with --join <the others' client addresses> (README, \"Rebuilding a member\")",
				ErrRejoinWithJoin, m.ID, m.RaftID, founding)
		}
		if m.ID == n.cfg.ID {
			return nil
		}
	}
	return fmt.Errorf("%w: the running cluster does not count member %d (removed?): start it with --join <the others' client "+
		"addresses> to join anew", ErrRejoinWithJoin, n.cfg.ID)
}
