// Package bugs plants known bugs in real code paths, to prove that the simulator catches them.
// Built normally, Active is a constant false and the planted paths compile away. Built with
// -tags tandem_bugs, a test switches one bug on with Set
// (internal/clustertest.TestSimulatorCatchesPlantedBugs switches each in turn).
//
// A planted bug is one `if bugs.Active(bugs.X)` at the decision point it corrupts: the bug is the
// branch, never a copy of the code around it.
package bugs

// Bug names one planted bug.
type Bug string

// The planted bugs, and where they live.
const (
	// SkipFsync: the archive's Sync does not sync files (archive).
	SkipFsync Bug = "skip-fsync"
	// AckBeforeCommit: the leader applies (and answers) its own entries before a quorum has them
	// (consensus).
	AckBeforeCommit Bug = "ack-before-commit"
	// ReadWithoutReadIndex: the leader answers queries from its state, without a ReadIndex round
	// (replica).
	ReadWithoutReadIndex Bug = "read-without-readindex"
	// NoDedup: the container applies a retried command again instead of answering it from the
	// record (container).
	NoDedup Bug = "no-dedup"
	// FollowerForwards: followers propose client commands, forwarded by raft, instead of
	// redirecting (consensus, replica).
	FollowerForwards Bug = "follower-forwards"
	// SendBeforePersist: every role sends a Ready's messages before its entries and hard state
	// are durable; a leader's appends and heartbeats go first anyway (consensus.splitLeaderEarly).
	SendBeforePersist Bug = "send-before-persist"
	// VoteNotSynced: a Ready whose only durable change is a term or a vote is written but not
	// synced (consensus).
	VoteNotSynced Bug = "vote-not-synced"
	// DropEmptyAppends: a leader drops every append without entries, probes and recovery appends
	// included; consensus.dropCommitAnnouncements drops only commit announcements.
	DropEmptyAppends Bug = "drop-empty-appends"
	// ResendFreshNumber: the client resends the commands unanswered on an earlier connection
	// under fresh numbers (clientcore).
	ResendFreshNumber Bug = "resend-fresh-number"
	// RaiseUnreported: the leader raises the cluster version to the highest it applies itself,
	// without waiting for every member to report that it applies it (replica).
	RaiseUnreported Bug = "raise-unreported"
	// LostAsTorn: recovery takes lost synced data (a segment cut short or missing, damage that a
	// synced record vouches for) for a torn tail, cuts it and starts (archive.lost).
	LostAsTorn Bug = "lost-as-torn"
	// EmptyLogVotes: a member that starts on an empty log (a wiped data directory) votes and
	// campaigns at once, as if it had never been a member (consensus.unverifiedAtStart).
	EmptyLogVotes Bug = "empty-log-votes"
	// ReuseRaftIDs: a member added to the cluster may get the raft id of a removed one: the leader
	// allocates above the current members only, and the members' check at apply lets a removed
	// raft id back in (replica.nextRaftID, AdmitConfChange).
	ReuseRaftIDs Bug = "reuse-raft-ids"
	// SuspendLeaderOnly: a suspended cluster refuses commands at apply on the leader only;
	// followers apply them (container.command).
	SuspendLeaderOnly Bug = "suspend-leader-only"
	// TransferEarlyAnswer: a leadership transfer is answered done as soon as the leader steps
	// down, before the target leads (replica.transferProgress).
	TransferEarlyAnswer Bug = "transfer-early-answer"
	// AttachAnyPrincipal: the leader lets a connection act on a session whatever principal
	// opened it: open, attach, commands, keep-alives and closes of another principal's session
	// go through (replica.foreign).
	AttachAnyPrincipal Bug = "attach-any-principal"
	// SnapshotDropsPrincipal: a member that starts from a snapshot (or installs one) forgets
	// who opened each session: they come back anonymous (container.Start).
	SnapshotDropsPrincipal Bug = "snapshot-drops-principal"
)

// All is every planted bug.
var All = []Bug{SkipFsync, AckBeforeCommit, ReadWithoutReadIndex, NoDedup, FollowerForwards,
	SendBeforePersist, VoteNotSynced, DropEmptyAppends, ResendFreshNumber, RaiseUnreported, LostAsTorn,
	EmptyLogVotes, ReuseRaftIDs, SuspendLeaderOnly, TransferEarlyAnswer, AttachAnyPrincipal, SnapshotDropsPrincipal}
