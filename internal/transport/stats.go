package transport

import (
	"io"
	"slices"
	"sync/atomic"
)

// PeerStats is what this member counted of its traffic with one peer (by raft id) since the
// transport was made. The counters of a peer that was removed stay until the member restarts.
type PeerStats struct {
	ID uint64
	// SentBytes: bytes written on this member's connections to the peer (its raft messages,
	// snapshots and handshakes); ReceivedBytes: bytes read from the peer's connections to this
	// member (the same, the other way; the few bytes of the peer's handshake replies and
	// snapshot acknowledgements are not counted).
	SentBytes, ReceivedBytes int64
	// SentFailures: raft messages to the peer dropped because its queue was full, connections
	// to it that could not be made or broke while writing, and snapshot transfers to it that
	// failed. ReceivedFailures: connections from the peer closed, after its handshake, for
	// something it sent (a bad frame, an undecodable or invalid message, a snapshot that failed).
	SentFailures, ReceivedFailures int64
}

// peerCounters are one peer's PeerStats, written with atomic adds from the member's loop (the
// direct writes of Send's queue) and from the connections' goroutines.
type peerCounters struct {
	sent, received, sentFailures, receivedFailures atomic.Int64
}

// countersOf returns the counters of raft id id, made on first use. Called when a peer is made
// and when an inbound connection is authenticated: never per message.
func (t *Transport) countersOf(id uint64) *peerCounters {
	t.statsMu.Lock()
	defer t.statsMu.Unlock()
	if t.stats == nil {
		t.stats = map[uint64]*peerCounters{}
	}
	c, ok := t.stats[id]
	if !ok {
		c = &peerCounters{}
		t.stats[id] = c
	}
	return c
}

// PeerStats returns the counters of every peer this member exchanged with, by raft id. Safe
// from any goroutine.
func (t *Transport) PeerStats() []PeerStats {
	t.statsMu.Lock()
	out := make([]PeerStats, 0, len(t.stats))
	for id, c := range t.stats {
		out = append(out, PeerStats{ID: id, SentBytes: c.sent.Load(), ReceivedBytes: c.received.Load(),
			SentFailures: c.sentFailures.Load(), ReceivedFailures: c.receivedFailures.Load()})
	}
	t.statsMu.Unlock()
	slices.SortFunc(out, func(a, b PeerStats) int { return int(a.ID) - int(b.ID) })
	return out
}

// SnapshotsSent returns how many snapshot transfers to followers completed (the follower
// acknowledged the synced, verified snapshot) and how many failed, since the transport was made.
// Transfers cut short by the member stopping count as neither. Safe from any goroutine.
func (t *Transport) SnapshotsSent() (sent, failed int64) {
	return t.snapsSent.Load(), t.snapsFailed.Load()
}

// countReader counts the bytes read through it into dst once dst is set (the inbound
// connection's sender is known only after its handshake: what came before is kept in pre and
// added then). One goroutine only: the connection's reader.
type countReader struct {
	r   io.Reader
	dst *atomic.Int64
	pre int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.dst != nil {
		c.dst.Add(int64(n))
	} else {
		c.pre += int64(n)
	}
	return n, err
}

// attribute counts what was read so far, and all that follows, into dst.
func (c *countReader) attribute(dst *atomic.Int64) {
	dst.Add(c.pre)
	c.pre, c.dst = 0, dst
}

// countWriter counts the bytes written through it into dst.
type countWriter struct {
	w   io.Writer
	dst *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.dst.Add(int64(n))
	return n, err
}
