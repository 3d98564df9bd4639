package clustertest

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/tandem-cluster/tandem/internal/archive"
)

// Lost synced data: what no crash does, and a failing disk or an operator's mistake does (issue
// 18). LoseSyncedData damages a down member's disk in one of these ways:
//
//	truncate  a log segment cut short at a random offset (its size was durable: segments are
//	          allocated and synced before records go in)
//	delete    the newest log segment removed
//	flip      a bit flipped inside the records of a segment that is not the last (all synced)
//
// The member must then refuse to start (archive.ErrCorrupt, archive.ErrLostSyncedData): it may
// have acknowledged what it no longer holds, and a member that starts on such a disk can elect
// itself with a log that lacks acknowledged entries and overwrite them on the others. It stays
// down for the rest of the run, as a member waiting to be rebuilt does; the others must keep every
// promise without it (the cluster waits for a complete copy instead of losing one).
var loseModes = []string{"truncate", "delete", "flip"}

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
