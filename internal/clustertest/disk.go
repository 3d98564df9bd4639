package clustertest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

// Disk is how fast one member's disk makes data durable: each sync draws its time from it, and
// snapshot writes and the preparing of the next log segment take a few draws' worth.
//
// A sync takes Lo to Hi, log-uniformly: its median is √(Lo·Hi), and a disk with a wide range has
// a long tail of slow syncs. With probability StallP a sync stalls instead, for stallMin to
// StallMax (uniformly): a device's garbage collection, a write-back storm, a noisy neighbour.
// Message delays are drawn independently (Options.LatencyMin/Max), so a sync may well outlast
// several round trips: a member that sent what it had not made durable is then caught out by a
// crash during the sync.
type Disk struct {
	Lo, Hi   time.Duration
	StallP   float64
	StallMax time.Duration
}

// stallMin is the shortest stall (SimReport.Stalls counts the syncs that drew a stall, whatever
// their length).
const stallMin = 100 * time.Millisecond

// syncTime draws how long one sync takes, and whether it stalled.
func (d Disk) syncTime(rng *rand.Rand) (time.Duration, bool) {
	if d.StallP > 0 && rng.Float64() < d.StallP {
		return stallMin + time.Duration(rng.Int64N(int64(max(d.StallMax-stallMin, 0))+1)), true
	}
	return logUniform(rng, d.Lo, d.Hi), false
}

// logUniform draws from [lo, hi] so that every factor of ten is as likely as every other.
func logUniform(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return time.Duration(float64(lo) * math.Exp(rng.Float64()*math.Log(float64(hi)/float64(lo))))
}

// String writes the disk as the arguments of a schedule's "disk" line.
func (d Disk) String() string {
	return fmt.Sprintf("%s %s %g %s", d.Lo, d.Hi, d.StallP, d.StallMax)
}

// crashModes are what a crash may do to unsynced data, with their names in schedule scripts. A
// generated schedule uses every one of them (and a cluster whose Options name none): a new mode
// of vfs.Mem is taken into the simulation by adding a line here.
var crashModes = []struct {
	name string
	mode vfs.CrashMode
}{
	{"drop", vfs.CrashDrop},
	{"cut", vfs.CrashTruncate},
	{"tear", vfs.CrashTear},
	{"reorder", vfs.CrashReorder},
}

// legacyCrashModes are the modes of a schedule script without a "crash-modes" line: the ones
// there were when such scripts were written. Never change it: old scripts replay with it.
var legacyCrashModes = []vfs.CrashMode{vfs.CrashDrop, vfs.CrashTruncate, vfs.CrashTear}

// allCrashModes returns every mode of crashModes.
func allCrashModes() []vfs.CrashMode {
	modes := make([]vfs.CrashMode, len(crashModes))
	for i, m := range crashModes {
		modes[i] = m.mode
	}
	return modes
}

func crashModeName(mode vfs.CrashMode) string {
	for _, m := range crashModes {
		if m.mode == mode {
			return m.name
		}
	}
	return fmt.Sprintf("mode%d", mode)
}

func crashModeByName(name string) (vfs.CrashMode, bool) {
	for _, m := range crashModes {
		if m.name == name {
			return m.mode, true
		}
	}
	return 0, false
}
