package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/internal/testpki"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/node"
)

// Three `tandem node` processes with mutual TLS on the member port (--peer-cert, --peer-key,
// --peer-ca, --peer-allowed-names) elect a leader and serve `tandem client increment`. A raw
// connection that sends the leader a plaintext member handshake, claiming a follower's id, and a
// vote after it, is refused with the reason in the leader's log; the cluster keeps its leader
// and keeps serving.
func TestProcessMembersWithPeerTLS(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	pc.dumpOnFailure()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "peers")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	for i := range 3 {
		c := ca.Issue(t, testpki.Member, fmt.Sprintf("member-%d", i), nil).Write(t, dir, fmt.Sprintf("member-%d", i))
		pc.argv[i] = []string{"--members", pc.members, "--data", pc.dataDir(i), "--peer-cert", c.CertFile, "--peer-key", c.KeyFile,
			"--peer-ca", caFile, "--peer-allowed-names", "member-0,member-1,member-2"}
	}
	l := pc.startAll()
	_, term := pc.procs[l].state()
	eps := strings.Join(pc.clients, ",")
	if out, stderr, code := runCLI(t, pc.bin, "client", "increment", "--endpoints", eps, "--timeout", "15s"); code != 0 ||
		strings.TrimSpace(out) != "OK: counter=1" {
		t.Fatalf("tandem client increment: exit %d, %q %q", code, out, stderr)
	}
	for i, p := range pc.procs {
		if out := p.output(); !strings.Contains(out, `msg="member port: mutual TLS"`) || !strings.Contains(out, fmt.Sprintf("subject=member-%d", i)) {
			t.Fatalf("member %d does not say it serves the member port with its certificate:\n%s", i, out)
		}
	}

	ms, err := node.ParseMembers(pc.members)
	if err != nil {
		t.Fatal(err)
	}
	f := (l + 1) % 3
	conn, err := net.Dial("tcp", ms[l].MemberAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hs := wire.AppendFrame(nil, wire.FrameHandshake, wire.AppendHandshake(nil, &wire.Handshake{ClusterID: "tandem",
		SenderID: uint64(f + 1), ReceiverID: uint64(l + 1), Protocol: wire.MemberProtocol}))
	vote, err := proto.Marshal(&pb.Message{Type: pb.MsgVote.Enum(), From: new(uint64(f + 1)), To: new(uint64(l + 1)), Term: new(uint64(1000))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(wire.AppendFrame(hs, wire.FrameRaft, vote)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("the leader did not close the plaintext connection (%v)", err)
	}
	pc.waitOutput(l, "closing member connection: plaintext on a TLS member port: the connection began with a Tandem frame", 10*time.Second)

	if out, stderr, code := runCLI(t, pc.bin, "client", "increment", "--endpoints", eps, "--timeout", "15s"); code != 0 ||
		strings.TrimSpace(out) != "OK: counter=2" {
		t.Fatalf("tandem client increment after the intrusion: exit %d, %q %q", code, out, stderr)
	}
	if role, now := pc.procs[l].state(); role != "LEADER" || now != term {
		t.Fatalf("member %d, leader in term %d, is %s in term %d", l, term, role, now)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// A member port on an inherited socket bound to every interface is checked at the start, once
// its address is known: without TLS and without --insecure the member refuses to start, saying
// so in one line; with --insecure it starts and warns once.
func TestProcessInheritedMemberPortOnEveryInterfaceNeedsTLSOrInsecure(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 1)
	pc.dumpOnFailure()
	// bind gives the next start a client port on loopback and a member port on every interface
	// (ephemeral ports: rebinding the member list's could meet a port another process took
	// meanwhile; a member of one serves whatever it advertises).
	bind := func() {
		for _, l := range pc.ports[0] {
			if l != nil {
				l.Close()
			}
		}
		cl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ml, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close(); ml.Close() })
		pc.ports[0] = [2]net.Listener{cl, ml}
	}
	bind()
	addr := pc.ports[0][1].Addr().String()
	pc.start(0)
	out, code := pc.waitExit(0, 10*time.Second, "member 0 on a member port of every interface")
	want := "tandem node: the member port binds " + addr + ", not a loopback address, without TLS"
	if code != exitUsage || !strings.Contains(out, want) || strings.Contains(out, "Tandem node started") {
		t.Fatalf("exit %d, want %d and %q:\n%s", code, exitUsage, want, out)
	}

	bind()
	addr = pc.ports[0][1].Addr().String()
	pc.extraArgs = []string{"--insecure"}
	pc.start(0)
	pc.leader(15 * time.Second)
	if out := pc.procs[0].output(); strings.Count(out, "the member port binds "+addr+", not a loopback address, without TLS (--insecure)") != 1 {
		t.Fatalf("want one warning about the member port on %s:\n%s", addr, out)
	}
}
