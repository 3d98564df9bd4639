package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// handshakeTimeout bounds how long an inbound connection may take to introduce itself.
const handshakeTimeout = 5 * time.Second

// idleTimeoutDefault is Config.IdleTimeout's default: an inbound connection that sent nothing
// for this long is closed (the leader sends heartbeats every few hundred milliseconds; a
// snapshot stream sends chunks; a follower's connection to another follower carries nothing
// for long stretches, and its closing is routine: the dialler dials again when it has
// something to send).
const idleTimeoutDefault = 30 * time.Second

// snapshotProgressChunks: a snapshot transfer logs its progress every this many chunks.
const snapshotProgressChunks = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errNotTaken: the handler did not take a message because the member is stopping.
var errNotTaken = errors.New("transport: message not taken, the member is stopping")

// acceptLoop serves inbound connections until Stop; a failed accept is retried (accepter).
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	open := func() int {
		t.mu.Lock()
		defer t.mu.Unlock()
		return len(t.inbound)
	}
	for {
		conn := t.acc.next(open)
		if conn == nil {
			return
		}
		t.mu.Lock()
		t.inbound[conn] = struct{}{}
		t.mu.Unlock()
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.serve(conn)
			t.mu.Lock()
			delete(t.inbound, conn)
			t.mu.Unlock()
			_ = conn.Close()
			t.acc.connClosed()
		}()
	}
}

