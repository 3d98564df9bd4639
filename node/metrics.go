package node

import (
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/version"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// metrics is what the member counts for its HTTP endpoint (http.go) beyond what Status publishes.
// Everything here is written without the loop waiting on anyone: atomics, and two histograms
// observed on the disk jobs' goroutines (a histogram's Observe is a few atomic adds). A scrape
// reads Status (under n.mu, as any caller of Status does) and these, never the loop's state.
type metrics struct {
	// heartbeat is the wall time (Unix ns) of the loop's last tick; 0 before the loop runs.
	heartbeat atomic.Int64
	// ended: the loop has returned (the member stopped, or its storage failed: stopErr, which
	// is set first).
	ended   atomic.Bool
	stopErr atomic.Bool
	// leaderChanges counts the times this member saw the leader change to a known one, as
	// etcd's leader_changes_seen_total does. Loop only writes it (updateStatus).
	leaderChanges atomic.Int64
	lastLeader    int // loop only; -1 unknown
	// snapshotsTaken / snapshotsInstalled: this member wrote a snapshot of its own / installed
	// one from the leader (outbox.Changed, loop only writes them).
	snapshotsTaken     atomic.Int64
	snapshotsInstalled atomic.Int64
	// commands and queries count the client requests this member received (a follower's are
	// redirected); sessions is how many sessions are open, as of the last tick. Loop only
	// writes them.
	commands, queries, sessions atomic.Int64
	// fsync and snapSave time the disk jobs (jobs.start wraps them): the log's syncs and the
	// snapshot writes.
	fsync    prometheus.Histogram
	snapSave prometheus.Histogram
	// command and query time the client requests on the leader (replica/meter.go), observed on
	// the loop; start is the origin of the meter's monotonic clock.
	command, query prometheus.Histogram
	start          time.Time
}

// Now, CommandDone and QueryDone make metrics the replica's Meter: a monotonic clock (time.Since
// reads the monotonic reading of start) and the two histograms.
func (m *metrics) Now() int64              { return int64(time.Since(m.start)) }
func (m *metrics) CommandDone(nanos int64) { m.command.Observe(float64(nanos) / 1e9) }
func (m *metrics) QueryDone(nanos int64)   { m.query.Observe(float64(nanos) / 1e9) }

// clientBuckets: 100 µs to about 13 s, doubling (18 buckets): a command takes from a fraction of
// a millisecond (a sync on a fast disk) to seconds (an election, a stalled disk).
var clientBuckets = prometheus.ExponentialBuckets(0.0001, 2, 18)

func newMetrics() *metrics {
	return &metrics{
		lastLeader: -1,
		start:      time.Now(),
		command: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tandem_client_command_duration_seconds",
			Help: "The latency distributions of client commands on the leader, from the round of input that took a command " +
				"to the round that applied it and answered (commit and apply; read once per round of the member's loop).",
			Buckets: clientBuckets,
		}),
		query: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tandem_client_query_duration_seconds",
			Help: "The latency distributions of client queries on the leader, from the round of input that took a query " +
				"to the round that served it (its read index confirmed and applied).",
			Buckets: clientBuckets,
		}),
		// etcd's buckets for wal_fsync_duration_seconds: 1 ms to 8 s, doubling.
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tandem_disk_wal_fsync_duration_seconds",
			Help:    "The latency distributions of the log's syncs (fsync or fdatasync) called by the member.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		snapSave: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tandem_disk_snapshot_save_duration_seconds",
			Help:    "The latency distributions of writing a snapshot of the member's state (written, synced, renamed).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
}

// timed wraps a disk job so that its duration is observed in h, on the job's goroutine.
func timed(job func() error, h prometheus.Histogram) func() error {
	if job == nil {
		return nil
	}
	return func() error {
		start := time.Now()
		err := job()
		h.Observe(time.Since(start).Seconds())
		return err
	}
}

// noteLeader counts a change of the known leader. Loop only.
func (m *metrics) noteLeader(leader int) {
	if leader != m.lastLeader {
		if leader >= 0 {
			m.leaderChanges.Add(1)
		}
		m.lastLeader = leader
	}
}

