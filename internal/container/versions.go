package container

import (
	"errors"
	"fmt"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// The cluster version: how committed entries are applied.
//
// Builds change what an entry does (a new entry or item kind, a new rule in applying one, new
// replicated state). Two members that apply one log differently diverge, so such a change is
// tied to a cluster version, replicated like any state: a member applies every entry the way
// the cluster version in force at that entry says, whatever its build can do beyond it. The
// version rises only through a log entry (wire.EntryClusterVersion), which the leader proposes
// once every member has said, in its member handshake, that it can apply the new version
// (replica's versions.go); it never goes down. A member that meets a raise, or a snapshot, above
// what it can apply stops there with a ClusterVersionError naming the index: it never skips an
// entry the others applied.
//
// The versions:
//
//	1  the meaning of the log written by every build up to and including 045a031 (no version
//	   recorded), and the cluster version entry.
//	2  a closed session's close reason is remembered (snapshot format 2 records it), so a client
//	   that comes back to a closed session hears why it was closed (closed by the client, by the
//	   service, by the leader for want of keep-alives) instead of "timed out" whatever the reason.
//	3  the cluster identity entry (wire.EntryClusterIdentity): the state records the cluster's
//	   id (ClusterUUID), which a leader draws and proposes once the version is in force and the
//	   state holds none; the first one applied wins, a later one changes nothing. Snapshot
//	   format 3 records it.
//	4  membership changes (raft's ConfChangeV2): a member added later is recorded with its
//	   member id, addresses and whether it stays a learner, under a raft id never used before
//	   (replica's members.go); nothing in the snapshot format changes.
//	5  the operator's controls (wire.EntryControl: suspend, resume, snapshot, shutdown, the
//	   preferred leader; control.go); snapshot format 4 records the suspension and the
//	   preference.
//	6  principals: an open for a principal (wire.ItemOpenPrincipal) records who opened the
//	   session — the authenticated principal of the client's connection — in the session's
//	   state, which the service reads as service.Session.Principal(); snapshot format 5 records
//	   it with each session. A session opened otherwise (an ItemOpen, every session opened below
//	   version 6, and every session of a format 4 snapshot or older) is anonymous ("").

// ClusterVersionMax is the highest cluster version this build can apply.
const ClusterVersionMax uint16 = 6

// ClusterVersionPrincipal is the cluster version from which an open carries its principal
// (wire.ItemOpenPrincipal): below it the leader proposes none, and an authenticated client's
// session waits (replica's ingress.go).
const ClusterVersionPrincipal uint16 = 6

// ClusterVersionMembership is the cluster version from which membership changes are proposed
// and applied.
const ClusterVersionMembership uint16 = 4

// ErrClusterVersion is wrapped by a ClusterVersionError.
var ErrClusterVersion = errors.New("container: cluster version above what this member applies")

// ClusterVersionError: an entry (or a snapshot) at Index needs cluster version Version; this
// member applies up to Max. The member must stop: every member that could applied it.
type ClusterVersionError struct {
	Index    uint64
	Version  uint16
	Max      uint16
	Snapshot bool // the snapshot at Index holds the version; else the entry at Index raises to it
}

func (e *ClusterVersionError) Error() string {
	what := "the entry at index %d raises the cluster version to %d"
	if e.Snapshot {
		what = "the snapshot at index %d holds cluster version %d"
	}
	return fmt.Sprintf(what+", and this member applies cluster versions up to %d: it stops here; run a build that applies version %d (docs/COMPATIBILITY.md)",
		e.Index, e.Version, e.Max, e.Version)
}

func (e *ClusterVersionError) Unwrap() error { return ErrClusterVersion }

// ClusterVersion returns the cluster version in force (after the last applied entry).
func (c *Container) ClusterVersion() uint16 { return c.clusterVersion }

// ClusterVersionMax returns the highest cluster version this member applies (Config).
func (c *Container) ClusterVersionMax() uint16 { return c.cfg.ClusterVersionMax }

// ApplyClusterVersion applies an entry that raises the cluster version to v; one at or below the
// version in force changes nothing. It reports whether the index is a snapshot point.
func (c *Container) ApplyClusterVersion(index uint64, v uint16) (bool, error) {
	if v > c.cfg.ClusterVersionMax {
		return false, &ClusterVersionError{Index: index, Version: v, Max: c.cfg.ClusterVersionMax}
	}
	c.clusterVersion = max(c.clusterVersion, v)
	return c.ApplyEmpty(index), nil
}

// ClusterUUID returns the cluster's identity as the applied log recorded it: zero until an
// identity entry was applied (always below cluster version 3).
func (c *Container) ClusterUUID() wire.ClusterUUID { return c.clusterUUID }

// ErrIdentityBeforeVersion: an identity entry was committed while the cluster version in force
// was below 3. No build proposes one then, so the log is not one this member can trust to apply:
// it stops there.
var ErrIdentityBeforeVersion = errors.New("container: a cluster identity entry below cluster version 3")

// ApplyClusterIdentity applies an entry that records the cluster's identity u (not zero). The
// first one applied is the cluster's; a later one changes nothing (two leaders may each have
// proposed one: the log's order decides, alike on every member). It reports whether the index is
// a snapshot point and whether u became the cluster's identity here.
func (c *Container) ApplyClusterIdentity(index uint64, u wire.ClusterUUID) (due, recorded bool, err error) {
	if c.clusterVersion < 3 {
		return false, false, fmt.Errorf("%w: the entry at index %d, at cluster version %d", ErrIdentityBeforeVersion, index, c.clusterVersion)
	}
	if u.IsZero() {
		return false, false, fmt.Errorf("container: the entry at index %d records a zero cluster identity", index)
	}
	if c.clusterUUID.IsZero() {
		c.clusterUUID, recorded = u, true
	}
	return c.ApplyEmpty(index), recorded, nil
}

// ErrPrincipalBeforeVersion: an open for a principal was committed below cluster version 6. No
// build proposes one then (members of older builds could not decode it): the member stops there.
var ErrPrincipalBeforeVersion = errors.New("container: an open for a principal below cluster version 6")

// recordsCloseReasons: from cluster version 2 on, a closed session's reason is remembered.
func (c *Container) recordsCloseReasons() bool { return c.clusterVersion >= 2 }