// serve authenticates an inbound connection and delivers its messages. Anything unexpected
// closes the connection with a logged reason; nothing from it reaches raft. With Config.TLS, the
// TLS handshake comes first, here in the connection's goroutine (tls.go).
func (t *Transport) serve(conn net.Conn) {
	if t.cfg.TLS != nil {
		var ok bool
		if conn, ok = t.acceptTLS(conn); !ok {
			return
		}
	}
	// Counted into the sender's received bytes once its handshake says who it is (stats.go).
	cr := &countReader{r: conn}
	r := bufio.NewReaderSize(cr, 256<<10)
	_ = conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	if t.cfg.TLS == nil {
		// A member with TLS configured dialling this plaintext port: said as such, not as a
		// frame too large (its record header read as a frame's length).
		if b, err := r.Peek(tlsRecordHeaderBytes); err == nil && tlsRecordStart(b) {
			t.reject(conn, "a TLS handshake on a plaintext member port: the other end has peer TLS configured, this member has none")
			return
		}
	}
	kind, body, buf, err := wire.ReadFrame(r, t.cfg.MaxFrameBytes, nil)
	if err != nil {
		t.reject(conn, "no valid handshake: %v", err)
		return
	}
	if kind != wire.FrameHandshake {
		t.reject(conn, "first frame is of kind %d, not a handshake", kind)
		return
	}
	hs, err := wire.DecodeHandshake(body)
	if errors.Is(err, wire.ErrLegacyHandshake) {
		t.refuse(conn, "handshake from %s: the peer runs a build from before version negotiation "+
			"(045a031 or older): stop the whole cluster and restart it on this build (docs/COMPATIBILITY.md)", t.who(hs.SenderID))
		return
	}
	if err != nil {
		t.reject(conn, "bad handshake: %v", err)
		return
	}
	if hs.ClusterID != t.cfg.ClusterID {
		t.reject(conn, "handshake from cluster %q, this is cluster %q", hs.ClusterID, t.cfg.ClusterID)
		return
	}
	if hs.ReceiverID != t.cfg.SelfID {
		t.reject(conn, "handshake for %s, this is %s", t.who(hs.ReceiverID), t.who(t.cfg.SelfID))
		return
	}
	if _, ok := t.peers.Load().byID[hs.SenderID]; !ok {
		t.rejectPeer(conn, hs.SenderID, "handshake from %s, which is not a peer", t.who(hs.SenderID))
		return
	}
	from := hs.SenderID
	theirs, err := wire.ClusterUUIDOf(hs.Extensions)
	if err != nil {
		t.rejectPeer(conn, from, "bad handshake from %s: %v", t.who(from), err)
		return
	}
	membersText, sameMembers, err := t.otherMembers(from, hs.Extensions)
	if err != nil {
		t.rejectPeer(conn, from, "bad handshake from %s: %v", t.who(from), err)
		return
	}
	v, ok := t.cfg.MemberProtocol.Common(hs.Protocol)
	reply := wire.HandshakeReply{Accepted: ok, Version: v, Protocol: t.cfg.MemberProtocol,
		ClusterVersionMax: t.cfg.ClusterVersionMax, Extensions: t.handshakeExtensions()}
	if !ok {
		reply.Text = fmt.Sprintf("member protocol: %s speaks %s, %s speaks %s: no common version",
			t.who(t.cfg.SelfID), t.cfg.MemberProtocol, t.who(from), hs.Protocol)
	}
	if text, same := t.otherCluster(from, theirs); ok && !same {
		ok, reply.Accepted, reply.Version, reply.Text = false, false, 0, text
	}
	if ok && !sameMembers {
		ok, reply.Accepted, reply.Version, reply.Text = false, false, 0, membersText
	}
	_ = conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	_, werr := conn.Write(wire.AppendFrame(nil, wire.FrameHandshakeReply, wire.AppendHandshakeReply(nil, &reply)))
	_ = conn.SetWriteDeadline(time.Time{})
	if !ok {
		t.refusePeer(conn, from, "%s", reply.Text)
		return
	}
	if werr != nil {
		t.rejectPeer(conn, from, "answering the handshake of %s: %v", t.who(from), werr)
		return
	}
	if f := t.cfg.PeerClusterVersion; f != nil {
		f(from, hs.ClusterVersionMax)
	}
	if err := t.reportStanding(from, hs.Extensions); err != nil {
		t.rejectPeer(conn, from, "bad handshake from %s: %v", t.who(from), err)
		return
	}
	self := &inboundPeer{id: from, version: v}
	t.mu.Lock()
	// Checked again under t.mu: SetPeers publishes a set without the peer before it closes the
	// peer's connections (DropInbound, under t.mu), so a removal is either seen here or finds
	// this connection registered.
	p, still := t.peers.Load().byID[from]
	if still {
		t.authed[conn] = self
	}
	t.mu.Unlock()
	if !still {
		t.rejectPeer(conn, from, "handshake from %s, which is not a peer any more", t.who(from))
		return
	}
	p.isBack()
	p.heardNow()
	cr.attribute(&p.c.received)
	// What the peer sent that closes its connection counts as a failure received from it.
	reject := func(reason string, args ...any) {
		p.c.receivedFailures.Add(1)
		t.rejectPeer(conn, from, reason, args...)
	}
	defer func() {
		t.mu.Lock()
		delete(t.authed, conn)
		t.mu.Unlock()
	}()
	for {
		_ = conn.SetReadDeadline(time.Now().Add(t.cfg.IdleTimeout))
		kind, body, buf, err = wire.ReadFrame(r, t.cfg.MaxFrameBytes, buf)
		if err != nil {
			if t.dropped(self) || errors.Is(err, io.EOF) || t.ctx.Err() != nil {
				return
			}
			if idle(err) {
				// Nothing to say for IdleTimeout is no fault of the peer's: a follower's
				// connection to another follower is quiet while raft has nothing for it.
				t.log.Debug("closing idle member connection", t.memberAttr(from), "remote", conn.RemoteAddr().String(),
					"idle_for", t.cfg.IdleTimeout)
				return
			}
			reject("reading from %s: %v", t.who(from), err)
			return
		}
		p.heardNow()
		if kind != wire.FrameRaft {
			reject("unexpected frame kind %d from %s", kind, t.who(from))
			return
		}
		m := new(pb.Message)
		if err := proto.Unmarshal(body, m); err != nil {
			reject("undecodable raft message from %s: %v", t.who(from), err)
			return
		}
		if m.GetFrom() != from || m.GetTo() != t.cfg.SelfID {
			reject("raft message claims from=%d to=%d (raft ids) on a connection from %s to %s",
				m.GetFrom(), m.GetTo(), t.who(from), t.who(t.cfg.SelfID))
			return
		}
		if m.GetType() == pb.MsgSnap {
			if err := t.receiveSnapshot(conn, r, m); err != nil {
				if !errors.Is(err, errNotTaken) && !t.dropped(self) {
					reject("snapshot from %s: %v", t.who(from), err)
				}
				return
			}
			continue
		}
		if !t.h.Receive(m) {
			return // the member is stopping
		}
	}
}

