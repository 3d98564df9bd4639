package replica

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"

	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// The admin channel's requests (wire.AdminRequest; ARCHITECTURE decision 18): a member's own
// status, answered by any member; the membership and its changes, by the leader (a follower
// redirects, like a command).
//
// The leader checks a change before it proposes it — one at a time; a member id, addresses and
// raft ids that make sense; enough live voters for the new configuration's quorum (unless Force);
// a learner caught up before it votes — and answers once it is applied (or refused at apply,
// membership.go). A leader that loses its leadership first answers that the outcome is unknown:
// list-members tells. A leader asked to remove itself hands leadership over first, and answers
// "try again": the request then reaches the new leader.

// catchUpLagMax: a learner the leader replicates to (raft's StateReplicate: its log matched, no
// snapshot pending), heard from lately, and whose log is within this many entries of the
// leader's, is caught up: it may become a voter.
const catchUpLagMax = 1000

// pendingChange is a membership change this leader proposed for a request, until it is applied.
type pendingChange struct {
	token     string
	conn      ConnID
	requestID uint64
	raftID    uint64 // join: the raft id given
}

// adminStatus maps a refusal to the answer's status: rejected (the request cannot be done as it
// is), unavailable (not now: try again), bad request.
type adminError struct {
	status wire.Status
	text   string
}

func refuse(format string, args ...any) *adminError {
	return &adminError{status: wire.StatusRejected, text: fmt.Sprintf(format, args...)}
}

func notNow(format string, args ...any) *adminError {
	return &adminError{status: wire.StatusUnavailable, text: fmt.Sprintf(format, args...)}
}

func (r *Replica) answerAdmin(conn ConnID, id uint64, st wire.Status, resp *wire.AdminResponse) {
	r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CAdminResponse, RequestID: id, Status: st,
		Payload: wire.EncodeAdmin(resp)})
}

func (r *Replica) admin(conn ConnID, m *wire.ClientMsg) {
	req, err := wire.DecodeAdminRequest(m.Payload)
	if err != nil {
		r.answerAdmin(conn, m.RequestID, wire.StatusBadRequest, &wire.AdminResponse{Error: err.Error()})
		return
	}
	if !adminKnown(req.Op) {
		r.answerAdmin(conn, m.RequestID, wire.StatusBadRequest, &wire.AdminResponse{Error: fmt.Sprintf(
			"unknown operation %q (this member knows status, errors, list-members, join, remove-member, promote, replace-member, "+
				"transfer-leader, suspend, resume, snapshot, shutdown, set-preferred-leader)", req.Op)})
		return
	}
	if m.Grant != nil && !r.mayAdmin(conn, m, req.Op) {
		return // any member refuses what the principal may not do (principals.go)
	}
	switch req.Op {
	case wire.AdminStatus:
		st := r.memberStatus()
		if r.cfg.DescribeSelf != nil {
			r.cfg.DescribeSelf(&st)
		}
		r.answerAdmin(conn, m.RequestID, wire.StatusOK, &wire.AdminResponse{Status: &st})
		return
	case wire.AdminErrors:
		r.answerErrors(conn, m.RequestID)
		return
	}
	if !r.isLeader() {
		r.redirect(conn, m)
		return
	}
	switch req.Op {
	case wire.AdminSuspend, wire.AdminResume, wire.AdminSnapshot, wire.AdminShutdown, wire.AdminSetPreferred:
		switch aerr := r.control(conn, m.RequestID, req); {
		case aerr != nil && aerr.status == wire.StatusOK:
			resp := &wire.AdminResponse{Index: r.ctr.Applied(), Already: aerr.text, Suspended: r.ctr.Suspended()}
			resp.Preferred, _ = r.ctr.Preferred()
			r.answerAdmin(conn, m.RequestID, wire.StatusOK, resp)
		case aerr != nil:
			r.answerAdmin(conn, m.RequestID, aerr.status, &wire.AdminResponse{Error: aerr.text})
		}
		return
	}
	if req.Op == wire.AdminListMembers {
		if r.appliedTerm != r.core.State().Term {
			// A new leader that has not applied what it inherited would answer with an older
			// membership (lacking a member that joined meanwhile).
			r.answerAdmin(conn, m.RequestID, wire.StatusUnavailable, &wire.AdminResponse{Error: "the leader is new and " +
				"has not applied what it inherited yet: try again"})
			return
		}
		resp := &wire.AdminResponse{Members: r.adminMembers(), Index: r.ctr.Applied(), ClusterID: r.cfg.ClusterID,
			Suspended: r.ctr.Suspended()}
		resp.Preferred, _ = r.ctr.Preferred()
		for _, cm := range r.ctr.Members() {
			if cm.Removed {
				resp.Removed = append(resp.Removed, cm.RaftID)
			}
		}
		if u := r.ctr.ClusterUUID(); !u.IsZero() {
			resp.ClusterUUID = u.String()
		}
		r.answerAdmin(conn, m.RequestID, wire.StatusOK, resp)
		return
	}
	if req.Op == wire.AdminTransferLeader {
		r.transferLeader(conn, m.RequestID, req) // transfer.go
		return
	}
	resp, aerr := r.change(conn, m.RequestID, req)
	switch {
	case aerr != nil && aerr.status == wire.StatusOK:
		// Made already (a request asked again after its answer was lost): answered as made.
		r.answerAdmin(conn, m.RequestID, wire.StatusOK, &wire.AdminResponse{Members: r.adminMembers(), Index: r.ctr.Applied(),
			Already: aerr.text})
	case aerr != nil:
		r.answerAdmin(conn, m.RequestID, aerr.status, &wire.AdminResponse{Error: aerr.text, Members: r.adminMembers()})
	case resp != nil:
		r.answerAdmin(conn, m.RequestID, wire.StatusOK, resp)
	}
}

