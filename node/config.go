package node

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
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

	// The client port's security (auth.go; README, "A secured cluster"). TLSCertFile and
	// TLSKeyFile serve the client port over TLS. Clients then authenticate by a certificate
	// ClientCAFile's CA signed (its common name names the principal, its organizations are its
	// roles), by a token AuthTokensFile lists, or either when both are given; with neither,
	// nobody is authenticated. The files are read again when they change (new connections use
	// the new certificates; connections whose token was removed are closed).
	TLSCertFile, TLSKeyFile string
	ClientCAFile            string
	AuthTokensFile          string
	// Authorize decides what each principal may do: send commands, run queries, run each admin
	// operation. nil: by the principal's roles (RoleBased). It is asked when a connection
	// authenticates and again when credentials are reloaded, never per request: it must depend
	// only on its arguments. With no credential configured, every connection is the anonymous
	// principal and Authorize, if set, decides for it.
	Authorize func(p Principal, r AuthRequest) error
	// ---- Member port TLS (issue 22; peertls.go) ----
	// PeerCertFile and PeerKeyFile are this member's certificate and its key (PEM), and
	// PeerCAFile the CA bundle that signs the members' certificates: all three, or none. With
	// them every member connection, in both directions and snapshot streams included, is mutual
	// TLS 1.3, and a peer must present a member certificate of that CA; without them the member
	// port is plaintext. A member certificate must allow both serverAuth and clientAuth (every
	// member both serves and dials; a client's certificate is refused on the member port), and
	// name the host of this member's advertised MemberAddr (the others dial it and check that).
	// The files are read again when they change (polled every few seconds): the connections made
	// after that use the new material, those open keep theirs.
	PeerCertFile, PeerKeyFile, PeerCAFile string
	// PeerAllowedNames, if set, are the names a peer's certificate must carry one of (a DNS or
	// IP subject alternative name, or its common name), this member's own included: one CA may
	// sign more than one cluster's members. Empty: any member certificate of PeerCAFile's CA.
	PeerAllowedNames []string
	// ---- end of member port TLS ----

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
// used: Tandem needs fewer ports). Line breaks and spaces around the fields and a trailing '|'
// are tolerated; within an address they are a mistake, refused (not taken out: "my host" is no
// host name, and "myhost" may not be the one meant). The
// addresses are checked as Validate checks them (host:port, a port 1-65535); an error names the
// entry by its place in the list (1, 2, …) until its id is read, then by the member's id.
func ParseMembers(s string) ([]Member, error) {
	var ms []Member
	entry := 0
	for _, part := range strings.Split(s, "|") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		entry++
		f := strings.Split(part, ",")
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		if len(f) != 3 && len(f) != 6 {
			return nil, fmt.Errorf("entry %d %q: want id,clientAddr,memberAddr (or Aeron's six fields), got %d fields", entry, part, len(f))
		}
		id, err := strconv.Atoi(f[0])
		if err != nil || id < 0 || id > math.MaxInt32 {
			return nil, fmt.Errorf("entry %d %q: id %q is not a member id (a non-negative integer)", entry, part, f[0])
		}
		for i, kind := range []string{"client", "member"} {
			if err := checkAddr(f[1+i], false); err != nil {
				return nil, fmt.Errorf("member %d's %s address %q: %v", id, kind, f[1+i], err)
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

// Validate checks the configuration. It reports every bad field at once (errors.Join), each as
// a *FieldError that names the field as Config does and its value: "ElectionTicks (1) must be
// larger than HeartbeatTicks (1)". It reads the member port's TLS files, if given, and checks
// what they hold: a member certificate, its key, a CA that signed it (peertls.go).
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Member: -1, format: format, args: args})
	}
	if c.ClusterID == "" || len(c.ClusterID) > 64 {
		bad("ClusterID", "%s (%q) must be 1 to 64 bytes", fieldName("ClusterID"), c.ClusterID)
	}
	if c.DataDir == "" {
		bad("DataDir", "%s is empty", fieldName("DataDir"))
	}
	if _, ok := c.self(); !ok {
		bad("ID", "%s (%d) is not one of the %s", fieldName("ID"), c.ID, fieldName("Members"))
	}
	if len(c.Members) == 0 {
		bad("Members", "%s is empty: a cluster needs at least one member", fieldName("Members"))
	}
	ids := map[int]bool{}
	for _, m := range c.Members {
		if m.ID < 0 || m.ID > math.MaxInt32 {
			bad("Members", "%s: member id %d is negative or too large", fieldName("Members"), m.ID)
		} else if ids[m.ID] {
			bad("Members", "%s: member id %d appears twice", fieldName("Members"), m.ID)
		}
		ids[m.ID] = true
		for _, a := range []struct{ field, kind, addr string }{{"ClientAddr", "client", m.ClientAddr}, {"MemberAddr", "member", m.MemberAddr}} {
			if err := checkAddr(a.addr, false); err != nil {
				errs = append(errs, &FieldError{Field: "Members", Member: m.ID, Addr: a.field,
					format: "%s: member %d's %s address %q: %v", args: []any{fieldName("Members"), m.ID, a.kind, a.addr, err}})
			}
		}
	}
	errs = append(errs, duplicateAddrs(c.Members)...)
	for _, b := range []struct{ field, addr string }{{"ClientBind", c.ClientBind}, {"MemberBind", c.MemberBind}, {"HTTPAddr", c.HTTPAddr}} {
		if b.addr == "" {
			continue // none given: the advertised address (binds), or no endpoint (HTTPAddr)
		}
		if err := checkAddr(b.addr, true); err != nil {
			bad(b.field, "%s (%q): %v", fieldName(b.field), b.addr, err)
		}
	}
	for _, a := range c.Join {
		if err := checkAddr(a, false); err != nil {
			bad("Join", "%s: address %q: %v", fieldName("Join"), a, err)
		}
	}
	if len(c.PreferredLeaders) > wire.MaxPreferred {
		bad("PreferredLeaders", "%s (%v) names more than %d members", fieldName("PreferredLeaders"), c.PreferredLeaders, wire.MaxPreferred)
	}
	for i, id := range c.PreferredLeaders {
		switch {
		case id < 0 || id > math.MaxInt32:
			bad("PreferredLeaders", "%s (%v): %d is not a member id", fieldName("PreferredLeaders"), c.PreferredLeaders, id)
		case slices.Contains(c.PreferredLeaders[:i], id):
			bad("PreferredLeaders", "%s (%v) names member %d twice", fieldName("PreferredLeaders"), c.PreferredLeaders, id)
		case len(c.Join) == 0 && !slices.ContainsFunc(c.Members, func(m Member) bool { return m.ID == id }):
			bad("PreferredLeaders", "%s (%v): member %d is not one of the %s", fieldName("PreferredLeaders"), c.PreferredLeaders, id, fieldName("Members"))
		}
	}
	// The timing. A tick below TickIntervalMin is refused: a member that ticks faster than it
	// can process its inputs spends its time ticking, and raft's timeouts, counted in ticks,
	// would be shorter than a network round trip.
	if c.TickInterval < TickIntervalMin {
		bad("TickInterval", "%s (%s) must be at least %s: a member that ticks faster than it can process its inputs spends its time ticking",
			fieldName("TickInterval"), c.TickInterval, TickIntervalMin)
	}
	if c.HeartbeatTicks < 1 {
		bad("HeartbeatTicks", "%s (%d) must be at least 1", fieldName("HeartbeatTicks"), c.HeartbeatTicks)
	}
	if c.ElectionTicks <= c.HeartbeatTicks {
		bad("ElectionTicks", "%s (%d) must be larger than %s (%d)", fieldName("ElectionTicks"), c.ElectionTicks, fieldName("HeartbeatTicks"), c.HeartbeatTicks)
	}
	if election := time.Duration(c.ElectionTicks) * c.TickInterval; c.TickInterval > 0 && c.ElectionTicks > 0 && c.SessionTimeout < 2*election {
		bad("SessionTimeout", "%s (%s) must be at least two election timeouts (2 × %s × %s = %s)",
			fieldName("SessionTimeout"), c.SessionTimeout, fieldName("ElectionTicks"), fieldName("TickInterval"), 2*election)
	}
	if c.SnapshotIntervalEntries == 0 {
		bad("SnapshotIntervalEntries", "%s (0) must be at least 1", fieldName("SnapshotIntervalEntries"))
	}
	if c.SnapshotIntervalTime <= 0 {
		bad("SnapshotIntervalTime", "%s (%s) must be positive", fieldName("SnapshotIntervalTime"), c.SnapshotIntervalTime)
	}
	if c.MaxClusterVersion > container.ClusterVersionMax {
		bad("MaxClusterVersion", "%s (%d) is above what this build applies (%d)", fieldName("MaxClusterVersion"), c.MaxClusterVersion, container.ClusterVersionMax)
	}
	if c.SegmentBytes < 4<<10 {
		bad("SegmentBytes", "%s (%d) must be at least 4096", fieldName("SegmentBytes"), c.SegmentBytes)
	}
	if c.SnapshotsRetained < 1 {
		bad("SnapshotsRetained", "%s (%d) must be at least 1", fieldName("SnapshotsRetained"), c.SnapshotsRetained)
	}
	if c.ShutdownTransferTimeout < 0 {
		bad("ShutdownTransferTimeout", "%s (%s) must not be negative", fieldName("ShutdownTransferTimeout"), c.ShutdownTransferTimeout)
	}
	if c.MaxFrameBytes < 64<<10 {
		bad("MaxFrameBytes", "%s (%d) must be at least 65536", fieldName("MaxFrameBytes"), c.MaxFrameBytes)
	}
	if least := max(2*(len(c.Members)-1), 1); c.MaxMemberConns < least {
		bad("MaxMemberConns", "%s (%d) must be at least %d (two per other member)", fieldName("MaxMemberConns"), c.MaxMemberConns, least)
	}
	if c.MaxClientConns < 1 {
		bad("MaxClientConns", "%s (%d) must be at least 1", fieldName("MaxClientConns"), c.MaxClientConns)
	}
	errs = append(errs, c.validateClientSecurity()...)
	errs = append(errs, c.validatePeerTLS()...) // (peertls.go)
	// The replica checks what it is given again, and what the Config does not expose (tune): asked
	// only when the fields above are right, so that no mistake is reported twice in its words.
	if len(errs) == 0 {
		if err := c.replicaConfig().Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// TickIntervalMin is the shortest TickInterval Validate accepts.
const TickIntervalMin = time.Millisecond

// FieldError is one mistake Validate finds: it names Config's fields as the Go code does
// ("ElectionTicks (1) must be larger than HeartbeatTicks (1)"), and says which they are, so that
// a program that fills in a Config from settings of its own (flags, a file) can name those
// instead (Describe), as tandem node does.
type FieldError struct {
	// Field is the field at fault: "ElectionTicks", "Members", "ClientBind".
	Field string
	// Member and Addr, for an address in Members: the member's id and which address,
	// "ClientAddr" or "MemberAddr" (otherwise -1 and "").
	Member int
	Addr   string
	// format and args say what is wrong; the args of type fieldName are the fields it names.
	format string
	args   []any
}

// fieldName is a field's name in a FieldError's message.
type fieldName string

// Error names the fields as Config does.
func (e *FieldError) Error() string {
	return e.Describe(func(field string) string { return field })
}

// Describe is the error with each field it names written as name(field).
func (e *FieldError) Describe(name func(field string) string) string {
	args := slices.Clone(e.args)
	for i, a := range args {
		if f, ok := a.(fieldName); ok {
			args[i] = name(string(f))
		}
	}
	return fmt.Sprintf(e.format, args...)
}

// Fields are the fields the message names, in its order.
func (e *FieldError) Fields() []string {
	var fs []string
	for _, a := range e.args {
		if f, ok := a.(fieldName); ok && !slices.Contains(fs, string(f)) {
			fs = append(fs, string(f))
		}
	}
	return fs
}

// portMax is the highest TCP port.
const portMax = 65535

// checkAddr checks that addr is host:port as a member can listen on or dial it: a port
// 1-65535 (bind: 0 too, an ephemeral port, and the host may be empty, every interface), and a
// host that is an IP address or a host name (net.SplitHostPort alone takes "host:-1", "a b:1"
// and "localhost:http", which fail only when dialled, for ever, or when the member binds).
func checkAddr(addr string, bind bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return errors.New(ae.Err) // the address is in the message already
		}
		return err
	}
	p, err := strconv.Atoi(port)
	switch {
	case err != nil:
		return fmt.Errorf("port %q is not a number", port)
	case bind && (p < 0 || p > portMax):
		return fmt.Errorf("port %d is not 0 to %d", p, portMax)
	case !bind && (p < 1 || p > portMax):
		return fmt.Errorf("port %d is not 1 to %d", p, portMax)
	}
	if host == "" {
		if bind {
			return nil
		}
		return errors.New("no host: others connect to this address")
	}
	if ip, _, _ := strings.Cut(host, "%"); net.ParseIP(ip) != nil {
		return nil
	}
	if len(host) > 253 || strings.ContainsFunc(host, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
	}) {
		return fmt.Errorf("host %q is not a host name or an IP address", host)
	}
	return nil
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
				errs = append(errs, &FieldError{Field: "Members", Member: -1,
					format: "%s: address %q is both member %d's %s address and member %d's %s address",
					args:   []any{fieldName("Members"), a.addr, u.id, u.kind, m.ID, a.kind}})
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
