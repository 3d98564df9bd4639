package replica

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The configured member list against the data. At its first start a member's configured list
// founds the cluster (the bootstrap conf changes carry it); from then on the membership recorded
// in the log and snapshots is the cluster's, and it wins over the configuration: a list whose ids
// differ from it (a member started with --size 2 in a three-member cluster, or a one-member list
// by mistake) stops the member at once, saying what differs, instead of letting it run without
// ever joining, or split off. Addresses that differ only warn: a member dials the addresses it is
// configured with, so a whole cluster can move to new addresses by a restart (until membership
// changes can record the move), while followers still redirect clients to the recorded ones.

// ErrMembersDiffer: the configured member ids differ from the membership recorded in the data.
var ErrMembersDiffer = errors.New("replica: the configured members differ from the cluster's membership in the data directory")

// MembersDifferError says how the configured members differ from the recorded ones.
type MembersDifferError struct {
	Configured, Recorded []Member
}

func (e *MembersDifferError) Error() string {
	return fmt.Sprintf("%v: configured %s; recorded %s. The data's membership is the cluster's: start the member with the recorded list "+
		"(once the membership changed, the data directory's is used whatever the list says)", ErrMembersDiffer, memberList(e.Configured), memberList(e.Recorded))
}

func (e *MembersDifferError) Unwrap() error { return ErrMembersDiffer }

func memberList(ms []Member) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%d,%s,%s", m.ID, m.ClientAddr, m.MemberAddr))
	}
	return strings.Join(parts, "|")
}

// checkConfiguredMembers compares, once the member has applied what its storage held committed
// when it started, the configured members with the recorded ones (the recorded ones are known
// then: from the snapshot, or from the conf changes in the log).
func (r *Replica) checkConfiguredMembers() error {
	if r.membersChecked || r.ctr.Applied() < r.startCommit {
		return nil
	}
	recorded := r.Members()
	if len(recorded) == 0 {
		return nil // a new cluster: its bootstrap is not applied yet
	}
	r.membersChecked = true
	if r.cfg.Joined || r.cfg.Joining || r.membershipChanged() {
		// The membership changed since the cluster was founded: the configured list, which only
		// founds a cluster, says nothing any more (a stale command line is not a typo).
		r.log.Info("the membership comes from the data directory; the configured member list is not used",
			"members", memberList(r.Members()))
		return nil
	}
	configured := slices.Clone(r.cfg.Members)
	slices.SortFunc(configured, func(a, b Member) int { return a.ID - b.ID })
	ids := func(ms []Member) []int {
		out := make([]int, len(ms))
		for i, m := range ms {
			out[i] = m.ID
		}
		return out
	}
	if !slices.Equal(ids(configured), ids(recorded)) {
		return &MembersDifferError{Configured: configured, Recorded: recorded}
	}
	for i, c := range configured {
		if rec := recorded[i]; c.ClientAddr != rec.ClientAddr || c.MemberAddr != rec.MemberAddr {
			r.log.Warn("a member's configured addresses differ from those recorded in the cluster's membership: "+
				"this member dials the configured ones; followers redirect clients to the recorded ones",
				"member", c.ID, "configured", memberList([]Member{c}), "recorded", memberList([]Member{rec}))
		}
	}
	return nil
}
