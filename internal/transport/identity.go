package transport

import (
	"errors"
	"fmt"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// The cluster's identity in the member handshake.
//
// Two clusters may share a human name (--cluster-id, "tandem" by default), member ids and ports,
// so the handshake's name and ids cannot tell a member that runs on another cluster's data
// directory from one of this cluster: such a member once led this cluster, and the others
// installed its snapshot. The cluster's identity (wire.ClusterUUID, drawn once and committed in
// the log) can. Each side sends it in its handshake or reply (wire.ExtClusterUUID) once it knows
// it; the acceptor refuses a handshake that names another, and the dialler drops a connection
// whose reply names another, each logging both identities. A side that knows none yet (a new
// cluster before its identity entry, a cluster below cluster version 3, an older build) cannot
// tell, and accepts: the check protects from the moment a cluster has its identity.

var errOtherCluster = errors.New("the peer belongs to another cluster")

// SetClusterUUID sets the cluster's identity this member's handshakes carry and check (the node
// calls it once the member applied it). Safe from any goroutine; connections already accepted
// are not checked again.
func (t *Transport) SetClusterUUID(u wire.ClusterUUID) { t.clusterUUID.Store(&u) }

// ClusterUUID returns the cluster's identity the transport checks (zero: none yet).
func (t *Transport) ClusterUUID() wire.ClusterUUID {
	if p := t.clusterUUID.Load(); p != nil {
		return *p
	}
	return wire.ClusterUUID{}
}

// otherCluster reports whether a peer's cluster identity, theirs, may be this member's: same is
// false only when both are known and differ, and text then names both.
func (t *Transport) otherCluster(peer uint64, theirs wire.ClusterUUID) (text string, same bool) {
	mine := t.ClusterUUID()
	if mine.IsZero() || theirs.IsZero() || mine == theirs {
		return "", true
	}
	return fmt.Sprintf("this member (%s) belongs to cluster %s %s; %s to cluster %s %s: "+
		"a data directory of another cluster?", t.who(t.cfg.SelfID), t.cfg.ClusterID, mine, t.who(peer), t.cfg.ClusterID, theirs), false
}

// The founding member list in the member handshake.
//
// Members bootstrapped with different member ids write different conf change entries at the
// same indexes, all of term 1, and raft takes entries equal in index and term for the same:
// talking, they would each apply their own configuration from one log. So every handshake and
// reply carries a digest of the ids of the sender's founding members (wire.ExtMembersDigest; the
// node derives it from the membership recorded in its data, or from its configured list before
// it has any), and each side refuses a peer whose digest differs, naming its own list: a member
// started with another member set cannot join the others (nor they it), and says so. A second
// digest covers the addresses too (wire.ExtAddressesDigest); a difference there is only logged:
// one address may be spelled two ways (localhost and 127.0.0.1), and clusters that worked so
// must not be cut apart. A side that sends none (an older build) is not checked.

var errOtherMembers = errors.New("the peer was founded with other members")

// membersDigests returns this member's founding digests (zero: none).
func (t *Transport) membersDigests() (ids, addrs wire.MembersDigest) {
	if t.cfg.Members == nil {
		return
	}
	ids, addrs, _ = t.cfg.Members()
	return
}

// otherMembers judges a peer's founding digests: same is false only when both sides' id digests
// are known and differ, and text then names this member's list. A difference in addresses alone
// is logged.
func (t *Transport) otherMembers(peer uint64, exts []wire.Extension) (text string, same bool, err error) {
	theirIDs, err := wire.MembersDigestOf(exts, wire.ExtMembersDigest)
	if err != nil {
		return "", false, err
	}
	theirAddrs, err := wire.MembersDigestOf(exts, wire.ExtAddressesDigest)
	if err != nil {
		return "", false, err
	}
	if t.cfg.Members == nil || theirIDs == (wire.MembersDigest{}) {
		return "", true, nil
	}
	ids, addrs, list := t.cfg.Members()
	if ids == (wire.MembersDigest{}) {
		return "", true, nil
	}
	if ids != theirIDs {
		return fmt.Sprintf("founding members differ: %s was founded with %q, %s with other member ids: "+
			"start every member with the same member list", t.who(t.cfg.SelfID), list, t.who(peer)), false, nil
	}
	if theirAddrs != (wire.MembersDigest{}) && addrs != theirAddrs {
		t.log.Warn("a peer was founded with the same members at addresses spelled otherwise (only logged: both may be right)",
			t.memberAttr(peer), "founded_with", list)
	}
	return "", true, nil
}

// handshakeExtensions are this member's handshake and reply extensions: its cluster's identity
// and its founding digests, each when known, and its standing.
func (t *Transport) handshakeExtensions() []wire.Extension {
	ids, addrs := t.membersDigests()
	exts := wire.HandshakeExtensions(t.ClusterUUID(), ids, addrs)
	if t.cfg.Standing != nil {
		exts = append(exts, wire.StandingExtension(t.cfg.Standing()))
	}
	return exts
}

// reportStanding hands Config.PeerStanding what a peer's handshake or reply said of it, if it
// said anything; a malformed standing is an error (the connection is dropped).
func (t *Transport) reportStanding(peer uint64, exts []wire.Extension) error {
	s, ok, err := wire.StandingOf(exts)
	if err != nil || !ok || t.cfg.PeerStanding == nil {
		return err
	}
	t.cfg.PeerStanding(peer, s)
	return nil
}
