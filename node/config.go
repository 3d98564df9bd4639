package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Member is one member of the cluster.
type Member struct {
	// ID is the member id people see (0, 1, 2, …). Ids are never reused.
	ID int
	// ClientAddr and MemberAddr are the advertised addresses (host:port) clients and members
	// connect to.
	ClientAddr string
	MemberAddr string
	// RaftID is the member's raft id (Status only: a founding member's is ID+1; one added later
	// got a new one, never reused, when it joined). Learner: it receives the log but does not
	// vote (Status only).
	RaftID  uint64
	Learner bool
}

// Config configures a member. DefaultConfig gives the architecture's defaults; fill in ID,
// Members and DataDir (or use LocalCluster for the seed's localhost layout).
type Config struct {
	// ID is this member's id; it must be one of Members.
	ID int
	// ClusterID names the cluster; a data directory of another cluster is refused.
	ClusterID string
	// Members are the founding members. Used to bootstrap an empty data directory; afterwards the
	// membership lives in the replicated log. No two may share an id, and no address may appear
	// twice in the list (as two members' addresses, or as one's client and member address).
	Members []Member
	// ClientBind and MemberBind are the local addresses to listen on; empty means the advertised
	// address of this member (separate so a member behind NAT or in a container can bind 0.0.0.0).
	// A port whose listener is given with WithListeners takes no bind address.
	ClientBind string
	MemberBind string
	// HTTPAddr is where the member serves its HTTP endpoint (http.go: /metrics, /livez, /readyz,
	// /status); empty serves none, unless a listener is given with WithHTTPListener.
	HTTPAddr string
	// DataDir holds the archive (log segments, snapshots, identity).
	DataDir string
	// Join, if set, are client addresses of members of a running cluster: a member whose data
	// directory is empty joins that cluster through them (join.go) instead of founding one with
	// Members, which then need only name this member. A directory with data ignores it.
	Join []string
	// Learner keeps a joining member a learner: it receives the log but does not vote until it
	// is promoted (tandem cluster promote) or takes a voter's place (replace-member).
	Learner bool
	// PreferredLeaders is the founding preference for the cluster's leader, most preferred
	// first: the leader hands leadership to the first of them that is up and caught up. Only
	// the founding value: once the cluster has a preference (this one, proposed by its first
	// leader, or tandem cluster set-preferred-leader's), the replicated one rules, and a member
	// configured otherwise says so in its log.
	PreferredLeaders []int

	// TickInterval is raft's tick; HeartbeatTicks and ElectionTicks are counted in ticks. The
	// defaults give a heartbeat of 100 ms and an election timeout randomised in [700 ms, 1.4 s)
	// (why: replica.DefaultConfig).
	TickInterval   time.Duration
	HeartbeatTicks int
	ElectionTicks  int
	// SessionTimeout closes a session the leader heard nothing from for this long.
	SessionTimeout time.Duration
	// SnapshotIntervalEntries and SnapshotIntervalTime (cluster time): a snapshot is taken at
	// every multiple of the first and whenever cluster time crosses a multiple of the second.
	SnapshotIntervalEntries uint64
	SnapshotIntervalTime    time.Duration
	// MaxClusterVersion is the highest cluster version this member applies and says it can
	// (0: the highest this build applies). The leader raises the cluster version only once
	// every member can apply the new one, so setting it on any one member holds the cluster at
	// that version: during a rolling upgrade, to keep the option of going back to the older
	// build until the new one has proved itself (docs/COMPATIBILITY.md).
	MaxClusterVersion uint16
	// SnapshotsRetained is how many snapshots the archive keeps; LogMarginEntries how much log it
	// keeps behind the oldest of them, for followers that are only a little behind.
	SnapshotsRetained int
	LogMarginEntries  uint64
	// SegmentBytes: log segment size; the log is deleted a segment at a time (default 64 MiB).
	SegmentBytes int64
	// ShutdownTransferTimeout bounds the leadership hand-over when a leader is stopped.
	ShutdownTransferTimeout time.Duration
	// MaxFrameBytes bounds frames on the member port.
	MaxFrameBytes int
	// MaxMemberConns and MaxClientConns bound the connections each port serves at once; one
	// over the limit is closed at once, logged and counted (Status). A peer uses at most two
	// member connections (messages, and a snapshot transfer), a client one; the limits keep a
	// connection flood from using up the process's file descriptors, which the log and the
	// snapshots need too.
	MaxMemberConns int
	MaxClientConns int

	// Logger receives the member's log lines (nil: they are discarded). The node never prints;
	// its state changes also come as Events. Whatever Logger's level, the lines at WARN and above
	// are also kept in DataDir's errors.log, bounded, for tandem cluster errors (errlog.go).
	Logger *slog.Logger

	// tune, if set, adjusts the replica's configuration (tests: limits the node does not
	// expose).
	tune func(*replica.Config)
}