// adminKnown reports whether this member knows admin operation op. An unknown one is refused by
// name (StatusBadRequest) before the grant is asked: nothing is decided for what is not known.
func adminKnown(op string) bool {
	switch op {
	case wire.AdminStatus, wire.AdminErrors, wire.AdminListMembers, wire.AdminJoin, wire.AdminRemoveMember, wire.AdminPromote,
		wire.AdminReplaceMember, wire.AdminTransferLeader, wire.AdminSuspend, wire.AdminResume, wire.AdminSnapshot,
		wire.AdminShutdown, wire.AdminSetPreferred:
		return true
	}
	return false
}

// adminMembers is the membership as the admin channel shows it.
func (r *Replica) adminMembers() []wire.AdminMember {
	ms := r.Members()
	out := make([]wire.AdminMember, 0, len(ms))
	for _, m := range ms {
		role := "voter"
		if m.Learner {
			role = "learner"
		}
		out = append(out, wire.AdminMember{ID: m.ID, RaftID: m.RaftID, ClientAddr: m.ClientAddr, MemberAddr: m.MemberAddr, Role: role})
	}
	return out
}

// memberStatus is this member's own view.
func (r *Replica) memberStatus() wire.MemberStatus {
	bs := r.core.Status()
	st := wire.MemberStatus{ID: r.cfg.MemberID, RaftID: r.self, Role: strings.ToLower(roleOf(bs.RaftState).String()),
		Term: bs.GetTerm(), Leader: r.IDOf(bs.Lead), Commit: bs.GetCommit(), Applied: r.ctr.Applied(),
		SnapshotIndex: r.lastSnap, ClusterVersion: r.ctr.ClusterVersion(), Unverified: r.core.Unverified(),
		Suspended: r.ctr.Suspended()}
	st.Preferred, _ = r.ctr.Preferred()
	if u := r.ctr.ClusterUUID(); !u.IsZero() {
		st.ClusterUUID = u.String()
	}
	if me, _, ok := r.memberByRaftID(r.self); ok {
		st.ClientAddr, st.MemberAddr = me.ClientAddr, me.MemberAddr
	}
	st.Learner = slices.Contains(r.core.ConfState().GetLearners(), r.self)
	if prs := r.core.Progress(); prs != nil {
		last := r.core.LastIndex()
		st.Lag = map[string]uint64{}
		for _, id := range slices.Sorted(maps.Keys(prs)) {
			if id == r.self {
				continue
			}
			key := strconv.Itoa(r.IDOf(id))
			if _, dup := st.Lag[key]; dup {
				key += "/raft-" + strconv.FormatUint(id, 10)
			}
			st.Lag[key] = last - min(last, prs[id].Match)
		}
	}
	return st
}

