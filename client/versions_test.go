package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// A client that speaks only version 1 (as 045a031's) works end to end: it opens, sends commands,
// queries and closes, with no limits announced.
func TestClientRestrictedToVersion1WorksEndToEnd(t *testing.T) {
	endpoints, stop := startCluster(1, func() service.Service { return counter.New() })
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.WithProtocol(client.Config{Endpoints: endpoints}, wire.Range{Min: 1, Max: 1}))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.Send(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Query(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpGet})); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// A client two versions away from every member fails Dial with ErrProtocolVersion, naming its
// range and the members'.
func TestClientWithoutCommonVersionFails(t *testing.T) {
	endpoints, stop := startCluster(1, func() service.Service { return counter.New() })
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.WithProtocol(client.Config{Endpoints: endpoints}, wire.Range{Min: 6, Max: 6}))
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded")
	}
	if !errors.Is(err, client.ErrProtocolVersion) || !strings.Contains(err.Error(), "[6,6]") || !strings.Contains(err.Error(), "[1,5]") {
		t.Fatalf("Dial: %v, want ErrProtocolVersion naming [6,6] and [1,5]", err)
	}
}