// dropped reports whether DropInbound closed the connection of p: then its caller said why, and
// what failed on the connection since is no protocol violation.
func (t *Transport) dropped(p *inboundPeer) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return p.dropped
}

// receiveSnapshot reads the chunk stream that follows a MsgSnap, writes it to a file, syncs and
// verifies it, and only then hands the message (with its data) to raft; it acknowledges the
// transfer to the sender after that.
func (t *Transport) receiveSnapshot(conn net.Conn, r *bufio.Reader, m *pb.Message) error {
	meta := m.GetSnapshot().GetMetadata()
	if err := os.MkdirAll(t.cfg.SnapshotDir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(t.cfg.SnapshotDir, fmt.Sprintf("incoming-%016x-%016x.tmp", meta.GetTerm(), meta.GetIndex()))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(path) // the data now lives in raft's snapshot (and the archive)
	}()
	crc := uint32(0)
	var written uint64
	var buf []byte
	for {
		_ = conn.SetReadDeadline(time.Now().Add(idleTimeoutDefault))
		kind, body, nb, err := wire.ReadFrame(r, t.cfg.MaxFrameBytes, buf)
		buf = nb
		if err != nil {
			return fmt.Errorf("aborted after %d bytes: %w", written, err)
		}
		if kind != wire.FrameSnapshotChunk {
			return fmt.Errorf("frame kind %d inside a snapshot stream", kind)
		}
		ch, err := wire.DecodeSnapshotChunk(body)
		if err != nil {
			return err
		}
		if ch.Index != meta.GetIndex() || ch.Term != meta.GetTerm() || ch.Offset != written || ch.Total < written+uint64(len(ch.Data)) {
			return fmt.Errorf("chunk (index %d term %d offset %d total %d) does not continue the stream at %d",
				ch.Index, ch.Term, ch.Offset, ch.Total, written)
		}
		if _, err := f.Write(ch.Data); err != nil {
			return err
		}
		crc = crc32.Update(crc, castagnoli, ch.Data)
		written += uint64(len(ch.Data))
		if !ch.Last {
			continue
		}
		if written != ch.Total {
			return fmt.Errorf("stream ended at %d of %d bytes", written, ch.Total)
		}
		if crc != ch.CRC {
			return fmt.Errorf("checksum %08x, sender says %08x", crc, ch.CRC)
		}
		break
	}
	if err := f.Sync(); err != nil {
		return err
	}
	data := make([]byte, written)
	if _, err := f.ReadAt(data, 0); err != nil {
		return err
	}
	if crc32.Checksum(data, castagnoli) != crc {
		return errors.New("snapshot changed on disk after sync")
	}
	m.Snapshot.Data = data
	if !t.h.Receive(m) {
		return errNotTaken // not acknowledged: the sender must not believe it applied
	}
	ack := wire.AppendFrame(nil, wire.FrameSnapshotAck, nil)
	_ = conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	_, err = conn.Write(ack)
	return err
}

