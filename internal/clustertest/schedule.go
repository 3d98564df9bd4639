package clustertest

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/internal/vfs"
)

// Fault is one scheduled fault.
type Fault struct {
	At time.Duration // simulated time since the start
	// Op is one of: crash ID… (the members at once) | crash-in-sync ID… (armed: the members
	// crash together inside the next sync one of them starts, or after syncCrashWindow) |
	// restart ID… | partition ID… | cut FROM TO | heal | pause CLIENT | resume CLIENT |
	// upgrade ID (the member, of an older build, stops cleanly if it is up and starts on this
	// build: a rolling upgrade's step; one that is down comes back upgraded) |
	// lose ID MODE (the member's disk loses synced data, loseModes[MODE]: LoseSyncedData) |
	// join 0 MODE | remove SEL | rebuild SEL | replace SEL (membership changes: membership.go) |
	// suspend | resume-cluster | snapshot | prefer SEL | transfer SEL (the operator's controls and
	// leadership transfers: controls.go).
	Op   string
	Args []int // member ids; clients are clientBase+i
}

// syncCrashWindow is how long a crash-in-sync waits for a sync before it crashes its members
// anyway.
const syncCrashWindow = 500 * time.Millisecond

// Schedule is a run of the simulator written out: the cluster's shape, the network's fault
// rates and every fault at its time. Its text form is a script kept in testdata/schedules, so a
// schedule that once found a bug is replayed by every later CI run, whatever changes in how
// schedules are generated.
type Schedule struct {
	Seed      uint64 // the clients' operations and the network's random choices
	Nodes     int
	SnapEvery uint64
	Margin    uint64
	Drop, Dup float64
	Reorder   bool
	Skews     []time.Duration
	Run       time.Duration
	// HeartbeatTicks and ElectionTicks override the defaults when not 0 (script: "ticks H E"),
	// so a schedule found under other defaults replays with the timing it was found with.
	HeartbeatTicks, ElectionTicks int
	// Disks has one Disk per member (script: "disk ID LO HI STALLP STALLMAX" lines); empty, the
	// syncs take 0.1–2 ms uniformly, as they did before disks were drawn.
	Disks []Disk
	// CrashModes are what a crash may do to unsynced data (script: "crash-modes NAME…", names
	// from crashModes); empty, legacyCrashModes.
	CrashModes []vfs.CrashMode
	// OldBuild lists the members that start as a build that applies cluster version 1 only
	// (script: "old-build ID…"), until an upgrade fault upgrades them.
	OldBuild []int
	Faults   []Fault
}