// DefaultConfig returns the defaults: heartbeat 100 ms, election timeout 0.7–1.4 s, session
// timeout 10 s, a snapshot every 1000 entries or 30 s of cluster time.
func DefaultConfig() Config {
	rc := replica.DefaultConfig()
	cc := container.DefaultConfig()
	return Config{
		ClusterID:               "tandem",
		TickInterval:            rc.TickInterval,
		HeartbeatTicks:          rc.HeartbeatTicks,
		ElectionTicks:           rc.ElectionTicks,
		SessionTimeout:          rc.SessionTimeout,
		SnapshotIntervalEntries: cc.SnapshotIntervalEntries,
		SnapshotIntervalTime:    cc.SnapshotIntervalTime,
		SnapshotsRetained:       3,
		LogMarginEntries:        10_000,
		SegmentBytes:            64 << 20,
		ShutdownTransferTimeout: 3 * time.Second,
		MaxFrameBytes:           4 << 20,
		MaxMemberConns:          1024,
		MaxClientConns:          4096,
	}
}

// LocalCluster returns the seed's localhost layout of n members: member i serves clients on
// 127.0.0.1:9000+i and members on 127.0.0.1:9100+i.
func LocalCluster(n int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: i, ClientAddr: fmt.Sprintf("127.0.0.1:%d", 9000+i), MemberAddr: fmt.Sprintf("127.0.0.1:%d", 9100+i)}
	}
	return ms
}

// ParseMembers reads a member list. It accepts Tandem's form "id,clientAddr,memberAddr|…" and
// Aeron Cluster's "id,ingress,consensus,log,catchup,archive|…" (only the first two addresses are
// used: Tandem needs fewer ports). Line breaks, spaces and a trailing '|' are tolerated.
func ParseMembers(s string) ([]Member, error) {
	s = strings.NewReplacer("\n", "", "\r", "", " ", "", "\t", "").Replace(s)
	var ms []Member
	for i, part := range strings.Split(s, "|") {
		if part == "" {
			continue
		}
		f := strings.Split(part, ",")
		if len(f) != 3 && len(f) != 6 {
			return nil, fmt.Errorf("member %d %q: want id,clientAddr,memberAddr (or Aeron's six fields), got %d fields", i, part, len(f))
		}
		id, err := strconv.Atoi(f[0])
		if err != nil || id < 0 {
			return nil, fmt.Errorf("member %d %q: id %q is not a non-negative integer", i, part, f[0])
		}
		for _, a := range f[1:3] {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("member %d %q: address %q: %v", i, part, a, err)
			}
		}
		ms = append(ms, Member{ID: id, ClientAddr: f[1], MemberAddr: f[2]})
	}
	if len(ms) == 0 {
		return nil, errors.New("member list is empty")
	}
	return ms, nil
}

// self returns this member's entry.
func (c *Config) self() (Member, bool) {
	for _, m := range c.Members {
		if m.ID == c.ID {
			return m, true
		}
	}
	return Member{}, false
}