// collector turns Status and the node's counters into metrics at scrape time: the loop does no
// work for a metric nobody reads.
type collector struct {
	n *Node

	hasLeader, isLeader, leaderChanges, term                 *prometheus.Desc
	committed, applied, pending, snapshotIndex               *prometheus.Desc
	snapsTaken, snapsInstalled, eventsDropped                *prometheus.Desc
	raftDropped, sendsDropped, raftRefused                   *prometheus.Desc
	connsRefused, acceptFailures, peerReachable, members     *prometheus.Desc
	clusterVersion, unverified, suspended, stopped, loopTick *prometheus.Desc
	errorsLogDropped, commands, queries, sessions, clients   *prometheus.Desc
	proposalsFailed, diskFailed, snapsSent, snapsSentFailed  *prometheus.Desc
	sessionsOpened, sessionsClosed, sessionsExpired          *prometheus.Desc
	peerSent, peerReceived, peerSentFail, peerReceivedFail   *prometheus.Desc
}

func newCollector(n *Node) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{n: n,
		hasLeader:        d("tandem_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not."),
		isLeader:         d("tandem_server_is_leader", "Whether or not this member is leader. 1 if is, 0 otherwise."),
		leaderChanges:    d("tandem_server_leader_changes_seen_total", "The number of leader changes seen."),
		term:             d("tandem_server_term", "The raft term this member is in."),
		committed:        d("tandem_server_proposals_committed_total", "The total number of consensus proposals committed (the commit index)."),
		applied:          d("tandem_server_proposals_applied_total", "The total number of consensus proposals applied (the applied index)."),
		pending:          d("tandem_server_proposals_pending", "The number of committed entries not applied yet on this member (commit index minus applied index)."),
		snapshotIndex:    d("tandem_server_snapshot_index", "The log index of the member's latest snapshot."),
		snapsTaken:       d("tandem_server_snapshots_taken_total", "The number of snapshots this member wrote of its own state."),
		snapsInstalled:   d("tandem_server_snapshots_installed_total", "The number of snapshots this member installed from the leader."),
		eventsDropped:    d("tandem_server_events_dropped_total", "Events lost because nobody read the member's event stream fast enough."),
		raftDropped:      d("tandem_network_raft_messages_dropped_total", "Raft messages from peers received and not stepped."),
		sendsDropped:     d("tandem_network_peer_sends_dropped_total", "Raft messages to peers dropped because the peer's outbound queue was full (sent failures)."),
		raftRefused:      d("tandem_network_raft_messages_refused_total", "Raft messages from the member port refused as invalid."),
		connsRefused:     d("tandem_network_connections_refused_total", "Connections closed at once because their port had its maximum open.", "port"),
		acceptFailures:   d("tandem_network_accept_failures_total", "Failed accepts on the client and member ports."),
		peerReachable:    d("tandem_network_peer_reachable", peerReachableHelp, "member"),
		members:          d("tandem_cluster_members", "The number of members in the cluster's membership as applied here."),
		clusterVersion:   d("tandem_cluster_version", "The cluster version in force at the applied index."),
		unverified:       d("tandem_server_unverified", "1 while this member started on an empty log and may not vote yet."),
		suspended:        d("tandem_cluster_suspended", "1 while the cluster is suspended (commands refused)."),
		stopped:          d("tandem_server_stopped", "1 once the member stopped (its storage failed, or it was shut down); the archive's failure state."),
		loopTick:         d("tandem_server_loop_tick_age_seconds", "Seconds since the member's loop last ticked (what /livez checks)."),
		commands:         d("tandem_client_commands_received_total", "Client commands this member received (a follower redirects them to the leader)."),
		queries:          d("tandem_client_queries_received_total", "Client queries this member received."),
		sessions:         d("tandem_client_sessions_open", "Client sessions open in the replicated state, as of the member's last tick."),
		clients:          d("tandem_client_connections_open", "Client connections open to this member."),
		errorsLogDropped: d("tandem_server_errors_log_dropped_total", "Warnings and errors not written to errors.log because its writer was behind."),
		proposalsFailed: d("tandem_server_proposals_failed_total", "The total number of failed proposals: entries this member proposed as leader that were "+
			"not committed, refused at once (raft dropped them: no leader, a leadership transfer under way, the uncommitted limit; "+
			"or the member had stopped) or lost in a leader change (counted once this member applies an entry of a later term). "+
			"Requests refused before any proposal (too large, a full queue) are not counted."),
		diskFailed: d("tandem_disk_failed", "1 once the member stopped because its storage failed (a write, sync or snapshot write error) "+
			"or its log lost acknowledged entries; 0 otherwise, a clean stop included."),
		snapsSent:       d("tandem_server_snapshots_sent_total", "Snapshots this member sent to followers that acknowledged them (synced and verified)."),
		snapsSentFailed: d("tandem_server_snapshots_sent_failures_total", "Snapshot transfers from this member to followers that failed (raft retries)."),
		sessionsOpened:  d("tandem_client_sessions_opened_total", "Client sessions opened, as this member applied the log since it started (a restart's replay counts again)."),
		sessionsClosed:  d("tandem_client_sessions_closed_total", "Client sessions closed for any reason, as this member applied the log since it started."),
		sessionsExpired: d("tandem_client_sessions_expired_total", "Client sessions closed because they expired (the leader's session timeout), as this member applied the log since it started."),
		peerSent: d("tandem_network_peer_sent_bytes_total", "The total number of bytes sent to the peer member (raft messages, snapshots, handshakes), "+
			"by member id; only members of the current membership are listed.", "member"),
		peerReceived: d("tandem_network_peer_received_bytes_total", "The total number of bytes received from the peer member on its connections "+
			"to this one, by member id.", "member"),
		peerSentFail: d("tandem_network_peer_sent_failures_total", "Failed sends to the peer member: raft messages dropped for a full queue, "+
			"connections that could not be made or broke while writing, snapshot transfers that failed; by member id.", "member"),
		peerReceivedFail: d("tandem_network_peer_received_failures_total", "Connections from the peer member closed, after its handshake, "+
			"for what it sent (a bad frame, an invalid message, a failed snapshot); by member id.", "member"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.Status()
	m := c.n.metrics
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	cnt := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	g(c.hasLeader, b2f(st.Leader >= 0))
	g(c.isLeader, b2f(st.Role == service.Leader))
	cnt(c.leaderChanges, float64(m.leaderChanges.Load()))
	g(c.term, float64(st.Term))
	cnt(c.committed, float64(st.Commit))
	cnt(c.applied, float64(st.Applied))
	pending := 0.0
	if st.Commit > st.Applied {
		pending = float64(st.Commit - st.Applied)
	}
	g(c.pending, pending)
	g(c.snapshotIndex, float64(st.SnapshotIndex))
	cnt(c.snapsTaken, float64(m.snapshotsTaken.Load()))
	cnt(c.snapsInstalled, float64(m.snapshotsInstalled.Load()))
	cnt(c.eventsDropped, float64(st.EventsDropped))
	cnt(c.raftDropped, float64(st.RaftMessagesDropped))
	cnt(c.sendsDropped, float64(st.RaftSendsDropped))
	cnt(c.raftRefused, float64(st.RaftRefused))
	cnt(c.connsRefused, float64(st.ClientConnsRefused), "client")
	cnt(c.connsRefused, float64(st.MemberConnsRefused), "member")
	cnt(c.acceptFailures, float64(st.AcceptFailures))
	// One series per peer of the membership: bounded by the cluster's size.
	down := c.n.unreachableSet()
	// A member rebuilt in place is in the membership twice (its old voter and its new learner,
	// under two raft ids) until the replacement ends: one series per member id all the same, as
	// a metric given twice fails the whole scrape.
	ids := make([]int, 0, len(st.Members))
	for _, mb := range st.Members {
		if mb.ID != st.ID {
			ids = append(ids, mb.ID)
		}
	}
	sort.Ints(ids)
	ids = slices.Compact(ids)
	for _, id := range ids {
		g(c.peerReachable, b2f(!down[id]), strconv.Itoa(id))
	}
	g(c.members, float64(len(st.Members)))
	g(c.clusterVersion, float64(st.ClusterVersion))
	g(c.unverified, b2f(st.Unverified))
	g(c.suspended, b2f(st.Suspended))
	g(c.stopped, b2f(m.ended.Load()))
	g(c.diskFailed, b2f(m.stopErr.Load()))
	if hb := m.heartbeat.Load(); hb != 0 {
		g(c.loopTick, time.Since(time.Unix(0, hb)).Seconds())
	}
	cnt(c.errorsLogDropped, float64(st.ErrorsLogDropped))
	cnt(c.commands, float64(m.commands.Load()))
	cnt(c.queries, float64(m.queries.Load()))
	g(c.sessions, float64(m.sessions.Load()))
	c.n.mu.Lock()
	cs, tr, rep := c.n.cs, c.n.tr, c.n.rep
	c.n.mu.Unlock()
	if cs != nil {
		g(c.clients, float64(cs.Open()))
	}
	var failed, opened, closed, expired int64
	if rep != nil {
		failed = rep.ProposalsFailed()
		opened, closed, expired = rep.Container().SessionCounts()
	}
	cnt(c.proposalsFailed, float64(failed))
	cnt(c.sessionsOpened, float64(opened))
	cnt(c.sessionsClosed, float64(closed))
	cnt(c.sessionsExpired, float64(expired))
	var sent, sentFailed int64
	if tr != nil {
		sent, sentFailed = tr.SnapshotsSent()
		// By member id, for the members of the current membership only: bounded by the
		// cluster's size (a removed member's series goes with its removal).
		byRaft := make(map[uint64]int, len(st.Members))
		for _, mb := range st.Members {
			if mb.ID != st.ID {
				byRaft[mb.RaftID] = mb.ID
			}
		}
		// A member rebuilt in place has two raft ids until the replacement ends: its series sums
		// both (and drops when the old one leaves, which Prometheus reads as a counter reset).
		type sums struct{ sent, received, sentFailed, receivedFailed uint64 }
		byMember := make(map[int]*sums, len(byRaft))
		for _, ps := range tr.PeerStats() {
			id, ok := byRaft[ps.ID]
			if !ok {
				continue
			}
			sm := byMember[id]
			if sm == nil {
				sm = new(sums)
				byMember[id] = sm
			}
			sm.sent += uint64(ps.SentBytes)
			sm.received += uint64(ps.ReceivedBytes)
			sm.sentFailed += uint64(ps.SentFailures)
			sm.receivedFailed += uint64(ps.ReceivedFailures)
		}
		for id, sm := range byMember {
			l := strconv.Itoa(id)
			cnt(c.peerSent, float64(sm.sent), l)
			cnt(c.peerReceived, float64(sm.received), l)
			cnt(c.peerSentFail, float64(sm.sentFailed), l)
			cnt(c.peerReceivedFail, float64(sm.receivedFailed), l)
		}
	}
	cnt(c.snapsSent, float64(sent))
	cnt(c.snapsSentFailed, float64(sentFailed))
}

// peerReachableHelp defines tandem_network_peer_reachable: transport.Reachable, as of the last
// tick (Node.checkReachable).
const peerReachableHelp = "Whether this member can reach the peer, by member id: 1 if it heard from the peer " +
	"within an election timeout, or the latest dial of its connection to the peer succeeded (dialled at start, " +
	"and again at once whenever the connection closes, so a peer that went away is found by that dial); 0 if " +
	"that dial failed and nothing was heard since. 1 while the first dial is under way."

// unreachableSet copies which members the transport found unreachable at the last tick
// (checkReachable).
func (n *Node) unreachableSet() map[int]bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	down := make(map[int]bool, len(n.unreachable))
	for id, d := range n.unreachable {
		down[id] = d
	}
	return down
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// newRegistry is the node's own registry (never the global default one, so that two members in
// one process, as in tests, do not collide): the node's collector, its two histograms, build info
// and the Go runtime's and the process's collectors.
func (n *Node) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	commit := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	// What `tandem version` prints first: the release, the commit, Go, and the newest protocols
	// and cluster version this build speaks and applies (what an operator checks before an
	// upgrade's next step).
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tandem_build_info",
		Help: "A metric with a constant '1' value labeled by the build's version, commit and Go version, " +
			"and the newest member and client protocols and cluster version it speaks and applies.",
		ConstLabels: prometheus.Labels{"version": version.Version, "commit": commit, "go": runtime.Version(),
			"member_protocol":     strconv.Itoa(int(wire.MemberProtocolMax)),
			"client_protocol":     strconv.Itoa(int(wire.ClientProtocolMax)),
			"cluster_version_max": strconv.Itoa(int(container.ClusterVersionMax))},
	})
	info.Set(1)
	reg.MustRegister(newCollector(n), n.metrics.fsync, n.metrics.snapSave, n.metrics.command, n.metrics.query, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