// change checks and proposes a membership change. It returns an answer to send now (resp), a
// refusal, or neither: the answer waits for the change to be applied.
func (r *Replica) change(conn ConnID, reqID uint64, req wire.AdminRequest) (*wire.AdminResponse, *adminError) {
	if v := r.ctr.ClusterVersion(); v < container.ClusterVersionMembership {
		return nil, refuse("membership changes need cluster version %d, and %d is in force: every member must run a build "+
			"that has them (the leader raises the version once all do; tandem cluster status shows each member's build)",
			container.ClusterVersionMembership, v)
	}
	if r.shutdownProposed {
		return nil, notNow("the cluster is shutting down")
	}
	if r.appliedTerm != r.core.State().Term || r.core.ConfChangePending() || len(r.changes) > 0 {
		return nil, notNow("a membership change is in progress: try again once it is applied")
	}
	var (
		cc     *pb.ConfChangeV2
		rec    []byte
		raftID uint64
		aerr   *adminError
	)
	switch req.Op {
	case wire.AdminJoin:
		var resp *wire.AdminResponse
		resp, cc, rec, raftID, aerr = r.planJoin(req)
		if resp != nil || aerr != nil {
			return resp, aerr
		}
	case wire.AdminRemoveMember:
		cc, aerr = r.planRemove(req)
	case wire.AdminPromote:
		cc, aerr = r.planPromote(req)
	case wire.AdminReplaceMember:
		cc, aerr = r.planReplace(req)
	}
	if aerr != nil {
		return nil, aerr
	}
	r.changeSeq++
	token := fmt.Sprintf("%d.%d", r.core.State().Term, r.changeSeq)
	cc.Context = changeContext(token, rec)
	if err := r.core.ProposeConfChange(cc); err != nil {
		return nil, notNow("proposing the change: %v", err)
	}
	r.log.Info("membership change proposed", "op", req.Op, "change", r.describe(cc))
	r.changes = append(r.changes, &pendingChange{token: token, conn: conn, requestID: reqID, raftID: raftID})
	return nil, nil
}

// changeApplied answers the request whose change (token) was applied at ix; made is false for a
// change applied as no change.
func (r *Replica) changeApplied(token string, ix uint64, made bool) {
	i := slices.IndexFunc(r.changes, func(p *pendingChange) bool { return p.token == token })
	if i < 0 {
		return
	}
	p := r.changes[i]
	r.changes = slices.Delete(r.changes, i, i+1)
	if !made {
		r.answerAdmin(p.conn, p.requestID, wire.StatusRejected, &wire.AdminResponse{Index: ix, Members: r.adminMembers(),
			Error: fmt.Sprintf("the change was refused when applied at index %d (the members' logs say why)", ix)})
		return
	}
	resp := &wire.AdminResponse{Index: ix, Members: r.adminMembers(), RaftID: p.raftID, ClusterID: r.cfg.ClusterID}
	if u := r.ctr.ClusterUUID(); !u.IsZero() {
		resp.ClusterUUID = u.String()
	}
	r.answerAdmin(p.conn, p.requestID, wire.StatusOK, resp)
}

// failChanges answers every pending change's request: this member stopped leading before the
// change was applied, so its outcome is unknown here.
func (r *Replica) failChanges() {
	for _, p := range r.changes {
		r.answerAdmin(p.conn, p.requestID, wire.StatusUnavailable, &wire.AdminResponse{Error: "the leader changed before the " +
			"change was applied: it may yet be applied or not (outcome unknown); list-members tells"})
	}
	r.changes = nil
}

func singleChange(typ pb.ConfChangeType, id uint64) *pb.ConfChangeSingle {
	return &pb.ConfChangeSingle{Type: typ.Enum(), NodeId: new(id)}
}