// Validate checks the configuration; every error names the field and its value.
func (c *Config) Validate() error {
	var errs []error
	if c.ClusterID == "" || len(c.ClusterID) > 64 {
		errs = append(errs, fmt.Errorf("ClusterID (%q) must be 1 to 64 bytes", c.ClusterID))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir is empty"))
	}
	if _, ok := c.self(); !ok {
		errs = append(errs, fmt.Errorf("ID (%d) is not one of the Members", c.ID))
	}
	for _, m := range c.Members {
		for _, a := range []string{m.ClientAddr, m.MemberAddr} {
			if _, _, err := net.SplitHostPort(a); err != nil {
				errs = append(errs, fmt.Errorf("Members: member %d address %q: %v", m.ID, a, err))
			}
		}
	}
	errs = append(errs, duplicateAddrs(c.Members)...)
	if len(c.PreferredLeaders) > wire.MaxPreferred {
		errs = append(errs, fmt.Errorf("PreferredLeaders (%v) names more than %d members", c.PreferredLeaders, wire.MaxPreferred))
	}
	for i, id := range c.PreferredLeaders {
		switch {
		case slices.Contains(c.PreferredLeaders[:i], id):
			errs = append(errs, fmt.Errorf("PreferredLeaders (%v) names member %d twice", c.PreferredLeaders, id))
		case len(c.Join) == 0 && !slices.ContainsFunc(c.Members, func(m Member) bool { return m.ID == id }):
			errs = append(errs, fmt.Errorf("PreferredLeaders (%v): member %d is not one of the Members", c.PreferredLeaders, id))
		}
	}
	if c.SegmentBytes < 4<<10 {
		errs = append(errs, fmt.Errorf("SegmentBytes (%d) must be at least 4096", c.SegmentBytes))
	}
	if c.SnapshotsRetained < 1 {
		errs = append(errs, fmt.Errorf("SnapshotsRetained (%d) must be at least 1", c.SnapshotsRetained))
	}
	if c.ShutdownTransferTimeout < 0 {
		errs = append(errs, fmt.Errorf("ShutdownTransferTimeout (%s) must not be negative", c.ShutdownTransferTimeout))
	}
	if c.MaxFrameBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("MaxFrameBytes (%d) must be at least 65536", c.MaxFrameBytes))
	}
	if least := max(2*(len(c.Members)-1), 1); c.MaxMemberConns < least {
		errs = append(errs, fmt.Errorf("MaxMemberConns (%d) must be at least %d (two per other member)", c.MaxMemberConns, least))
	}
	if c.MaxClientConns < 1 {
		errs = append(errs, fmt.Errorf("MaxClientConns (%d) must be at least 1", c.MaxClientConns))
	}
	if err := c.replicaConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// duplicateAddrs names every address that two members' entries share, or that one member
// gives as both its client and its member address: each address is one listener, so such a list
// is a typo, and a cluster started on it would send one member's traffic to another. (A
// repeated id is refused by replica.Config.Validate.) Addresses are compared as written, the
// host without regard to case: two names of one host (localhost and 127.0.0.1) are not seen.
func duplicateAddrs(ms []Member) []error {
	type use struct {
		id   int
		kind string
	}
	seen := map[string]use{}
	var errs []error
	for _, m := range ms {
		for _, a := range []struct{ kind, addr string }{{"client", m.ClientAddr}, {"member", m.MemberAddr}} {
			key := a.addr
			if host, port, err := net.SplitHostPort(a.addr); err == nil {
				key = net.JoinHostPort(strings.ToLower(host), port)
			}
			if u, ok := seen[key]; ok {
				errs = append(errs, fmt.Errorf("Members: address %q is both member %d's %s address and member %d's %s address",
					a.addr, u.id, u.kind, m.ID, a.kind))
				continue
			}
			seen[key] = use{m.ID, a.kind}
		}
	}
	return errs
}

func (c *Config) replicaConfig() replica.Config {
	rc := replica.DefaultConfig()
	rc.MemberID = c.ID
	for _, m := range c.Members {
		rc.Members = append(rc.Members, replica.Member{ID: m.ID, ClientAddr: m.ClientAddr, MemberAddr: m.MemberAddr})
	}
	rc.TickInterval = c.TickInterval
	rc.HeartbeatTicks = c.HeartbeatTicks
	rc.ElectionTicks = c.ElectionTicks
	rc.SessionTimeout = c.SessionTimeout
	rc.Container.SnapshotIntervalEntries = c.SnapshotIntervalEntries
	rc.Container.SnapshotIntervalTime = c.SnapshotIntervalTime
	rc.Container.ClusterVersionMax = c.MaxClusterVersion
	if c.tune != nil {
		c.tune(&rc)
	}
	return rc
}
