package kv_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/kv"
	"github.com/tandem-cluster/tandem/node"
)

// The store on a one-member cluster, and a client using it. (This is the code the README shows.)
func Example() {
	dir, _ := os.MkdirTemp("", "kv-example-")
	defer os.RemoveAll(dir)
	// The member's two ports, bound here on free ports (a member of a real cluster binds the
	// addresses of its Members entry itself).
	cl, _ := net.Listen("tcp", "127.0.0.1:0")
	ml, _ := net.Listen("tcp", "127.0.0.1:0")
	clientAddr := cl.Addr().String()

	cfg := node.DefaultConfig()
	cfg.ID, cfg.DataDir = 0, dir // this member, and where it keeps its log and snapshots
	cfg.Members = []node.Member{{ID: 0, ClientAddr: clientAddr, MemberAddr: ml.Addr().String()}}
	n, err := node.New(cfg, kv.New(), node.WithListeners(cl, ml))
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()

	c, err := client.Dial(ctx, client.Config{Endpoints: []string{clientAddr}})
	if err != nil {
		panic(err)
	}
	reply, err := c.Send(ctx, []byte("colour=blue")) // a command: through the log, exactly once
	fmt.Println(string(reply), err)
	value, err := c.Query(ctx, []byte("colour")) // a query: linearizable, no log entry
	fmt.Println(string(value), err)

	c.Close()
	stop()
	fmt.Println(<-done) // Run returns nil once ctx is cancelled and the member stopped
	// Output:
	// OK <nil>
	// blue <nil>
	// <nil>
}
