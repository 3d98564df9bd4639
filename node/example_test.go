package node_test

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/node"
	"github.com/tandem-cluster/tandem/service"
)

// A one-member cluster of the counter service, on ports bound beforehand (WithListeners): it
// waits until the member leads, sends one command, and stops the member. A real cluster lists
// three or more Members, the same on every member, and runs each with its own ID and DataDir.
func Example() {
	cl, _ := net.Listen("tcp", "127.0.0.1:0")
	ml, _ := net.Listen("tcp", "127.0.0.1:0")
	dir, _ := os.MkdirTemp("", "tandem-example-")
	defer os.RemoveAll(dir)

	cfg := node.DefaultConfig()
	cfg.ID, cfg.DataDir = 0, dir
	cfg.Members = []node.Member{{ID: 0, ClientAddr: cl.Addr().String(), MemberAddr: ml.Addr().String()}}
	n, err := node.New(cfg, counter.New(), node.WithListeners(cl, ml))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()

	for ev := range n.Events() { // closed when Run returns
		if ev.Kind != node.EventRoleChange || ev.Role != service.Leader {
			continue
		}
		fmt.Printf("member %d leads\n", ev.Leader)
		c, err := client.Dial(ctx, client.Config{Endpoints: []string{cl.Addr().String()}})
		if err != nil {
			fmt.Println(err)
			stop()
			continue
		}
		reply, err := c.Send(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement}))
		if r, derr := counter.DecodeResponse(reply); err == nil && derr == nil {
			fmt.Println(r)
		}
		c.Close()
		stop() // a leader of a cluster of more hands over first
	}
	fmt.Println("Run returned", <-done)
	// Output:
	// member 0 leads
	// OK: counter=1
	// Run returned <nil>
}