// GenerateSchedule draws a schedule from a seed. Swarm testing: each seed also draws its own
// fault rates and disks, so some seeds hammer one kind of fault and others mix them.
//
// How the probabilities were chosen (a 30 s run has 300 steps of 100 ms; the CI budget is 200
// seeds, and TestSimulation fails if a fault class never happened in it):
//   - crashes (0, 1 or 3 % a step: 0, 3 or 9 a run) and partitions as before, and half the
//     crashes are armed to strike inside a sync (crash-in-sync): a crash at a random moment
//     mostly falls between syncs, where unsynced data is a HardState of a commit index at most;
//     armed, it loses a Ready's entries and vote, exactly what the member must not have promised;
//   - a majority or all of the members crash at once with 0, 0.3 or 1 % a step (0, about 1 or
//     3 a run; a third of them take down every member), armed half the time, restarted together
//     or one by one 0.2–3 s later: rarer than single crashes, because every one of them stops
//     the cluster for a second or more and the run must still do work (TestSimulation fails a
//     seed with fewer than 50 operations), but with a third of the seeds at 1 % the CI budget
//     sees some hundreds of them;
//   - disks: each member's syncs take Lo to Hi, log-uniformly, with Lo drawn in 0.1–1 ms and Hi
//     in 1–50 ms (log-uniformly too, Hi ≥ 2·Lo), so a member's median sync is 0.3–7 ms, and the
//     members of one seed differ: a slow disk in a cluster of fast ones is the common case. A
//     message takes 1–3 ms each way, so a sync now often outlasts a round trip, as it does on
//     real disks under load. Under the simulated clients' load a member syncs some 150–300
//     times a run; in a third of the seeds half the members stall on 0.5 % of their syncs and
//     in another third on 2 % (about 1 or 4 stalls of such a member a run), for 0.1 s to
//     0.2–1 s: long enough to cost a leader its leadership (the election timeout is 0.7–1.4 s),
//     not so often that nothing commits.
//
// The values are rounded so that the script form reads well.
func GenerateSchedule(seed uint64, run time.Duration) Schedule {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	def := replica.DefaultConfig()
	sch := Schedule{Seed: seed, Nodes: 3, Run: run, HeartbeatTicks: def.HeartbeatTicks, ElectionTicks: def.ElectionTicks,
		CrashModes: allCrashModes()}
	if rng.IntN(3) == 0 {
		sch.Nodes = 5
	}
	sch.SnapEvery = uint64(20 + rng.IntN(200))
	sch.Margin = uint64(5 + rng.IntN(50))
	sch.Drop = []float64{0, 0.01, 0.05, 0.15}[rng.IntN(4)]
	sch.Dup = []float64{0, 0.02, 0.1}[rng.IntN(3)]
	sch.Reorder = rng.IntN(2) == 0
	for range sch.Nodes {
		// Members' clocks disagree by up to half a second.
		sch.Skews = append(sch.Skews, time.Duration(rng.Int64N(int64(500*time.Millisecond))).Round(time.Millisecond))
	}
	stallP := []float64{0, 0.005, 0.02}[rng.IntN(3)]
	for range sch.Nodes {
		lo := logUniform(rng, 100*time.Microsecond, time.Millisecond).Round(10 * time.Microsecond)
		d := Disk{Lo: lo, Hi: logUniform(rng, max(2*lo, time.Millisecond), 50*time.Millisecond).Round(100 * time.Microsecond)}
		if stallP > 0 && rng.IntN(2) == 0 {
			d.StallP, d.StallMax = stallP, time.Duration(2+rng.IntN(9))*100*time.Millisecond
		}
		sch.Disks = append(sch.Disks, d)
	}
	pCrash := []float64{0, 0.01, 0.03}[rng.IntN(3)]
	pMass := []float64{0, 0.003, 0.01}[rng.IntN(3)]
	pPartition := []float64{0, 0.01, 0.03}[rng.IntN(3)]
	// A client that goes silent longer than the session timeout (a paused process) comes back
	// to an expired session.
	pPause := []float64{0, 0.005}[rng.IntN(2)]
	pausedUntil := make([]time.Duration, simClients)
	const pHeal, pRestart = 0.1, 0.15
	down := make([]bool, sch.Nodes)
	// restartAt: when a member down from a crash of several restarts (0: at random, pRestart a
	// step); notBefore: an armed crash may strike until the end of its window.
	restartAt := make([]time.Duration, sch.Nodes)
	notBefore := make([]time.Duration, sch.Nodes)
	crashOp := func() (string, time.Duration) {
		if rng.IntN(2) == 0 {
			return "crash-in-sync", syncCrashWindow
		}
		return "crash", 0
	}
	for at := time.Duration(0); at < run; at += 100 * time.Millisecond {
		switch r := rng.Float64(); {
		case r < pCrash:
			id := rng.IntN(sch.Nodes)
			if !down[id] {
				op, window := crashOp()
				down[id], notBefore[id], restartAt[id] = true, at+window, 0
				sch.Faults = append(sch.Faults, Fault{At: at, Op: op, Args: []int{id}})
			}
		case r < pCrash+pMass:
			k := sch.Nodes // all of them, a third of the time; else a majority
			if rng.IntN(3) != 0 {
				k = sch.Nodes/2 + 1
			}
			ids := rng.Perm(sch.Nodes)[:k]
			slices.Sort(ids)
			op, window := crashOp()
			together := at + window + time.Duration(2+rng.IntN(29))*100*time.Millisecond
			stagger := rng.IntN(2) == 0
			for _, id := range ids {
				down[id], restartAt[id] = true, together
				if stagger {
					restartAt[id] = at + window + time.Duration(2+rng.IntN(29))*100*time.Millisecond
				}
			}
			sch.Faults = append(sch.Faults, Fault{At: at, Op: op, Args: ids})
		case r < pCrash+pMass+pPartition:
			// A side of members and clients: a client may be cut off with a minority (where a
			// deposed leader could serve it stale reads if reads skipped ReadIndex).
			var side []int
			for id := range sch.Nodes {
				if rng.IntN(2) == 0 {
					side = append(side, id)
				}
			}
			for i := range simClients {
				if rng.IntN(2) == 0 {
					side = append(side, clientBase+i)
				}
			}
			if rng.IntN(3) == 0 && len(side) > 0 {
				sch.Faults = append(sch.Faults, Fault{At: at, Op: "cut", Args: []int{side[0], (side[0] + 1) % sch.Nodes}})
			} else if len(side) > 0 {
				sch.Faults = append(sch.Faults, Fault{At: at, Op: "partition", Args: side})
			}
		case r < pCrash+pMass+pPartition+pHeal:
			sch.Faults = append(sch.Faults, Fault{At: at, Op: "heal"})
		case r < pCrash+pMass+pPartition+pHeal+pPause:
			i := rng.IntN(simClients)
			if pausedUntil[i] <= at {
				pausedUntil[i] = at + 12*time.Second + time.Duration(rng.IntN(4))*time.Second
				sch.Faults = append(sch.Faults, Fault{At: at, Op: "pause", Args: []int{i}},
					Fault{At: pausedUntil[i], Op: "resume", Args: []int{i}})
			}
		}
		for id := range sch.Nodes {
			switch {
			case !down[id] || at <= notBefore[id]:
			case restartAt[id] != 0 && at >= restartAt[id], restartAt[id] == 0 && rng.Float64() < pRestart:
				down[id], restartAt[id] = false, 0
				sch.Faults = append(sch.Faults, Fault{At: at, Op: "restart", Args: []int{id}})
			}
		}
	}
	drawUpgrade(&sch, seed)
	drawLoss(&sch, seed)
	drawMembership(&sch, seed)
	drawControls(&sch, seed)
	slices.SortStableFunc(sch.Faults, func(a, b Fault) int { return cmp.Compare(a.At, b.At) })
	return sch
}

