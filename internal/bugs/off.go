//go:build !tandem_bugs

// Package bugs plants known bugs in real code paths, to prove that the simulator catches them.
// Built normally, Active is a constant false and the planted paths compile away. Built with
// -tags tandem_bugs, a test switches one bug on with Set.
//
// The planted bugs, and where they live:
//
//	skip-fsync              archive.Sync does not sync files
//	ack-before-commit       the leader applies (and answers) its own entries before a quorum has them
//	read-without-readindex  the leader answers queries from local state, without a ReadIndex round
//	no-dedup                the container applies a retried command again instead of answering it from the record
//	follower-forwards       followers propose client commands (forwarded by raft) instead of redirecting
//	send-before-persist     every role sends a Ready's messages before its entries and hard state are durable
//	                        (a leader's appends and heartbeats may go first anyway: consensus.splitLeaderEarly)
//	vote-not-synced         a Ready whose only durable change is a term or vote is written but not synced
//	drop-empty-appends      a leader drops every append without entries, probes and recovery appends included
//	                        (consensus.dropCommitAnnouncements drops only commit announcements)
//	resend-fresh-number     the client resends the commands unanswered on an earlier connection under fresh numbers
package bugs

// Active reports whether the named bug is switched on: never, in a normal build.
func Active(string) bool { return false }
