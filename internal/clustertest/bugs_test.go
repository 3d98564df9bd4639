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
//
// The durability checks (durableLog) see a broken durability promise when it is made; the
// bugs that break one must also be caught with those checks off, by what the promise was for
// (no loss, one leader a term, identical state): that is what the disks' timing and the crashes
// inside syncs are there for. vote-not-synced is left out of that second round: a vote it lost
// shows end to end only when a second candidate asks for votes in the same term after the crash,
// which seeds rarely do (1 in 300 when this was written).
func TestSimulatorCatchesPlantedBugs(t *testing.T) {
	budget := envInt("TANDEM_BUG_SEEDS", 200)
	catch := func(t *testing.T, bug bugs.Bug) {
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
	}
	for _, bug := range bugs.All {
		t.Run(string(bug), func(t *testing.T) { catch(t, bug) })
	}
	checkDurability, checkLostDetection, checkWipedVotes = false, false, false
	defer func() { checkDurability, checkLostDetection, checkWipedVotes = true, true, true }()
	for _, bug := range []bugs.Bug{bugs.SkipFsync, bugs.SendBeforePersist, bugs.LostAsTorn, bugs.EmptyLogVotes} {
		t.Run(string(bug)+"/end-to-end", func(t *testing.T) { catch(t, bug) })
	}
}