// checkAddr checks an advertised address of a joiner.
func checkAddr(what, a string) *adminError {
	if len(a) > wire.MaxAddrBytes || strings.ContainsAny(a, "\n|, ") {
		return &adminError{status: wire.StatusBadRequest, text: fmt.Sprintf("%s address %q is not a host:port", what, a)}
	}
	if _, port, err := net.SplitHostPort(a); err != nil || port == "" || port == "0" {
		return &adminError{status: wire.StatusBadRequest, text: fmt.Sprintf("%s address %q is not a host:port with a port", what, a)}
	}
	return nil
}

// planJoin plans a join: a new learner; the same learner again (a joiner that did not keep the
// first answer); or a rebuild in place (a voter's id and addresses under a new raft id).
func (r *Replica) planJoin(req wire.AdminRequest) (*wire.AdminResponse, *pb.ConfChangeV2, []byte, uint64, *adminError) {
	j := req.Member
	if j == nil || j.ID < 0 {
		return nil, nil, nil, 0, &adminError{status: wire.StatusBadRequest, text: "join needs the member: a non-negative id and its addresses"}
	}
	for _, a := range [][2]string{{"client", j.ClientAddr}, {"member", j.MemberAddr}} {
		if aerr := checkAddr(a[0], a[1]); aerr != nil {
			return nil, nil, nil, 0, aerr
		}
	}
	if j.ClientAddr == j.MemberAddr {
		return nil, nil, nil, 0, &adminError{status: wire.StatusBadRequest, text: "the client and member addresses are the same"}
	}
	prs := r.core.Progress()
	rebuild := false
	for _, m := range r.Members() {
		sameAddrs := m.ClientAddr == j.ClientAddr && m.MemberAddr == j.MemberAddr
		switch {
		case m.ID == j.ID && sameAddrs && m.Learner && prs[m.RaftID].Match == 0:
			// Joined, and was sent nothing it acknowledged: the same joiner asking again.
			return r.joinAnswer(m.RaftID), nil, nil, 0, nil
		case m.ID == j.ID && m.Learner:
			return nil, nil, nil, 0, notNow("member %d is joining (raft id %d, a learner catching up): try again once it is "+
				"a voter, or remove it first", m.ID, m.RaftID)
		case m.ID == j.ID && sameAddrs:
			rebuild = true
		case m.ID == j.ID:
			return nil, nil, nil, 0, refuse("member %d is a member at other addresses (%s, %s): pick another id, or "+
				"remove it first", m.ID, m.ClientAddr, m.MemberAddr)
		case m.ClientAddr == j.ClientAddr || m.MemberAddr == j.MemberAddr ||
			m.ClientAddr == j.MemberAddr || m.MemberAddr == j.ClientAddr:
			return nil, nil, nil, 0, refuse("member %d uses an address of the joiner's (%s, %s)", m.ID, m.ClientAddr, m.MemberAddr)
		}
	}
	id := r.nextRaftID()
	rec := encodeRecord(Member{ID: j.ID, ClientAddr: j.ClientAddr, MemberAddr: j.MemberAddr, StayLearner: req.Learner && !rebuild})
	if rebuild {
		r.log.Info("a member asks to join with the id and addresses of a voter: it is rebuilt in place under a new raft id, "+
			"which replaces the old one once caught up", "member", j.ID, "raft_id", id)
	}
	return nil, &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{singleChange(pb.ConfChangeAddLearnerNode, id)}}, rec, id, nil
}

// joinAnswer is the answer to a join already made: the joiner's raft id and the membership.
func (r *Replica) joinAnswer(id uint64) *wire.AdminResponse {
	resp := &wire.AdminResponse{RaftID: id, Members: r.adminMembers(), Index: r.ctr.Applied(), ClusterID: r.cfg.ClusterID}
	if u := r.ctr.ClusterUUID(); !u.IsZero() {
		resp.ClusterUUID = u.String()
	}
	return resp
}

