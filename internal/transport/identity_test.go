package transport

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/wire"
)

var (
	uuidA = wire.ClusterUUID{0x3f, 0x2a, 15: 1}
	uuidB = wire.ClusterUUID{0x9c, 0x1d, 15: 2}
)

// Two members of clusters with the same name and ids but other identities (a data directory of
// another cluster) refuse each other at the handshake, each side logging both identities, and no
// raft message passes.
func TestHandshakeRefusedBetweenClusterIdentities(t *testing.T) {
	a, b, ra, rb, la, lb, _, _ := startTwo(t, Config{ClusterUUID: uuidA}, Config{ClusterUUID: uuidB})
	for range 20 {
		a.Send([]*pb.Message{msgFrom(1, 2)})
		b.Send([]*pb.Message{msgFrom(2, 1)})
		time.Sleep(5 * time.Millisecond)
	}
	for _, l := range []*logBuffer{la, lb} {
		waitFor(t, "both sides log the refusal naming both identities, as acceptor and as dialler", func() bool {
			s := l.String()
			return strings.Contains(s, uuidA.String()) && strings.Contains(s, uuidB.String()) &&
				strings.Contains(s, "a data directory of another cluster?") &&
				strings.Contains(s, "closing member connection") && strings.Contains(s, "failed at the handshake")
		})
	}
	if s := la.String(); !strings.Contains(s, "this member (raft id 1) belongs to cluster test "+uuidA.String()) {
		t.Fatalf("the acceptor's refusal does not name its own identity first:\n%s", s)
	}
	waitFor(t, "both sides refused", func() bool { return a.Rejected() >= 1 && b.Rejected() >= 1 })
	if ms := append(drain(ra.msgs), drain(rb.msgs)...); len(ms) > 0 {
		t.Fatalf("%d raft messages passed between two clusters", len(ms))
	}
}

// A side that knows no identity yet accepts (a new cluster before its identity entry, an older
// build); once it learns its own (SetClusterUUID), a new connection is checked.
func TestHandshakeAcceptedWhenOneSideKnowsNone(t *testing.T) {
	a, b, ra, rb, _, _, _, _ := startTwo(t, Config{ClusterUUID: uuidA}, Config{})
	a.Send([]*pb.Message{msgFrom(1, 2)})
	b.Send([]*pb.Message{msgFrom(2, 1)})
	for _, r := range []*peerRecorder{ra, rb} {
		select {
		case <-r.msgs:
		case <-time.After(10 * time.Second):
			t.Fatal("a message did not pass between a member that knows its identity and one that knows none")
		}
	}
	b.SetClusterUUID(uuidA)
	if b.ClusterUUID() != uuidA {
		t.Fatalf("ClusterUUID %v after SetClusterUUID", b.ClusterUUID())
	}
	b.DropInbound(1)
	a.Send([]*pb.Message{msgFrom(1, 2)})
	waitFor(t, "a message passes on a new connection between members of one identity", func() bool {
		a.Send([]*pb.Message{msgFrom(1, 2)})
		select {
		case <-rb.msgs:
			return true
		case <-time.After(10 * time.Millisecond):
			return false
		}
	})
}

// The dialler checks the reply too: an acceptor that accepts while naming another identity (one
// that does not check) gets the connection closed before any raft message, logged with both.
func TestDiallerRefusesReplyOfAnotherCluster(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	self, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	rec := &peerRecorder{msgs: make(chan *pb.Message, 16), unreachable: make(chan uint64, 1024)}
	a := New(Config{ClusterID: "test", SelfID: 1, Peers: map[uint64]string{1: self.Addr().String(), 2: ln.Addr().String()},
		Listener: self, SnapshotDir: t.TempDir(), Logger: logs.logger(), ClusterUUID: uuidA, BackoffMax: 50 * time.Millisecond}, rec)
	a.Start()
	defer a.Stop()
	got := make(chan string, 1024) // what the fake acceptor read after its reply, per connection
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				r := bufio.NewReader(nc)
				_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
				if _, _, _, err := wire.ReadFrame(r, 1<<20, nil); err != nil {
					return
				}
				rep := wire.HandshakeReply{Accepted: true, Version: 1, Protocol: wire.MemberProtocol, ClusterVersionMax: 3,
					Extensions: wire.ClusterUUIDExtensions(uuidB)}
				if _, err := nc.Write(wire.AppendFrame(nil, wire.FrameHandshakeReply, wire.AppendHandshakeReply(nil, &rep))); err != nil {
					return
				}
				if kind, _, _, err := wire.ReadFrame(r, 1<<20, nil); err == nil {
					got <- fmt.Sprintf("a frame of kind %d", kind)
				} else {
					got <- "closed"
				}
			}()
		}
	}()
	waitFor(t, "the dialler logs the other identity", func() bool {
		a.Send([]*pb.Message{msgFrom(1, 2)})
		s := logs.String()
		return strings.Contains(s, "failed at the handshake") && strings.Contains(s, uuidA.String()) && strings.Contains(s, uuidB.String())
	})
	select {
	case what := <-got:
		if what != "closed" {
			t.Fatalf("the dialler sent %s after a reply of another cluster", what)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the dialler neither closed nor wrote within 10 s of the reply")
	}
}
