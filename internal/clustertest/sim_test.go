package clustertest

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/service"
)

func envInt(name string, def uint64) uint64 {
	if v, err := strconv.ParseUint(os.Getenv(name), 10, 64); err == nil {
		return v
	}
	return def
}

// TestSimulation runs the CI seed budget of the swarm simulation. A failing seed names the
// command that replays it. For a soak:
//
//	TANDEM_SIM_SEEDS=10000 go test ./internal/clustertest -run 'TestSimulation$' -timeout 0
//	TANDEM_SIM_FIRST_SEED=749 TANDEM_SIM_SEEDS=1 go test ./internal/clustertest -run 'TestSimulation$' -v   # one seed
func TestSimulation(t *testing.T) {
	first := envInt("TANDEM_SIM_FIRST_SEED", 1)
	n := envInt("TANDEM_SIM_SEEDS", 200)
	simTime := time.Duration(envInt("TANDEM_SIM_SECONDS", 30)) * time.Second
	var total SimReport
	minOps, minCrashSeeds, ran := int(^uint(0)>>1), 0, 0
	heldBack := 0 // seeds that ended below this build's cluster version (a member stayed old)
	for seed := first; seed < first+n; seed++ {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			sch := GenerateSchedule(seed, simTime)
			rep := RunSchedule(t, sch)
			if len(rep.Violations) > 0 {
				t.Fatalf("%s\n%s\nreplay: TANDEM_SIM_FIRST_SEED=%d TANDEM_SIM_SEEDS=1 go test ./internal/clustertest -run 'TestSimulation$' -v\n"+
					"keep it as a regression: save this schedule as internal/clustertest/testdata/schedules/NAME.txt, with a comment on what it found:\n%s",
					rep, joinViolations(rep.Violations), seed, sch)
			}
			if testing.Verbose() {
				t.Log(rep)
			}
			ran++
			minOps = min(minOps, rep.Ops)
			if rep.Crashes > 0 {
				minCrashSeeds++
			}
			total.Ops += rep.Ops
			total.Acked += rep.Acked
			total.Crashes += rep.Crashes
			total.Partitions += rep.Partitions
			total.LeaderTerms += rep.LeaderTerms
			total.Expiries += rep.Expiries
			total.CrashesInSync += rep.CrashesInSync
			total.ArmedInSync += rep.ArmedInSync
			total.MajorityCrashes += rep.MajorityCrashes
			total.AllCrashes += rep.AllCrashes
			total.Stalls += rep.Stalls
			total.Syncs += rep.Syncs
			total.Upgrades += rep.Upgrades
			total.LostData += rep.LostData
			total.Wipes += rep.Wipes
			total.WipedStopped += rep.WipedStopped
			total.Joins += rep.Joins
			total.Removals += rep.Removals
			total.Rebuilds += rep.Rebuilds
			total.Replacements += rep.Replacements
			total.MembershipRefused += rep.MembershipRefused
			total.MembershipGaveUp += rep.MembershipGaveUp
			total.Suspensions += rep.Suspensions
			total.Snapshots += rep.Snapshots
			total.Preferences += rep.Preferences
			total.Transfers += rep.Transfers
			total.TransfersNotNow += rep.TransfersNotNow
			total.Denials += rep.Denials
			total.Thefts += rep.Thefts
			if rep.ClusterVersion < container.ClusterVersionMax {
				heldBack++
			}
			if rep.Ops < 50 || rep.Acked == 0 {
				t.Fatalf("seed %d tested almost nothing: %s", seed, rep)
			}
		})
	}
	t.Logf("%d seeds: %d ops (%d acked increments), %d crashes in %d seeds (%d during a sync, %d armed ones in a sync, %d of a majority, %d of all), %d syncs (%d stalled), %d partitions, %d expired sessions, %d leader terms, %d members upgraded (%d seeds held at an older cluster version), %d members that lost synced data refused to start, %d members wiped (%d stopped, the others rejoined), %d joins, %d removals, %d rebuilds in place, %d replacements (%d changes refused, %d not done in time); fewest ops in a seed: %d",
		n, total.Ops, total.Acked, total.Crashes, minCrashSeeds, total.CrashesInSync, total.ArmedInSync, total.MajorityCrashes, total.AllCrashes,
		total.Syncs, total.Stalls, total.Partitions, total.Expiries, total.LeaderTerms, total.Upgrades, heldBack, total.LostData, total.Wipes, total.WipedStopped,
		total.Joins, total.Removals, total.Rebuilds, total.Replacements, total.MembershipRefused, total.MembershipGaveUp, minOps)
	t.Logf("controls: %d suspensions, %d snapshots on request, %d preferences set, %d leadership transfers done (%d answered not now or outcome unknown)",
		total.Suspensions, total.Snapshots, total.Preferences, total.Transfers, total.TransfersNotNow)
	t.Logf("principals: %d answers denied, %d requests of the thief about other principals' sessions", total.Denials, total.Thefts)
	if ran >= 50 && (total.Denials == 0 || total.Thefts == 0) {
		t.Fatalf("the seed budget denied nothing, or the thief tried nothing: the simulation proves nothing of authorization")
	}
	if ran >= 50 && (total.Suspensions == 0 || total.Snapshots == 0 || total.Preferences == 0 || total.Transfers == 0) {
		t.Fatalf("the seed budget made no suspension, no snapshot, no preference or no transfer: the simulation proves nothing of them")
	}
	if ran >= 50 && (total.Joins == 0 || total.Removals == 0 || total.Rebuilds == 0 || total.Replacements == 0) {
		t.Fatalf("the seed budget made no join, no removal, no rebuild or no replacement: the simulation proves nothing of membership changes")
	}
	if ran >= 20 && (minCrashSeeds == 0 || total.Partitions == 0 || total.Expiries == 0) {
		t.Fatalf("the seed budget injected no crash, no partition or no session expiry: the simulation proves little")
	}
	if ran >= 50 && (total.LostData == 0 || total.Wipes == 0) {
		t.Fatalf("the seed budget lost no member's synced data, or wiped none: the simulation proves nothing of it")
	}
	if ran >= 50 && (total.Upgrades == 0 || heldBack == 0) {
		t.Fatalf("the seed budget upgraded no member, or held no cluster at an older version: the simulation proves little of versions")
	}
	if ran >= 200 && (total.ArmedInSync == 0 || total.MajorityCrashes == 0 || total.AllCrashes == 0 || total.Stalls == 0) {
		t.Fatalf("the seed budget injected no crash inside a sync, no crash of a majority, none of all members or no disk stall: the simulation proves little")
	}
}