// drawLoss makes a third of the seeds lose synced data on one member, once, at a moment between
// a sixth and two thirds of the run (LoseSyncedData: the member stays down after it, unless its
// directory was wiped), with the
// seed's other faults — crashes of the other members included — going on around it. A stream of
// its own, as drawUpgrade's.
func drawLoss(sch *Schedule, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x1057))
	if rng.IntN(3) != 0 {
		return
	}
	at := (sch.Run/6 + time.Duration(rng.Int64N(int64(sch.Run/2)))).Round(100 * time.Millisecond)
	id, mode := rng.IntN(sch.Nodes), rng.IntN(len(loseModes))
	sch.Faults = append(sch.Faults, Fault{At: at, Op: "lose", Args: []int{id, mode}})
	if loseModes[mode] == "wipe" && sch.Nodes > 1 {
		// Another member is cut off for the two seconds before: it lags, so that the entries
		// committed meanwhile are held by the leader and the member about to be wiped only —
		// what a wiped member's vote would lose (the wipe heals the partition).
		// The wipe crashes the leader: every member that is down comes back three seconds
		// later, as an operator brings machines back (until then a cluster of three waits).
		all := make([]int, sch.Nodes)
		for i := range all {
			all[i] = i
		}
		sch.Faults = append(sch.Faults, Fault{At: at - 2*time.Second, Op: "partition", Args: []int{(id + 1) % sch.Nodes}},
			Fault{At: at + 3*time.Second, Op: "restart", Args: all})
	}
}

