package replica

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/tandem-cluster/tandem/internal/bugs"
	"github.com/tandem-cluster/tandem/internal/consensus"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// Ingress and admission, on the leader: a client's request is checked against the sessions (the
// opening and closing marks of what is proposed and not yet applied, the "unsure" rule of a new
// leader), answered at once or queued, and the queue is proposed in batches of raft entries
// (flush, propose). Session expiry is decided here too, by the leader's clock.

func (r *Replica) expireSessions(now int64) {
	if r.ctr.Suspended() {
		return // no session expires while the cluster is suspended (resuming restarts every clock)
	}
	timeout := r.cfg.SessionTimeout.Nanoseconds()
	for _, id := range r.ctr.SessionIDs() {
		last, ok := r.lastActivity[id]
		if !ok {
			r.lastActivity[id] = now
			continue
		}
		if now-last > timeout && !r.closing[id] {
			r.closing[id] = true
			r.enqueue(wire.Item{Kind: wire.ItemClose, Session: id, Reason: uint8(service.CloseTimeout)})
		}
	}
}

// ClientRequest handles a request from a client connection.
func (r *Replica) ClientRequest(conn ConnID, m *wire.ClientMsg) {
	if m.Grant != nil && !r.permitted(conn, m) {
		return // any member refuses what the principal may not do (principals.go)
	}
	if r.tooLarge(conn, m) {
		return
	}
	if m.Kind == wire.CAdmin {
		r.admin(conn, m) // some are answered by any member
		return
	}
	if !r.isLeader() && !(bugs.Active(bugs.FollowerForwards) && m.Kind == wire.CCommand) {
		r.redirect(conn, m)
		return
	}
	now := r.inputNow()
	switch m.Kind {
	case wire.COpen, wire.CAttach:
		if own := r.ctr.ClusterUUID(); !m.ClusterUUID.IsZero() && !own.IsZero() && own != m.ClusterUUID {
			// The client attached to another cluster before (a data directory, or an endpoint,
			// of another cluster): nothing of its session is here. Refused before anything else.
			r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CSessionEvent, Session: m.Session, Status: wire.StatusWrongCluster,
				Payload: []byte(fmt.Sprintf("this member belongs to cluster %s, not %s", own, m.ClusterUUID))})
			return
		}
		if m.Grant != nil && r.foreign(conn, m) {
			return
		}
		if r.ctr.SessionOpen(m.Session) {
			r.attach(m.Session, conn, now)
			r.out.SendClient(conn, r.attached1(m.Session))
			return
		}
		if m.Kind == wire.CAttach {
			if r.unsure(m.Session) {
				r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session,
					Status: wire.StatusUnavailable, Payload: []byte(catchingUpMessage)})
				return
			}
			// Reattaching never reopens: a session the cluster expired stays expired, so the
			// commands it left unanswered cannot be applied a second time on a new session.
			// (A session id this member never saw closed is one that expired long ago.)
			if r.confirmFirst(conn, m) {
				return
			}
			reason := service.CloseTimeout
			if r.ctr.SessionClosed(m.Session) {
				reason = r.ctr.ClosedReason(m.Session)
			}
			r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CSessionEvent, Session: m.Session,
				Status: wire.StatusSessionExpired, Reason: uint8(reason)})
			return
		}
		if r.ctr.SessionClosed(m.Session) {
			// The session existed and was closed: never a fresh session under the same id.
			r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CSessionEvent, Session: m.Session,
				Status: wire.StatusSessionExpired, Reason: uint8(r.ctr.ClosedReason(m.Session))})
			return
		}
		if r.isOpening(m.Session) {
			r.attach(m.Session, conn, now)
			return
		}
		open, ok := r.openItem(conn, m)
		if !ok || !r.admitPending(conn, m) {
			return
		}
		r.opening[m.Session] = open.Principal
		r.attach(m.Session, conn, now)
		r.enqueue(open)
	case wire.CCommand:
		if m.Grant != nil && r.foreign(conn, m) {
			return
		}
		st := r.ctr.Admit(m.Session, m.Seq, m.LowestUnacked, r.isOpening(m.Session))
		if st == wire.StatusSessionExpired && r.unsure(m.Session) {
			st = wire.StatusUnavailable
		}
		if st == wire.StatusSessionExpired && r.confirmFirst(conn, m) {
			return
		}
		if st == wire.StatusOK && r.appliedTerm == r.core.State().Term && r.ctr.SuspendRefuses(m.Session, m.Seq, m.LowestUnacked) {
			r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq, Status: wire.StatusRejected,
				Payload: []byte(container.SuspendedMessage)})
			return
		}
		if st != wire.StatusOK {
			reply := &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq, Status: st}
			switch st {
			case wire.StatusRejected:
				reply.Payload = []byte(container.WindowFullMessage)
			case wire.StatusUnavailable:
				reply.Payload = []byte(catchingUpMessage)
			}
			r.out.SendClient(conn, reply)
			return
		}
		if !r.admitPending(conn, m) {
			return
		}
		r.attach(m.Session, conn, now)
		r.enqueue(wire.Item{Kind: wire.ItemCommand, Session: m.Session, Seq: m.Seq,
			LowestUnacked: m.LowestUnacked, Payload: m.Payload, Received: r.meterNow()})
	case wire.CKeepAlive:
		if m.Grant != nil && r.foreign(conn, m) {
			return
		}
		st := wire.StatusOK
		if r.ctr.SessionOpen(m.Session) {
			r.attach(m.Session, conn, now)
		} else if r.unsure(m.Session) {
			st = wire.StatusUnavailable
		} else if !r.isOpening(m.Session) {
			if r.confirmFirst(conn, m) {
				return
			}
			st = wire.StatusSessionExpired
		}
		r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CKeepAliveAck, Session: m.Session, Status: st})
	case wire.CClose:
		if m.Grant != nil && r.foreign(conn, m) {
			return
		}
		switch {
		case r.closing[m.Session]:
			// A close is under way (the client's, resent, or the leader's expiry): the client
			// hears that the session is closed when it is, not before (the proposal may fail).
			r.attach(m.Session, conn, now)
			return
		case r.unsure(m.Session):
			r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session,
				Status: wire.StatusUnavailable, Payload: []byte(catchingUpMessage)})
			return
		case r.isOpening(m.Session):
			// The open is proposed and not applied: the close follows it in the log.
		case !r.ctr.SessionOpen(m.Session):
			if r.confirmFirst(conn, m) {
				return
			}
			r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CSessionEvent, Session: m.Session,
				Status: wire.StatusSessionExpired, Reason: uint8(service.CloseClient)})
			return
		}
		r.closing[m.Session] = true
		r.attach(m.Session, conn, now)
		r.enqueue(wire.Item{Kind: wire.ItemClose, Session: m.Session, Reason: uint8(service.CloseClient)})
	case wire.CQuery:
		r.takeQuery(conn, m)
	default:
		r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq,
			Status: wire.StatusBadRequest, Payload: []byte(fmt.Sprintf("unexpected message kind %d", m.Kind))})
	}
}

