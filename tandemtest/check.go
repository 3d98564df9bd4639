package tandemtest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"strings"
	"time"

	"github.com/tandem-cluster/tandem/service"
)

// The determinism check (package documentation): every member's service is wrapped, so that what
// it does while applying each log entry is recorded, and after every simulated event each member
// that applied something new is compared with what the first member to reach that index held.

// Bounds of what the check keeps for its reports: the start of each snapshot, and of the
// description of each entry's effects. Only their sums take part in the comparison.
const (
	snapshotHeadBytes = 256
	effectsDescMax    = 240
	payloadShownMax   = 48
)

// roundTrips reports whether a member does snapshot round trips: the even-numbered ones do, so
// that a service that keeps state outside its snapshot shows it against the odd-numbered ones
// (and against itself, in a one-member cluster, when it restarts).
func roundTrips(member int) bool { return member%2 == 0 }

// checker is the determinism check of a Cluster.
type checker struct {
	c       *Cluster
	members []*memberCheck
	// effects[i] is what the first member to apply log entry i did there; snapshots[i] what the
	// first member checked at applied index i held. Both are kept for the whole run: a member
	// restarted from an old snapshot applies old entries again.
	effects   map[uint64]effectRecord
	snapshots map[uint64]snapshotRecord
}

// memberCheck is the check's view of one member.
type memberCheck struct {
	svc *checked // the service of the member's current start (nil before the first)
	// checked: the member was checked since its start, at applied index applied.
	checked bool
	applied uint64
	// nextTrip is the applied index from which the member does its next snapshot round trip.
	nextTrip uint64
}

type effectRecord struct {
	sum    [16]byte
	member int
	desc   string
}

type snapshotRecord struct {
	state   [16]byte // everything Tandem replicates for the service: sessions, recorded replies, timers, and the service's snapshot
	service [16]byte // the service's snapshot
	member  int
	size    int
	head    []byte // the first snapshotHeadBytes of the service's snapshot
}

func newChecker(c *Cluster) *checker {
	k := &checker{c: c, effects: map[uint64]effectRecord{}, snapshots: map[uint64]snapshotRecord{}}
	for range c.opts.Members {
		k.members = append(k.members, &memberCheck{})
	}
	return k
}

func sum(b []byte) [16]byte {
	h := fnv.New128a()
	h.Write(b)
	var s [16]byte
	h.Sum(s[:0])
	return s
}

// wrap wraps the service of a member that starts.
func (k *checker) wrap(member int, svc service.Service) service.Service {
	w := &checked{k: k, member: member, inner: svc}
	k.members[member] = &memberCheck{svc: w}
	return w
}

// afterEvent checks every running member that applied something since it was last checked.
func (k *checker) afterEvent() {
	for id, n := range k.c.sim.Nodes {
		m := k.members[id]
		if k.c.failed != nil {
			return
		}
		if n.R == nil || m.svc == nil {
			continue
		}
		m.svc.flush() // every entry applied so far is complete
		if applied := n.R.Container().Applied(); !m.checked || applied != m.applied {
			k.member(id, applied)
		}
	}
}

// all checks every running member, whether it applied something new or not.
func (k *checker) all() {
	for id, n := range k.c.sim.Nodes {
		if k.c.failed != nil {
			return
		}
		if n.R != nil && k.members[id].svc != nil {
			k.members[id].svc.flush()
			k.member(id, n.R.Container().Applied())
		}
	}
}

