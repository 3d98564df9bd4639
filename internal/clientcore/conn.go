package clientcore

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tandem-cluster/tandem/internal/bugs"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

type connState uint8

const (
	idle      connState = iota // no connection: not started, or finished
	dialing                    // Dial issued, not connected yet
	connected                  // connected, open or attach sent, not answered yet
	attached                   // the session is attached on this connection
)

// Attached reports whether the session is attached on the current connection.
func (s *Core) Attached() bool { return s.state == attached }

// Waiting is what the core knows of its way to the cluster: whether the session is attached,
// and if not, how many of the members (the voters it learned, else the configured endpoints) it
// could reach. The client package exports
// it under the same name and documents its fields there.
type Waiting struct {
	Attached  bool
	Leader    string
	Reachable int
	Members   int
	Need      int
}

// String says what the client waits for, e.g. "reachable 1 of 3, need 2", or "attached to
// host:port" while attached.
func (w Waiting) String() string {
	if w.Attached {
		return "attached to " + w.Leader
	}
	return fmt.Sprintf("reachable %d of %d, need %d", w.Reachable, w.Members, w.Need)
}

// Waiting says what the core waits for. Reachable and Members count the voters learned from the
// cluster (members.go), or before the core learned them, the configured endpoints.
func (s *Core) Waiting() Waiting {
	learned := slices.ContainsFunc(s.eps, func(e endpoint) bool { return e.voter })
	n, total := 0, 0
	for _, e := range s.eps {
		if (learned && e.voter) || (!learned && e.configured) {
			total++
			if e.reach {
				n++
			}
		}
	}
	return Waiting{Attached: s.state == attached, Leader: s.leader, Reachable: n, Members: total, Need: total/2 + 1}
}

func (s *Core) waitingSuffix() string {
	if w := s.Waiting(); !w.Attached {
		return " (" + w.String() + ")"
	}
	return ""
}

// Connected reports that conn is established.
func (s *Core) Connected(conn ConnID, now int64) {
	if conn != s.conn || s.state != dialing {
		s.out.Hangup(conn) // an attempt the core gave up on
		return
	}
	s.advance(now)
	s.state, s.lastHeard = connected, s.now
	s.version = s.cfg.Protocol.Min
	if r, ok := s.speaks[s.endpoint]; ok {
		if v, ok := s.cfg.Protocol.Common(r); ok {
			s.version = v // the member refused the lowest version, and said what it reads
		}
	}
	s.setReach(s.endpoint, true)
	if s.cfg.Token != nil {
		// The credential goes first, in a version that carries it (the member fixes the
		// connection's version from its range, as from an open's).
		s.msg = wire.ClientMsg{Kind: wire.CAuth, Protocol: s.cfg.Protocol, Payload: s.cfg.Token}
		s.msg.Version = max(s.version, 5)
		s.out.Write(s.conn, &s.msg)
	}
	// The unanswered commands ride with the open or attach, in order (the member keeps it): a
	// round trip saved after a failover. A member that is not the leader answers each with a
	// redirect, and the core leaves at the first.
	s.sendOpen()
	if bugs.Active(bugs.ResendFreshNumber) {
		s.renumberSent()
	}
	s.calls.each(func(id uint64, cl *call) { s.writeCommand(wire.Seq(id), cl) })
	s.queries.each(s.writeQuery)
}

// Unauthenticated reports that conn failed in a way no retry can mend: the TLS handshake found
// the member's certificate untrusted, or the member refused the client's. The core ends with
// ErrUnauthenticated, as when a member refuses its token.
func (s *Core) Unauthenticated(conn ConnID, why string) {
	if conn != s.conn || s.state == idle {
		return
	}
	s.calls.each(func(_ uint64, cl *call) { cl.live = 0 }) // nothing written on it was read
	s.terminate(fmt.Errorf("%w: %s", ErrUnauthenticated, why))
}

// Untrusted reports that conn failed because the member's certificate is not one the client
// trusts (why says how): that member cannot serve this client, as one that refused its versions
// cannot, and the others are tried; the core ends with ErrUnauthenticated once every endpoint it
// knows refused on its latest answer, one of them so. A renewal gone wrong on one member does
// not cut the client off from the others.
func (s *Core) Untrusted(conn ConnID, why string) {
	if conn != s.conn || s.state == idle {
		return
	}
	s.calls.each(func(_ uint64, cl *call) { cl.live = 0 }) // nothing written on it was read
	s.setRefused(s.endpoint, why)
	for i := range s.eps {
		if s.eps[i].addr == s.endpoint {
			s.eps[i].untrusted = true
		}
	}
	s.refusedNext()
}