// drawMembership makes a third of the seeds change the membership once or twice, between a sixth
// and a half of the run (membership.go): a member joins (in half of them crashing before it
// keeps the answer, and asking again) and then one is removed, or one is removed and then one
// joins, or a founding member is rebuilt in place, or a learner joins and replaces a voter. A stream of its own, as drawUpgrade's.
func drawMembership(sch *Schedule, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x3e3b))
	if rng.IntN(3) != 0 {
		return
	}
	at := (sch.Run/6 + time.Duration(rng.Int64N(int64(sch.Run/3)))).Round(100 * time.Millisecond)
	later := at + (3*time.Second + time.Duration(rng.Int64N(int64(5*time.Second)))).Round(100*time.Millisecond)
	join := Fault{Op: "join", Args: []int{0, rng.IntN(2)}}
	remove := Fault{Op: "remove", Args: []int{rng.IntN(5)}}
	pattern := rng.IntN(4)
	lost := slices.ContainsFunc(sch.Faults, func(f Fault) bool { return f.Op == "lose" })
	if pattern == 2 && lost && sch.Nodes == 3 {
		// A rebuild takes a member down until its new raft id is caught up; with another member
		// down for good (lost synced data) a cluster of three is down to one: no quorum, by
		// design. Such seeds join and remove instead.
		pattern = rng.IntN(2)
	}
	switch pattern {
	case 0:
		join.At, remove.At = at, later
		sch.Faults = append(sch.Faults, join, remove)
	case 1:
		remove.At, join.At = at, later
		sch.Faults = append(sch.Faults, remove, join)
	case 2:
		sch.Faults = append(sch.Faults, Fault{At: at, Op: "rebuild", Args: []int{rng.IntN(sch.Nodes)}})
	default:
		// A learner joins to stay one, and then takes a voter's place (tandem cluster
		// replace-member: one joint change).
		sch.Faults = append(sch.Faults, Fault{At: at, Op: "replace", Args: []int{rng.IntN(5)}})
	}
}

// drawUpgrade makes a third of the seeds a rolling upgrade: some members start as an older build
// (cluster version 1 only) and are upgraded one at a time, at least a second apart, between a
// sixth and five sixths of the run; in half of those one of them is never upgraded, so the
// cluster must stay at version 1 to the end. It draws from a stream of its own, so the faults of
// every seed are those they were before upgrades were simulated (the seeds in RELIABILITY.md
// stay valid).
func drawUpgrade(sch *Schedule, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x01d))
	if rng.IntN(3) != 0 {
		return
	}
	k := 1 + rng.IntN(sch.Nodes)
	sch.OldBuild = rng.Perm(sch.Nodes)[:k]
	slices.Sort(sch.OldBuild)
	upgraded := sch.OldBuild
	if rng.IntN(2) == 0 {
		upgraded = upgraded[:k-1]
	}
	at := sch.Run / 6
	for _, id := range rng.Perm(len(upgraded)) {
		at += time.Second + time.Duration(rng.Int64N(int64(max(sch.Run*2/3/time.Duration(k), time.Second)))).Round(100*time.Millisecond)
		sch.Faults = append(sch.Faults, Fault{At: at, Op: "upgrade", Args: []int{upgraded[id]}})
	}
}

// simClients is how many clients a simulated run has.
const simClients = 3