// TestRegressionSchedules replays every schedule kept in testdata/schedules: each once found a
// bug (the file says which), and must pass from then on.
func TestRegressionSchedules(t *testing.T) {
	files, err := filepath.Glob("testdata/schedules/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schedules found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			text, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sch, err := ParseSchedule(string(text))
			if err != nil {
				t.Fatal(err)
			}
			rep := RunSchedule(t, sch)
			if len(rep.Violations) > 0 {
				t.Fatalf("%s\n%s", rep, joinViolations(rep.Violations))
			}
			if rep.Crashes+rep.Partitions+rep.Pauses == 0 || rep.Acked == 0 {
				t.Fatalf("the schedule exercised nothing: %s", rep)
			}
		})
	}
}

func TestScheduleRoundTrip(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		sch := GenerateSchedule(seed, 30*time.Second)
		back, err := ParseSchedule(sch.String())
		if err != nil {
			t.Fatal(err)
		}
		if back.String() != sch.String() {
			t.Fatalf("seed %d: the script does not read back the same:\n%s\n---\n%s", seed, sch, back)
		}
	}
}

// The history check that uses the final value still tells a linearizable history from one that
// is not, with increments of unknown outcome around.
func TestCheckCounterHistory(t *testing.T) {
	inc := func(v, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: true, Call: call, Output: v, Return: ret}
	}
	get := func(v, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: false, Call: call, Output: v, Return: ret}
	}
	unknown := func(call int64) porcupine.Operation {
		return porcupine.Operation{Input: true, Call: call, Output: nil, Return: math.MaxInt64}
	}
	cases := []struct {
		name    string
		hist    []porcupine.Operation
		unknown []porcupine.Operation
		final   int64
		want    porcupine.CheckResult
	}{
		{"one of three unknowns applied", []porcupine.Operation{inc(1, 0, 10), get(1, 11, 12)},
			[]porcupine.Operation{unknown(13), unknown(14), unknown(15)}, 2, porcupine.Ok},
		{"none applied", []porcupine.Operation{inc(1, 0, 10), get(1, 11, 12)},
			[]porcupine.Operation{unknown(13), unknown(14)}, 1, porcupine.Ok},
		{"a stale read", []porcupine.Operation{inc(1, 0, 1), inc(2, 2, 3), get(1, 4, 5)},
			[]porcupine.Operation{unknown(6)}, 3, porcupine.Illegal},
		{"an unknown increment seen before it was called", []porcupine.Operation{inc(1, 0, 1), get(2, 2, 3)},
			[]porcupine.Operation{unknown(4)}, 2, porcupine.Illegal},
		{"a read sees one unknown increment", []porcupine.Operation{inc(1, 0, 1), get(2, 5, 6)},
			[]porcupine.Operation{unknown(2), unknown(3)}, 2, porcupine.Ok},
		{"a read sees two unknown increments, the final value one", []porcupine.Operation{inc(1, 0, 1), get(3, 5, 6)},
			[]porcupine.Operation{unknown(2), unknown(3)}, 2, porcupine.Illegal},
		{"the final value beyond what the history allows", []porcupine.Operation{inc(1, 0, 1), get(1, 5, 6)},
			[]porcupine.Operation{unknown(7)}, 3, porcupine.Illegal},
	}
	for _, tc := range cases {
		acked := int64(0)
		for _, op := range tc.hist {
			if op.Input.(bool) {
				acked++
			}
		}
		if got, _ := checkCounterHistory(tc.hist, tc.unknown, true, tc.final, acked, 20); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if sets, ok := combinations(4, 2, 100); !ok || len(sets) != 6 {
		t.Errorf("combinations(4, 2): %v, %v", sets, ok)
	}
	if _, ok := combinations(30, 5, 100); ok {
		t.Errorf("combinations(30, 5) fit in 100")
	}
}

