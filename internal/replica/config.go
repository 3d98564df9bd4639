package replica

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// The replica's configuration: its fields, defaults and validation.

// Config configures a replica.
type Config struct {
	MemberID int
	// RaftID is this member's raft id: 0 for a founding member (RaftID(MemberID)); a member
	// added later got its own when it joined (members.go).
	RaftID uint64
	// ClusterID is the cluster's name, which a joiner is told.
	ClusterID string
	// DescribeSelf, if set, adds what the driver alone knows (its build, which peers it cannot
	// reach) to this member's status on the admin channel.
	DescribeSelf func(*wire.MemberStatus)
	// RecentErrors, if set, fills in this member's recent warnings and errors (the admin
	// channel's "errors", which any member answers for itself), within wire.ErrorsAnswerRecordsMax
	// and wire.ErrorsAnswerBytesMax. The replica keeps no log of its own: the driver does (nil:
	// the member answers that it keeps none). Called on the replica's goroutine: it must not wait
	// for the disk.
	RecentErrors func(*wire.MemberErrors)
	// Joined: this member joined a running cluster (RaftID is set): on an empty log it
	// bootstraps nothing and waits for the leader's snapshot. Joining: it was added at this
	// start (the join's answer came just now): its raft id never voted, so it is verified from
	// the start (consensus.Config.Joining); a joined member restarted on an empty log is not.
	Joined, Joining bool
	// PreferredLeaders is the founding preference for the leader (node's --preferred-leader):
	// a leader proposes it once the cluster version allows and no preference was ever set;
	// after that the replicated one rules (preferred.go).
	PreferredLeaders []int
	// Members are the founding members, used to bootstrap an empty data directory. After that
	// the membership comes from the replicated log and snapshots.
	Members []Member
	// TickInterval is the length of one raft tick; the driver calls Tick at this interval.
	TickInterval   time.Duration
	HeartbeatTicks int
	// ElectionTicks: raft randomises the election timeout in [ElectionTicks, 2×ElectionTicks).
	ElectionTicks int
	// SessionTimeout: the leader closes a session it has heard nothing from for this long.
	SessionTimeout time.Duration
	// MaxBatchBytes bounds the encoded size of one raft entry's batch of client items.
	MaxBatchBytes int
	// MaxPendingItems bounds client items waiting to be proposed; beyond it requests are refused
	// with StatusRejected.
	MaxPendingItems int
	// MaxPendingReads bounds the queries taken and not yet answered (waiting for their read
	// index, or for it to be applied); beyond it queries are refused with StatusRejected.
	MaxPendingReads int
	// MaxCommandBytes bounds a command's (and a query's) payload: a larger one is refused with
	// StatusRejected, on any member, and never proposed. It is announced to clients when they
	// attach (with the response window), so that they refuse larger commands themselves. At
	// most wire.MaxPayloadBytes; the driver's client port should take frames of
	// MaxCommandBytes+wire.CommandOverheadBytes.
	MaxCommandBytes int
	// MaxUncommittedBytes bounds the leader's uncommitted log tail (raft drops proposals beyond).
	MaxUncommittedBytes uint64
	Container           container.Config
	Logger              *slog.Logger
	// Meter, if set, observes the latency of client requests on the leader (meter.go).
	Meter Meter
	// Rand is where a leader draws a new cluster's identity (identity.go); nil: crypto/rand. The
	// simulator passes its seeded source, so that a run repeats byte for byte.
	Rand io.Reader
	// Unverified and VoteFloor are what the data directory recorded of whether this member may
	// vote (archive.Verification; consensus/verify.go): a member on an empty log starts
	// unverified anyway. ChangeVerification reports what to record.
	Unverified bool
	VoteFloor  uint64
}

