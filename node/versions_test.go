package node

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/version"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// A client of a build from before version negotiation (045a031) sends its open with version byte
// 1 and no range, and its commands in version 1: the member answers in version 1 — the attached
// message is the session alone, no limits — and applies the command.
func TestPreNegotiationClientIsServedInVersion1(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, nil)
	c.startAll(15 * time.Second)
	conn, err := net.Dial("tcp", c.clients[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sid := wire.SessionID{0x45, 0xa0, 0x31}
	open := append([]byte{1, byte(wire.COpen)}, sid[:]...) // 045a031's bytes
	cmd := wire.AppendClientMsg(nil, &wire.ClientMsg{Kind: wire.CCommand, Session: sid, Seq: 1, LowestUnacked: 1,
		Payload: counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})}, 1)
	out := wire.AppendFrame(wire.AppendFrame(nil, wire.FrameClient, open), wire.FrameClient, cmd)
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var attached, response bool
	for !attached || !response {
		_, body, _, err := wire.ReadFrame(r, 1<<20, nil)
		if err != nil {
			t.Fatalf("reading answers: %v", err)
		}
		if body[0] != 1 {
			t.Fatalf("answer in version %d to a version-1 client: %x", body[0], body)
		}
		m, err := wire.DecodeClientMsg(body)
		if err != nil {
			t.Fatal(err)
		}
		switch m.Kind {
		case wire.CAttached:
			if len(body) != 2+16 || m.Session != sid {
				t.Fatalf("attached message %x: want 045a031's, the session only", body)
			}
			attached = true
		case wire.CResponse:
			if !attached || m.Seq != 1 || m.Status != wire.StatusOK {
				t.Fatalf("response %+v (%q), attached first: %v", m, m.Payload, attached)
			}
			response = true
		default:
			t.Fatalf("unexpected %+v", m)
		}
	}
}

// A member of a later build that no longer reads client protocol 1 (it speaks [2,2]) meets this
// build's client, which speaks [1,2] and writes its open, and the commands it resends behind it,
// in its lowest version: the member refuses that open with its range instead of reading version-1
// commands it cannot decode, and the client reconnects at once writing in version 2, attaches and
// is served.
func TestClientReconnectsInAVersionTheMemberReads(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, nil)
	c.opts = func(int) []Option { return []Option{WithVersions(wire.Range{}, wire.Range{Min: 2, Max: 2}, 0)} }
	c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	for i := range 3 {
		if got := inc(ctx, t, cl); got != int64(i+1) {
			t.Fatalf("increment %d answered %d", i, got)
		}
	}
	if logs := c.members[0].logs.String(); !strings.Contains(logs, "the client wrote in version 1") {
		t.Fatalf("the member did not refuse the version-1 open; its log:\n%s", logs)
	}
}

// The build a member reports on the admin channel (tandem cluster status's BUILD) is the release
// `tandem version` prints and tandem_build_info carries, not the module version of the build
// information ("(devel)" for every build from a checkout).
func TestStatusBuildIsTheRelease(t *testing.T) {
	n := &Node{unreachable: map[int]bool{}}
	var st wire.MemberStatus
	n.describeSelf(&st)
	if st.Build != version.Version && !strings.HasPrefix(st.Build, version.Version+" ") {
		t.Fatalf("Build = %q, want %q and maybe the commit", st.Build, version.Version)
	}
}
