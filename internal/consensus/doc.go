// Package consensus drives one etcd raft RawNode (go.etcd.io/raft/v3) for a Tandem member. It is
// step-driven and does no I/O of its own: storage is the Storage seam (the archive, or the same
// archive over the vfs model in simulations), and everything else goes out through a Handler.
//
// The raft configuration is fixed by the architecture: PreVote and CheckQuorum on (a partitioned
// member cannot disturb the cluster, and an isolated leader steps down), proposal forwarding off
// (a follower redirects the client instead, so every command passes the leader's session check and
// carries the leader's timestamp), ReadOnlySafe reads (ReadIndex confirmed by a heartbeat round).
//
// # The caller's loop
//
// From one goroutine:
//
//  1. Feed inputs: Tick every tick interval, Step for every message from a peer, Propose for a
//     batch of client items, ReadIndex for a round of queries, ReportUnreachable and
//     ReportSnapshot as the transport learns them.
//  2. Call Process after inputs. Process runs raft's Ready contract: it persists the snapshot,
//     the entries and then the hard state; hands messages to Handler.Send only once what they
//     promise is durable; installs a received snapshot and applies committed entries in order
//     (conf changes to raft first); reports read states; calls Advance.
//  3. When a Ready needs a sync (raft.MustSync), Process leaves it to the driver: TakeSync returns
//     it; start it where it suits (a goroutine of its own; later, in simulated time) and call
//     Process at once, which applies what was durable before; go on with 1 and 2 meanwhile;
//     report the sync's result with SyncDone, and call Process, which finishes the Ready.
//  4. At index-aligned points chosen by the state machine, call CreateSnapshot with the state
//     machine's bytes, run the write job it returns beside everything else and report with
//     SnapshotDone; the storage may then compact the log behind it, at the first sync once raft
//     has taken every entry through the snapshot's index as applied (Core.reclaim).
//
// # The Ready pipeline
//
// A cycle takes one Ready from raft, writes it, waits for its sync, and finishes it (ready.go).
// What a Process call does depends on where the cycle stands:
//
//	  idle --(Process: MustSync)--> written --(TakeSync)--> syncing --(SyncDone)--> synced
//	   ^ |                                                                            |
//	   | +--(Process: no sync needed, the Ready is finished at once)--> idle          |
//	   +-------------------------(Process finishes the Ready)-------------------------+
//
//	state     what Process does
//	-------   -----------------------------------------------------------------------------
//	idle      takes a Ready if raft has one: a leader's appends and heartbeats go out, then
//	          the snapshot, entries and hard state are written; a Ready that needs no sync is
//	          finished at once and the next one taken
//	written   nothing: no entry is applied before the driver has started the disk
//	syncing   applies the committed entries that were durable before the Ready (the apply rule)
//	synced    finishes the Ready: the other messages go out, the snapshot is installed, the
//	          committed entries not yet applied are applied, read states reported, Advance;
//	          then goes on as in idle
//
// In every state the driver may feed inputs: raft takes them between Ready and Advance (as its
// own node.go does), and what they produce waits for the next Ready — but on a leader, entries
// they commit are applied while syncing if they were durable before the Ready.
//
// The apply rule, wherever entries are applied: an entry is applied once it is committed and durable here, in
// index order, exactly once (apply.go). Applying while the sync runs means the disk never waits
// for the state machine, and a leader answers a command once a quorum has it rather than one
// sync later.
//
// # Deviations from stock raft usage
//
// Each is argued, with why it is safe, in deviations.go:
//
//  1. A leader's appends and heartbeats go out before its own write (Raft thesis §10.2.1).
//  2. A leader does not announce a new commit index to followers that hold every entry (unless
//     it commits a membership change).
//  3. Committed entries are applied while a Ready's sync runs, if they were durable before it.
//  4. A Ready hands out more committed entries than raft's default
//     (Config.MaxCommittedBytesPerReady), so that raft's uncommitted count keeps up with 3.
//  5. Messages from the network are checked before raft sees them.
//  6. A member does not send an append's answer from an earlier term than its own (raft would:
//     it may acknowledge entries a newer leader truncated before they were ever written).
//  7. A member on an empty log neither votes nor campaigns until it is verified (raft assumes a
//     member never forgets; a wiped one did), and a leader drops a rejection at a follower's
//     match index (raft would probe again at once, for ever). Argued in verify.go.
//
// # Untrusted input
//
// Step refuses, with an error wrapping ErrInvalidMessage, every message raft would panic on (or
// that would corrupt its log so that it panics later) and every type no honest member sends over
// the network (proposals among them: forwarding is off); raft never sees it. The checks, and the
// argument that no honest message is refused, are in validate.go. A member whose log lost
// entries it had acknowledged (a wiped or restored data directory) gets honest heartbeats it must
// refuse; when they persist, the core stops with a *LostDataError (ErrLostData; the rule is in
// lostdata.go). Such a member starts unverified (verify.go) and rejoins once a leader that can
// repair it leads.
//
// # Failing fast
//
// Propose and ReadIndex on a member that is not the leader return a *NotLeaderError carrying the
// leader hint (raft drops such proposals silently otherwise); a proposal over the uncommitted
// limit returns ErrDropped; a read that raft never answers fails with ErrReadTimeout after
// ReadTimeoutTicks. Any storage error is sticky: the core stops, so nothing more is acknowledged
// — Process and SnapshotDone return the error that stopped it (wrapping ErrStopped and the
// cause), Propose, ReadIndex and CreateSnapshot return ErrStopped. The lost-data stop is sticky
// the same way.
//
// Raft ids start at 1 (0 means none): member i of the configuration is raft id i+1.
package consensus
