package consensus

import (
	"errors"
	"math"
	"slices"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// memStorage is raft's MemoryStorage with the Storage extras, for unit tests of the core.
type memStorage struct{ *raft.MemoryStorage }

func (m memStorage) Append(hs *pb.HardState, ents []*pb.Entry) error {
	if len(ents) > 0 {
		if err := m.MemoryStorage.Append(ents); err != nil {
			return err
		}
	}
	if !raft.IsEmptyHardState(hs) {
		return m.SetHardState(hs)
	}
	return nil
}
func (m memStorage) Sync() error                       { return nil }
func (m memStorage) Reclaim() error                    { return nil }
func (m memStorage) SaveSnapshot(s *pb.Snapshot) error { return m.ApplySnapshot(s) }
func (m memStorage) Close() error                      { return nil }
func (m memStorage) PrepareSnapshot(i uint64, cs *pb.ConfState, d []byte) (*pb.Snapshot, func() error, error) {
	return &pb.Snapshot{Data: d, Metadata: &pb.SnapshotMetadata{Index: &i, ConfState: cs}}, func() error { return nil }, nil
}
func (m memStorage) AddSnapshot(s *pb.Snapshot) error {
	_, err := m.MemoryStorage.CreateSnapshot(s.GetMetadata().GetIndex(), s.GetMetadata().GetConfState(), s.GetData())
	return err
}

// drive runs Process and every sync it leaves pending, inline, until raft has nothing to do.
func drive(c *Core, h Handler) error {
	for {
		if err := c.Process(h); err != nil {
			return err
		}
		job := c.TakeSync()
		if job == nil {
			return nil
		}
		c.SyncDone(job())
	}
}

type sink struct {
	sent   []*pb.Message
	failed map[uint64]error
	ready  map[uint64]uint64
	states []State
	ents   int
	// refuseConf is what AdmitConfChange answers; confs records the conf change entries applied
	// (nil: applied as no change).
	refuseConf error
	confs      []*pb.ConfChangeV2
}

func (s *sink) Send(m []*pb.Message)                           { s.sent = append(s.sent, m...) }
func (s *sink) InstallSnapshot(*pb.Snapshot) error             { return nil }
func (s *sink) AdmitConfChange(uint64, *pb.ConfChangeV2) error { return s.refuseConf }
func (s *sink) ApplyEntry(e *pb.Entry, cc *pb.ConfChangeV2) error {
	s.ents++
	if e.GetType() != pb.EntryNormal {
		s.confs = append(s.confs, cc)
	}
	return nil
}
func (s *sink) ReadReady(id, ix uint64)         { s.ready[id] = ix }
func (s *sink) ReadFailed(id uint64, err error) { s.failed[id] = err }
func (s *sink) StateChanged(st State)           { s.states = append(s.states, st) }

// meet tells each core what the others would say of themselves in their member handshakes, as
// the transport does when they connect (verify.go): founders on empty logs verify each other.
func meet(cores map[uint64]*Core) {
	for id, c := range cores {
		for oid, o := range cores {
			if oid != id {
				c.PeerStanding(oid, o.Status().GetTerm(), o.Blank(), o.Unverified())
			}
		}
	}
}

// knowPeers tells c what its peers' handshakes would say of verified founders that hold nothing:
// c follows and votes like any member (verify.go), and a test may step a leader's messages into it.
func knowPeers(c *Core, ids ...uint64) {
	for _, id := range ids {
		c.PeerStanding(id, 1, true, false)
	}
}

func newCore(t *testing.T, id uint64, peers ...uint64) (*Core, *sink) {
	t.Helper()
	var ps []raft.Peer
	for _, p := range peers {
		ps = append(ps, raft.Peer{ID: p})
	}
	c, err := New(Config{ID: id, ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16,
		MaxUncommittedBytes: 1 << 20}, memStorage{raft.NewMemoryStorage()}, ps, 0)
	if err != nil {
		t.Fatal(err)
	}
	knowPeers(c, peers...)
	return c, &sink{failed: map[uint64]error{}, ready: map[uint64]uint64{}}
}

func TestFollowerFailsFastWithLeaderHint(t *testing.T) {
	c, s := newCore(t, 1, 1, 2, 3)
	if err := drive(c, s); err != nil {
		t.Fatal(err)
	}
	// A heartbeat from leader 2 in term 5 teaches the follower who leads.
	if err := c.Step(&pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: new(uint64(5))}); err != nil {
		t.Fatal(err)
	}
	_ = drive(c, s)
	err := c.Propose([]byte("x"))
	var nle *NotLeaderError
	if !errors.Is(err, ErrNotLeader) || !errors.As(err, &nle) || nle.Leader != 2 || nle.Term != 5 {
		t.Fatalf("Propose on a follower: %v, want NotLeaderError{Leader: 2, Term: 5}", err)
	}
	if n := c.ProposalsFailed(); n != 1 {
		t.Fatalf("ProposalsFailed after a refused proposal: %d, want 1", n)
	}
	if _, err := c.ReadIndex(); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("ReadIndex on a follower: %v", err)
	}
	if err := c.Step(&pb.Message{Type: pb.MsgHup.Enum(), From: new(uint64(2)), To: new(uint64(1))}); err == nil {
		t.Fatalf("a local message type from the network was accepted")
	}
}