// target is the one member of id the request names.
func (r *Replica) target(id int) (Member, *adminError) {
	var found []Member
	for _, m := range r.Members() {
		if m.ID == id {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 0:
		if r.wasRemoved(id) {
			return Member{}, &adminError{status: wire.StatusOK, text: fmt.Sprintf("member %d was removed already", id)}
		}
		return Member{}, refuse("member %d is not a member (tandem cluster list-members)", id)
	case 1:
		return found[0], nil
	}
	return Member{}, notNow("member %d is being rebuilt in place (raft ids %d and %d): try again once the new one replaced the old",
		id, found[0].RaftID, found[1].RaftID)
}

// liveVoters counts the voters among ids that this member heard from within the last two
// election timeouts (itself included). Not raft's RecentActive, which a leader clears for every
// follower at each quorum check: a request just after one would count no follower live.
func (r *Replica) liveVoters(ids []uint64) int {
	n := 0
	for _, id := range ids {
		if at, ok := r.heard[id]; id == r.self || ok && r.ticks-at <= 2*r.cfg.ElectionTicks {
			n++
		}
	}
	return n
}

// wasRemoved reports whether a member of id was removed (and recorded so).
func (r *Replica) wasRemoved(id int) bool {
	for _, m := range r.ctr.Members() {
		if m.Removed && decodeRecord(m.RaftID, m.Addrs).ID == id {
			return true
		}
	}
	return false
}

// quorumCheck refuses (unless force) a configuration of voters whose live members cannot make
// its quorum.
func (r *Replica) quorumCheck(voters []uint64, force bool, what string) *adminError {
	q := len(voters)/2 + 1
	if live := r.liveVoters(voters); live < q && !force {
		if r.ticks-r.leaderSince < 2*r.cfg.ElectionTicks {
			// A follower hears from the leader only: a leader elected (or handed leadership)
			// just now has not heard from the other followers yet. Not a refusal: not yet.
			return notNow("%s: the leader is new and has heard from %d of the %d voters so far: try again", what, live, len(voters))
		}
		return refuse("%s: it would leave %d live voters of %d, under the quorum of %d (--force to do it anyway)",
			what, live, len(voters), q)
	}
	return nil
}

// handOverFirst, when the leader is asked to change its own vote away, hands leadership over:
// the request is tried again at the new leader.
func (r *Replica) handOverFirst(m Member) *adminError {
	if m.RaftID != r.self {
		return nil
	}
	to, ok := r.core.ActiveFollowerBut(r.self)
	if !ok {
		return notNow("the leader (member %d) cannot hand leadership over before removing itself: no other voter is live", m.ID)
	}
	r.core.TransferLeadership(to)
	return notNow("the leader (member %d) hands leadership to member %d before it removes itself: try again", m.ID, r.IDOf(to))
}

func without(ids []uint64, id uint64) []uint64 {
	return slices.DeleteFunc(slices.Clone(ids), func(x uint64) bool { return x == id })
}

func (r *Replica) planRemove(req wire.AdminRequest) (*pb.ConfChangeV2, *adminError) {
	m, aerr := r.target(req.ID)
	if aerr != nil {
		return nil, aerr
	}
	if !m.Learner {
		voters := r.voterIDs()
		if len(voters) == 1 {
			return nil, refuse("member %d is the last voter", m.ID)
		}
		if aerr := r.quorumCheck(without(voters, m.RaftID), req.Force, fmt.Sprintf("removing member %d", m.ID)); aerr != nil {
			return nil, aerr
		}
		if aerr := r.handOverFirst(m); aerr != nil {
			return nil, aerr
		}
	}
	return &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{singleChange(pb.ConfChangeRemoveNode, m.RaftID)}}, nil
}

// caughtUp refuses a learner that is not caught up with this leader's log.
func (r *Replica) caughtUp(m Member) *adminError {
	pr, ok := r.core.Progress()[m.RaftID]
	last := r.core.LastIndex()
	// Replicating (not probing, not waiting for a snapshot), heard from lately, and near the end.
	if !ok || !pr.RecentActive || pr.State != tracker.StateReplicate || pr.Match == 0 || pr.Match+catchUpLagMax < last {
		return notNow("member %d is not caught up yet (%d entries behind%s): try again later", m.ID, last-min(last, pr.Match),
			map[bool]string{true: "", false: ", not heard from lately"}[ok && pr.RecentActive])
	}
	return nil
}

