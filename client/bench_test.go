package client_test

import (
	"bufio"
	"context"
	"net"
	"sync"
	"testing"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// fakeMember answers every command at once (no log, no fsync): what is measured is the client
// (numbering, queueing, writing, reading, completing) and the loopback hop.
func fakeMember(b testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReaderSize(c, 64<<10)
				var buf, out []byte
				for {
					_, body, nb, err := wire.ReadFrame(r, 1<<20, buf)
					buf = nb
					if err != nil {
						return
					}
					m, err := wire.DecodeClientMsg(body)
					if err != nil {
						return
					}
					switch m.Kind {
					case wire.COpen, wire.CAttach:
						out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CAttached, Session: m.Session})
					case wire.CCommand:
						out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq, Payload: []byte("OK: counter=1")})
					case wire.CKeepAlive:
						out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CKeepAliveAck, Session: m.Session})
					}
					if !wire.FrameBuffered(r) {
						if _, err := c.Write(out); err != nil {
							return
						}
						out = out[:0]
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

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
