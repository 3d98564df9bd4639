package client_test

import (
	"bufio"
	"net"
	"testing"

	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// fakeMember answers every request at once (no log, no fsync): what is measured is the client
// (numbering, queueing, writing, reading, completing) and the loopback hop.
func fakeMember(b testing.TB) string {
	return serveFake(b, func(m *wire.ClientMsg, out []byte) []byte {
		switch m.Kind {
		case wire.COpen, wire.CAttach:
			out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CAttached, Session: m.Session}, wire.ClientProtocolMax)
		case wire.CCommand:
			out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CResponse, Session: m.Session, Seq: m.Seq, Payload: []byte("OK: counter=1")}, wire.ClientProtocolMax)
		case wire.CKeepAlive:
			out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CKeepAliveAck, Session: m.Session}, wire.ClientProtocolMax)
		case wire.CClose:
			out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CSessionEvent, Session: m.Session, Reason: uint8(service.CloseClient)}, wire.ClientProtocolMax)
		}
		return out
	})
}

// serveFake listens on a loopback port and answers each client message with what answer appends
// to out (the frames written back, once no more requests are buffered). It returns the address.
func serveFake(b testing.TB, answer func(m *wire.ClientMsg, out []byte) []byte) string {
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
				var m wire.ClientMsg // (one per connection: answer's pointer would make one per message)
				for {
					_, body, nb, err := wire.ReadFrame(r, 1<<20, buf)
					buf = nb
					if err != nil {
						return
					}
					if m, err = wire.DecodeClientMsg(body); err != nil {
						return
					}
					out = answer(&m, out)
					if !wire.FrameBuffered(r) && len(out) > 0 {
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