// Failed reports that conn could not be established, or ended (a read or write failed, the
// member closed it).
func (s *Core) Failed(conn ConnID, now int64) {
	if conn != s.conn || s.state == idle {
		return
	}
	s.advance(now)
	s.setReach(s.endpoint, false)
	s.drop()
	s.dial(s.backoff(&s.attempt))
}

// Heard reports that conn delivered data at now: call it before the messages of each read
// from the network (messages read together may share one Heard).
func (s *Core) Heard(conn ConnID, now int64) {
	if conn != s.conn || s.state < connected {
		return
	}
	s.advance(now)
	s.lastHeard, s.awaiting = s.now, false
}

// Received handles a message read from conn. m (and its payload, handed to Complete as a
// reply) is the caller's, not retained by the core. m.Version is the version the message was
// encoded in (the attached message's is the connection's from then on); 0, in a message not
// decoded from bytes (the simulator's), leaves the connection's version as it is.
func (s *Core) Received(conn ConnID, m *wire.ClientMsg) {
	if conn != s.conn || s.state < connected {
		return // from a connection the core left
	}
	if m.Kind == wire.CVersionRefused {
		s.onVersionRefused(m)
		return
	}
	if m.Kind == wire.CAuthRefused {
		// Final: the same credential would be refused again, and a client retrying it would
		// only fill the member's log.
		s.calls.each(func(_ uint64, cl *call) { cl.live = 0 }) // nothing behind it was read
		s.terminate(fmt.Errorf("%w: %s refused it: %s", ErrUnauthenticated, s.endpoint, m.Payload))
		return
	}
	if m.Kind == wire.CAttached && !m.ClusterUUID.IsZero() && !s.cluster.IsZero() && m.ClusterUUID != s.cluster {
		s.onWrongCluster(fmt.Sprintf("%s belongs to cluster %s", s.endpoint, m.ClusterUUID))
		return
	}
	if m.Kind == wire.CSessionEvent && m.Status == wire.StatusWrongCluster {
		// The member read the cluster the open or attach named, and is of another.
		s.onWrongCluster(fmt.Sprintf("%s: %s", s.endpoint, m.Payload))
		return
	}
	s.setRefused(s.endpoint, "") // it speaks the core's version
	switch m.Kind {
	case wire.CAttached:
		s.onAttached(m)
	case wire.CResponse:
		s.onResponse(m)
	case wire.CQueryResponse:
		s.onQueryResponse(m)
	case wire.CAdminResponse:
		s.onMembers(m)
	case wire.CRedirect:
		s.stats.Redirects++
		if m.Term >= s.term && m.LeaderAddr != "" {
			s.term, s.hint, s.leader = m.Term, m.LeaderAddr, m.LeaderAddr
		}
		s.hangup()
		s.hops++
		if s.hops <= s.cfg.MaxRedirects {
			s.dial(0) // follow the hint at once
		} else {
			s.dial(s.backoff(&s.attempt))
		}
	case wire.CSessionEvent:
		switch {
		case m.Status == wire.StatusRejected && !s.opened:
			s.terminate(fmt.Errorf("%w: %s", ErrSessionRefused, reason(m)))
		case m.Status == wire.StatusDenied:
			// The session belongs to another principal than this connection's (or this one may
			// not open one): final.
			s.terminate(fmt.Errorf("%w: %s", ErrDenied, reason(m)))
		case m.Status == wire.StatusSessionExpired || m.Reason != 0:
			s.terminate(sessionEnded(m.Reason))
		}
	case wire.CKeepAliveAck:
		switch m.Status {
		case wire.StatusSessionExpired:
			s.terminate(ErrSessionExpired)
		case wire.StatusDenied:
			s.terminate(fmt.Errorf("%w: %s", ErrDenied, reason(m)))
		}
	case wire.CPush:
		if s.err == nil {
			s.out.Push(m.Payload)
		}
	}
}

