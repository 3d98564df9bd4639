package client_test

import (
	"context"
	"sync"
	"testing"

	"github.com/tandem-cluster/tandem/client"
)

// BenchmarkClientSendAsyncWindow256 keeps 256 commands in flight through SendAsync, as tandem
// bench does: the client's hot path.
func BenchmarkClientSendAsyncWindow256(b *testing.B) {
	addr := fakeMember(b)
	cl, err := client.Dial(context.Background(), client.Config{Endpoints: []string{addr}, MaxInFlight: 256})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	payload := []byte{1, 0, 1}
	var wg sync.WaitGroup
	var mu sync.Mutex
	issued := 0
	n := b.N
	var next func([]byte, error)
	next = func(_ []byte, err error) {
		if err != nil {
			b.Error(err)
		}
		mu.Lock()
		more := issued < n
		if more {
			issued++
		}
		mu.Unlock()
		if more {
			if err := cl.SendAsync(payload, next); err != nil {
				b.Error(err)
			}
		}
		wg.Done()
	}
	b.ResetTimer()
	wg.Add(n)
	mu.Lock()
	start := min(256, n)
	issued = start
	mu.Unlock()
	for range start {
		if err := cl.SendAsync(payload, next); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
}

// BenchmarkClientSendInFlight1 sends one command at a time (a round trip each).
func BenchmarkClientSendInFlight1(b *testing.B) {
	addr := fakeMember(b)
	cl, err := client.Dial(context.Background(), client.Config{Endpoints: []string{addr}})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	payload := []byte{1, 0, 1}
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		if _, err := cl.Send(ctx, payload); err != nil {
			b.Fatal(err)
		}
	}
}