func (r *Replica) planPromote(req wire.AdminRequest) (*pb.ConfChangeV2, *adminError) {
	m, aerr := r.target(req.ID)
	if aerr != nil {
		return nil, aerr
	}
	if !m.Learner {
		return nil, &adminError{status: wire.StatusOK, text: fmt.Sprintf("member %d is a voter already", m.ID)}
	}
	if aerr := r.caughtUp(m); aerr != nil {
		return nil, aerr
	}
	return &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{singleChange(pb.ConfChangeAddNode, m.RaftID)}}, nil
}

func (r *Replica) planReplace(req wire.AdminRequest) (*pb.ConfChangeV2, *adminError) {
	if req.Member == nil {
		return nil, &adminError{status: wire.StatusBadRequest, text: "replace-member needs the learner that takes the place (--with)"}
	}
	nu, aerr := r.target(req.Member.ID)
	if aerr != nil {
		return nil, aerr
	}
	old, aerr := r.target(req.ID)
	if aerr != nil {
		if aerr.status == wire.StatusOK && !nu.Learner {
			aerr.text = fmt.Sprintf("member %d was replaced by member %d already", req.ID, nu.ID)
			return nil, aerr
		}
		if aerr.status == wire.StatusOK {
			aerr = refuse("member %d is not a member (it was removed)", req.ID)
		}
		return nil, aerr
	}
	switch {
	case old.Learner:
		return nil, refuse("member %d is a learner: remove it instead", old.ID)
	case !nu.Learner:
		return nil, refuse("member %d is a voter: the member that takes the place must be a learner "+
			"(tandem node %d --join ADDR --learner)", nu.ID, nu.ID)
	}
	if aerr := r.caughtUp(nu); aerr != nil {
		return nil, aerr
	}
	voters := r.voterIDs()
	what := fmt.Sprintf("replacing member %d with member %d", old.ID, nu.ID)
	if aerr := r.quorumCheck(append(without(voters, old.RaftID), nu.RaftID), req.Force, what); aerr != nil {
		return nil, aerr
	}
	if aerr := r.quorumCheck(voters, req.Force, what); aerr != nil {
		return nil, aerr
	}
	if aerr := r.handOverFirst(old); aerr != nil {
		return nil, aerr
	}
	return &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{singleChange(pb.ConfChangeAddNode, nu.RaftID),
		singleChange(pb.ConfChangeRemoveNode, old.RaftID)}}, nil
}

// maybePromote, on the leader, promotes a caught-up learner that did not join to stay one: to a
// voter, or, for a member rebuilt in place, in the place of the old raft id of its member id.
func (r *Replica) maybePromote() {
	if len(r.core.ConfState().GetLearners()) == 0 || r.appliedTerm != r.core.State().Term ||
		r.core.ConfChangePending() || len(r.changes) > 0 || r.ctr.ClusterVersion() < container.ClusterVersionMembership {
		return
	}
	ms := r.Members()
	for _, m := range ms {
		if !m.Learner || m.StayLearner || r.caughtUp(m) != nil {
			continue
		}
		cc := &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{singleChange(pb.ConfChangeAddNode, m.RaftID)}}
		for _, old := range ms {
			if old.ID == m.ID && !old.Learner {
				cc.Changes = append(cc.Changes, singleChange(pb.ConfChangeRemoveNode, old.RaftID))
				if old.RaftID == r.self {
					if aerr := r.handOverFirst(old); aerr != nil && r.ticks-r.promoteLog >= 10*r.cfg.ElectionTicks {
						r.promoteLog = r.ticks
						r.log.Info("replacing this leader's own raft id with its rebuilt one", "why", aerr.text)
					}
					return
				}
			}
		}
		r.changeSeq++
		cc.Context = changeContext(fmt.Sprintf("%d.%d", r.core.State().Term, r.changeSeq), nil)
		if err := r.core.ProposeConfChange(cc); err != nil {
			r.log.Warn("promoting a caught-up learner failed; will try again", "member", m.ID, "err", err)
			return
		}
		r.log.Info("a learner caught up: promoting it", "member", m.ID, "change", r.describe(cc))
		return
	}
}