// A schedule without the lines that came later (disks, crash modes) replays as it was written:
// the syncs of then, the crash modes of then. Bad lines are refused with their line number.
func TestParseScheduleOldAndBad(t *testing.T) {
	old := "seed 3\nnodes 3\nsnapshot-every 50\nmargin 10\ndrop 0\ndup 0\nreorder false\nskews 0s 0s 0s\nrun 1s\nat 0s crash 1\n"
	sch, err := ParseSchedule(old)
	if err != nil {
		t.Fatal(err)
	}
	if len(sch.Disks) != 0 || len(sch.CrashModes) != 0 || sch.String() != old {
		t.Fatalf("an old script read back as:\n%s", sch)
	}
	for _, bad := range []string{
		old + "disk 1 1ms 2ms 0 0s\n",                      // not in member order
		old + "disk 0 1ms 2ms 0 0s\n",                      // one disk for three members
		old + "disk 0 2ms 1ms 0 0s\ndisk 1 1ms 2ms 0 0s\n", // Hi below Lo
		old + "disk 0 1ms 2ms 1.5 0s\n",                    // a probability above 1
		old + "crash-modes drop melt\n",                    // an unknown mode
		old + "disk 0 1ms 2ms 0\n",                         // a field short
	} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
}

// A crash-in-sync strikes while the member's sync is under way and loses what the sync was to
// make durable; with no sync in its window it strikes at the window's end. A crash of every
// member counts as a majority crash and an all-member crash.
func TestCrashInSync(t *testing.T) {
	disk := Disk{Lo: 20 * time.Millisecond, Hi: 40 * time.Millisecond} // syncs far longer than a round trip
	c := New(t, Options{Nodes: 3, Seed: 5, NewService: func(int) service.Service { return NewProbe() },
		Disks: []Disk{disk, disk, disk}})
	l := c.WaitLeader(10 * electionTimeout)
	cl := c.NewClient()
	c.Do(cl, "inc", 10*time.Second)
	f := (l + 1) % 3
	c.CrashInSync(time.Minute, f)
	cl.Submit([]byte("inc")) // the follower's next sync: the append of this command
	if !c.RunUntil(func() bool { return !c.Up(f) }, 5*time.Second) {
		t.Fatalf("the armed crash did not strike: %s", c.Describe())
	}
	if c.Stats.ArmedInSync != 1 || c.Stats.CrashesInSync != 1 || c.Stats.Crashes != 1 {
		t.Fatalf("stats after a crash inside a sync: %+v", c.Stats)
	}
	c.Start(f)
	if !c.WaitConverged(10 * time.Second) { // caught up, so an idle member has nothing to sync
		t.Fatalf("the restarted follower did not catch up: %s", c.Describe())
	}
	c.Run(time.Second)
	c.CrashInSync(300*time.Millisecond, f) // nothing to sync: the window's end
	c.Run(time.Second)
	if c.Up(f) || c.Stats.ArmedInSync != 1 || c.Stats.Crashes != 2 {
		t.Fatalf("after an armed crash without a sync: up %v, %+v", c.Up(f), c.Stats)
	}
	c.Start(f)
	c.CrashGroup(0, 1, 2)
	if c.Stats.MajorityCrashes != 1 || c.Stats.AllCrashes != 1 {
		t.Fatalf("after a crash of all: %+v", c.Stats)
	}
	for id := range 3 {
		c.Start(id)
	}
	if got := c.Do(cl, "inc", 20*time.Second); got.Err != nil || string(got.Reply) != "3" {
		t.Fatalf("after the crashes: %+v %s", got, got.Reply)
	}
}