func TestSingleMemberLeaderProposesAndReads(t *testing.T) {
	c, s := newCore(t, 1, 1)
	for i := 0; i < 30 && c.State().Role != raft.StateLeader; i++ {
		c.Tick()
		if err := drive(c, s); err != nil {
			t.Fatal(err)
		}
	}
	if c.State().Role != raft.StateLeader {
		t.Fatalf("a single member did not elect itself")
	}
	before := s.ents
	if err := c.Propose([]byte("cmd")); err != nil {
		t.Fatal(err)
	}
	id, err := c.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	_ = drive(c, s)
	if s.ents != before+1 {
		t.Fatalf("applied %d entries after one proposal", s.ents-before)
	}
	if ix, ok := s.ready[id]; !ok || ix < c.Applied()-1 {
		t.Fatalf("read %d not ready (%v)", id, s.ready)
	}
	if _, ok := c.BestFollower(); ok {
		t.Fatalf("a single member has no follower to hand over to")
	}
}

func TestUnansweredReadFails(t *testing.T) {
	a, sa := newCore(t, 1, 1, 2)
	b, sb := newCore(t, 2, 1, 2)
	meet(map[uint64]*Core{1: a, 2: b})
	cores := map[uint64]*Core{1: a, 2: b}
	sinks := map[uint64]*sink{1: sa, 2: sb}
	deliver := func() {
		for moved := true; moved; {
			moved = false
			for id, s := range sinks {
				msgs := s.sent
				s.sent = nil
				for _, m := range msgs {
					moved = true
					_ = cores[m.GetTo()].Step(m)
				}
				_ = drive(cores[id], s)
			}
		}
	}
	var leader *Core
	var ls *sink
	for i := 0; i < 100 && leader == nil; i++ {
		a.Tick()
		b.Tick()
		_ = drive(a, sa)
		_ = drive(b, sb)
		deliver()
		for id, c := range cores {
			if c.State().Role == raft.StateLeader {
				leader, ls = c, sinks[id]
			}
		}
	}
	if leader == nil {
		t.Fatalf("no leader")
	}
	// Commit an entry of the term so reads are served, then cut the follower off.
	_ = leader.Propose([]byte("x"))
	_ = drive(leader, ls)
	deliver()
	id, err := leader.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	for range 30 {
		leader.Tick()
		_ = drive(leader, ls)
		ls.sent = nil // lost
	}
	if err := ls.failed[id]; !errors.Is(err, ErrReadTimeout) && !errors.Is(err, ErrNotLeader) {
		t.Fatalf("an unanswered read ended with %v, want ErrReadTimeout or ErrNotLeader", err)
	}
}

// orderLog records the order of writes and sends.
type orderLog struct{ events []string }

type recordingStorage struct {
	memStorage
	log *orderLog
}

func (r recordingStorage) Append(hs *pb.HardState, ents []*pb.Entry) error {
	if len(ents) > 0 {
		r.log.events = append(r.log.events, "append")
	}
	return r.memStorage.Append(hs, ents)
}

type recordingSink struct {
	sink
	log *orderLog
}

func (s *recordingSink) Send(ms []*pb.Message) {
	for _, m := range ms {
		s.log.events = append(s.log.events, "send "+m.GetType().String())
	}
	s.sink.Send(ms)
}

