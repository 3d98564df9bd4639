// Package node runs one member of a Tandem cluster: the user's service (package service) behind a
// replicated log, on real TCP ports, a real clock and a data directory. It is the one place that
// wires the member together — client port, consensus, archive, the container that applies the log
// to the service, and the answers back to clients — and it never prints: it logs through
// Config.Logger and reports through Events and Status.
//
// # Members
//
// A cluster is usually three or five members (one works, without fault tolerance), each one
// process (or one Node in a process) running the same service. A member has an id people see (0, 1, 2, …; never reused) and two advertised
// addresses (host:port): ClientAddr, where clients reach it, and MemberAddr, where the other
// members do. Every member is configured with the same founding Members list; a new data
// directory is bootstrapped from it, and afterwards the membership lives in the replicated log
// (changing it is not built yet). Clients may dial any member: a follower answers every request
// with a redirect to the leader, which orders commands into the log (package client follows
// redirects by itself). Any minority of members can
// fail without losing an acknowledged command.
//
// # Using it, in order
//
//  1. Configure: start from DefaultConfig and fill in ID, Members and DataDir (LocalCluster and
//     ParseMembers build Members). Validate reports every bad field at once, naming the field and
//     its value, each as a *FieldError (a program with settings of its own names them with
//     Describe); New calls it.
//  2. New(cfg, svc, opts...) prepares the member; nothing is opened or bound yet. The service
//     must keep the contracts of package service (determinism, the reply and snapshot
//     contracts).
//  3. Read Events (optional), from a goroutine of your own: `for ev := range n.Events()`.
//  4. Run(ctx) opens the data directory, binds the ports and runs the member until ctx is
//     cancelled or the member stops itself. Call it once: a second call returns ErrRunTwice.
//  5. Status may be called at any time, from any goroutine.
//
// # Ports
//
// Run listens on the client port (Config.ClientBind, or the member's ClientAddr when empty) and
// the member port (MemberBind, or MemberAddr). Bind and advertised addresses are separate so a
// member behind NAT or in a container can bind 0.0.0.0 and advertise what others can reach. With
// WithListeners, Run serves on listeners bound beforehand instead: a test or an embedder binds
// "127.0.0.1:0", puts the port it got into Members, and hands the listener over, with no moment
// in which another process could take the port. Each port serves at most MaxClientConns or
// MaxMemberConns connections; one over is closed at once and counted in Status. A member
// connection is believed only after a handshake naming the cluster id and both members' ids.
// With PeerCertFile, PeerKeyFile and PeerCAFile, every member connection is mutual TLS 1.3
// first, between member certificates of one CA (and, with PeerAllowedNames, of those names);
// the files are polled, and a renewal is used from the next connection on (peertls.go).
//
// With Config.HTTPAddr set (or a listener given with WithHTTPListener), Run also serves an HTTP
// endpoint for monitoring from the moment it holds the data directory until it returns:
// /metrics (Prometheus, from the node's own registry), /livez and /readyz (Live and Ready) and
// /status (Status as JSON, in the names and values of tandem cluster status --json). It reads
// what Status publishes and the node's counters, never the loop's state, so it cannot slow the
// member (http.go).
//
// # Data directory
//
// DataDir holds the member's archive: IDENTITY (the cluster id and member id: a directory of
// another cluster or member is refused), log/ (the log, in segments of SegmentBytes, deleted
// from the oldest as snapshots make them unneeded), snap/ (the newest SnapshotsRetained
// snapshots), incoming/ (snapshots in transfer from the leader) and LOCK; beside it, errors.log
// (and errors.log.1) keep the member's recent warnings and errors, bounded on disk (errlog.go:
// what the admin channel's "errors", tandem cluster errors, reads). It belongs to one
// member: Run locks it (flock(2) on LOCK, which holds the pid) before it binds the ports and
// releases it when it returns, so a second process or Node on the directory fails at once with
// ErrDataDirInUse naming the holder's pid. The kernel releases the lock of a process that died:
// the LOCK file it leaves behind does not stop a restart. A member restarted on its directory
// recovers: a torn tail of unsynced writes is cut, anything else damaged is refused with the file
// and offset.
//
// # Stopping, and what Run returns
//
// Cancelling ctx stops the member cleanly: a leader first hands leadership to its most
// caught-up follower and waits for it to take over (at most ShutdownTransferTimeout), so clients
// see a quick failover instead of an election timeout; then the ports close, the service's
// OnTerminate is called, and Run returns nil.
//
// Run returns an error, naming the member, when it cannot start (a port in use, a data directory
// it refuses) and when the member stops itself rather than acknowledge what it might not keep:
// a storage failure (a write, sync or snapshot write error, ErrStopped) or a log that lost
// entries it had acknowledged (a wiped or restored data directory, ErrLostData and ErrStopped).
// A member never acknowledges anything after such a failure; the others keep serving while they
// are a majority. Events is closed and the listeners are closed when Run returns, however it
// ends.
//
// # Events and Status
//
// Events reports role and leader changes, snapshots taken and installed, and peers becoming
// unreachable or reachable again. The channel is buffered: events nobody reads are dropped (and
// counted in Status.EventsDropped) rather than stalling the member. Status is the member's state
// as of its last loop iteration — role, term, leader, commit and applied indexes, the replicated
// membership — with counters of what the member refused or dropped.
package node
