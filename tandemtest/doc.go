// Package tandemtest runs a cluster of your service in your tests: N members in one process, in
// memory, over a simulated network, clock and disk, with crashes, restarts and partitions, and a
// client that sends commands (exactly once) and queries. It is Tandem's own deterministic
// simulator (the one that tests Tandem with the counter service), with the real members inside:
// consensus, the durable log and snapshots, the container that calls your service, and the
// client library's protocol; only the network, the clock and the disk are simulated.
//
//	func TestStore(t *testing.T) {
//		c := tandemtest.New(t, tandemtest.Options{Seed: 1, NewService: func() service.Service { return kv.New() }})
//		cl := c.NewClient()
//		if _, err := cl.Send([]byte("colour=blue")); err != nil {
//			t.Fatal(err)
//		}
//		c.Crash(c.Leader()) // a power loss: what the leader never synced is gone
//		v, err := cl.Query([]byte("colour"))
//		if err != nil || string(v) != "blue" {
//			t.Fatalf("colour = %q, %v after the leader crashed", v, err)
//		}
//		c.Check()
//	}
//
// # The determinism check
//
// Every member must compute the same thing from the same log (package service). A Cluster checks
// it all the time, and fails the test at the first difference, naming the members, the log index
// and what differs:
//
//   - Effects: what the service did while applying each log entry (the callbacks and their
//     arguments, each command's reply, every timer scheduled or cancelled, every session closed
//     and every push offered) must be the same on every member that applies the entry, also
//     when a member applies it again after a restart.
//   - Snapshots: members that applied the same index must write byte-identical snapshots
//     (OnTakeSnapshot), and so must one member asked twice with nothing applied between.
//   - Snapshot round trips: every even-numbered member replaces its service, every
//     Options.SnapshotEntries entries, by a fresh one (Options.NewService) started from its own
//     snapshot, as a restart would; the fresh one must write the same snapshot again, and must
//     go on doing what the others do. State kept outside the snapshot shows there.
//
// Between them they catch a service that reads the wall clock or random numbers, iterates a map
// into a reply or a snapshot, or keeps state its snapshot does not hold. Check, at the end of a
// test, waits until every running member has applied the whole log and checks them at that
// point. A report names what differs; here, a reply that carries the wall clock:
//
//	tandemtest: members 2 and 1 did different things applying log entry 6:
//	  member 2: OnSessionMessage(session 6386c24c, "key00=0"); replied "OK at 2026-12-03T09:07:37.627317381Z"
//	  member 1: OnSessionMessage(session 6386c24c, "key00=0"); replied "OK at 2026-12-03T09:07:37.627358218Z"
//	The service depends on something other than the log: the wall clock, randomness, a map's
//	iteration order, or state it keeps outside its snapshot (…).
//
// Because of the round trips, Service(member) may return a different value from one call to the
// next; only the replicated state is the same.
//
// # Simulated time
//
// Nothing runs in the background: the simulation advances only inside the calls that say so,
// and as fast as the machine computes it. Send and Query run it until their answer arrives, for
// at most Options.CallTimeout of simulated time (an error wrapping client.ErrTimeout then: the
// command stays in flight, and may still be applied, exactly once, as the simulation goes on).
// Run advances it by a duration (elections, session expiry, timers) and RunUntil until a
// condition holds. New runs it until a leader is elected. Cluster time, what a service sees,
// follows the leader's simulated clock, which starts at 2026-01-01 00:00 UTC.
//
// # Deterministic from the seed
//
// Options.Seed decides everything random: message delays, which member a client tries first,
// session ids, what a crash does to data that was not synced. So a seed that fails replays the
// same way, as long as the test makes the same calls. Raft draws its election timeouts from
// crypto/rand, which only testing/cryptotest can seed, for a *testing.T: New does that when t is
// one, so such a test must not call t.Parallel. With any other TB, everything else still follows
// the seed. A service that is itself not deterministic (the mistakes the check finds) makes the
// run differ, of course.
package tandemtest
