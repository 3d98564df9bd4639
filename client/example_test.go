package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/service"
)

// The main calls, against a cluster of three members running the counter service
// (examples/counter, whose codec encodes the requests and decodes the replies). startCluster
// runs that cluster in this process (see client/cluster_test.go); a program lists its cluster's
// client addresses instead.
func Example() {
	endpoints, stop := startCluster(3, func() service.Service { return counter.New() })
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		fmt.Println(err)
		return
	}
	inc := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})

	// Send: through the log, applied exactly once, even across a failover.
	reply, err := c.Send(ctx, inc)
	if err != nil {
		fmt.Println(err) // errors.Is(err, client.ErrNotApplied): safe to send again
		return
	}
	resp, _ := counter.DecodeResponse(reply)
	fmt.Println(resp)

	// SendAsync: a callback instead of a goroutine per command. Batch writes the ten together.
	var wg sync.WaitGroup
	c.Batch(func() {
		for range 10 {
			wg.Add(1)
			if err := c.SendAsync(inc, func(reply []byte, err error) {
				defer wg.Done()
				if err != nil {
					fmt.Println(err)
				}
			}); err != nil {
				wg.Done() // not sent: the callback will not run
				fmt.Println(err)
			}
		}
	})
	wg.Wait()

	// Query: a linearizable read that does not go through the log.
	value, err := c.Query(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpGet}))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp, _ = counter.DecodeResponse(value)
	fmt.Println(resp)

	// Errors say whether the command may have been applied.
	_, err = c.Send(ctx, make([]byte, 2<<20))
	fmt.Println(errors.Is(err, client.ErrNotApplied), errors.Is(err, client.ErrTooLarge))
	fmt.Println(c.Waiting().Attached)

	// Close: the cluster closes the session (the service sees OnSessionClose).
	fmt.Println(c.Close())
	// Output:
	// OK: counter=1
	// VALUE: 11
	// true true
	// true
	// <nil>
}

// What the service pushes with Session.Offer reaches Config.OnPush, in order. The service here
// (pusher, in client/cluster_test.go) pushes "welcome" when a session opens, and answers "push N"
// by pushing "1" … "N", then replying "pushed N".
func ExampleConfig_onPush() {
	endpoints, stop := startCluster(1, newPusher)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	pushes := make(chan string, 16)
	c, err := client.Dial(ctx, client.Config{
		Endpoints: endpoints,
		// On the client's reader goroutine: hand the push over, do not block.
		OnPush: func(payload []byte) { pushes <- string(payload) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	reply, err := c.Send(ctx, []byte("push 3"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(reply))
	for range 4 {
		fmt.Println(<-pushes)
	}
	// Output:
	// pushed 3
	// welcome
	// 1
	// 2
	// 3
}

// With no cluster to reach, Dial gives up when its context ends and says what it waited for.
func ExampleDial_noCluster() {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close() // nothing listens there now

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := client.Dial(ctx, client.Config{Endpoints: []string{addr}})
	fmt.Println(errors.Is(err, client.ErrNoLeader), errors.Is(err, client.ErrTimeout), errors.Is(err, context.DeadlineExceeded))
	// Output: true true true
}
