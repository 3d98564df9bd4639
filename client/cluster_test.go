package client_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-cluster/tandem/node"
	"github.com/tandem-cluster/tandem/service"
)

// startCluster runs a cluster of n members of the service newService makes, in this process,
// each with a data directory of its own, and returns the members' client addresses and a
// function that stops the members and removes their data. It panics on error (the examples use
// it too).
func startCluster(n int, newService func() service.Service) (endpoints []string, stop func()) {
	dir, err := os.MkdirTemp("", "tandem-client-test-")
	if err != nil {
		panic(err)
	}
	var members []node.Member
	var listeners [][2]net.Listener // each member's client and member ports, bound here
	for i := range n {
		cl, ml := listen(), listen()
		listeners = append(listeners, [2]net.Listener{cl, ml})
		members = append(members, node.Member{ID: i, ClientAddr: cl.Addr().String(), MemberAddr: ml.Addr().String()})
		endpoints = append(endpoints, members[i].ClientAddr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, n)
	for i := range n {
		cfg := node.DefaultConfig()
		cfg.ID, cfg.Members, cfg.DataDir = i, members, fmt.Sprintf("%s/member-%d", dir, i)
		nd, err := node.New(cfg, newService(), node.WithListeners(listeners[i][0], listeners[i][1]))
		if err != nil {
			panic(err)
		}
		go func() { done <- nd.Run(ctx) }()
	}
	return endpoints, func() {
		cancel()
		for range n {
			if err := <-done; err != nil {
				panic(err)
			}
		}
		os.RemoveAll(dir)
	}
}

// listen binds a free loopback port.
func listen() net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	return l
}

// pusher is a service for the tests: it offers "welcome" to each session that opens; the
// command "push N" makes it offer "1" … "N" to the sender, then reply "pushed N"; any other
// command is answered "ok". It records each session's close with its reason, which the query
// "closes" lists, one per line.
type pusher struct {
	closes []string // "<session id> <reason>", in log order
}

func newPusher() service.Service { return &pusher{} }

func (p *pusher) OnStart(_ service.Cluster, snapshot io.Reader) error {
	p.closes = nil
	if snapshot == nil {
		return nil
	}
	sc := bufio.NewScanner(snapshot)
	for sc.Scan() {
		p.closes = append(p.closes, sc.Text())
	}
	return sc.Err()
}

func (p *pusher) OnSessionOpen(s service.Session, _ time.Time) { _ = s.Offer([]byte("welcome")) }

func (p *pusher) OnSessionClose(s service.Session, _ time.Time, reason service.CloseReason) {
	p.closes = append(p.closes, s.ID().String()+" "+reason.String())
}

func (p *pusher) OnSessionMessage(s service.Session, _ time.Time, msg []byte) []byte {
	n, err := strconv.Atoi(strings.TrimPrefix(string(msg), "push "))
	if !strings.HasPrefix(string(msg), "push ") || err != nil {
		return []byte("ok")
	}
	for i := 1; i <= n; i++ {
		_ = s.Offer([]byte(strconv.Itoa(i)))
	}
	return []byte("pushed " + strconv.Itoa(n))
}

func (p *pusher) OnQuery(q []byte) []byte {
	if string(q) == "closes" {
		return []byte(strings.Join(p.closes, "\n"))
	}
	return nil
}

func (p *pusher) OnTakeSnapshot(w io.Writer) error {
	for _, c := range p.closes {
		if _, err := io.WriteString(w, c+"\n"); err != nil {
			return err
		}
	}
	return nil
}

func (p *pusher) OnTimerEvent(int64, time.Time) {}
func (p *pusher) OnRoleChange(service.Role)     {}
func (p *pusher) OnTerminate()                  {}