// member checks member id at applied index applied: its snapshot twice in a row, against the
// other members' at the same index, and, now and then, a round trip through a fresh service.
func (k *checker) member(id int, applied uint64) {
	m := k.members[id]
	w := m.svc
	state, err := k.c.sim.Nodes[id].R.Container().TakeSnapshot() // calls w.OnTakeSnapshot
	if err != nil {
		k.c.fail("member %d: taking a snapshot at applied index %d: %v", id, applied, err)
		return
	}
	snap := w.snap
	again, err := w.takeSnapshot()
	if err != nil {
		k.c.fail("member %d: OnTakeSnapshot at applied index %d: %v", id, applied, err)
		return
	}
	if !bytes.Equal(snap, again) {
		k.c.fail("member %d wrote two different snapshots at applied index %d, with nothing applied between: %s\n"+
			"OnTakeSnapshot must write the state in a defined order (a map's iteration order is random), and must not change it or read the clock",
			id, applied, diff(fmt.Sprintf("the first has %d bytes", len(snap)), snap, fmt.Sprintf("the second %d", len(again)), again))
		return
	}
	rec := snapshotRecord{state: sum(state), service: sum(snap), member: id, size: len(snap), head: head(snap)}
	if prev, ok := k.snapshots[applied]; !ok {
		k.snapshots[applied] = rec
	} else if prev.service != rec.service {
		k.c.fail("%s wrote different snapshots at applied index %d: %s\n%s", who(prev.member, id), applied,
			diff(fmt.Sprintf("member %d wrote %d bytes", prev.member, prev.size), prev.head,
				fmt.Sprintf("member %d wrote %d", id, len(snap)), head(snap)), notDeterministic)
		return
	} else if prev.state != rec.state {
		k.c.fail("%s wrote equal snapshots at applied index %d, but the state Tandem keeps for the service differs: "+
			"the replies recorded for retries, the timers scheduled or the sessions closed\n%s", who(prev.member, id), applied, notDeterministic)
		return
	}
	every := k.c.opts.SnapshotEntries
	if !m.checked {
		// The first round trip half-way between snapshot points, so that round trips and starts
		// from a snapshot (a round trip of their own) come at different indexes: a service that
		// keeps state outside its snapshot then differs from itself after a restart, too.
		m.nextTrip = applied + max(every/2, 1)
	}
	m.checked, m.applied = true, applied
	if roundTrips(id) && applied >= m.nextTrip {
		m.nextTrip = applied + every
		k.roundTrip(id, w, snap, applied)
	}
}

// notDeterministic is what the reports of a difference between members add.
const notDeterministic = "The service depends on something other than the log: the wall clock, randomness, a map's iteration order, " +
	"or state it keeps outside its snapshot (a member restarted from a snapshot, or did the check's round trip)."

// who names the members a report is about: two, or one compared with itself after a restart.
func who(a, b int) string {
	if a == b {
		return fmt.Sprintf("member %d, before and after a restart,", a)
	}
	return fmt.Sprintf("members %d and %d", a, b)
}

// roundTrip replaces member id's service by a fresh one started from its snapshot, as a restart
// would, and checks that the fresh one writes the same snapshot.
func (k *checker) roundTrip(id int, w *checked, snap []byte, applied uint64) {
	fresh := k.c.opts.NewService()
	if err := fresh.OnStart(clusterView{w}, bytes.NewReader(snap)); err != nil {
		k.c.fail("member %d: a fresh service (Options.NewService) failed to start from the member's snapshot at applied index %d: %v",
			id, applied, err)
		return
	}
	var b bytes.Buffer
	if err := fresh.OnTakeSnapshot(&b); err != nil {
		k.c.fail("member %d: OnTakeSnapshot of a fresh service started from the member's snapshot at applied index %d: %v", id, applied, err)
		return
	}
	if !bytes.Equal(b.Bytes(), snap) {
		k.c.fail("member %d: a fresh service (Options.NewService) started from the member's snapshot at applied index %d writes another snapshot: %s\n"+
			"OnStart must restore all of the state OnTakeSnapshot writes, and OnTakeSnapshot must write it in a defined order "+
			"(a map's iteration order is random)", id, applied,
			diff(fmt.Sprintf("the member's has %d bytes", len(snap)), snap, fmt.Sprintf("the fresh service's %d", b.Len()), b.Bytes()))
		return
	}
	if w.role != service.Follower {
		fresh.OnRoleChange(w.role) // a restarted member starts as a follower and is told its role
	}
	w.inner = fresh
}

func head(b []byte) []byte { return bytes.Clone(b[:min(len(b), snapshotHeadBytes)]) }