// tooLarge refuses a command or query over MaxCommandBytes (whole, or only its head when the
// client port skipped its oversized frame) with an answer that names the limit; any member
// answers so, leader or not, as the limit is each member's own.
func (r *Replica) tooLarge(conn ConnID, m *wire.ClientMsg) bool {
	if len(m.Payload) <= r.cfg.MaxCommandBytes && m.OversizedBytes == 0 {
		return false
	}
	why := fmt.Sprintf("too large: a payload of %d bytes, the limit is %d (MaxCommandBytes)", len(m.Payload), r.cfg.MaxCommandBytes)
	if m.OversizedBytes > 0 {
		why = fmt.Sprintf("too large: a request of %d bytes, the limit is %d bytes of payload (MaxCommandBytes)", m.OversizedBytes, r.cfg.MaxCommandBytes)
	}
	switch m.Kind {
	case wire.CCommand:
		r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq,
			Status: wire.StatusRejected, Payload: []byte("command " + why)})
	case wire.CQuery:
		r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CQueryResponse, RequestID: m.RequestID,
			Status: wire.StatusRejected, Payload: []byte("query " + why)})
	default:
		r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq,
			Status: wire.StatusBadRequest, Payload: []byte(fmt.Sprintf("message kind %d %s", m.Kind, why))})
	}
	return true
}

// attached1 is the answer to an attach: the session is attached here, and the limits the client
// must keep to.
func (r *Replica) attached1(id wire.SessionID) *wire.ClientMsg {
	return &wire.ClientMsg{Kind: wire.CAttached, Session: id,
		CommandBytesMax: r.cfg.MaxCommandBytes, WindowMax: r.cfg.Container.ResponseWindowMax,
		ClusterUUID: r.ctr.ClusterUUID()}
}

