package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tandem-cluster/tandem/client"
)

// With no cluster to reach, Dial gives up when its context ends and says what it waited for.
// (examples/kv shows Dial, Send and Query against a running member.)
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
