package transport

import (
	"log/slog"
	"strconv"
	"time"

	"github.com/tandem-cluster/tandem/internal/ratelog"
)

// Peers in the log. The transport works in raft ids, which people never see: a founding member's
// raft id is its member id + 1, a member added later has another altogether (replica/members.go).
// So every line about a peer names it by member id under the key "member", through
// Config.MemberOf; only a raft id the member cannot name (a handshake from a stranger, a member
// it has not heard of yet) is logged as such, under the key "raft_id".

// unreachableLogEvery: while a peer cannot be reached, a line says so at most once per this,
// with how many dials failed meanwhile (ratelog.Outage); its first failure and its return are
// always logged.
const unreachableLogEvery = 30 * time.Second

// memberAttr names the peer of raft id id in a log line: "member" and its member id, or
// "raft_id" and the raft id if the member does not know it.
func (t *Transport) memberAttr(id uint64) slog.Attr {
	if t.cfg.MemberOf != nil {
		if m, ok := t.cfg.MemberOf(id); ok {
			return slog.Int("member", m)
		}
	}
	return slog.Uint64("raft_id", id)
}

// memberIDs names the peers of raft ids ids as memberAttr does, for a list: "member 2", or "raft id 7".
func (t *Transport) memberIDs(ids []uint64) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, t.who(id))
	}
	return out
}

// who names the peer of raft id id in a sentence: "member 2", or "raft id 7" if the member does
// not know it.
func (t *Transport) who(id uint64) string {
	if t.cfg.MemberOf != nil {
		if m, ok := t.cfg.MemberOf(id); ok {
			return "member " + strconv.Itoa(m)
		}
	}
	return "raft id " + strconv.FormatUint(id, 10)
}

// outageOf returns the outage of the peer of raft id id (made at its first use).
func (t *Transport) outageOf(id uint64) *ratelog.Outage {
	o, _ := t.outages.LoadOrStore(id, &ratelog.Outage{Every: unreachableLogEvery})
	return o.(*ratelog.Outage)
}

// dialFailed logs a failed dial of the peer as part of an outage: its first, then at most one
// line per unreachableLogEvery, with the count. run's goroutine only.
func (p *peer) dialFailed(err error) {
	r, ok := p.outage.Fail(time.Now())
	if !ok {
		return
	}
	if r.First {
		p.t.log.Warn("member unreachable: cannot connect; retrying with backoff", p.t.memberAttr(p.id),
			"addr", *p.addr.Load(), "err", err)
		return
	}
	p.t.log.Warn("member still unreachable", p.t.memberAttr(p.id), "addr", *p.addr.Load(), "for", r.For.Round(time.Second),
		"failed_dials", r.Count, "err", err)
}

// dialed logs the end of an outage: the peer was dialled again. run's goroutine only.
func (p *peer) dialed() {
	if r, ok := p.outage.Recover(time.Now()); ok {
		p.t.log.Info("member reachable again", p.t.memberAttr(p.id), "after", r.For.Round(time.Millisecond),
			"failed_dials", r.Count)
	}
}

// removedLine ends, in the log, the outage of a peer removed from the set while unreachable: it
// is never dialled again, so dialed would never say it ended. Any goroutine (Outage is safe).
func (p *peer) removedLine() {
	if r, ok := p.outage.Recover(time.Now()); ok {
		p.t.log.Info("member removed while unreachable", p.t.memberAttr(p.id), "unreachable_for", r.For.Round(time.Millisecond),
			"failed_dials", r.Count)
	}
}
