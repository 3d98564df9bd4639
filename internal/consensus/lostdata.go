package consensus

import (
	"errors"
	"fmt"

	pb "go.etcd.io/raft/v3/raftpb"
)

// A member whose data directory lost what it had acknowledged stops (LostDataError). Step's
// heartbeat check (validate.go) refuses a heartbeat that commits beyond this member's log, and
// weighRefusal weighs the refusals against the rule below.

// ErrLostData is matched by a *LostDataError: this member lost log entries the cluster counts as
// acknowledged by it, and has stopped.
var ErrLostData = errors.New("consensus: this member lost log entries it had acknowledged")

// Lost-data rule: a member stops when heartbeats from one sender in one term — not older than
// this member's term — were refused for committing beyond its log at least lostDataRefusalsMin
// times over at least lostDataElections election timeouts (ElectionTicks each), with no
// acceptable heartbeat from any leader in between (see LostDataError).
const (
	lostDataRefusalsMin = 3
	lostDataElections   = 2
)

// LostDataError stops a member that was told, persistently, that entries beyond the end of its
// log are committed: its data directory lost entries it had acknowledged (an honest leader sends
// a follower a commit index only as far as the follower acknowledged holding the entries, in the
// leader's term, after syncing them: see lastCertain). Raft cannot repair that: the leader never
// lowers what it believes the follower holds, the follower's rejections look stale to it, and a
// member that voted or acknowledged and then forgot may break the guarantees if it takes part.
//
// The rule that tells it from a forged heartbeat (one frame claiming the leader's id): the
// refusals persist from the same sender in the same term, which is not older than this member's,
// at least lostDataRefusalsMin times over lostDataElections election timeouts, and no heartbeat
// from any leader of that term or a later one was acceptable meanwhile. A single forged frame
// cannot meet it, and while the real leader is reachable its heartbeats (which pass when the
// log is intact) clear the suspicion. What it cannot tell apart — until members authenticate — is
// a forger who keeps impersonating the leader for that long while the real one is unreachable,
// or a forged acknowledgement that made the leader believe this member holds more than it does.
//
// A member that lost its data while leadership changed is another case: the new leader never saw
// its acknowledgements and repairs it like a member that is merely behind. That is safe because a
// member on an empty log neither votes nor campaigns until it is verified (verify.go), and a
// leader that does see a member rejoin so hands leadership over (replica/rejoin.go): this rule
// stops only a member no other leader could take over for.
type LostDataError struct {
	Member uint64 // this member's raft id
	Leader uint64 // the raft id of the sender that claims the commit index
	Term   uint64 // its term
	Commit uint64 // the highest commit index it claimed
	Last   uint64 // where this member's log ends
	// Bootstrapped: this member found its storage empty at this start and bootstrapped a log.
	Bootstrapped bool
	Refusals     int
}

func (e *LostDataError) Error() string {
	// Member i of the configuration is raft id i+1 (doc.go): people see member numbers.
	how := fmt.Sprintf("member %d's log ends at index %d", e.Member-1, e.Last)
	if e.Bootstrapped {
		how = fmt.Sprintf("member %d started with an empty data directory (its new log ends at index %d)", e.Member-1, e.Last)
	}
	return fmt.Sprintf("%s, but the leader (member %d, term %d) keeps saying index %d of it is committed "+
		"(%d heartbeats refused): this member's data directory lost entries it had acknowledged (wiped, replaced "+
		"or restored from an older copy), and that leader cannot repair it. Start it again on an empty data "+
		"directory once another member can lead (a leader hands leadership over for a member that rejoins so): "+
		"it rejoins without voting until a leader has repaired it; the others keep serving while they are a "+
		"majority", how, e.Leader-1, e.Term, e.Commit, e.Refusals)
}

// Is makes errors.Is(err, ErrLostData) and errors.Is(err, ErrStopped) true: the core stops.
func (e *LostDataError) Is(target error) bool { return target == ErrLostData || target == ErrStopped }

// suspicion is the evidence the lost-data rule weighs: refused heartbeats from one sender and term.
type suspicion struct {
	from, term   uint64
	since        int // tick of the first refusal
	refusals     int
	commit, last uint64
}

// weighRefusal records a heartbeat refused for committing beyond last as evidence of lost data,
// and stops the core with a *LostDataError once the evidence meets the rule (nil before).
func (c *Core) weighRefusal(m *pb.Message, last uint64) *LostDataError {
	s := &c.val.suspect
	if s.refusals == 0 || s.from != m.GetFrom() || s.term != m.GetTerm() {
		*s = suspicion{from: m.GetFrom(), term: m.GetTerm(), since: c.ticks}
	}
	s.refusals++
	s.commit, s.last = max(s.commit, m.GetCommit()), last
	if s.refusals < lostDataRefusalsMin || c.ticks-s.since < lostDataElections*c.cfg.ElectionTicks {
		return nil
	}
	lost := &LostDataError{Member: c.cfg.ID, Leader: s.from, Term: s.term, Commit: s.commit, Last: s.last,
		Bootstrapped: c.val.bootstrapped, Refusals: s.refusals}
	if c.err == nil {
		c.err = lost
		c.log.Error("this member lost log entries it had acknowledged; it stops", "err", lost)
	}
	return lost
}
