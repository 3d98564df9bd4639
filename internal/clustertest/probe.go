package clustertest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-cluster/tandem/service"
)

// Probe is a test service that records what the container made it do, as replicated state (so
// members can be compared) and as local counts (so a test can see that a callback ran exactly
// once on this member since its last start).
//
// Commands (text): "inc" adds one to the counter and replies with the new value; "timer ID MS"
// schedules timer ID at cluster time + MS milliseconds; "cancel ID" cancels it; "close" closes
// the calling session from the service; "steal" (what the simulator's thief sends on another
// principal's session) is counted and changes nothing else. Queries: "get" (the counter),
// "fired" (the timers fired, as "id@unixms" words), "closes" (session closes as "reason"
// words), "opens".
//
// Who: the probe keeps, as replicated state, how many sessions each principal opened and how
// many increments each applied (Session.Principal at the open and at each command), so that a
// member that sees another principal for a session than the others — one that lost it in a
// snapshot, say — holds another state at the same applied index, which the simulator reports.
type Probe struct {
	cluster service.Cluster

	// Replicated state.
	counter int64
	fired   []string
	closes  []string
	opens   int64
	// by: per principal ("" anonymous), the sessions it opened and the increments it applied;
	// stolen: the "steal" commands applied.
	by     map[string]*[2]int64
	stolen int64

	// Local observations since the last OnStart.
	Starts       int
	TimerCalls   map[int64]int
	SnapshotSeen bool
	Roles        []service.Role
	Terminated   bool
}

// NewProbe returns an empty probe.
func NewProbe() *Probe { return &Probe{TimerCalls: map[int64]int{}} }

// OnStart implements service.Service.
func (p *Probe) OnStart(c service.Cluster, snap io.Reader) error {
	p.cluster = c
	p.Starts++
	p.counter, p.fired, p.closes, p.opens = 0, nil, nil, 0
	p.by, p.stolen = map[string]*[2]int64{}, 0
	p.SnapshotSeen = snap != nil
	if snap == nil {
		return nil
	}
	b, err := io.ReadAll(snap)
	if err != nil {
		return err
	}
	parts := strings.Split(string(b), "\n")
	if len(parts) != 6 {
		return fmt.Errorf("probe: bad snapshot %q", b)
	}
	if p.counter, err = strconv.ParseInt(parts[0], 10, 64); err != nil {
		return err
	}
	if p.opens, err = strconv.ParseInt(parts[1], 10, 64); err != nil {
		return err
	}
	p.fired = strings.Fields(parts[2])
	p.closes = strings.Fields(parts[3])
	for _, w := range strings.Fields(parts[4]) {
		var name string
		var n [2]int64
		if _, err := fmt.Sscanf(strings.Replace(w, "=", " ", 1), "%s %d,%d", &name, &n[0], &n[1]); err != nil {
			return fmt.Errorf("probe: bad principal %q: %v", w, err)
		}
		if name == "-" {
			name = ""
		}
		p.by[name] = &n
	}
	if p.stolen, err = strconv.ParseInt(parts[5], 10, 64); err != nil {
		return err
	}
	return nil
}

// count returns principal's counts (sessions opened, increments applied), created if new.
func (p *Probe) count(principal string) *[2]int64 {
	n := p.by[principal]
	if n == nil {
		n = new([2]int64)
		p.by[principal] = n
	}
	return n
}

// OnSessionOpen implements service.Service.
func (p *Probe) OnSessionOpen(s service.Session, t time.Time) {
	p.opens++
	p.count(s.Principal())[0]++
}

// OnSessionClose implements service.Service.
func (p *Probe) OnSessionClose(s service.Session, t time.Time, reason service.CloseReason) {
	p.closes = append(p.closes, reason.String())
}