// catchingUpMessage is the refusal of a request about a session a new leader does not know yet.
const catchingUpMessage = "the leader is still applying its predecessors' log: retry"

// unsure reports whether this leader cannot tell yet that session id is gone. A new leader
// holds every committed entry but may not have applied them all: it learns how far its log is
// committed only when an entry of its own term commits (raft's first entry of a term). Until it
// applied that entry, a session it knows neither as open nor as closed may have been opened by
// its predecessors, and telling its client "expired" would end a live session and leave its
// unanswered commands' outcome unknown for ever; such requests are refused as unavailable
// instead, and the client retries.
func (r *Replica) unsure(id wire.SessionID) bool {
	return r.appliedTerm < r.core.State().Term && !r.ctr.SessionOpen(id) && !r.ctr.SessionClosed(id) && !r.isOpening(id)
}

// confirmFirst holds back the answer that session m.Session is gone (expired or never opened)
// until a ReadIndex round confirms this member still leads and it applied the round's read
// index, then handles m again (verdict), and reports true; false when the answer may go now,
// as it is being handled again after such a round.
//
// Why: "your session is gone" is a read of the replicated state, and a leader that was deposed
// without knowing it (a partition) may not have applied the open that its successor committed;
// its client would end a live session, and leave the outcome of its unanswered commands unknown
// for ever. The simulator found it (seed 223605, schedule stale-leader-says-expired.txt). The
// closed-session answers need no round: a closed id never opens again, so a stale state that
// holds it closed is right. Such answers are rare (a client that was away), so the round costs
// nothing in the common case.
func (r *Replica) confirmFirst(conn ConnID, m *wire.ClientMsg) bool {
	if r.confirming {
		return false
	}
	if r.readsPending >= r.cfg.MaxPendingReads {
		r.refuse(conn, m, "too many pending reads to confirm the session's state: retry")
		return true
	}
	req := *m
	req.Payload = bytes.Clone(m.Payload)
	r.newReads = append(r.newReads, pendingRead{conn: conn, req: &req})
	r.readsPending++
	return true
}

// verdict handles a request held back by confirmFirst, once its round's read index is applied.
func (r *Replica) verdict(conn ConnID, m *wire.ClientMsg) {
	r.confirming = true
	defer func() { r.confirming = false }()
	r.ClientRequest(conn, m)
}

// refuse answers a request about a session as unavailable (not applied; the client retries).
func (r *Replica) refuse(conn ConnID, m *wire.ClientMsg, why string) {
	if m.Kind == wire.CKeepAlive {
		r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CKeepAliveAck, Session: m.Session, Status: wire.StatusUnavailable})
		return
	}
	r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq,
		Status: wire.StatusUnavailable, Payload: []byte(why)})
}

// inputNow returns the clock as read once per round of inputs (Process starts the next round):
// when a client last spoke needs no finer grain than a round, and a clock read costs about as
// much as the rest of a command's ingress.
func (r *Replica) inputNow() int64 {
	if !r.nowRead {
		r.now, r.nowRead = r.clock.Now(), true
	}
	return r.now
}

func (r *Replica) admitPending(conn ConnID, m *wire.ClientMsg) bool {
	if len(r.pending) < r.cfg.MaxPendingItems {
		return true
	}
	if r.core.ProposalsPaused() {
		// Held for the transfer (flush), not refused: the client tries elsewhere.
		r.redirect(conn, m)
		return false
	}
	r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq,
		Status: wire.StatusRejected, Payload: []byte("leader ingress queue full")})
	return false
}

func (r *Replica) attach(id wire.SessionID, conn ConnID, now int64) {
	r.attached[id] = conn
	r.lastActivity[id] = now
}

// ClientGone forgets a closed client connection. Its sessions stay open until they expire.
func (r *Replica) ClientGone(conn ConnID) {
	for id, c := range r.attached {
		if c == conn {
			delete(r.attached, id)
		}
	}
}

