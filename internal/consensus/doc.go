// Package consensus drives one etcd raft RawNode (go.etcd.io/raft/v3) for a Tandem member. It is
// step-driven and does no I/O of its own: storage is the Storage seam (the archive, or
// the same archive over the vfs model in simulations), and everything else goes out through a
// Handler.
//
// The raft configuration is fixed by the architecture: PreVote and CheckQuorum on (a partitioned
// member cannot disturb the cluster, and an isolated leader steps down), proposal forwarding off
// (a follower redirects the client instead, so every command passes the leader's session check and
// carries the leader's timestamp), ReadOnlySafe reads (ReadIndex confirmed by a heartbeat round).
//
// The caller's loop, from one goroutine:
//
//  1. Feed inputs: Tick every tick interval, Step for every message from a peer, Propose for a
//     batch of client items, ReadIndex for a round of queries, ReportUnreachable and
//     ReportSnapshot as the transport learns them.
//  2. Call Process after inputs. Process runs raft's Ready contract to the letter: it persists
//     the snapshot, the entries and then the hard state, syncing when raft says MustSync — the
//     sync is the driver's to run (TakeSync, start it, Process to apply what was durable before
//     while it runs, SyncDone, then Process again), and inputs keep flowing meanwhile — and only
//     then hands messages to Handler.Send; it then installs a received snapshot, applies
//     committed entries in order (applying conf changes to raft first), reports read states and
//     calls Advance.
//  3. At index-aligned points chosen by the state machine, call CreateSnapshot with the state
//     machine's bytes, run the write job it returns and report with SnapshotDone; the storage
//     may then compact the log behind it.
//
// Untrusted input: Step refuses, with an error wrapping ErrInvalidMessage, every message raft would
// panic on (or that would corrupt its log so that it panics later) and every type no honest member
// sends over the network (proposals among them: forwarding is off); raft never sees it. The checks
// and the argument that no honest message is refused are in validate.go. A member whose log lost
// entries it had acknowledged (a wiped or restored data directory) gets honest heartbeats it must
// refuse; when they persist, the core stops with a *LostDataError (ErrLostData).
//
// Failing fast: Propose and ReadIndex on a member that is not the leader return a
// *NotLeaderError carrying the leader hint (raft drops such proposals silently otherwise); a
// proposal over the uncommitted limit returns ErrDropped; a read that raft never answers fails
// with ErrReadTimeout after ReadTimeoutTicks. Any storage error is sticky: the core stops, so
// nothing more is acknowledged — Process and SnapshotDone return the error that stopped it
// (wrapping ErrStopped and the cause), Propose, ReadIndex and CreateSnapshot return ErrStopped.
// The lost-data stop is sticky the same way.
//
// Raft ids start at 1 (0 means none): member i of the configuration is raft id i+1.
package consensus
