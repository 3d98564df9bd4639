package client_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
)

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Waiting is a value a program can inspect: attached or not, the leader, and the members it
// reaches against the majority it needs; its text is what the client's errors quote.
func TestWaitingIsInspectable(t *testing.T) {
	addr := fakeMember(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Endpoints: []string{addr, deadAddr(t), deadAddr(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := client.Waiting{Attached: true, Leader: addr, Reachable: 1, Members: 3, Need: 2}
	if w := c.Waiting(); w != want || w.String() != "attached to "+addr {
		t.Fatalf("attached: %+v %q, want %+v", w, w, want)
	}

	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	_, err = client.Dial(short, client.Config{Endpoints: []string{deadAddr(t), deadAddr(t), deadAddr(t)}})
	if !errors.Is(err, client.ErrNoLeader) || !strings.Contains(err.Error(), "(reachable 0 of 3, need 2)") {
		t.Fatalf("Dial with no member up: %v", err)
	}
}