// redirect sends a request to the leader. With no leader known, it names the member this one
// voted for in its current term, if another: a candidate that is likely to lead by the time the
// client gets there (a leader that stepped down for a transfer, or an election, knows no leader
// until the winner's first message, and its clients would otherwise go round the members and
// back off). A client sent to a candidate that lost is sent on, like one sent to no leader.
func (r *Replica) redirect(conn ConnID, m *wire.ClientMsg) {
	st := r.core.State()
	red := &wire.ClientMsg{Kind: wire.CRedirect, Session: m.Session, Seq: m.Seq, RequestID: m.RequestID,
		LeaderID: -1, Term: st.Term, Status: wire.StatusNotLeader}
	lead := st.Leader
	if lead == 0 {
		lead = r.core.Voted()
	}
	if lead != 0 && lead != r.self {
		red.LeaderID = r.IDOf(lead)
		if lm, _, ok := r.memberByRaftID(lead); ok {
			red.LeaderAddr = lm.ClientAddr
		}
	}
	r.out.SendClient(conn, red)
}

func (r *Replica) enqueue(it wire.Item) {
	r.pending = append(r.pending, it)
	r.pendingBytes += wire.BatchItemBytes(&it)
}

// flush proposes the pending items as batches of at most MaxBatchBytes. While this leader hands
// leadership over, or has stepped down without knowing it yet (consensus.ProposalsPaused), it
// holds them instead: raft would drop them, and each client would be sent away with no leader to
// go to (the leader is still this member), to try the other members in turn and back off when
// none leads yet — stalling it past the transfer (docs/PERFORMANCE.md, "Leadership transfer").
// Held, they are proposed if raft gives the transfer up, or redirected by stepDown, by then to a
// leader or to the member this one voted for (redirect).
func (r *Replica) flush() {
	if r.shutdownProposed && len(r.pending) > 0 {
		r.refusePending(errShuttingDown)
		return
	}
	if len(r.pending) > 0 && r.core.ProposalsPaused() {
		return
	}
	rest := r.pending
	for len(rest) > 0 {
		n, size := 0, 0
		for n < len(rest) {
			sz := wire.BatchItemBytes(&rest[n])
			if n > 0 && size+sz > r.cfg.MaxBatchBytes {
				break
			}
			size += sz
			n++
		}
		r.propose(rest[:n], size)
		rest = rest[n:]
	}
	// The encoded batches own their bytes: the slice is reused, without the payloads.
	clear(r.pending)
	r.pending = r.pending[:0]
	r.pendingBytes = 0
}

// batchHeaderBytes covers a batch's fixed fields (version, timestamp, item count).
const batchHeaderBytes = 32

func (r *Replica) propose(items []wire.Item, size int) {
	b := wire.Batch{TimestampNanos: r.clock.Now(), Items: items}
	err := r.core.Propose(wire.AppendBatch(make([]byte, 0, size+batchHeaderBytes), &b))
	if err == nil {
		r.meterProposed(items)
		return
	}
	r.refuseItems(items, err)
}

// errShuttingDown: a leader that proposed a shutdown proposes nothing more.
var errShuttingDown = errors.New("the cluster is shutting down: try again once it is started again")

// refusePending refuses every pending item with err, as a failed proposal.
func (r *Replica) refusePending(err error) {
	r.refuseItems(r.pending, err)
	clear(r.pending)
	r.pending = r.pending[:0]
	r.pendingBytes = 0
}

// refuseItems tells the clients of items that were not proposed (err says why) now, instead of
// letting them time out.
func (r *Replica) refuseItems(items []wire.Item, err error) {
	for i := range items {
		it := &items[i]
		// Only the item that proposed an open or a close gives its mark back: a session's open
		// (or close) proposed in an earlier batch is still under way, and a later command of
		// the session must still be admitted (or refused) on it. A failed close is proposed
		// again: by the client, or by expireSessions at a later tick, attached here or not.
		switch it.Kind {
		case wire.ItemOpen, wire.ItemOpenPrincipal:
			delete(r.opening, it.Session)
		case wire.ItemClose:
			delete(r.closing, it.Session)
		}
		conn, ok := r.attached[it.Session]
		if !ok {
			continue
		}
		switch {
		case errors.Is(err, consensus.ErrNotLeader):
			r.redirect(conn, &wire.ClientMsg{Session: it.Session, Seq: it.Seq})
		default:
			r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CResponse, Session: it.Session, Seq: it.Seq,
				Status: wire.StatusUnavailable, Payload: []byte(err.Error())})
		}
	}
}