// DefaultConfig returns the defaults: heartbeat 100 ms, election timeout randomised in
// [700 ms, 1.4 s), session timeout 10 s.
//
// The architecture started from the seeds' heartbeat 200 ms and election timeout 1–2 s. With
// those, a follower notices a dead leader about 1.5 s after its last heartbeat (median), so the
// median failover missed the performance goal (1.5 s; docs/PERFORMANCE.md). Etcd's own defaults
// are a 100 ms heartbeat and a 1 s election timeout; 700 ms keeps seven heartbeats of margin, and
// more than the longest fsync stall seen on the project's machines under load, against needless
// elections (PreVote and CheckQuorum guard the rest).
func DefaultConfig() Config {
	return Config{
		TickInterval:        100 * time.Millisecond,
		HeartbeatTicks:      1,
		ElectionTicks:       7,
		SessionTimeout:      10 * time.Second,
		MaxBatchBytes:       256 << 10,
		MaxPendingItems:     64 << 10,
		MaxPendingReads:     64 << 10,
		MaxCommandBytes:     wire.MaxPayloadBytes,
		MaxUncommittedBytes: 64 << 20,
		Container:           container.DefaultConfig(),
	}
}

// Validate checks a configuration; errors name the field and value.
func (c Config) Validate() error {
	var errs []error
	if c.TickInterval <= 0 {
		errs = append(errs, fmt.Errorf("TickInterval (%s) must be positive", c.TickInterval))
	}
	if c.HeartbeatTicks <= 0 {
		errs = append(errs, fmt.Errorf("HeartbeatTicks (%d) must be positive", c.HeartbeatTicks))
	}
	if c.ElectionTicks <= c.HeartbeatTicks {
		errs = append(errs, fmt.Errorf("ElectionTicks (%d) must be larger than HeartbeatTicks (%d)", c.ElectionTicks, c.HeartbeatTicks))
	}
	if c.SessionTimeout < time.Duration(2*c.ElectionTicks)*c.TickInterval {
		errs = append(errs, fmt.Errorf("SessionTimeout (%s) must be at least two election timeouts (%s)",
			c.SessionTimeout, time.Duration(2*c.ElectionTicks)*c.TickInterval))
	}
	if c.MaxBatchBytes < 1024 {
		errs = append(errs, fmt.Errorf("MaxBatchBytes (%d) must be at least 1024", c.MaxBatchBytes))
	}
	if c.MaxPendingItems <= 0 {
		errs = append(errs, fmt.Errorf("MaxPendingItems (%d) must be positive", c.MaxPendingItems))
	}
	if c.MaxPendingReads <= 0 {
		errs = append(errs, fmt.Errorf("MaxPendingReads (%d) must be positive", c.MaxPendingReads))
	}
	if c.MaxCommandBytes <= 0 || c.MaxCommandBytes > wire.MaxPayloadBytes {
		errs = append(errs, fmt.Errorf("MaxCommandBytes (%d) must be between 1 and %d", c.MaxCommandBytes, wire.MaxPayloadBytes))
	}
	if len(c.Members) == 0 {
		errs = append(errs, errors.New("Members is empty: a cluster needs at least one member"))
	}
	seen := map[int]bool{}
	found := false
	for _, m := range c.Members {
		if m.ID < 0 {
			errs = append(errs, fmt.Errorf("Members: member id %d is negative", m.ID))
		}
		if seen[m.ID] {
			errs = append(errs, fmt.Errorf("Members: member id %d appears twice", m.ID))
		}
		seen[m.ID] = true
		found = found || m.ID == c.MemberID
	}
	if len(c.Members) > 0 && !found && !c.Joined && !c.Joining { // (a joiner is not one of the founders)
		errs = append(errs, fmt.Errorf("MemberID (%d) is not one of Members", c.MemberID))
	}
	if len(c.PreferredLeaders) > wire.MaxPreferred {
		errs = append(errs, fmt.Errorf("PreferredLeaders (%v) names more than %d members", c.PreferredLeaders, wire.MaxPreferred))
	}
	for i, id := range c.PreferredLeaders {
		if id < 0 || id > math.MaxInt32 || slices.Contains(c.PreferredLeaders[:i], id) {
			errs = append(errs, fmt.Errorf("PreferredLeaders (%v): member id %d is negative, too large or named twice", c.PreferredLeaders, id))
		}
	}
	if err := c.Container.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
