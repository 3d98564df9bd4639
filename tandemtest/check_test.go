package tandemtest_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/examples/kv"
	"github.com/tandem-cluster/tandem/service"
	"github.com/tandem-cluster/tandem/tandemtest"
)

// recorder is a TB that keeps the failures a Cluster reports, for tests of the check itself.
type recorder struct {
	t        *testing.T
	failures []string
}

func (r *recorder) Helper()                         {}
func (r *recorder) Logf(format string, args ...any) { r.t.Logf(format, args...) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

// mapStore is a key-value store with a mistake chosen by its flags. Commands: "k=v" sets a key
// (the reply is "OK", or what the mistake makes of it), "list" replies with the keys.
type mapStore struct {
	service.Base
	m map[string]string
	// The mistakes.
	listInMapOrder     bool // "list" replies with the keys in the map's iteration order
	snapshotInMapOrder bool // the snapshot writes the keys in the map's iteration order
	clockInReply       bool // the reply to a set carries the wall clock
	countOutside       bool // the reply counts the sets this value applied: state outside the snapshot
	forgetOnStart      bool // OnStart restores the keys but not the values
	clockTimer         bool // a set schedules a timer at a wall-clock deadline
	randomState        bool // a set stores a random number
	leaderState        bool // a set on the leader stores something else

	sets int             // (countOutside) kept outside the snapshot
	c    service.Cluster // (clockTimer, leaderState)
}

func (s *mapStore) OnStart(c service.Cluster, snap io.Reader) error {
	s.c = c
	s.m = map[string]string{}
	if snap == nil {
		return nil
	}
	b, err := io.ReadAll(snap)
	if err != nil {
		return err
	}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		if s.forgetOnStart {
			v = ""
		}
		s.m[k] = v
	}
	return nil
}

func (s *mapStore) keys() []string {
	var ks []string
	for k := range s.m {
		ks = append(ks, k)
	}
	return ks
}

func (s *mapStore) OnSessionMessage(_ service.Session, _ time.Time, msg []byte) []byte {
	if string(msg) == "list" {
		ks := s.keys()
		if !s.listInMapOrder {
			slices.Sort(ks)
		}
		return []byte(strings.Join(ks, ","))
	}
	k, v, _ := strings.Cut(string(msg), "=")
	switch {
	case s.randomState:
		v = strconv.Itoa(rand.IntN(1 << 30))
	case s.leaderState && s.c.Role() == service.Leader:
		v = "leader"
	}
	s.m[k] = v
	s.sets++
	switch {
	case s.clockInReply:
		return []byte("OK at " + time.Now().Format(time.RFC3339Nano))
	case s.countOutside:
		return []byte("OK, set " + strconv.Itoa(s.sets))
	case s.clockTimer:
		_ = s.c.ScheduleTimer(1, time.Now().Add(time.Hour))
	}
	return []byte("OK")
}

func (s *mapStore) OnQuery(q []byte) []byte { return []byte(s.m[string(q)]) }

func (s *mapStore) OnTakeSnapshot(w io.Writer) error {
	ks := s.keys()
	if !s.snapshotInMapOrder {
		slices.Sort(ks)
	}
	for _, k := range ks {
		if _, err := fmt.Fprintf(w, "%s=%s\n", k, s.m[k]); err != nil {
			return err
		}
	}
	return nil
}

// runStore runs a cluster of the store with one mistake through a workload: sets, lists, a crash
// and restart of a member (unless members is negative: then -members members, and no restart),
// and the final Check. It returns what was reported.
func runStore(t *testing.T, seed uint64, members int, mistake func(*mapStore)) []string {
	restart := members > 0
	members = max(members, -members)
	t.Helper()
	rec := &recorder{t: t}
	c := tandemtest.New(rec, tandemtest.Options{Members: members, Seed: seed, NewService: func() service.Service {
		s := &mapStore{m: map[string]string{}}
		mistake(s)
		return s
	}})
	if c == nil || len(rec.failures) > 0 {
		return rec.failures
	}
	cl := c.NewClient()
	send := func(cmd string) bool {
		_, err := cl.Send([]byte(cmd))
		if err != nil && len(rec.failures) == 0 {
			t.Fatalf("%s: %v", cmd, err)
		}
		return len(rec.failures) == 0
	}
	for i := range 40 {
		if !send(fmt.Sprintf("key%02d=%d", i%12, i)) || (i%5 == 4 && !send("list")) {
			return rec.failures
		}
		if i == 20 && members > 1 && restart {
			f := (c.Leader() + 1) % members
			c.Crash(f)
			c.Run(time.Second)
			c.Start(f)
		}
		if i == 30 && members == 1 && restart {
			c.Restart(0)
		}
	}
	if len(rec.failures) == 0 {
		c.Check()
	}
	return rec.failures
}