// String writes the schedule as a script that ParseSchedule reads back.
func (s Schedule) String() string {
	var b strings.Builder
	skews := make([]string, len(s.Skews))
	for i, d := range s.Skews {
		skews[i] = d.String()
	}
	fmt.Fprintf(&b, "seed %d\nnodes %d\nsnapshot-every %d\nmargin %d\ndrop %g\ndup %g\nreorder %t\nskews %s\nrun %s\n",
		s.Seed, s.Nodes, s.SnapEvery, s.Margin, s.Drop, s.Dup, s.Reorder, strings.Join(skews, " "), s.Run)
	if s.HeartbeatTicks != 0 || s.ElectionTicks != 0 {
		fmt.Fprintf(&b, "ticks %d %d\n", s.HeartbeatTicks, s.ElectionTicks)
	}
	for i, d := range s.Disks {
		fmt.Fprintf(&b, "disk %d %s\n", i, d)
	}
	if len(s.CrashModes) > 0 {
		b.WriteString("crash-modes")
		for _, m := range s.CrashModes {
			b.WriteString(" " + crashModeName(m))
		}
		b.WriteByte('\n')
	}
	if len(s.OldBuild) > 0 {
		b.WriteString("old-build")
		for _, id := range s.OldBuild {
			fmt.Fprintf(&b, " %d", id)
		}
		b.WriteByte('\n')
	}
	for _, f := range s.Faults {
		fmt.Fprintf(&b, "at %s %s", f.At, f.Op)
		for _, a := range f.Args {
			fmt.Fprintf(&b, " %d", a)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// ParseSchedule reads a schedule script; '#' starts a comment.
func ParseSchedule(text string) (Schedule, error) {
	var s Schedule
	for ln, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		bad := func(err error) error { return fmt.Errorf("line %d %q: %v", ln+1, line, err) }
		var err error
		switch f[0] {
		case "seed":
			s.Seed, err = strconv.ParseUint(f[1], 10, 64)
		case "nodes":
			s.Nodes, err = strconv.Atoi(f[1])
		case "snapshot-every":
			s.SnapEvery, err = strconv.ParseUint(f[1], 10, 64)
		case "margin":
			s.Margin, err = strconv.ParseUint(f[1], 10, 64)
		case "drop":
			s.Drop, err = strconv.ParseFloat(f[1], 64)
		case "dup":
			s.Dup, err = strconv.ParseFloat(f[1], 64)
		case "reorder":
			s.Reorder, err = strconv.ParseBool(f[1])
		case "skews":
			for _, x := range f[1:] {
				d, perr := time.ParseDuration(x)
				if perr != nil {
					return s, bad(perr)
				}
				s.Skews = append(s.Skews, d)
			}
		case "run":
			s.Run, err = time.ParseDuration(f[1])
		case "ticks":
			if len(f) != 3 {
				return s, bad(fmt.Errorf("want: ticks HEARTBEAT ELECTION"))
			}
			if s.HeartbeatTicks, err = strconv.Atoi(f[1]); err == nil {
				s.ElectionTicks, err = strconv.Atoi(f[2])
			}
		case "disk":
			if len(f) != 6 {
				return s, bad(fmt.Errorf("want: disk ID LO HI STALLP STALLMAX"))
			}
			var d Disk
			id, ierr := strconv.Atoi(f[1])
			if ierr != nil || id != len(s.Disks) {
				return s, bad(fmt.Errorf("disk lines must name the members in order, from 0"))
			}
			if d.Lo, err = time.ParseDuration(f[2]); err == nil {
				if d.Hi, err = time.ParseDuration(f[3]); err == nil {
					if d.StallP, err = strconv.ParseFloat(f[4], 64); err == nil {
						d.StallMax, err = time.ParseDuration(f[5])
					}
				}
			}
			if err == nil && (d.Lo <= 0 || d.Hi < d.Lo || d.StallP < 0 || d.StallP > 1) {
				err = fmt.Errorf("want 0 < LO ≤ HI and 0 ≤ STALLP ≤ 1")
			}
			s.Disks = append(s.Disks, d)
		case "crash-modes":
			for _, name := range f[1:] {
				m, ok := crashModeByName(name)
				if !ok {
					return s, bad(fmt.Errorf("unknown crash mode %q", name))
				}
				s.CrashModes = append(s.CrashModes, m)
			}
		case "old-build":
			for _, a := range f[1:] {
				id, aerr := strconv.Atoi(a)
				if aerr != nil {
					return s, bad(aerr)
				}
				s.OldBuild = append(s.OldBuild, id)
			}
		case "at":
			if len(f) < 3 {
				return s, bad(fmt.Errorf("want: at DURATION OP [ARGS]"))
			}
			ft := Fault{Op: f[2]}
			if ft.At, err = time.ParseDuration(f[1]); err != nil {
				return s, bad(err)
			}
			for _, a := range f[3:] {
				n, aerr := strconv.Atoi(a)
				if aerr != nil {
					return s, bad(aerr)
				}
				ft.Args = append(ft.Args, n)
			}
			s.Faults = append(s.Faults, ft)
		default:
			return s, bad(fmt.Errorf("unknown directive"))
		}
		if err != nil {
			return s, bad(err)
		}
	}
	if s.Nodes == 0 || len(s.Skews) != s.Nodes || s.Run == 0 {
		return s, fmt.Errorf("schedule needs nodes, one skew per member and run")
	}
	if len(s.Disks) != 0 && len(s.Disks) != s.Nodes {
		return s, fmt.Errorf("schedule has %d disk lines for %d members", len(s.Disks), s.Nodes)
	}
	for _, id := range s.OldBuild {
		if id < 0 || id >= s.Nodes {
			return s, fmt.Errorf("old-build names member %d of %d", id, s.Nodes)
		}
	}
	return s, nil
}
