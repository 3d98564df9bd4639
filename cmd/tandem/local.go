package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/node"
	"github.com/tandem-cluster/tandem/service"
)

// localCluster is three counter members running in this process over loopback TCP, each in its
// own data directory under dir: tandem demo, tandem bench in-process and tandem bench --restart.
type localCluster struct {
	dir     string
	eps     []string // the members' client addresses, which clients dial
	members []*localMember
	// onStart, if set, runs when member i starts, before its Run (the demo prints role changes
	// from n.Events(), which is closed when the member stops).
	onStart func(i int, n *node.Node)
}

type localMember struct {
	cfg node.Config
	// client and member are the member's ports, bound by newLocalCluster, until its first start
	// hands them to Run (node.WithListeners); a restart binds the addresses again.
	client, member net.Listener
	n              *node.Node
	cancel         context.CancelFunc // nil while stopped
	done           chan error
}

// newLocalCluster binds three members' ports on ephemeral loopback ports and configures the
// members with their data under dir. Nothing runs yet.
func newLocalCluster(dir string) (*localCluster, error) {
	ls, err := listenLocal(6)
	if err != nil {
		return nil, err
	}
	lc := &localCluster{dir: dir}
	var ms []node.Member
	for i := range 3 {
		lc.members = append(lc.members, &localMember{client: ls[2*i], member: ls[2*i+1]})
		ms = append(ms, node.Member{ID: i, ClientAddr: ls[2*i].Addr().String(), MemberAddr: ls[2*i+1].Addr().String()})
		lc.eps = append(lc.eps, ms[i].ClientAddr)
	}
	for i, m := range lc.members {
		m.cfg = node.DefaultConfig()
		m.cfg.ID, m.cfg.Members, m.cfg.DataDir = i, ms, filepath.Join(dir, fmt.Sprintf("node-%d", i))
	}
	return lc, nil
}

// startLocalCluster starts three members in a temporary directory (close removes it) and waits
// for a leader.
func startLocalCluster(sec *benchSecurity) (*localCluster, error) {
	dir, err := os.MkdirTemp("", "tandem-bench-")
	if err != nil {
		return nil, err
	}
	lc, err := newLocalCluster(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if sec != nil {
		for _, m := range lc.members {
			sec.tune(&m.cfg)
		}
	}
	if err := lc.startAll(); err != nil {
		lc.close()
		return nil, err
	}
	if _, err := lc.waitLeader(15 * time.Second); err != nil {
		lc.close()
		return nil, err
	}
	return lc, nil
}

// start runs member i from its data directory.
func (lc *localCluster) start(i int) error {
	m := lc.members[i]
	var opts []node.Option
	if m.client != nil {
		opts = append(opts, node.WithListeners(m.client, m.member))
		m.client, m.member = nil, nil // Run closes them
	}
	n, err := node.New(m.cfg, counter.New(), opts...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.n, m.cancel, m.done = n, cancel, make(chan error, 1)
	if lc.onStart != nil {
		lc.onStart(i, n)
	}
	go func() { m.done <- n.Run(ctx) }()
	return nil
}

// startAll starts every member that is not running.
func (lc *localCluster) startAll() error {
	for i, m := range lc.members {
		if m.cancel != nil {
			continue
		}
		if err := lc.start(i); err != nil {
			return err
		}
	}
	return nil
}

// stop stops member i (as Ctrl+C does: a leader hands over first) and returns what its Run
// returned.
func (lc *localCluster) stop(i int) error {
	m := lc.members[i]
	if m.cancel == nil {
		return nil
	}
	m.cancel()
	m.cancel = nil
	return <-m.done
}

// stopAll stops every member; the data stays.
func (lc *localCluster) stopAll() {
	for i := range lc.members {
		_ = lc.stop(i)
	}
}

// leader returns the running member that is leader, or -1.
func (lc *localCluster) leader() int {
	for i, m := range lc.members {
		if m.cancel != nil && m.n.Status().Role == service.Leader {
			return i
		}
	}
	return -1
}

// waitLeader polls until a running member is leader.
func (lc *localCluster) waitLeader(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		if l := lc.leader(); l >= 0 {
			return l, nil
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("no leader within %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// close stops every member, closes the ports of members that never ran and removes the data
// directories.
func (lc *localCluster) close() {
	lc.stopAll()
	for _, m := range lc.members {
		if m.client != nil {
			_ = m.client.Close()
			_ = m.member.Close()
		}
	}
	_ = os.RemoveAll(lc.dir)
}

// listenLocal binds n ephemeral loopback ports.
func listenLocal(n int) ([]net.Listener, error) {
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range ls {
				_ = l.Close()
			}
			return nil, err
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// benchMembers chooses three members' addresses on free loopback ports for `tandem bench
// --processes`; it returns them and their client addresses. The ports are free a moment ago and
// bound again by the processes: another process may take one meanwhile (in-process members take
// their bound ports instead: newLocalCluster; processes could inherit them: tandem node
// --client-fd, --member-fd).
func benchMembers() ([]node.Member, []string, error) {
	addrs, err := freePorts(6)
	if err != nil {
		return nil, nil, err
	}
	var ms []node.Member
	var eps []string
	for i := range 3 {
		ms = append(ms, node.Member{ID: i, ClientAddr: addrs[2*i], MemberAddr: addrs[2*i+1]})
		eps = append(eps, addrs[2*i])
	}
	return ms, eps, nil
}

// freePorts returns n loopback addresses whose ports were free a moment ago (and may be taken by
// another process by the time they are used: only for benchMembers, and for tests that want
// addresses nothing listens on).
func freePorts(n int) ([]string, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}
