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

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// A one-member cluster running the store, and a client using it.
func Example() {
	dir, _ := os.MkdirTemp("", "kv-example-")
	defer os.RemoveAll(dir)
	clientAddr := freeAddr()

	cfg := node.DefaultConfig()
	cfg.ID, cfg.DataDir = 0, dir
	cfg.Members = []node.Member{{ID: 0, ClientAddr: clientAddr, MemberAddr: freeAddr()}}
	n, err := node.New(cfg, kv.New())
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()

	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(cctx, client.Config{Endpoints: []string{clientAddr}})
	if err != nil {
		panic(err)
	}
	reply, _ := c.Send(cctx, []byte("colour=blue"))
	fmt.Println(string(reply))
	value, _ := c.Query(cctx, []byte("colour"))
	fmt.Println(string(value))

	c.Close()
	stop()
	fmt.Println(<-done)
	// Output:
	// OK
	// blue
	// <nil>
}
