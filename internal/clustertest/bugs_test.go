//go:build tandem_bugs

package clustertest

import (
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/bugs"
)

// TestSimulatorCatchesPlantedBugs switches each planted bug on in turn and asserts that the
// simulator finds a violation within the seed budget. Run it with:
//
//	go test -tags tandem_bugs ./internal/clustertest -run TestSimulatorCatchesPlantedBugs -v
func TestSimulatorCatchesPlantedBugs(t *testing.T) {
	budget := envInt("TANDEM_BUG_SEEDS", 200)
	for _, bug := range []string{"skip-fsync", "ack-before-commit", "read-without-readindex", "no-dedup", "follower-forwards", "resend-fresh-number"} {
		t.Run(bug, func(t *testing.T) {
			bugs.Set(bug)
			defer bugs.Set("")
			for seed := uint64(1); seed <= budget; seed++ {
				var rep SimReport
				t.Run("", func(t *testing.T) { rep = Simulate(t, seed, 30*time.Second) })
				if len(rep.Violations) > 0 {
					t.Logf("%s caught at seed %d: %s", bug, seed, rep.Violations[0])
					return
				}
			}
			t.Fatalf("%s not caught in %d seeds", bug, budget)
		})
	}
}
