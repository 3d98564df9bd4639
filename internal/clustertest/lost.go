package clustertest

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/replica"
)

// Lost synced data: what no crash does, and a failing disk or an operator's mistake does (issue
// 18). LoseSyncedData damages a down member's disk in one of these ways:
//
//	truncate  a log segment cut short at a random offset (its size was durable: segments are
//	          allocated and synced before records go in)
//	delete    the newest log segment removed
//	flip      a bit flipped inside the records of a segment that is not the last (all synced)
//	wipe      the whole data directory removed, and at the same moment the leader crashes (if
//	          it is another member) and the network heals: the member that held what the wiped
//	          one had acknowledged is down, and the schedule cut another member off for the two
//	          seconds before (drawLoss), so it lags: the worst moment for raft's amnesia
//	wipe-live the whole data directory removed, the others left as they are: the leader, which
//	          counts the member as holding what it forgot, must hand leadership over
//	          (replica/rejoin.go) or the member stop for lost data
//
// After the first three the member must refuse to start (archive.ErrCorrupt,
// archive.ErrLostSyncedData): it may have acknowledged what it no longer holds, and a member that
// starts on such a disk can elect itself with a log that lacks acknowledged entries and overwrite
// them on the others. It stays down for the rest of the run, as a member waiting to be rebuilt
// does; the others must keep every promise without it (the cluster waits for a complete copy
// instead of losing one).
//
// A wiped member starts on an empty log, which nothing local tells from a new founder's: it must
// not vote or campaign until it is verified (consensus/verify.go; checkWipedVotes), and a leader
// that still counts it as holding what it forgot stops it (consensus.ErrLostData: it then stays
// down too). Otherwise it is repaired and rejoins.
var loseModes = []string{"truncate", "delete", "flip", "wipe", "wipe-live"}

// checkWipedVotes makes a wiped member that votes or campaigns before it was repaired a violation
// (default on); off, only the end-to-end checks can catch what its vote costs (a planted bug's
// second round).
var checkWipedVotes = true

// checkLostDetection makes a member that starts on a disk that lost synced data a violation
// (default on). Off, the member runs on what is left, and only the end-to-end checks (no
// acknowledged increment lost, linearizability, equal states) can catch the loss: a planted
// bug's second round uses it.
var checkLostDetection = true

// LoseSyncedData crashes member id if it is up, damages its disk (mode, one of loseModes) and
// tries to start it. It reports what it did, and whether the member (rightly) refused to start;
// a member that started anyway is a violation of the run. A disk with nothing to damage in that
// way (one segment, for flip) is left alone and the member restarted: done is false.
func (c *Cluster) LoseSyncedData(id int, mode string) (what string, done bool) {
	n := c.Nodes[id]
	if n.R != nil {
		c.Crash(id)
	}
	segs := n.segments()
	switch {
	case mode == "wipe" || mode == "wipe-live":
		return c.wipe(id, mode == "wipe"), true
	case len(segs) == 0:
	case mode == "truncate":
		seg := segs[c.Rng.IntN(len(segs))]
		size := n.FS.Files()[seg]
		if size > 0 {
			cut := c.Rng.Int64N(size)
			n.FS.Corrupt(seg, func(b []byte) []byte { return b[:cut] })
			what, done = fmt.Sprintf("%s cut from %d to %d bytes", path.Base(seg), size, cut), true
		}
	case mode == "delete":
		seg := segs[len(segs)-1]
		if err := n.FS.Remove(seg); err != nil {
			c.fatalf("deleting %s: %v", seg, err)
		}
		what, done = path.Base(seg)+" deleted", true
	case mode == "flip" && len(segs) > 1:
		seg := segs[c.Rng.IntN(len(segs)-1)]
		n.FS.Corrupt(seg, func(b []byte) []byte {
			end := len(b) // the records end where the zeros that follow them begin
			for end > 0 && b[end-1] == 0 {
				end--
			}
			if end == 0 {
				return b
			}
			off, bit := c.Rng.IntN(end), byte(1)<<c.Rng.IntN(8)
			b[off] ^= bit
			what, done = fmt.Sprintf("%s: bit %#x flipped at offset %d of %d bytes of records", path.Base(seg), bit, off, end), true
			return b
		})
	}
	if !done {
		c.Start(id)
		return "", false
	}
	err := c.TryStart(id)
	switch {
	case err == nil && !checkLostDetection:
		// The member runs on what is left: what it lost must show end to end, if anywhere.
	case err == nil:
		c.violation("member %d started on a disk that lost synced data (%s): the loss was taken for a crash", id, what)
	case errors.Is(err, archive.ErrCorrupt):
		n.Lost = what
	default:
		c.fatalf("member %d refused to start for another reason after %s: %v", id, what, err)
	}
	return what, true
}

