package node

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// Forged member-port frames that raft would crash on, each on a raw connection with a valid
// handshake claiming to be a member: a heartbeat "from the leader" committing index 10⁹ to a
// follower (it used to panic the follower inside raft: tocommit(1000000000) is out of range), an
// acknowledgement "from a follower" of an index beyond the leader's log, a proposal with an
// undecodable payload (a poison pill every member would stop at when applying it). Each is
// refused, its connection closed and counted; the cluster keeps its leader and term and applies
// the next command once.
func TestForgedRaftFramesAreRefused(t *testing.T) {
	t.Parallel()
	forgedRaftFramesAreRefused(t, newCluster(t, 3, nil), dialPlain)
}

// forgedRaftFramesAreRefused sends the forged frames on connections dial makes (plaintext, or
// TLS with a member's certificate).
func forgedRaftFramesAreRefused(t *testing.T, c *cluster, dial func(*testing.T, string) net.Conn) {
	l, term := c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	before := inc(ctx, t, cl)
	f := (l + 1) % 3
	other := (l + 2) % 3
	lraft, fraft, oraft := uint64(l+1), uint64(f+1), uint64(other+1)
	attacks := []struct {
		name   string
		target int
		from   uint64
		m      *pb.Message
	}{
		{"heartbeat committing index 10^9", f, lraft, &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: new(lraft), To: new(fraft),
			Term: new(term), Commit: new(uint64(1_000_000_000))}},
		{"acknowledgement beyond the leader's log", l, fraft, &pb.Message{Type: pb.MsgAppResp.Enum(), From: new(fraft), To: new(lraft),
			Term: new(term), Index: new(uint64(1_000_000))}},
		{"proposal of an undecodable entry", l, oraft, &pb.Message{Type: pb.MsgProp.Enum(), From: new(oraft), To: new(lraft),
			Entries: []*pb.Entry{{Data: []byte("\xff\xfe not a batch")}}}},
	}
	for i, a := range attacks {
		target := c.members[a.target]
		refused := target.n.Status().RaftRefused // (the leader is attacked twice: count each)
		conn := dial(t, target.cfg.Members[a.target].MemberAddr)
		if _, err := conn.Write(append(handshake("tandem", a.from, uint64(a.target+1)), raftFrame(a.m)...)); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, conn, a.name)
		conn.Close()
		deadline := time.Now().Add(5 * time.Second)
		for target.n.Status().RaftRefused <= refused || !strings.Contains(target.logs.String(), "refused an invalid raft message") {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not refused (Status %+v); logs:\n%s", a.name, target.n.Status(), target.logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		// Every member still runs; nothing changed hands.
		for j, m := range c.members {
			select {
			case err := <-m.done:
				t.Fatalf("after %s, member %d stopped: %v", a.name, j, err)
			default:
			}
		}
		if got := inc(ctx, t, cl); got != before+int64(i)+1 {
			t.Fatalf("after %s the counter is %d, want %d", a.name, got, before+int64(i)+1)
		}
	}
	if nl, nt := c.leader(time.Second); nl != l || nt != term {
		t.Fatalf("leader/term changed from %d/%d to %d/%d", l, term, nl, nt)
	}
}
