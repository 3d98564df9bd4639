package clientcore

import (
	"slices"
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// Learning the members' addresses.
//
// Membership is dynamic (members join, are removed), so the endpoints a client was configured
// with go stale: a client given one address would be lost once that member is removed. The core
// asks the leader it is attached to for the membership, and tries the members' client addresses
// it learns when it looks for a leader:
//
//   - What it asks: the admin channel's list-members (wire.AdminListMembers), a CAdmin on the
//     session's own connection (no connection of its own: the leader it is attached to is the one
//     that answers it, and a connection costs the member more than a request), with a fresh
//     request id and the range [4, the core's highest]. Only on a connection attached in client
//     protocol 4 or later (the version of the member's attached message, doc.go): a member that
//     does not speak 4 is asked nothing, and everything works as before; so is the simulator's,
//     whose messages carry no version (the connection stays at the core's lowest).
//   - When: once the session attached (a new leader, or the same after a reconnect), then every
//     MembersInterval (10 s) while it stays attached. At most one request is outstanding: a new
//     one replaces it (the older answer is ignored), and a new connection forgets it.
//   - Without disturbing the session: the request names no session (it is no keep-alive) and is
//     not awaited (a member that does not answer it is not abandoned for that: the commands'
//     answers say whether it lives). The leader answers at once, from its applied membership; a
//     follower (the leader lost its leadership meanwhile) answers with a redirect, which the core
//     follows as it would one answering a command: it is the news that the leader moved.
//   - What it keeps: the client addresses of the answer's members (voters first, then learners,
//     in the answer's order; empty, oversized and repeated addresses skipped), at most
//     maxLearned, become the endpoints tried in turn, followed by the configured endpoints the
//     answer did not list: learned first, since they are the cluster's current word; the
//     configured ones always last, so that no answer (one from a member that advertises an
//     address the client cannot reach, a cluster moved by a restart whose membership keeps its
//     old addresses) can make the client lose its way back. An answer that is not OK, does not
//     decode, names another cluster than the session's or lists no voter changes nothing; each
//     good answer replaces what the previous one taught. What the core knew of an endpoint
//     (reachable, refused) stays with its address.
//   - Waiting counts the learned voters once it has learned them (the cluster's own quorum),
//     the configured endpoints before.
//
// Deterministic: no clock of its own (the times the driver passes in, checked by Tick), no
// randomness, and nothing at all asked in the simulator.
const (
	// membersVersion is the first client protocol version with the admin channel (admin.Version).
	membersVersion uint16 = 4
	// membersIntervalDefault is Config.MembersInterval's default.
	membersIntervalDefault = 10 * time.Second
	// maxLearned bounds the addresses kept from an answer.
	maxLearned = 64
)

// listMembers is the body of the request (read only: Write encodes it).
var listMembers = wire.EncodeAdmin(wire.AdminRequest{Op: wire.AdminListMembers})

// Endpoints returns the endpoints the core tries in turn when it knows no leader: the members'
// client addresses it learned from the cluster, then the configured ones it did not learn.
func (s *Core) Endpoints() []string {
	out := make([]string, len(s.eps))
	for i, e := range s.eps {
		out[i] = e.addr
	}
	return out
}

// askMembers writes a list-members on the attached connection, and sets when to ask again.
func (s *Core) askMembers() {
	s.membersAsked++
	s.membersID = s.membersAsked
	s.membersAt = max(1, s.now+int64(s.cfg.MembersInterval))
	s.msg = wire.ClientMsg{Kind: wire.CAdmin, RequestID: s.membersID, Version: s.version,
		Protocol: wire.Range{Min: membersVersion, Max: s.cfg.Protocol.Max}, Payload: listMembers}
	s.out.Write(s.conn, &s.msg) // (not send: nothing awaits it)
}

// onAttachedMembers asks for the membership on a connection that just attached, if it speaks the
// admin channel.
func (s *Core) onAttachedMembers() {
	if s.version >= membersVersion {
		s.askMembers()
	}
}

// tickMembers asks again once the interval passed.
func (s *Core) tickMembers() {
	if s.state == attached && !s.closing && s.membersAt != 0 && s.membersAt <= s.now {
		s.askMembers()
	}
}

// onMembers handles an admin answer: the membership, if it is the answer to the request
// outstanding.
func (s *Core) onMembers(m *wire.ClientMsg) {
	if s.membersID == 0 || m.RequestID != s.membersID || s.state != attached {
		return
	}
	s.membersID = 0
	if m.Status != wire.StatusOK {
		return // asked again at the next interval
	}
	resp, err := wire.DecodeAdminResponse(m.Payload)
	if err != nil || (resp.ClusterUUID != "" && !s.cluster.IsZero() && resp.ClusterUUID != s.cluster.String()) {
		return
	}
	s.learn(resp.Members)
}

// learn makes the members' client addresses the endpoints tried first, the configured ones after
// them.
func (s *Core) learn(members []wire.AdminMember) {
	var addrs []string
	voters := 0
	for _, voter := range []bool{true, false} {
		for _, m := range members {
			a := m.ClientAddr
			if (m.Role != "learner") != voter || a == "" || len(a) > wire.MaxAddrBytes ||
				slices.Contains(addrs, a) || len(addrs) >= maxLearned {
				continue
			}
			addrs = append(addrs, a)
			if voter {
				voters++
			}
		}
	}
	if voters == 0 {
		return // no membership: keep what the core knows
	}
	old := s.eps
	known := func(a string) endpoint {
		for _, e := range old {
			if e.addr == a {
				return e
			}
		}
		return endpoint{addr: a}
	}
	eps := make([]endpoint, 0, len(addrs)+len(s.cfg.Endpoints))
	for i, a := range addrs {
		e := known(a)
		e.learned, e.voter, e.configured = true, i < voters, slices.Contains(s.cfg.Endpoints, a)
		eps = append(eps, e)
	}
	for _, a := range s.cfg.Endpoints {
		if slices.ContainsFunc(eps, func(e endpoint) bool { return e.addr == a }) {
			continue
		}
		e := known(a)
		e.learned, e.voter, e.configured = false, false, true
		eps = append(eps, e)
	}
	s.eps = eps
}