// diff describes where a and b (or the parts of them at hand) first differ.
func diff(aName string, a []byte, bName string, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	if i == len(a) && i == len(b) {
		return fmt.Sprintf("%s and %s, the same in the first %d bytes", aName, bName, i)
	}
	from := max(i-16, 0)
	show := func(x []byte) string {
		if from >= len(x) {
			return "(end)"
		}
		return fmt.Sprintf("%q", x[from:min(len(x), i+32)])
	}
	return fmt.Sprintf("%s and %s; from byte %d: %s vs %s", aName, bName, from, show(a), show(b))
}

// checked wraps a member's service: it passes every call on, and records what the service does
// while applying each log entry (its effects: callbacks, arguments, replies, calls into the
// Cluster), which the checker compares between members.
type checked struct {
	k      *checker
	member int
	inner  service.Service
	// cluster is the member's Cluster (from OnStart); role the last role passed on.
	cluster service.Cluster
	role    service.Role
	// inLog: a log-driven callback runs, so calls into the Cluster are effects.
	inLog bool
	// The effects of log entry entry so far (has: any), canonically encoded, and described.
	entry uint64
	has   bool
	buf   []byte
	desc  strings.Builder
	// snap is what the service wrote at the last OnTakeSnapshot the member made.
	snap []byte
}

// effect records one effect of the entry being applied: its canonical encoding and a
// description.
func (w *checked) effect(desc string, parts ...[]byte) {
	if ix := w.cluster.LogIndex(); !w.has || ix != w.entry {
		w.flush()
		w.entry, w.has = ix, true
	}
	w.buf = binary.AppendUvarint(w.buf, uint64(len(desc)))
	w.buf = append(w.buf, desc...)
	for _, p := range parts {
		w.buf = binary.AppendUvarint(w.buf, uint64(len(p)))
		w.buf = append(w.buf, p...)
	}
	if room := effectsDescMax - w.desc.Len(); room > 0 {
		if w.desc.Len() > 0 {
			w.desc.WriteString("; ")
		}
		if len(desc) > room {
			desc = desc[:room] + "…"
		}
		w.desc.WriteString(desc)
	}
}

// flush hands the effects of the entry recorded so far to the checker.
func (w *checked) flush() {
	if !w.has {
		return
	}
	w.has = false
	s, desc := sum(w.buf), w.desc.String()
	w.buf, w.desc = w.buf[:0], strings.Builder{}
	k := w.k
	prev, ok := k.effects[w.entry]
	if !ok {
		k.effects[w.entry] = effectRecord{sum: s, member: w.member, desc: desc}
		return
	}
	if prev.sum != s {
		k.c.fail("%s did different things applying log entry %d:\n  member %d: %s\n  member %d: %s\n%s",
			who(prev.member, w.member), w.entry, prev.member, prev.desc, w.member, desc, notDeterministic)
	}
}

// callback runs a callback of the service: a log-driven one records what it does.
func (w *checked) callback(inLog bool, f func()) {
	was := w.inLog // CloseSession calls OnSessionClose from inside another callback
	w.inLog = inLog
	f()
	w.inLog = was
}

