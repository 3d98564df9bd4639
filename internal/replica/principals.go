package replica

import (
	"fmt"

	"github.com/tandem-cluster/tandem/internal/bugs"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Authorization (issue 22): what a principal may do, and whose sessions it may use.
//
// The client port authenticates a connection and sets its Grant on every request it hands over
// (wire.ClientMsg.Grant); a nil Grant is a port without authentication, whose requests are
// served as before: anything goes, on any session. With a Grant:
//
//   - What the principal may do is decided by any member, leader or not, before anything else
//     (a follower does not redirect what the leader would refuse): a command needs
//     Grant.Commands, a query Grant.Queries, an admin operation Grant.MayAdmin(op) — except
//     list-members, which the client library asks on every session's connection to learn the
//     members' addresses, and which any principal may ask. The answer is StatusDenied (final:
//     not applied, nothing proposed) with a text naming the principal and what it may not do:
//     a CResponse for a command, a CQueryResponse for a query, a CAdminResponse (its JSON
//     error) for an admin operation. Opening a session needs nothing: a client that may only
//     read still opens one when it connects.
//   - Whose session: the leader records the principal when a session opens (the open carries
//     it into the log, so every member's service sees the same one: Session.Principal) and
//     refuses an open, attach, command, keep-alive or close of a session that another principal
//     opened — one open here, or whose open this leader proposed — with StatusDenied: a stolen
//     or guessed session id lets no one else act on the session, read its recorded replies or
//     receive its answers. The answer is a session event for an open, attach or close, a
//     CResponse for a command, a keep-alive ack for a keep-alive. A client that fails over
//     re-attaches with the same credential on the new leader, which holds the same principal
//     (replicated state): it goes on as before. A session opened anonymously (no principal: a
//     port without authentication, or below cluster version 6) belongs to "" only: an
//     authenticated principal may not use it.
//   - Below cluster version 6 an open cannot carry a principal (members of older builds could
//     not apply it). Rather than open the session anonymously — the service would see "" for a
//     client that did authenticate, and the client could never attach to it again once the
//     cluster records principals — a request about a session from a connection with a
//     principal is answered StatusUnavailable, saying that the cluster waits for version 6
//     (the client retries, and goes on once every member runs a build that records principals
//     and the leader raised the version; an operator holding the version with
//     --max-cluster-version holds it back). The member logs it once. Queries and admin
//     requests are served meanwhile (as the grant allows). So: upgrade every member, then turn
//     authentication on.
//   - A new leader that has not applied its predecessors' log does not know whose a session it
//     does not know yet is: an authenticated open of it is answered StatusUnavailable (retry),
//     as attaches already are, so that no second open of another principal is proposed behind
//     the first (the first applied would win, but this leader would have attached the second).
//
// The checks cost a nil check per request without authentication; with it, a bool per command
// and a map lookup and string comparison for the session's owner. Nothing is allocated unless a
// request is refused.

// permitted reports whether m's grant allows what m asks; if not it answers StatusDenied and
// reports false. Admin operations are checked in admin, once the request is decoded.
func (r *Replica) permitted(conn ConnID, m *wire.ClientMsg) bool {
	g := m.Grant
	switch m.Kind {
	case wire.CCommand:
		if g.Commands {
			return true
		}
		r.deny(conn, m, fmt.Sprintf("principal %q may not send commands%s", g.Principal, because(g.CommandsWhy)))
		return false
	case wire.CQuery:
		if g.Queries {
			return true
		}
		r.deny(conn, m, fmt.Sprintf("principal %q may not run queries%s", g.Principal, because(g.QueriesWhy)))
		return false
	}
	return true
}

// because is ": why", or "" without a why.
func because(why string) string {
	if why == "" {
		return ""
	}
	return ": " + why
}

// mayAdmin reports whether m's grant allows admin operation op; if not it answers StatusDenied
// and reports false.
func (r *Replica) mayAdmin(conn ConnID, m *wire.ClientMsg, op string) bool {
	if op == wire.AdminListMembers {
		return true // the client library's own request, on every session's connection
	}
	err := m.Grant.MayAdmin(op)
	if err == nil {
		return true
	}
	r.answerAdmin(conn, m.RequestID, wire.StatusDenied, &wire.AdminResponse{
		Error: fmt.Sprintf("principal %q may not run %s: %v", m.Grant.Principal, op, err)})
	return false
}

// foreign reports whether m (from an authenticated connection, m.Grant not nil) asks about a
// session its principal may not use, and if so answers it: StatusDenied when another principal
// opened the session, StatusUnavailable while the cluster cannot record principals yet or this
// leader does not know the session yet (see above).
func (r *Replica) foreign(conn ConnID, m *wire.ClientMsg) bool {
	p := m.Grant.Principal
	if v := r.ctr.ClusterVersion(); p != "" && v < container.ClusterVersionPrincipal {
		// Logged only once this leader has led for a while: a new cluster starts at version 1
		// and its first leader raises it at once, so a client that came early waits a moment,
		// which is no news; a wait that lasts is an upgrade not finished (or held back).
		if !r.principalsWaitLogged && r.ticks-r.leaderSince >= 4*r.cfg.ElectionTicks {
			r.principalsWaitLogged = true
			r.log.Warn("an authenticated client's session waits for cluster version 6, which records who opened a session: "+
				"every member must run a build that has it (the leader raises the version once all do; --max-cluster-version holds "+
				"it back); turn authentication on once the upgrade is done (logged once)",
				"principal", p, "cluster_version", v)
		}
		r.refuse(conn, m, fmt.Sprintf("the cluster does not record principals yet (cluster version %d is in force; they need %d, "+
			"which the leader raises once every member runs a build that has it): retry", v, container.ClusterVersionPrincipal))
		return true
	}
	owner, ok := r.ctr.SessionPrincipal(m.Session)
	if !ok {
		owner, ok = r.opening[m.Session]
	}
	if !ok {
		if m.Kind == wire.COpen && r.unsure(m.Session) {
			r.refuse(conn, m, catchingUpMessage)
			return true
		}
		return false // not open: answered as before (expired, or opened for this principal)
	}
	if owner == p || bugs.Active(bugs.AttachAnyPrincipal) {
		return false
	}
	r.deny(conn, m, fmt.Sprintf("the session belongs to another principal: %q may not use it", p))
	return true
}

// deny answers m with StatusDenied and why, in the reply its kind expects.
func (r *Replica) deny(conn ConnID, m *wire.ClientMsg, why string) {
	reply := &wire.ClientMsg{Session: m.Session, Status: wire.StatusDenied, Payload: []byte(why)}
	switch m.Kind {
	case wire.CCommand:
		reply.Kind, reply.Seq = wire.CResponse, m.Seq
	case wire.CQuery:
		reply.Kind, reply.RequestID = wire.CQueryResponse, m.RequestID
	case wire.CKeepAlive:
		reply.Kind, reply.Payload = wire.CKeepAliveAck, nil // (a keep-alive ack carries no text)
	default: // open, attach, close: about the session as a whole
		reply.Kind = wire.CSessionEvent
	}
	r.out.SendClient(conn, reply)
}

// openItem is the log item that opens session m.Session for m's principal: an ItemOpen for none
// (every build applies it), an ItemOpenPrincipal for one (foreign held it back until the
// cluster version records principals). A principal longer than the log records is refused
// (StatusRejected, final) rather than proposed.
func (r *Replica) openItem(conn ConnID, m *wire.ClientMsg) (wire.Item, bool) {
	if m.Grant == nil || m.Grant.Principal == "" {
		return wire.Item{Kind: wire.ItemOpen, Session: m.Session}, true
	}
	p := m.Grant.Principal
	if len(p) > wire.MaxPrincipalBytes {
		r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CSessionEvent, Session: m.Session, Status: wire.StatusRejected,
			Payload: []byte(fmt.Sprintf("the principal's name is %d bytes long; the cluster records at most %d", len(p), wire.MaxPrincipalBytes))})
		return wire.Item{}, false
	}
	return wire.Item{Kind: wire.ItemOpenPrincipal, Session: m.Session, Principal: p}, true
}

// isOpening reports whether this leader proposed an open of session id that is not applied yet.
func (r *Replica) isOpening(id wire.SessionID) bool {
	_, ok := r.opening[id]
	return ok
}
