package client_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
)

// What the service pushes with Session.Offer reaches the application through Config.OnPush, in
// the order it was offered and in order with the callbacks of SendAsync: the push from
// OnSessionOpen, then those a command offers before its reply. Before, pushes were dropped.
func TestPushesReachTheApplication(t *testing.T) {
	endpoints, stop := startCluster(1, newPusher)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan string, 1000)
	c, err := client.Dial(ctx, client.Config{Endpoints: endpoints, OnPush: func(p []byte) { got <- string(p) }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// drain returns what was delivered so far.
	drain := func() string {
		var s []string
		for {
			select {
			case p := <-got:
				s = append(s, p)
			default:
				return strings.Join(s, " ")
			}
		}
	}
	if reply, err := c.Send(ctx, []byte("push 50")); err != nil || string(reply) != "pushed 50" {
		t.Fatalf("push 50: %q %v", reply, err)
	}
	// The pushes came before the reply on the connection, and OnPush ran for each before the
	// reply was read.
	want := "welcome"
	for i := 1; i <= 50; i++ {
		want += " " + strconv.Itoa(i)
	}
	if d := drain(); d != want {
		t.Fatalf("pushes delivered: %q, want %q", d, want)
	}
	answered := make(chan struct{})
	if err := c.SendAsync([]byte("push 3"), func(reply []byte, err error) {
		got <- "reply:" + string(reply)
		close(answered)
	}); err != nil {
		t.Fatal(err)
	}
	<-answered
	if d := drain(); d != "1 2 3 reply:pushed 3" {
		t.Fatalf("pushes and a SendAsync callback: %q", d)
	}

	// A client without OnPush drops them.
	quiet, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	if reply, err := quiet.Send(ctx, []byte("push 3")); err != nil || string(reply) != "pushed 3" {
		t.Fatalf("push 3 without OnPush: %q %v", reply, err)
	}
	if d := drain(); d != "" {
		t.Fatalf("the first client got another session's pushes: %q", d)
	}
}