// The leader sends its appends before writing them itself (its write overlaps the followers');
// a follower acknowledges only after its write.
func TestLeaderSendsAppendsBeforeItsOwnWriteFollowerAfter(t *testing.T) {
	ol := &orderLog{}
	cfg := Config{ID: 1, ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16, MaxUncommittedBytes: 1 << 20}
	c, err := New(cfg, recordingStorage{memStorage{raft.NewMemoryStorage()}, ol}, []raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := &recordingSink{sink: sink{failed: map[uint64]error{}, ready: map[uint64]uint64{}}, log: ol}
	if err := drive(c, s); err != nil {
		t.Fatal(err)
	}
	if err := c.rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	if err := drive(c, s); err != nil {
		t.Fatal(err)
	}
	var term uint64
	for _, m := range s.sent {
		if m.GetType() == pb.MsgPreVote {
			term = m.GetTerm()
		}
	}
	if err := c.Step(&pb.Message{Type: pb.MsgPreVoteResp.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: new(term)}); err != nil {
		t.Fatal(err)
	}
	if err := drive(c, s); err != nil {
		t.Fatal(err)
	}
	if err := c.Step(&pb.Message{Type: pb.MsgVoteResp.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: new(term)}); err != nil {
		t.Fatal(err)
	}
	ol.events = nil
	if err := drive(c, s); err != nil {
		t.Fatal(err)
	}
	if c.State().Role != raft.StateLeader {
		t.Fatalf("not leader: %+v", c.State())
	}
	if len(ol.events) < 2 || ol.events[0] != "send MsgApp" || !slices.Contains(ol.events, "append") {
		t.Fatalf("new leader's events %v: want its MsgApp sent before its own append", ol.events)
	}
	// Follower 2 acknowledges the new term's first entry, so its progress leaves the probe state.
	last, _ := c.storage.LastIndex()
	if err := c.Step(&pb.Message{Type: pb.MsgAppResp.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: new(term), Index: new(last)}); err != nil {
		t.Fatal(err)
	}
	if err := drive(c, s); err != nil {
		t.Fatal(err)
	}
	ol.events = nil
	if err := c.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := drive(c, s); err != nil {
		t.Fatal(err)
	}
	if len(ol.events) < 2 || ol.events[0] != "send MsgApp" || ol.events[len(ol.events)-1] != "append" {
		t.Fatalf("leader's events for a proposal %v: want sends first, then the append", ol.events)
	}

	// A follower: an append from leader 2 is written before it is acknowledged.
	fl := &orderLog{}
	f, err := New(Config{ID: 3, ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16, MaxUncommittedBytes: 1 << 20},
		recordingStorage{memStorage{raft.NewMemoryStorage()}, fl}, []raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	knowPeers(f, 1, 2)
	fs := &recordingSink{sink: sink{failed: map[uint64]error{}, ready: map[uint64]uint64{}}, log: fl}
	if err := drive(f, fs); err != nil {
		t.Fatal(err)
	}
	fl.events = nil
	app := &pb.Message{Type: pb.MsgApp.Enum(), From: new(uint64(2)), To: new(uint64(3)), Term: new(uint64(2)),
		LogTerm: new(uint64(1)), Index: new(uint64(3)), Commit: new(uint64(3)),
		Entries: []*pb.Entry{{Term: new(uint64(2)), Index: new(uint64(4)), Data: []byte("y")}}}
	if err := f.Step(app); err != nil {
		t.Fatal(err)
	}
	if err := drive(f, fs); err != nil {
		t.Fatal(err)
	}
	if len(fl.events) != 2 || fl.events[0] != "append" || fl.events[1] != "send MsgAppResp" {
		t.Fatalf("follower's events %v: want the append, then the acknowledgement", fl.events)
	}
}

// syncStorage is memStorage whose Sync records what it made durable.
type syncStorage struct {
	memStorage
	synced uint64            // last index made durable by a finished Sync
	terms  map[uint64]uint64 // the term of each entry a finished Sync made durable, by index
}

func (s *syncStorage) Sync() error {
	s.synced, _ = s.LastIndex()
	s.terms = map[uint64]uint64{}
	first, _ := s.FirstIndex()
	ents, err := s.Entries(first, s.synced+1, math.MaxUint64)
	for _, e := range ents {
		s.terms[e.GetIndex()] = e.GetTerm()
	}
	if errors.Is(err, raft.ErrUnavailable) { // an empty log
		return nil
	}
	return err
}

type applyLog struct {
	sink
	st         *syncStorage
	applied    []uint64
	terms      map[uint64]uint64 // the term of each applied entry, by index
	violations []uint64          // applied before being synced (that entry, not another at its index)
}

func (a *applyLog) ApplyEntry(e *pb.Entry, cc *pb.ConfChangeV2) error {
	if e.GetIndex() > a.st.synced || a.st.terms[e.GetIndex()] != e.GetTerm() {
		a.violations = append(a.violations, e.GetIndex())
	}
	a.applied = append(a.applied, e.GetIndex())
	if a.terms == nil {
		a.terms = map[uint64]uint64{}
	}
	a.terms[e.GetIndex()] = e.GetTerm()
	return a.sink.ApplyEntry(e, cc)
}

func newSyncCore(t *testing.T, id uint64) (*Core, *syncStorage, *applyLog) {
	t.Helper()
	st := &syncStorage{memStorage: memStorage{raft.NewMemoryStorage()}}
	c, err := New(Config{ID: id, ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16, MaxUncommittedBytes: 1 << 20},
		st, []raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	knowPeers(c, 1, 2, 3)
	return c, st, &applyLog{sink: sink{failed: map[uint64]error{}, ready: map[uint64]uint64{}}, st: st}
}

// While a Ready's sync is pending, the core applies the committed entries that earlier syncs made
// durable — once the driver has taken the sync, so that the disk starts first; an entry synced
// by this Ready's own sync waits for it. Nothing is applied unsynced, and nothing is applied
// twice when the Ready finishes.
func TestCoreAppliesDurableEntriesWhileSyncing(t *testing.T) {
	c, _, a := newSyncCore(t, 3)
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	// app steps an append from leader 2 (term 2) and processes it, leaving its sync pending.
	app := func(prev uint64, commit uint64, idx ...uint64) func() error {
		t.Helper()
		m := &pb.Message{Type: pb.MsgApp.Enum(), From: new(uint64(2)), To: new(uint64(3)), Term: new(uint64(2)),
			LogTerm: new(uint64(1)), Index: new(prev), Commit: new(commit)}
		if prev > 3 {
			m.LogTerm = new(uint64(2))
		}
		for _, i := range idx {
			m.Entries = append(m.Entries, &pb.Entry{Term: new(uint64(2)), Index: new(i), Data: []byte("x")})
		}
		if err := c.Step(m); err != nil {
			t.Fatal(err)
		}
		applied := c.Applied()
		for range 2 { // the Process that leaves the sync pending, and one more before the driver takes it
			if err := c.Process(a); err != nil {
				t.Fatal(err)
			}
			if c.Applied() != applied {
				t.Fatalf("applied %d before the sync was taken: the disk should start first", c.Applied())
			}
		}
		job := c.TakeSync()
		if job == nil || !c.SyncPending() {
			t.Fatalf("no sync pending after an append of %v", idx)
		}
		if c.TakeSync() != nil {
			t.Fatalf("the same sync taken twice")
		}
		if err := c.Process(a); err != nil { // the driver calls Process once the sync runs
			t.Fatal(err)
		}
		return job
	}
	finish := func(job func() error) {
		t.Helper()
		c.SyncDone(job())
		if err := drive(c, a); err != nil {
			t.Fatal(err)
		}
	}
	finish(app(3, 3, 4, 5)) // entries 4 and 5 written and synced; the bootstrap entries 1–3 applied
	job := app(5, 5, 6)     // commits 4 and 5 (durable): applied while entry 6 is being synced
	if c.Applied() != 5 {
		t.Fatalf("applied %d while the sync of entry 6 is pending, want 5", c.Applied())
	}
	finish(job)
	job = app(6, 7, 7) // commits 6 (durable) and 7, which arrives in this Ready: 7 waits for the sync
	if c.Applied() != 6 {
		t.Fatalf("applied %d while the sync of entry 7 is pending, want 6", c.Applied())
	}
	finish(job)
	if c.Applied() != 7 {
		t.Fatalf("applied %d, want 7", c.Applied())
	}
	if len(a.violations) > 0 {
		t.Fatalf("entries %v applied before they were synced", a.violations)
	}
	if !slices.Equal(a.applied, []uint64{1, 2, 3, 4, 5, 6, 7}) {
		t.Fatalf("applied %v, want 1…7 once each", a.applied)
	}
}

// A leader steps acknowledgements while its own sync is pending: what they commit and it had
// already synced is applied at once; what only the pending sync makes durable waits for it; a
// sync error stops the core for good.
// electLeader makes raft id 1 of a three-member core the leader (its peers' votes are stepped
// in) and returns its term.
func electLeader(t *testing.T, c *Core, a *applyLog) uint64 {
	t.Helper()
	c.PeerStanding(2, 1, true, true) // what 2's and 3's handshakes said: founders too (verify.go)
	c.PeerStanding(3, 1, true, true)
	for i := 0; i < 30 && c.State().Role == raft.StateFollower; i++ {
		c.Tick()
		if err := drive(c, a); err != nil {
			t.Fatal(err)
		}
	}
	term := c.State().Term
	for _, from := range []uint64{2, 3} {
		if err := c.Step(&pb.Message{Type: pb.MsgPreVoteResp.Enum(), From: new(from), To: new(uint64(1)), Term: new(term + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	term = c.State().Term
	for _, from := range []uint64{2, 3} {
		if err := c.Step(&pb.Message{Type: pb.MsgVoteResp.Enum(), From: new(from), To: new(uint64(1)), Term: new(term)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	if c.State().Role != raft.StateLeader {
		t.Fatalf("member 1 is %s, not leader", c.State().Role)
	}
	return term
}

// ackFrom steps a follower's acknowledgement of every entry up to index into leader c.
func ackFrom(t *testing.T, c *Core, term, from, index uint64) {
	t.Helper()
	if err := c.Step(&pb.Message{Type: pb.MsgAppResp.Enum(), From: new(from), To: new(uint64(1)), Term: new(term), Index: new(index)}); err != nil {
		t.Fatal(err)
	}
}

// A leader does not announce a new commit index with an append of no entries to a follower
// that has acknowledged every entry (the next append or heartbeat carries the commit index); a
// follower that has not acknowledged everything still gets its append.
func TestLeaderDoesNotAnnounceCommitsToCaughtUpFollowers(t *testing.T) {
	c, st, a := newSyncCore(t, 1)
	term := electLeader(t, c, a)
	last, _ := st.LastIndex()
	ackFrom(t, c, term, 2, last)
	ackFrom(t, c, term, 3, last)
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	propose := func(data string) uint64 {
		t.Helper()
		if err := c.Propose([]byte(data)); err != nil {
			t.Fatal(err)
		}
		if err := drive(c, a); err != nil {
			t.Fatal(err)
		}
		ix, _ := st.LastIndex()
		return ix
	}
	emptyAppendsTo := func() map[uint64]uint64 { // raft id → commit index announced
		got := map[uint64]uint64{}
		for _, m := range a.sent {
			if m.GetType() == pb.MsgApp && len(m.GetEntries()) == 0 {
				got[m.GetTo()] = m.GetCommit()
			}
		}
		return got
	}
	x := propose("x")
	a.sent = nil
	ackFrom(t, c, term, 2, x)
	ackFrom(t, c, term, 3, x)
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	if c.Status().GetCommit() != x || c.Applied() != x {
		t.Fatalf("commit %d applied %d, want %d", c.Status().GetCommit(), c.Applied(), x)
	}
	if got := emptyAppendsTo(); len(got) != 0 {
		t.Fatalf("commit announced to caught-up followers: %v", got)
	}
	// Follower 3 lags: y commits with the leader and follower 2; 3 still gets an append.
	y := propose("y")
	a.sent = nil
	ackFrom(t, c, term, 2, y)
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	if got := emptyAppendsTo(); got[3] != y || len(got) != 1 {
		t.Fatalf("empty appends after y committed: %v, want one to raft id 3 announcing %d", got, y)
	}
	// The next heartbeat tells follower 2.
	a.sent = nil
	c.Tick()
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	heard := false
	for _, m := range a.sent {
		if m.GetType() == pb.MsgHeartbeat && m.GetTo() == 2 {
			heard = m.GetCommit() == y
		}
	}
	if !heard {
		t.Fatalf("no heartbeat to raft id 2 carrying commit %d: %v", y, a.sent)
	}
}

func TestLeaderAppliesWhatCommitsDuringItsSync(t *testing.T) {
	c, st, a := newSyncCore(t, 1)
	term := electLeader(t, c, a)
	ack := func(index uint64) {
		t.Helper()
		ackFrom(t, c, term, 2, index)
	}
	last, _ := st.LastIndex() // the leader's empty entry, synced
	ack(last)
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	// Proposal x is written and synced; proposal y is written and its sync left pending.
	if err := c.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	x := last + 1
	if err := c.Propose([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := c.Process(a); err != nil {
		t.Fatal(err)
	}
	job := c.TakeSync()
	if job == nil {
		t.Fatal("no sync pending after a proposal")
	}
	ack(x + 1) // follower 2 has x and y: both commit, x is durable here, y is not yet
	if err := c.Process(a); err != nil {
		t.Fatal(err)
	}
	if c.Applied() != x {
		t.Fatalf("applied %d during the sync of %d, want %d (committed and synced before)", c.Applied(), x+1, x)
	}
	c.SyncDone(job())
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	if c.Applied() != x+1 {
		t.Fatalf("applied %d after the sync, want %d", c.Applied(), x+1)
	}
	if len(a.violations) > 0 {
		t.Fatalf("entries %v applied before they were synced", a.violations)
	}
	for i := 1; i < len(a.applied); i++ {
		if a.applied[i] != a.applied[i-1]+1 {
			t.Fatalf("applied %v: not each index once, in order", a.applied)
		}
	}
	// A failed sync stops the core.
	if err := c.Propose([]byte("z")); err != nil {
		t.Fatal(err)
	}
	if err := c.Process(a); err != nil {
		t.Fatal(err)
	}
	job = c.TakeSync()
	if job == nil {
		t.Fatal("no sync pending after a proposal")
	}
	c.SyncDone(errors.New("disk on fire"))
	if err := c.Process(a); !errors.Is(err, ErrStopped) {
		t.Fatalf("Process after a failed sync: %v, want ErrStopped", err)
	}
	if err := c.Propose([]byte("after")); !errors.Is(err, ErrStopped) {
		t.Fatalf("Propose after a failed sync: %v, want ErrStopped", err)
	}
}

// compactingStorage is syncStorage that compacts at Reclaim behind the newest snapshot added (no
// margin), as the archive does behind its oldest retained one.
type compactingStorage struct {
	*syncStorage
	floor uint64
}

func (s *compactingStorage) AddSnapshot(snap *pb.Snapshot) error {
	if err := s.syncStorage.AddSnapshot(snap); err != nil {
		return err
	}
	s.floor = max(s.floor, snap.GetMetadata().GetIndex())
	return nil
}

func (s *compactingStorage) Reclaim() error {
	if first, _ := s.FirstIndex(); s.floor < first {
		return nil
	}
	return s.Compact(s.floor)
}

// A leader that applied, during a sync, entries committed meanwhile (raft hands them out only in
// the next Ready) and took a snapshot there keeps the log raft has yet to hand out: compacting
// behind the snapshot at once made raft panic at the next Ready ("unexpected error when getting
// unapplied entries (requested index is unavailable due to compaction)"; simulator seed 395721).
// The log is compacted once raft's applied index reaches the snapshot.
func TestLogKeptUntilRaftAppliedTheSnapshotIndex(t *testing.T) {
	st := &compactingStorage{syncStorage: &syncStorage{memStorage: memStorage{raft.NewMemoryStorage()}}}
	c, err := New(Config{ID: 1, ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16, MaxUncommittedBytes: 1 << 20},
		st, []raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	knowPeers(c, 1, 2, 3)
	a := &applyLog{sink: sink{failed: map[uint64]error{}, ready: map[uint64]uint64{}}, st: st.syncStorage}
	term := electLeader(t, c, a)
	// x and y are written and synced, uncommitted (no follower answers); z's sync is left
	// pending.
	for _, d := range []string{"x", "y"} {
		if err := c.Propose([]byte(d)); err != nil {
			t.Fatal(err)
		}
		if err := drive(c, a); err != nil {
			t.Fatal(err)
		}
	}
	y, _ := st.LastIndex()
	if err := c.Propose([]byte("z")); err != nil {
		t.Fatal(err)
	}
	if err := c.Process(a); err != nil {
		t.Fatal(err)
	}
	job := c.TakeSync()
	if job == nil {
		t.Fatal("no sync pending after a proposal")
	}
	ackFrom(t, c, term, 2, y) // everything through y commits; the leader applies it at once
	if err := c.Process(a); err != nil {
		t.Fatal(err)
	}
	if c.Applied() != y || c.Status().Applied >= y {
		t.Fatalf("applied %d, raft's applied %d: want %d applied before raft hands it out", c.Applied(), c.Status().Applied, y)
	}
	write, err := c.CreateSnapshot(y, c.ConfState(), []byte("state"))
	if err != nil || write == nil {
		t.Fatalf("CreateSnapshot(%d): no write job (%v)", y, err)
	}
	if err := c.SnapshotDone(write()); err != nil {
		t.Fatal(err)
	}
	c.SyncDone(job())
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("raft panicked after the sync: %v", r)
			}
		}()
		if err := drive(c, a); err != nil {
			t.Fatal(err)
		}
	}()
	if c.Status().Applied < y {
		t.Fatalf("raft's applied %d after the sync, want at least %d", c.Status().Applied, y)
	}
	// The next sync compacts.
	if err := c.Propose([]byte("w")); err != nil {
		t.Fatal(err)
	}
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	if first, _ := st.FirstIndex(); first != y+1 {
		t.Fatalf("the log starts at %d after the next sync, want %d (compacted behind the snapshot)", first, y+1)
	}
	if len(a.violations) > 0 {
		t.Fatalf("entries %v applied before they were synced", a.violations)
	}
	for i := 1; i < len(a.applied); i++ {
		if a.applied[i] != a.applied[i-1]+1 {
			t.Fatalf("applied %v: not each index once, in order", a.applied)
		}
	}
}

// A leader catching a follower up keeps at most MaxInflightBytes of log (and one more append) in
// flight to it: with only MaxInflightMsgs, it read and sent 256 appends of up to MaxSizePerMsg at
// once (256 MiB per follower with the replica's settings).
func TestLeaderBoundsTheBytesInFlightToAFollower(t *testing.T) {
	const msgMax, inflightMax = 256 << 10, 1 << 20
	c, err := New(Config{ID: 1, ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: msgMax, MaxInflightMsgs: 256,
		MaxInflightBytes: inflightMax, MaxUncommittedBytes: 64 << 20}, memStorage{raft.NewMemoryStorage()},
		[]raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := &applyLog{sink: sink{failed: map[uint64]error{}, ready: map[uint64]uint64{}}, st: &syncStorage{}}
	s.st.memStorage = c.storage.(watchedStorage).Storage.(memStorage)
	term := electLeader(t, c, s)
	ackFrom(t, c, term, 3, 4) // member 3 follows; member 2 says nothing yet
	for range 64 {            // 16 MiB of log member 2 lacks
		if err := c.Propose(make([]byte, 256<<10)); err != nil {
			t.Fatal(err)
		}
		if err := drive(c, s); err != nil {
			t.Fatal(err)
		}
		ackFrom(t, c, term, 3, c.Status().GetCommit()+1)
		if err := drive(c, s); err != nil {
			t.Fatal(err)
		}
	}
	// Member 2 acknowledges the start of the log: the leader replicates to it from there.
	s.sent = nil
	ackFrom(t, c, term, 2, 4)
	if err := drive(c, s); err != nil {
		t.Fatal(err)
	}
	var bytes int
	for _, m := range s.sent {
		if m.GetTo() == 2 && m.GetType() == pb.MsgApp {
			for _, e := range m.GetEntries() {
				bytes += len(e.GetData())
			}
		}
	}
	if bytes == 0 || bytes > inflightMax+msgMax {
		t.Fatalf("%d bytes of log in flight to member 2 before it answered, want 1 to %d", bytes, inflightMax+msgMax)
	}
}

// Deviation 6: answers to appends from an earlier term than the member's are dropped, the rest
// kept in order.
func TestDropStaleAppendAnswers(t *testing.T) {
	msg := func(typ pb.MessageType, term uint64) *pb.Message {
		return &pb.Message{Type: typ.Enum(), Term: new(term)}
	}
	in := []*pb.Message{msg(pb.MsgAppResp, 3), msg(pb.MsgAppResp, 4), msg(pb.MsgHeartbeatResp, 3), msg(pb.MsgVoteResp, 4)}
	got := dropStaleAppendAnswers(in, 4)
	if len(got) != 3 || got[0] != in[1] || got[1] != in[2] || got[2] != in[3] {
		t.Fatalf("kept %v", got)
	}
	if got := dropStaleAppendAnswers(in[1:], 4); len(got) != 3 {
		t.Fatalf("dropped an answer of the member's own term: %v", got)
	}
}
