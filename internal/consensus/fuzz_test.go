package consensus

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// fixtureCore returns raft id 2 as a follower (term 2, leader unknown) or raft id 1 as the leader
// of term 3 (with the entry of its term committed), over a log of 12 entries: a snapshot at 3
// (the bootstrap), entries 4–10 of term 2 (8 committed), then the new leader's 11 and 12.
func fixtureCore(tb testing.TB, leader bool) (*Core, *sink) {
	ms := raft.NewMemoryStorage()
	cs := confState(1, 2, 3)
	if err := ms.ApplySnapshot(&pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(uint64(3)), Term: new(uint64(1)), ConfState: cs}}); err != nil {
		tb.Fatal(err)
	}
	var ents []*pb.Entry
	for i := uint64(4); i <= 10; i++ {
		ents = append(ents, &pb.Entry{Index: new(i), Term: new(uint64(2)), Data: []byte("x")})
	}
	if err := ms.Append(ents); err != nil {
		tb.Fatal(err)
	}
	if err := ms.SetHardState(&pb.HardState{Term: new(uint64(2)), Vote: new(uint64(1)), Commit: new(uint64(8))}); err != nil {
		tb.Fatal(err)
	}
	id := uint64(2)
	if leader {
		id = 1
	}
	c, err := New(Config{ID: id, ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16,
		MaxUncommittedBytes: 1 << 20}, memStorage{ms}, nil, 3)
	if err != nil {
		tb.Fatal(err)
	}
	s := &sink{failed: map[uint64]error{}, ready: map[uint64]uint64{}}
	if !leader {
		return c, s
	}
	step := func(m *pb.Message) {
		if err := c.Step(m); err != nil {
			tb.Fatal(err)
		}
		if err := drive(c, s); err != nil {
			tb.Fatal(err)
		}
	}
	if err := c.rn.Campaign(); err != nil {
		tb.Fatal(err)
	}
	_ = drive(c, s)
	for _, from := range []uint64{2, 3} {
		vote := msg(pb.MsgPreVoteResp, from, 1, 3)
		step(vote)
	}
	for _, from := range []uint64{2, 3} {
		step(msg(pb.MsgVoteResp, from, 1, 3))
	}
	if c.State().Role != raft.StateLeader {
		tb.Fatalf("fixture: member 1 is %v", c.State())
	}
	if err := c.Propose([]byte("y")); err != nil {
		tb.Fatal(err)
	}
	_ = drive(c, s)
	ack := msg(pb.MsgAppResp, 2, 1, 3)
	ack.Index = new(uint64(12))
	step(ack)
	s.sent = nil
	return c, s
}

// honestSeeds are messages an honest member of the fixture's cluster could send: to the follower
// (role 0) from leader 1 in term 2, or to the leader (role 1) in term 3.
func honestSeeds() [][]*pb.Message {
	app := msg(pb.MsgApp, 1, 2, 2)
	app.Index, app.LogTerm, app.Commit = new(uint64(10)), new(uint64(2)), new(uint64(10))
	app.Entries = []*pb.Entry{{Index: new(uint64(11)), Term: new(uint64(2)), Data: []byte("z")}}
	dup := proto.Clone(app).(*pb.Message)
	dup.Index, dup.Entries = new(uint64(7)), []*pb.Entry{{Index: new(uint64(8)), Term: new(uint64(2)), Data: []byte("x")}}
	hb := msg(pb.MsgHeartbeat, 1, 2, 2)
	hb.Commit, hb.Context = new(uint64(10)), ctx8(1)
	snap := msg(pb.MsgSnap, 1, 2, 2)
	snap.Snapshot = &pb.Snapshot{Data: []byte("s"), Metadata: &pb.SnapshotMetadata{Index: new(uint64(20)), Term: new(uint64(2)), ConfState: confState(1, 2, 3)}}
	vote := msg(pb.MsgVote, 3, 2, 3)
	vote.Index, vote.LogTerm = new(uint64(10)), new(uint64(2))
	pre := msg(pb.MsgPreVote, 3, 2, 3)
	pre.Index, pre.LogTerm = new(uint64(10)), new(uint64(2))
	ack := msg(pb.MsgAppResp, 2, 1, 3)
	ack.Index = new(uint64(12))
	rej := msg(pb.MsgAppResp, 3, 1, 3)
	rej.Index, rej.Reject, rej.RejectHint, rej.LogTerm = new(uint64(12)), new(true), new(uint64(9)), new(uint64(2))
	hbr := msg(pb.MsgHeartbeatResp, 3, 1, 3)
	hbr.Context = ctx8(1)
	return [][]*pb.Message{
		{app, hb}, {dup, hb}, {snap}, {vote}, {pre}, {msg(pb.MsgTimeoutNow, 1, 2, 2)}, {app, app, hb},
		{ack}, {rej}, {hbr, hbr}, {msg(pb.MsgVoteResp, 2, 1, 3)}, {msg(pb.MsgHeartbeatResp, 2, 1, 3)},
	}
}