// runSnapshots sends snapshots to the peer one at a time, on a connection of their own so a large
// transfer does not hold up heartbeats, and at most MaxConcurrentSnapshots across all peers.
//
// Raft sends a peer nothing more until it hears how its MsgSnap went, so each one handed over is
// reported exactly once: after its transfer, or as failed when the peer is removed first (raft
// ignores it if it no longer tracks the peer). When the transport stops, one not sent yet is not
// reported: raft stops too.
func (p *peer) runSnapshots() {
	defer p.t.wg.Done()
	for {
		var m *pb.Message
		select {
		case <-p.ctx.Done():
			p.abandon(0)
			return
		case m = <-p.snapq:
		}
		select {
		case <-p.ctx.Done():
			p.abandon(1) // m
			return
		case p.t.snaps <- struct{}{}:
		}
		err := p.sendSnapshot(m)
		<-p.t.snaps
		switch {
		case err == nil:
			p.t.snapsSent.Add(1)
		case p.t.ctx.Err() == nil:
			p.t.snapsFailed.Add(1)
			p.c.sentFailures.Add(1)
		}
		index := m.GetSnapshot().GetMetadata().GetIndex()
		switch {
		case err == nil || p.t.ctx.Err() != nil: // sent, or the member is stopping: nothing to say
		case p.ctx.Err() != nil:
			p.t.log.Info("snapshot transfer abandoned: the peer was removed", p.t.memberAttr(p.id), "index", index)
		default:
			p.t.log.Warn("snapshot transfer failed; raft will retry", p.t.memberAttr(p.id), "index", index, "err", err)
		}
		p.t.h.SnapshotStatus(p.id, err == nil)
	}
}

// abandon ends the peer's snapshots once its ctx ended: the held ones runSnapshots took, and
// any Send handed over since, are reported failed if the peer was removed; if the transport is
// stopping, none is.
func (p *peer) abandon(held int) {
	if p.abandonSnapshots() {
		held++
	}
	if p.t.ctx.Err() != nil {
		return
	}
	for range held {
		p.t.h.SnapshotStatus(p.id, false)
	}
}

func (p *peer) sendSnapshot(m *pb.Message) error {
	data := m.GetSnapshot().GetData()
	meta := proto.Clone(m).(*pb.Message)
	meta.Snapshot.Data = nil // the data travels as chunks
	raw, err := proto.Marshal(meta)
	if err != nil {
		return err
	}
	conn, _, _, err := p.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	// Removed, the peer gets no more: the transfer is abandoned where it is.
	stop := context.AfterFunc(p.ctx, func() { _ = conn.Close() })
	defer stop()
	w := bufio.NewWriterSize(countWriter{w: conn, dst: &p.c.sent}, 256<<10)
	frame := wire.AppendFrame(nil, wire.FrameRaft, raw)
	if _, err := w.Write(frame); err != nil {
		return err
	}
	md := m.GetSnapshot().GetMetadata()
	crc := crc32.Checksum(data, castagnoli)
	total := uint64(len(data))
	chunk := p.t.cfg.SnapshotChunkBytes
	for off := 0; ; off += chunk {
		end := min(off+chunk, len(data))
		ch := wire.SnapshotChunk{Index: md.GetIndex(), Term: md.GetTerm(), Offset: uint64(off), Total: total,
			Last: end == len(data), Data: data[off:end], CRC: crc}
		frame = wire.AppendFrame(frame[:0], wire.FrameSnapshotChunk, wire.AppendSnapshotChunk(nil, &ch))
		_ = conn.SetWriteDeadline(time.Now().Add(idleTimeoutDefault))
		if _, err := w.Write(frame); err != nil {
			return err
		}
		if n := off/chunk + 1; ch.Last || n%snapshotProgressChunks == 0 {
			p.t.log.Info("snapshot transfer", p.t.memberAttr(p.id), "index", md.GetIndex(),
				"sent_bytes", end, "total_bytes", total)
		}
		if ch.Last {
			break
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	// Wait for the receiver's acknowledgement: it comes after the data is synced and verified.
	_ = conn.SetReadDeadline(time.Now().Add(idleTimeoutDefault))
	kind, _, _, err := wire.ReadFrame(bufio.NewReader(conn), 64, nil)
	if err != nil {
		return fmt.Errorf("no acknowledgement: %w", err)
	}
	if kind != wire.FrameSnapshotAck {
		return fmt.Errorf("answered with frame kind %d, not an acknowledgement", kind)
	}
	return nil
}