func shown(b []byte) string {
	if len(b) > payloadShownMax {
		return fmt.Sprintf("%q…(%d bytes)", b[:payloadShownMax], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func shortID(id service.SessionID) string { return id.String()[:8] }

func idBytes(id service.SessionID) []byte { return id[:] }

func stamp(t time.Time) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(t.UnixNano())) }

func (w *checked) OnStart(c service.Cluster, snap io.Reader) error {
	w.flush()
	w.cluster = c
	var err error
	w.callback(false, func() { err = w.inner.OnStart(clusterView{w}, snap) })
	return err
}

func (w *checked) OnSessionOpen(s service.Session, t time.Time) {
	w.effect("OnSessionOpen(session "+shortID(s.ID())+")", idBytes(s.ID()), stamp(t))
	w.callback(true, func() { w.inner.OnSessionOpen(session{s, w}, t) })
}

func (w *checked) OnSessionClose(s service.Session, t time.Time, reason service.CloseReason) {
	w.effect(fmt.Sprintf("OnSessionClose(session %s, %s)", shortID(s.ID()), reason), idBytes(s.ID()), stamp(t))
	w.callback(true, func() { w.inner.OnSessionClose(session{s, w}, t, reason) })
}

func (w *checked) OnSessionMessage(s service.Session, t time.Time, msg []byte) []byte {
	w.effect(fmt.Sprintf("OnSessionMessage(session %s, %s)", shortID(s.ID()), shown(msg)), idBytes(s.ID()), stamp(t), msg)
	var reply []byte
	w.callback(true, func() { reply = w.inner.OnSessionMessage(session{s, w}, t, msg) })
	w.effect("replied "+shown(reply), reply)
	return reply
}

func (w *checked) OnTimerEvent(id int64, t time.Time) {
	w.effect(fmt.Sprintf("OnTimerEvent(%d)", id), stamp(t))
	w.callback(true, func() { w.inner.OnTimerEvent(id, t) })
}

func (w *checked) OnTakeSnapshot(out io.Writer) error {
	var b bytes.Buffer
	var err error
	w.callback(false, func() { err = w.inner.OnTakeSnapshot(&b) })
	w.snap = b.Bytes()
	if err != nil {
		return err
	}
	_, err = out.Write(b.Bytes())
	return err
}

// takeSnapshot asks the service for its snapshot again, between entries.
func (w *checked) takeSnapshot() ([]byte, error) {
	var b bytes.Buffer
	var err error
	w.callback(false, func() { err = w.inner.OnTakeSnapshot(&b) })
	return b.Bytes(), err
}

func (w *checked) OnRoleChange(r service.Role) {
	w.role = r
	w.callback(false, func() { w.inner.OnRoleChange(r) })
}

func (w *checked) OnTerminate() { w.callback(false, w.inner.OnTerminate) }

func (w *checked) OnQuery(q []byte) []byte {
	var reply []byte
	w.callback(false, func() { reply = w.inner.OnQuery(q) })
	return reply
}

// clusterView is the member's Cluster as its service sees it: the calls that change replicated
// state are recorded as effects when a log-driven callback makes them.
type clusterView struct{ w *checked }

func (v clusterView) MemberID() int      { return v.w.cluster.MemberID() }
func (v clusterView) Role() service.Role { return v.w.cluster.Role() }
func (v clusterView) Time() time.Time    { return v.w.cluster.Time() }
func (v clusterView) LogIndex() uint64   { return v.w.cluster.LogIndex() }

func (v clusterView) ScheduleTimer(id int64, deadline time.Time) error {
	err := v.w.cluster.ScheduleTimer(id, deadline)
	if v.w.inLog {
		v.w.effect(fmt.Sprintf("ScheduleTimer(%d, %s) = %v", id, deadline.UTC().Format(time.RFC3339Nano), err), stamp(deadline))
	}
	return err
}

func (v clusterView) CancelTimer(id int64) (bool, error) {
	ok, err := v.w.cluster.CancelTimer(id)
	if v.w.inLog {
		v.w.effect(fmt.Sprintf("CancelTimer(%d) = %v, %v", id, ok, err))
	}
	return ok, err
}

func (v clusterView) Session(id service.SessionID) (service.Session, bool) {
	s, ok := v.w.cluster.Session(id)
	if !ok {
		return nil, false
	}
	return session{s, v.w}, true
}

func (v clusterView) Sessions() []service.Session {
	ss := v.w.cluster.Sessions()
	for i, s := range ss {
		ss[i] = session{s, v.w}
	}
	return ss
}

func (v clusterView) CloseSession(id service.SessionID) error {
	if v.w.inLog {
		// Recorded before the call: OnSessionClose follows inside it.
		v.w.effect("CloseSession(" + shortID(id) + ")")
	}
	return v.w.cluster.CloseSession(id)
}

// session is a Session as the service sees it: Offer is recorded.
type session struct {
	service.Session
	w *checked
}

func (s session) Offer(msg []byte) error {
	err := s.Session.Offer(msg)
	if s.w.inLog {
		s.w.effect(fmt.Sprintf("Offer(session %s, %s) = %v", shortID(s.ID()), shown(msg), err), msg)
	}
	return err
}