// dial starts the next attempt, after a wait: on the leader a fresh redirect named, else on the
// next endpoint in turn (learned, then configured: members.go). Redirects are followed at once up to MaxRedirects hops in a row
// (with or without a hint: a member that knows no leader sends the client on to the next); then
// the core backs off, and counts hops anew.
func (s *Core) dial(after time.Duration) {
	endpoint := s.hint
	s.hint = ""
	if s.hops > s.cfg.MaxRedirects {
		endpoint, s.hops = "", 0
	}
	if endpoint == "" {
		endpoint = s.eps[s.next%len(s.eps)].addr
		s.next++
	}
	s.nextConn++
	s.conn, s.state, s.endpoint = s.nextConn, dialing, endpoint
	s.lastHeard, s.awaiting = s.now+int64(after), false
	s.out.Dial(s.conn, endpoint, after)
}

// hangup closes the current connection.
func (s *Core) hangup() {
	s.out.Hangup(s.conn)
	s.drop()
}

// drop forgets the current connection: what was written on it and not answered may have been
// applied (lost), and resends wait for the next attach.
func (s *Core) drop() {
	s.calls.each(func(_ uint64, cl *call) {
		if cl.live > 0 {
			cl.lost, cl.live = true, 0
		}
		cl.retryAt = 0
	})
	s.queries.each(func(_ uint64, q *query) { q.retryAt = 0 })
	s.conn, s.state, s.awaiting, s.openRetryAt = 0, idle, false, 0
	s.membersID, s.membersAt = 0, 0
}

// backoff returns the next wait of an exponential backoff with jitter, and counts the step.
func (s *Core) backoff(step *int) time.Duration {
	d := min(s.cfg.BackoffMin<<min(*step, 16), s.cfg.BackoffMax)
	*step++
	return d/2 + time.Duration(s.cfg.Jitter(int64(d/2)+1))
}

// send writes s.msg on the current connection, in the connection's version.
func (s *Core) send(namesSession bool) {
	s.msg.Version = s.version
	s.out.Write(s.conn, &s.msg)
	if !s.awaiting {
		s.awaiting, s.awaitSince = true, s.now
	}
	if namesSession {
		s.sessionSent = s.now
	}
}

// sessionEnded is the error a session ends with when the cluster says it is closed, naming why
// (from cluster version 2 on, the reason is recorded for as long as the cluster remembers the
// session; before, an answer about a closed session always said "timed out").
func sessionEnded(reason uint8) error {
	switch service.CloseReason(reason) {
	case service.CloseClient:
		return fmt.Errorf("%w: closed by a client", ErrSessionExpired)
	case service.CloseService:
		return fmt.Errorf("%w: closed by the service", ErrSessionExpired)
	case service.CloseTimeout:
		return fmt.Errorf("%w: timed out (the cluster heard nothing from the client for the session timeout)", ErrSessionExpired)
	}
	return ErrSessionExpired
}

// sendOpen asks the member to attach the session: open it if it never was (CAttach never opens,
// so that a session the cluster expired is not opened afresh under the same id).
func (s *Core) sendOpen() {
	// The cluster the session attached to before, if any: a member of another refuses at once
	// (a session event StatusWrongCluster), before anything written behind the open.
	s.msg = wire.ClientMsg{Kind: wire.CAttach, Session: s.session, Protocol: s.cfg.Protocol, ClusterUUID: s.cluster}
	if !s.opened {
		s.msg.Kind = wire.COpen
	}
	s.send(true)
	s.openRetryAt = 0
}

func (s *Core) setReach(endpoint string, ok bool) {
	for i := range s.eps {
		if s.eps[i].addr == endpoint {
			s.eps[i].reach = ok
		}
	}
}

// onAttached makes the connection the session's and sends every unanswered command not written
// on it since (refused meanwhile), in order, under its original number; or, while closing, the
// close.
func (s *Core) onAttached(m *wire.ClientMsg) {
	if s.state == attached {
		return
	}
	if m.Version != 0 && !s.cfg.Protocol.Contains(m.Version) {
		// Not a version this client speaks: a member that does not follow the protocol.
		s.setRefused(s.endpoint, fmt.Sprintf("%s answered in version %d, outside %s", s.endpoint, m.Version, s.cfg.Protocol))
		s.hangup()
		s.dial(s.backoff(&s.attempt))
		return
	}
	s.state, s.opened, s.leader = attached, true, s.endpoint
	s.attempt, s.hops, s.openRefusals, s.openRetryAt = 0, 0, 0, 0
	if s.cluster.IsZero() {
		s.cluster = m.ClusterUUID // the first cluster identity heard is the session's cluster
	}
	if m.Version != 0 {
		s.version = m.Version // the member's choice: everything from now on is written in it
	}
	if m.WindowMax > 0 {
		s.windowMax = m.WindowMax
	}
	if m.CommandBytesMax > 0 {
		s.commandBytesMax = m.CommandBytesMax
	}
	if s.closing {
		s.writeClose() // (no call is left to resend)
		return
	}
	s.calls.each(func(id uint64, cl *call) {
		if cl.live == 0 {
			s.writeCommand(wire.Seq(id), cl)
		}
	})
	s.onAttachedMembers() // (behind the session's commands)
}

