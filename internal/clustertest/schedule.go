package clustertest

import (
	"cmp"
	"fmt"
	"github.com/tandem-cluster/tandem/internal/replica"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Fault is one scheduled fault.
type Fault struct {
	At   time.Duration // simulated time since the start
	Op   string        // crash ID | restart ID | partition ID… | cut FROM TO | heal | pause CLIENT | resume CLIENT
	Args []int         // member ids; clients are clientBase+i
}

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
	Faults                        []Fault
}

// GenerateSchedule draws a schedule from a seed. Swarm testing: each seed also draws its own
// fault rates, so some seeds hammer one kind of fault and others mix them.
func GenerateSchedule(seed uint64, run time.Duration) Schedule {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	def := replica.DefaultConfig()
	sch := Schedule{Seed: seed, Nodes: 3, Run: run, HeartbeatTicks: def.HeartbeatTicks, ElectionTicks: def.ElectionTicks}
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
	pCrash := []float64{0, 0.01, 0.03}[rng.IntN(3)]
	pPartition := []float64{0, 0.01, 0.03}[rng.IntN(3)]
	// A client that goes silent longer than the session timeout (a paused process) comes back
	// to an expired session.
	pPause := []float64{0, 0.005}[rng.IntN(2)]
	pausedUntil := make([]time.Duration, simClients)
	const pHeal, pRestart = 0.1, 0.15
	down := make([]bool, sch.Nodes)
	for at := time.Duration(0); at < run; at += 100 * time.Millisecond {
		switch r := rng.Float64(); {
		case r < pCrash:
			id := rng.IntN(sch.Nodes)
			if !down[id] {
				down[id] = true
				sch.Faults = append(sch.Faults, Fault{At: at, Op: "crash", Args: []int{id}})
			}
		case r < pCrash+pPartition:
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
		case r < pCrash+pPartition+pHeal:
			sch.Faults = append(sch.Faults, Fault{At: at, Op: "heal"})
		case r < pCrash+pPartition+pHeal+pPause:
			i := rng.IntN(simClients)
			if pausedUntil[i] <= at {
				pausedUntil[i] = at + 12*time.Second + time.Duration(rng.IntN(4))*time.Second
				sch.Faults = append(sch.Faults, Fault{At: at, Op: "pause", Args: []int{i}},
					Fault{At: pausedUntil[i], Op: "resume", Args: []int{i}})
			}
		}
		for id := range sch.Nodes {
			if down[id] && rng.Float64() < pRestart {
				down[id] = false
				sch.Faults = append(sch.Faults, Fault{At: at, Op: "restart", Args: []int{id}})
			}
		}
	}
	slices.SortStableFunc(sch.Faults, func(a, b Fault) int { return cmp.Compare(a.At, b.At) })
	return sch
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
	return s, nil
}