// encodeFuzz lays out a fuzz input: role, reads, then per message a flags byte, a length and the
// message's bytes.
func encodeFuzz(role byte, ms []*pb.Message) []byte {
	b := []byte{role, 2}
	for _, m := range ms {
		raw, _ := proto.Marshal(m)
		b = append(b, 2)
		b = binary.AppendUvarint(b, uint64(len(raw)))
		b = append(b, raw...)
	}
	return b
}

// FuzzStep steps arbitrary messages (mutations of honest ones) into a follower or a leader through
// Step, processing in between or not (flags), and asserts raft never panics. A leader may have
// read requests queued, so that read positions in heartbeat responses matter.
func FuzzStep(f *testing.F) {
	for i, seed := range honestSeeds() {
		f.Add(encodeFuzz(byte(min(i/7, 1)), seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		leader := data[0]&1 == 1
		c, s := fixtureCore(t, leader)
		if leader {
			for range data[1] & 7 {
				if _, err := c.ReadIndex(); err != nil {
					t.Fatal(err)
				}
			}
			_ = drive(c, s)
		}
		data = data[2:]
		for n := 0; len(data) > 1 && n < 8; n++ {
			flags := data[0]
			l, k := binary.Uvarint(data[1:])
			if k <= 0 || l > uint64(len(data)-1-k) {
				return
			}
			raw := data[1+k : 1+k+int(l)]
			data = data[1+k+int(l):]
			m := new(pb.Message)
			if proto.Unmarshal(raw, m) != nil {
				continue
			}
			if flags&1 != 0 {
				c.Tick()
			}
			err := c.Step(m)
			if err != nil && !errors.Is(err, ErrInvalidMessage) && !errors.Is(err, ErrLostData) &&
				!errors.Is(err, raft.ErrProposalDropped) {
				t.Fatalf("Step: %v", err)
			}
			if flags&2 != 0 {
				_ = drive(c, s)
			}
			s.sent = nil
		}
		_ = drive(c, s)
		for range 3 {
			c.Tick()
			_ = drive(c, s)
		}
		if leader {
			_ = c.Propose([]byte("after"))
			_ = drive(c, s)
		}
	})
}

// mutate returns a copy of m with one to three fields changed the way a forger (or a bit flip
// the checksum missed) would: off-by-one and far-off indexes and terms, other types and senders,
// contexts of odd lengths, entries dropped, duplicated or re-numbered, conf changes, snapshot
// metadata.
func mutate(r *rand.Rand, m *pb.Message) *pb.Message {
	m = proto.Clone(m).(*pb.Message)
	num := func(v uint64) *uint64 {
		switch r.IntN(7) {
		case 0:
			v++
		case 1:
			v--
		case 2:
			v += uint64(r.IntN(20))
		case 3:
			v = 0
		case 4:
			v = 1_000_000_000
		case 5:
			v = ^uint64(0) - uint64(r.IntN(2))
		default:
			v -= uint64(r.IntN(5))
		}
		return &v
	}
	for range 1 + r.IntN(3) {
		switch r.IntN(14) {
		case 0:
			m.Term = num(m.GetTerm())
		case 1:
			m.Index = num(m.GetIndex())
		case 2:
			m.LogTerm = num(m.GetLogTerm())
		case 3, 4:
			m.Commit = num(m.GetCommit())
		case 5:
			m.Reject, m.RejectHint = new(!m.GetReject()), num(m.GetRejectHint())
		case 6:
			m.Context = make([]byte, r.IntN(10))
			if len(m.Context) == 8 {
				binary.LittleEndian.PutUint64(m.Context, *num(1))
			}
		case 7:
			types := []pb.MessageType{pb.MsgApp, pb.MsgAppResp, pb.MsgHeartbeat, pb.MsgHeartbeatResp, pb.MsgSnap,
				pb.MsgVote, pb.MsgPreVote, pb.MsgVoteResp, pb.MsgPreVoteResp, pb.MsgTimeoutNow, pb.MsgProp,
				pb.MsgReadIndex, pb.MsgTransferLeader}
			m.Type = types[r.IntN(len(types))].Enum()
		case 8:
			m.From = new(uint64(1 + r.IntN(3)))
		case 9, 10:
			if n := len(m.Entries); n > 0 {
				e := m.Entries[r.IntN(n)]
				switch r.IntN(4) {
				case 0:
					e.Index = num(e.GetIndex())
				case 1:
					e.Term = num(e.GetTerm())
				case 2:
					m.Entries = append(m.Entries, proto.Clone(e).(*pb.Entry))
				default:
					m.Entries = m.Entries[:r.IntN(n)]
				}
			}
		case 11:
			if n := len(m.Entries); n > 0 {
				e := m.Entries[r.IntN(n)]
				kinds := []pb.ConfChangeType{pb.ConfChangeAddNode, pb.ConfChangeRemoveNode, pb.ConfChangeAddLearnerNode}
				e.Type = pb.EntryConfChange.Enum()
				e.Data, _ = proto.Marshal(&pb.ConfChange{Type: kinds[r.IntN(3)].Enum(), NodeId: new(uint64(r.IntN(4)))})
				if r.IntN(4) == 0 {
					e.Data = []byte{0xff, 0xff}
				}
			}
		case 12:
			if md := m.GetSnapshot().GetMetadata(); md != nil {
				md.Index, md.Term = num(md.GetIndex()), num(md.GetTerm())
				if r.IntN(3) == 0 {
					md.ConfState = &pb.ConfState{Voters: []uint64{uint64(r.IntN(4))}, Learners: []uint64{uint64(r.IntN(4))}}
				}
			}
		case 13:
			m.Entries = append(m.Entries, &pb.Entry{Index: num(m.GetIndex() + 1), Term: num(m.GetTerm())})
		}
	}
	return m
}

// Random mutations of the honest traffic of a three-member cluster are stepped beside it through
// Step; raft never panics, and every refusal is an ErrInvalidMessage (or the lost-data stop a
// forged append that truncated acknowledged entries can lead to). The honest messages themselves
// are delivered as the network would; refusals of them are allowed here only because the
// forgeries that were let through (a plausible conflicting append, for instance) really can
// corrupt a member's log until members authenticate.
func TestStepSurvivesMutatedHonestTraffic(t *testing.T) {
	runs := 60
	if testing.Short() {
		runs = 10
	}
	for run := range runs {
		r := rand.New(rand.NewPCG(uint64(run), 15))
		tc := newTestCluster(t)
		tc.lax = true
		if got := panics(func() {
			for round := range 40 {
				if round%3 == 0 {
					if c := tc.cores[1]; c.Err() == nil {
						_ = c.Propose([]byte("p"))
						_, _ = c.ReadIndex()
					}
				}
				for id := uint64(1); id <= 3; id++ {
					tc.cores[id].Tick()
					_ = drive(tc.cores[id], tc.sinks[id])
				}
				for id := uint64(1); id <= 3; id++ {
					msgs := tc.sinks[id].sent
					tc.sinks[id].sent = nil
					for _, m := range msgs {
						to := tc.cores[m.GetTo()]
						if r.IntN(4) == 0 {
							f := mutate(r, m)
							if err := to.Step(f); err != nil && !errors.Is(err, ErrInvalidMessage) && !errors.Is(err, ErrLostData) &&
								!errors.Is(err, raft.ErrProposalDropped) {
								t.Errorf("run %d: Step(mutated %s): %v", run, f.GetType(), err)
							}
							if r.IntN(2) == 0 {
								_ = drive(to, tc.sinks[m.GetTo()])
							}
						}
						_ = to.Step(m)
					}
					_ = drive(tc.cores[id], tc.sinks[id])
				}
			}
		}); got != "" {
			t.Fatalf("run %d: panic: %s", run, got)
		}
	}
}
