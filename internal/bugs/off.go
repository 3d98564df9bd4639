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
//	resend-fresh-number     the client resends the commands unanswered on an earlier connection under fresh numbers
package bugs

// Active reports whether the named bug is switched on: never, in a normal build.
func Active(string) bool { return false }