func TestDeterminismCheckCatchesMistakes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members int
		mistake func(*mapStore)
		want    []string // one of them in the first report
	}{
		{"map order in a reply", 3, func(s *mapStore) { s.listInMapOrder = true }, []string{`did different things applying log entry`}},
		{"map order in the snapshot", 3, func(s *mapStore) { s.snapshotInMapOrder = true }, []string{
			`wrote different snapshots at applied index`, `wrote two different snapshots at applied index`, `must write it in a defined order`}},
		{"wall clock in a reply", 3, func(s *mapStore) { s.clockInReply = true }, []string{`replied "OK at `}},
		{"wall clock in a timer", 3, func(s *mapStore) { s.clockTimer = true }, []string{`ScheduleTimer(1, `}},
		{"random state", 3, func(s *mapStore) { s.randomState = true }, []string{`wrote different snapshots at applied index`}},
		{"role in state", 3, func(s *mapStore) { s.leaderState = true }, []string{`wrote different snapshots at applied index`}},
		{"state outside the snapshot", 3, func(s *mapStore) { s.countOutside = true }, []string{`replied "OK, set `}},
		{"state outside the snapshot, no restart", -3, func(s *mapStore) { s.countOutside = true }, []string{`replied "OK, set `}},
		{"map order in the snapshot, one member", 1, func(s *mapStore) { s.snapshotInMapOrder = true }, []string{
			`wrote two different snapshots at applied index`, `must write it in a defined order`}},
		{"state outside the snapshot, one member", 1, func(s *mapStore) { s.countOutside = true }, []string{`member 0, before and after a restart, did different things`}},
		{"OnStart restores less than the snapshot holds", 3, func(s *mapStore) { s.forgetOnStart = true }, []string{`OnStart must restore all of the state`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(5) {
				got := runStore(t, seed, tc.members, tc.mistake)
				if len(got) == 0 {
					t.Fatalf("seed %d: not reported", seed)
				}
				if !slices.ContainsFunc(tc.want, func(w string) bool { return strings.Contains(got[0], w) }) {
					t.Fatalf("seed %d: reported %q, want it to say one of %q", seed, got[0], tc.want)
				}
				if len(got) > 1 {
					t.Fatalf("seed %d: reported %d times (want once, then stop): %q", seed, len(got), got)
				}
			}
			t.Logf("%s", runStore(t, 0, tc.members, tc.mistake)[0])
		})
	}
}

func TestDeterministicStorePasses(t *testing.T) {
	for _, members := range []int{1, 3, 5} {
		for seed := range uint64(5) {
			if got := runStore(t, seed, members, func(*mapStore) {}); len(got) > 0 {
				t.Fatalf("%d members, seed %d: a deterministic store was reported: %q", members, seed, got)
			}
		}
	}
}

// The examples pass the check through crashes (of the leader, and of a majority), restarts and
// partitions.
func TestExamplesPass(t *testing.T) {
	for name, newService := range map[string]func() service.Service{
		"kv":      func() service.Service { return kv.New() },
		"counter": func() service.Service { return counter.New() },
	} {
		t.Run(name, func(t *testing.T) {
			for seed := range uint64(5) {
				rec := &recorder{t: t}
				c := tandemtest.New(rec, tandemtest.Options{Seed: seed, NewService: newService})
				cl := c.NewClient()
				cmd := func(i int) []byte {
					if name == "kv" {
						return fmt.Appendf(nil, "k%d=%d", i%7, i)
					}
					return counter.EncodeRequest(counter.Request{Op: counter.OpIncrement, Delta: int64(i%3 + 1)})
				}
				crashed := -1
				for i := range 60 {
					if _, err := cl.Send(cmd(i)); err != nil {
						t.Fatalf("seed %d, command %d: %v (%q)", seed, i, err, rec.failures)
					}
					switch i {
					case 10:
						crashed = c.Leader()
						c.Crash(crashed)
					case 20:
						c.Start(crashed)
					case 30:
						c.Partition(c.Leader())
					case 40:
						c.Heal()
						c.Crash(0)
						c.Crash(1)
						c.Crash(2)
						c.Start(0)
						c.Start(1)
						c.Start(2)
					}
				}
				c.Check()
				if len(rec.failures) > 0 {
					t.Fatalf("seed %d: %q", seed, rec.failures)
				}
			}
		})
	}
}

// With one member, no restart and no round trip yet, a snapshot written in a map's order is
// still caught: the member is asked for its snapshot twice in a row.
func TestSnapshotTakenTwiceCatchesMapOrder(t *testing.T) {
	rec := &recorder{t: t}
	c := tandemtest.New(rec, tandemtest.Options{Members: 1, Seed: 1, SnapshotEntries: 1000, NewService: func() service.Service {
		return &mapStore{m: map[string]string{}, snapshotInMapOrder: true}
	}})
	cl := c.NewClient()
	for i := 0; i < 50 && len(rec.failures) == 0; i++ {
		_, _ = cl.Send(fmt.Appendf(nil, "key%02d=%d", i%12, i))
	}
	if len(rec.failures) != 1 || !strings.Contains(rec.failures[0], "wrote two different snapshots") {
		t.Fatalf("reported %q", rec.failures)
	}
}
