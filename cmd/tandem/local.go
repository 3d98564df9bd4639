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
	cfg    node.Config
	n      *node.Node
	cancel context.CancelFunc // nil while stopped
	done   chan error
}

// newLocalCluster configures three members on free loopback ports with their data under dir.
// Nothing runs yet.
func newLocalCluster(dir string) (*localCluster, error) {
	ms, eps, err := benchMembers()
	if err != nil {
		return nil, err
	}
	lc := &localCluster{dir: dir, eps: eps}
	for i := range ms {
		cfg := node.DefaultConfig()
		cfg.ID, cfg.Members, cfg.DataDir = i, ms, filepath.Join(dir, fmt.Sprintf("node-%d", i))
		lc.members = append(lc.members, &localMember{cfg: cfg})
	}
	return lc, nil
}

// startLocalCluster starts three members in a temporary directory (close removes it) and waits
// for a leader.
func startLocalCluster() (*localCluster, error) {
	dir, err := os.MkdirTemp("", "tandem-bench-")
	if err != nil {
		return nil, err
	}
	lc, err := newLocalCluster(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
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
	n, err := node.New(m.cfg, counter.New())
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

// close stops every member and removes the data directories.
func (lc *localCluster) close() {
	lc.stopAll()
	_ = os.RemoveAll(lc.dir)
}

// benchMembers chooses three members' addresses on free loopback ports; it returns them and their
// client addresses.
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

// freePorts returns n loopback addresses whose ports were free a moment ago.
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