// segments returns the member's log segment files, oldest first.
func (n *Node) segments() []string {
	var segs []string
	for name := range n.FS.Files() {
		if strings.HasSuffix(name, ".seg") && strings.HasPrefix(name, "/data/log/") {
			segs = append(segs, name)
		}
	}
	slices.Sort(segs)
	return segs
}

// wipe removes member id's whole data directory (it is down) and starts it on the empty one, after
// crashing the leader if that is another member and crashLeader is set.
func (c *Cluster) wipe(id int, crashLeader bool) string {
	n := c.Nodes[id]
	// Its IDENTITY is gone with the rest: started again as `tandem node N` is, it takes its
	// id's founding raft id. If the cluster knows member N under another raft id (it joined, or
	// was rebuilt, since), the node asks the others first and refuses to start: only a rebuild
	// (--join) may bring it back (node's checkEmptyStart).
	n.JoinedRaftID = 0
	if l := c.Leader(); l >= 0 {
		for _, m := range c.Nodes[l].R.Members() {
			if (m.ID == id) != (m.RaftID == replica.RaftID(id)) {
				defer func() {
					c.Crash(id)
					n.Lost = fmt.Sprintf("wiped; refused to start: the cluster knows member %d as raft id %d "+
						"(rebuild it with --join)", m.ID, m.RaftID)
				}()
				break
			}
		}
	}
	var commit uint64
	for _, o := range c.Nodes {
		if o.R != nil {
			commit = max(commit, o.R.Summary().Commit)
		}
	}
	dirs := map[string]bool{}
	for name := range n.FS.Files() {
		if err := n.FS.Remove(name); err != nil {
			c.fatalf("wiping %s: %v", name, err)
		}
		dirs[path.Dir(name)] = true
	}
	for dir := range dirs { // an operator's rm -rf, then time enough for it to reach the disk
		if err := n.FS.SyncDir(dir); err != nil {
			c.fatalf("wiping %s: %v", dir, err)
		}
	}
	what := "data directory wiped"
	if l := c.Leader(); crashLeader && l >= 0 && l != id {
		c.Crash(l)
		what += fmt.Sprintf(", leader %d crashed with it", l)
		c.Heal()
	}
	n.Wiped = max(commit, 1) // before the start: what it sends from its first step on is checked
	c.Start(id)
	return what
}

// checkWipedVotes checks a message a member sends: a wiped member that has not been repaired (its
// commit index below what the cluster had committed when it was wiped) must neither campaign nor
// grant a vote, as it may have voted or acknowledged before and forgotten it.
func (c *Cluster) checkWipedVotes(n *Node, m *pb.Message) {
	if n.Wiped == 0 {
		return
	}
	if _, _, commit, _ := n.R.Progress(); commit >= n.Wiped {
		n.Wiped = 0
		return
	}
	if !checkWipedVotes {
		return
	}
	switch t := m.GetType(); {
	case t == pb.MsgVote || t == pb.MsgPreVote:
		c.violation("member %d, wiped and not yet repaired (commit index below %d), campaigns: %s in term %d", n.ID, n.Wiped, t, m.GetTerm())
	case (t == pb.MsgVoteResp || t == pb.MsgPreVoteResp) && !m.GetReject():
		c.violation("member %d, wiped and not yet repaired (commit index below %d), grants a vote to member %d in term %d",
			n.ID, n.Wiped, replica.MemberID(m.GetTo()), m.GetTerm())
	}
}