// onVersionRefused: the member speaks none of the core's versions, and closes the connection. It
// cannot serve this client, as a member that is down cannot: the core tries the others with its
// backoff (a member may be upgraded meanwhile), and ends with ErrProtocolVersion once every
// endpoint it knows (configured or learned) refused on its latest answer.
func (s *Core) onVersionRefused(m *wire.ClientMsg) {
	// The member read nothing after the open it refused: what was written behind it on this
	// connection was not applied here (a copy from an earlier connection stays lost).
	s.calls.each(func(_ uint64, cl *call) { cl.live = 0 })
	if v, ok := s.cfg.Protocol.Common(m.Protocol); ok && v != s.version && m.Protocol.Valid() {
		// The ranges meet, but the member does not read the version the open was written in
		// (the core's lowest): reconnect to it at once, writing in the common version.
		if s.speaks == nil {
			s.speaks = make(map[string]wire.Range)
		}
		s.speaks[s.endpoint] = m.Protocol
		s.hint = s.endpoint
		s.hangup()
		s.dial(0)
		return
	}
	s.setRefused(s.endpoint, fmt.Sprintf("%s speaks %s (%s)", s.endpoint, m.Protocol, m.Payload))
	s.refusedNext()
}

// onWrongCluster: the member belongs to another cluster than the one the session first attached
// to (its attached message names another identity: a member started on another cluster's data,
// or an endpoint of another cluster in the list). It cannot serve this session, as a member that
// refused the versions cannot: the core tries the others, and ends with ErrWrongCluster once
// every endpoint it knows refused on its latest answer, one of them for its cluster.
func (s *Core) onWrongCluster(why string) {
	s.calls.each(func(_ uint64, cl *call) { cl.live = 0 })
	s.setRefused(s.endpoint, why)
	for i := range s.eps {
		if s.eps[i].addr == s.endpoint {
			s.eps[i].wrongCluster = true
		}
	}
	s.refusedNext()
}

// refusedNext, after a refusal, ends the core if every endpoint it knows refused on its latest
// answer (ErrWrongCluster if one did for its cluster, else ErrProtocolVersion), or tries the next
// after a backoff.
func (s *Core) refusedNext() {
	all := len(s.eps) > 0
	wrong, untrusted := false, false
	var why []string
	for _, e := range s.eps {
		all = all && e.refusal != ""
		wrong = wrong || e.refusal != "" && e.wrongCluster
		untrusted = untrusted || e.refusal != "" && e.untrusted
		why = append(why, e.refusal)
	}
	switch {
	case all && untrusted:
		s.terminate(fmt.Errorf("%w: every member refused: %s", ErrUnauthenticated, strings.Join(why, "; ")))
		return
	case all && wrong:
		s.terminate(fmt.Errorf("%w: the session belongs to cluster %s, and every member refused it: %s",
			ErrWrongCluster, s.cluster, strings.Join(why, "; ")))
		return
	case all:
		s.terminate(fmt.Errorf("%w: this client speaks %s, and every member refused it: %s",
			ErrProtocolVersion, s.cfg.Protocol, strings.Join(why, "; ")))
		return
	}
	s.hangup()
	s.dial(s.backoff(&s.attempt))
}

func (s *Core) setRefused(endpoint, why string) {
	for i := range s.eps {
		if s.eps[i].addr == endpoint {
			s.eps[i].refusal, s.eps[i].wrongCluster, s.eps[i].untrusted = why, false, false
		}
	}
}

// endpoint is one address the core tries in turn when it knows no leader, and what it knows of
// the member there.
type endpoint struct {
	addr       string
	configured bool // in Config.Endpoints
	learned    bool // in the membership the leader listed last (members.go)
	voter      bool // learned, as a voter
	reach      bool // reachable on its latest attempt
	// refusal says why it refused the core on its latest answer ("": it did not); wrongCluster,
	// that the refusal is for its cluster (onWrongCluster).
	refusal      string
	wrongCluster bool
	// untrusted: the refusal is its certificate, which the client does not trust (Untrusted).
	untrusted bool
}
