package clustertest

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
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
			if rep.Ops < 50 || rep.Acked == 0 {
				t.Fatalf("seed %d tested almost nothing: %s", seed, rep)
			}
		})
	}
	t.Logf("%d seeds: %d ops (%d acked increments), %d crashes in %d seeds, %d partitions, %d expired sessions, %d leader terms; fewest ops in a seed: %d",
		n, total.Ops, total.Acked, total.Crashes, minCrashSeeds, total.Partitions, total.Expiries, total.LeaderTerms, minOps)
	if ran >= 20 && (minCrashSeeds == 0 || total.Partitions == 0 || total.Expiries == 0) {
		t.Fatalf("the seed budget injected no crash, no partition or no session expiry: the simulation proves little")
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