// OnSessionMessage implements service.Service.
func (p *Probe) OnSessionMessage(s service.Session, t time.Time, msg []byte) []byte {
	f := strings.Fields(string(msg))
	if len(f) == 0 {
		return []byte("ERR empty")
	}
	switch f[0] {
	case "inc":
		p.counter++
		p.count(s.Principal())[1]++
		return []byte(strconv.FormatInt(p.counter, 10))
	case "steal":
		p.stolen++
		return []byte("stolen")
	case "timer":
		id, _ := strconv.ParseInt(f[1], 10, 64)
		ms, _ := strconv.ParseInt(f[2], 10, 64)
		if err := p.cluster.ScheduleTimer(id, p.cluster.Time().Add(time.Duration(ms)*time.Millisecond)); err != nil {
			return []byte("ERR " + err.Error())
		}
		return []byte("ok")
	case "cancel":
		id, _ := strconv.ParseInt(f[1], 10, 64)
		ok, err := p.cluster.CancelTimer(id)
		if err != nil {
			return []byte("ERR " + err.Error())
		}
		return []byte(strconv.FormatBool(ok))
	case "close":
		if err := p.cluster.CloseSession(s.ID()); err != nil {
			return []byte("ERR " + err.Error())
		}
		return []byte("closing")
	}
	return []byte("ERR unknown command")
}

// OnTimerEvent implements service.Service.
func (p *Probe) OnTimerEvent(id int64, t time.Time) {
	p.TimerCalls[id]++
	p.fired = append(p.fired, fmt.Sprintf("%d@%d", id, t.UnixMilli()))
}

// OnTakeSnapshot implements service.Service.
func (p *Probe) OnTakeSnapshot(w io.Writer) error {
	var by []string
	for _, name := range slices.Sorted(maps.Keys(p.by)) {
		n := p.by[name]
		if name == "" {
			name = "-"
		}
		by = append(by, fmt.Sprintf("%s=%d,%d", name, n[0], n[1]))
	}
	_, err := fmt.Fprintf(w, "%d\n%d\n%s\n%s\n%s\n%d", p.counter, p.opens, strings.Join(p.fired, " "), strings.Join(p.closes, " "),
		strings.Join(by, " "), p.stolen)
	return err
}

// OnRoleChange implements service.Service.
func (p *Probe) OnRoleChange(r service.Role) { p.Roles = append(p.Roles, r) }

// OnTerminate implements service.Service.
func (p *Probe) OnTerminate() { p.Terminated = true }

// OnQuery implements service.Service.
func (p *Probe) OnQuery(q []byte) []byte {
	switch string(q) {
	case "get":
		return []byte(strconv.FormatInt(p.counter, 10))
	case "fired":
		return []byte(strings.Join(p.fired, " "))
	case "closes":
		return []byte(strings.Join(p.closes, " "))
	case "opens":
		return []byte(strconv.FormatInt(p.opens, 10))
	case "mutate":
		// Used by a test: a mutation from a query must be refused.
		if err := p.cluster.ScheduleTimer(1, p.cluster.Time()); err != nil {
			return []byte("ERR " + err.Error())
		}
		return []byte("mutated")
	}
	return []byte("ERR unknown query")
}

// Principal returns how many sessions principal opened and how many increments it applied, as
// replicated state.
func (p *Probe) Principal(principal string) (opens, incs int64) {
	if n := p.by[principal]; n != nil {
		return n[0], n[1]
	}
	return 0, 0
}

// Stolen returns how many "steal" commands were applied.
func (p *Probe) Stolen() int64 { return p.stolen }

// Counter returns the replicated counter.
func (p *Probe) Counter() int64 { return p.counter }

// Fired returns the timers fired, as replicated state.
func (p *Probe) Fired() []string { return p.fired }

// Closes returns the session closes, as replicated state.
func (p *Probe) Closes() []string { return p.closes }

// State returns the replicated state as bytes, for comparing members.
func (p *Probe) State() []byte {
	var b bytes.Buffer
	_ = p.OnTakeSnapshot(&b)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(p.fired)))
	return append(b.Bytes(), n[:]...)
}
