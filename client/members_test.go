package client_test

import (
	"bufio"
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// leaderFake is a fake leader that can be stopped (its port closed, its connections cut): it
// attaches any session in client protocol version, answers each command with its name, and
// list-members with members.
type leaderFake struct {
	t       *testing.T
	name    string
	l       net.Listener
	version uint16
	members []wire.AdminMember
	asked   atomic.Int64 // list-members requests received

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newLeaderFake(t *testing.T, name string, version uint16) *leaderFake {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &leaderFake{t: t, name: name, l: l, version: version}
	t.Cleanup(f.stop)
	return f
}

func (f *leaderFake) addr() string { return f.l.Addr().String() }

func (f *leaderFake) serve() {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := f.l.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				f.answer(c)
			}()
		}
	}()
}

func (f *leaderFake) answer(c net.Conn) {
	r := bufio.NewReader(c)
	var buf []byte
	for {
		_, body, nb, err := wire.ReadFrame(r, 1<<20, buf)
		buf = nb
		if err != nil {
			return
		}
		m, err := wire.DecodeClientMsg(body)
		if err != nil {
			f.t.Errorf("%s: %v", f.name, err) // (an admin request below version 4, for one)
			return
		}
		var out *wire.ClientMsg
		switch m.Kind {
		case wire.COpen, wire.CAttach:
			out = &wire.ClientMsg{Kind: wire.CAttached, Session: m.Session}
		case wire.CCommand:
			out = &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq, Payload: []byte(f.name)}
		case wire.CKeepAlive:
			out = &wire.ClientMsg{Kind: wire.CKeepAliveAck, Session: m.Session}
		case wire.CClose:
			out = &wire.ClientMsg{Kind: wire.CSessionEvent, Session: m.Session, Reason: uint8(service.CloseClient)}
		case wire.CAdmin:
			req, err := wire.DecodeAdminRequest(m.Payload)
			if err != nil || req.Op != wire.AdminListMembers || !m.Protocol.Contains(f.version) {
				f.t.Errorf("%s: admin request %+v (%s)", f.name, m, m.Payload)
				return
			}
			f.asked.Add(1)
			out = &wire.ClientMsg{Kind: wire.CAdminResponse, RequestID: m.RequestID, Payload: wire.EncodeAdmin(&wire.AdminResponse{Members: f.members})}
		default:
			continue
		}
		if _, err := c.Write(wire.AppendClientFrame(nil, out, f.version)); err != nil {
			return
		}
	}
}

// stop closes the port and cuts every connection, as a member that stops does.
func (f *leaderFake) stop() {
	f.l.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// waitFor polls cond until it holds, or fails the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A client given one member's address learns the others from the leader (client protocol 4),
// and keeps working through them once that member is gone.
func TestClientLearnsMembersAndOutlivesItsEndpoint(t *testing.T) {
	a, b := newLeaderFake(t, "a", wire.ClientProtocolMax), newLeaderFake(t, "b", wire.ClientProtocolMax)
	members := []wire.AdminMember{{ID: 0, ClientAddr: a.addr(), Role: "voter"}, {ID: 1, ClientAddr: b.addr(), Role: "voter"}}
	a.members, b.members = members, members
	a.serve()
	b.serve()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Endpoints: []string{a.addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if reply, err := c.Send(ctx, []byte("x")); err != nil || string(reply) != "a" {
		t.Fatalf("Send: %q %v, want a's answer", reply, err)
	}
	waitFor(t, 10*time.Second, "the client learns the members", func() bool {
		return slices.Equal(c.Endpoints(), []string{a.addr(), b.addr()})
	})
	if w := c.Waiting(); w.Members != 2 || !w.Attached {
		t.Fatalf("Waiting %+v, want attached, 2 members", w)
	}
	a.stop()
	if reply, err := c.Send(ctx, []byte("y")); err != nil || string(reply) != "b" {
		t.Fatalf("Send after a stopped: %q %v, want b's answer", reply, err)
	}
	waitFor(t, 10*time.Second, "b, the new leader, is asked too", func() bool { return b.asked.Load() > 0 })
}

// A member that speaks client protocol 3 (an older build) is asked nothing: the client keeps its
// configured endpoints.
func TestClientAsksNoMembersOfAnOlderMember(t *testing.T) {
	a := newLeaderFake(t, "a", 3)
	a.serve()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Endpoints: []string{a.addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		if reply, err := c.Send(ctx, []byte("x")); err != nil || string(reply) != "a" {
			t.Fatalf("Send: %q %v", reply, err)
		}
	}
	if n := a.asked.Load(); n != 0 || !slices.Equal(c.Endpoints(), []string{a.addr()}) {
		t.Fatalf("asked %d times, endpoints %v", n, c.Endpoints())
	}
}
