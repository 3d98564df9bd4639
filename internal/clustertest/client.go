package clustertest

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Result is the outcome of one command or query of a simulated client.
type Result struct {
	Status wire.Status
	Reply  []byte
	// At is the simulated time the answer arrived.
	At int64
}

type outstanding struct {
	payload []byte
	sentAt  int64
}

// Client is a simulated client with the failover behaviour the real client library has: it
// follows redirects (ignoring hints from older terms), times out on a silent member and moves to
// the next, and retries every unanswered command under the same number, so commands stay
// exactly-once across failovers.
type Client struct {
	c       *Cluster
	conn    replica.ConnID
	Session wire.SessionID

	target    int
	term      uint64 // newest term heard in a redirect
	opened    bool   // the cluster confirmed the session once
	attached  bool   // attached to target
	connected bool   // an open/attach was sent to target
	stopped   bool
	// Expired is set when the cluster reported the session gone; outstanding commands then have
	// an unknown outcome and are never resent.
	Expired bool

	nextSeq      wire.Seq
	out          map[wire.Seq]*outstanding
	Results      map[wire.Seq]Result
	queries      map[uint64]*outstanding
	QueryResults map[uint64]Result
	nextQuery    uint64
	lastHeard    int64
	lastSent     int64
	// Redirects and Timeouts count failover steps, for assertions.
	Redirects, Timeouts int
	// RetryTimeout: a member that answers nothing for this long is abandoned for the next one.
	RetryTimeout time.Duration
	// KeepAlive is the idle interval after which the client sends a keep-alive.
	KeepAlive time.Duration
	// onRaw, when set, sees every message that reaches the client (tests that drive it by hand).
	onRaw func(m *wire.ClientMsg)
}

const clientTick = 50 * time.Millisecond

// NewClient adds a simulated client. It opens its session on the first Submit (or Open).
func (c *Cluster) NewClient() *Client {
	cl := &Client{
		c:            c,
		conn:         replica.ConnID(clientBase + len(c.clients)),
		nextSeq:      1,
		out:          map[wire.Seq]*outstanding{},
		Results:      map[wire.Seq]Result{},
		queries:      map[uint64]*outstanding{},
		QueryResults: map[uint64]Result{},
		RetryTimeout: 500 * time.Millisecond,
		KeepAlive:    time.Second,
		target:       c.Rng.IntN(len(c.Nodes)),
	}
	binary.LittleEndian.PutUint64(cl.Session[:8], c.Rng.Uint64())
	binary.LittleEndian.PutUint64(cl.Session[8:], c.Rng.Uint64())
	c.clients = append(c.clients, cl)
	c.push(event{at: c.now + int64(clientTick), kind: evClientTick, cl: cl})
	return cl
}

// Open starts opening the session.
func (cl *Client) Open() {
	if !cl.connected {
		cl.connect()
	}
}

// Stop silences the client: no more sends, retries or keep-alives (its session will expire).
func (cl *Client) Stop() { cl.stopped = true }

// Resume undoes Stop; the client reattaches and resends what is unanswered.
func (cl *Client) Resume() {
	cl.stopped = false
	cl.connect()
}

// Submit sends a command and returns its sequence number.
func (cl *Client) Submit(payload []byte) wire.Seq {
	seq := cl.nextSeq
	cl.nextSeq++
	cl.out[seq] = &outstanding{payload: slices.Clone(payload), sentAt: cl.c.now}
	if !cl.connected {
		cl.connect()
	} else {
		cl.sendCommand(seq)
	}
	return seq
}

// Query sends a query and returns its request id.
func (cl *Client) Query(payload []byte) uint64 {
	cl.nextQuery++
	id := cl.nextQuery
	cl.queries[id] = &outstanding{payload: slices.Clone(payload), sentAt: cl.c.now}
	cl.sendQuery(id)
	return id
}

// Outstanding returns the numbers of the commands not answered yet, ascending.
func (cl *Client) Outstanding() []wire.Seq {
	var s []wire.Seq
	for seq := range cl.out {
		s = append(s, seq)
	}
	slices.Sort(s)
	return s
}

// SendRaw sends a hand-made message to member to, bypassing the client logic (for tests of
// retries with chosen numbers).
func (cl *Client) SendRaw(to int, m *wire.ClientMsg) {
	cl.send(to, m)
}

func (cl *Client) lowestUnacked() wire.Seq {
	low := cl.nextSeq
	for seq := range cl.out {
		low = min(low, seq)
	}
	return low
}

func (cl *Client) send(to int, m *wire.ClientMsg) {
	c := cl.c
	cl.lastSent = c.now
	if c.lost(int(cl.conn), to) {
		return
	}
	cp := *m
	cp.Payload = slices.Clone(m.Payload)
	c.push(event{at: c.arrival(int(cl.conn), to), kind: evToNode, node: to, conn: cl.conn, cm: &cp})
}

func (cl *Client) connect() {
	if cl.stopped || cl.Expired {
		return
	}
	cl.connected, cl.attached = true, false
	cl.lastHeard = cl.c.now
	kind := wire.COpen
	if cl.opened {
		kind = wire.CAttach
	}
	cl.send(cl.target, &wire.ClientMsg{Kind: kind, Session: cl.Session})
	// The first commands may ride with the open; the leader keeps their order.
	for _, seq := range cl.Outstanding() {
		cl.sendCommand(seq)
	}
	cl.resendQueries()
}

func (cl *Client) resendQueries() {
	ids := make([]uint64, 0, len(cl.queries))
	for id := range cl.queries {
		ids = append(ids, id)
	}
	slices.Sort(ids) // map order must not reach the simulation
	for _, id := range ids {
		cl.sendQuery(id)
	}
}

func (cl *Client) sendCommand(seq wire.Seq) {
	if cl.stopped || cl.Expired {
		return
	}
	o := cl.out[seq]
	cl.send(cl.target, &wire.ClientMsg{Kind: wire.CCommand, Session: cl.Session, Seq: seq,
		LowestUnacked: cl.lowestUnacked(), Payload: o.payload})
}

func (cl *Client) sendQuery(id uint64) {
	if cl.stopped {
		return
	}
	cl.send(cl.target, &wire.ClientMsg{Kind: wire.CQuery, RequestID: id, Payload: cl.queries[id].payload})
}

// failover moves to another member: the hinted leader if the hint is fresh, else the next one.
func (cl *Client) failover(hint int, term uint64) {
	if hint >= 0 && hint < len(cl.c.Nodes) && term >= cl.term && hint != cl.target {
		cl.target = hint
	} else {
		cl.target = (cl.target + 1) % len(cl.c.Nodes)
	}
	cl.term = max(cl.term, term)
	cl.connect()
}

func (cl *Client) receive(from int, m *wire.ClientMsg) {
	c := cl.c
	if cl.onRaw != nil {
		cl.onRaw(m)
	}
	if cl.stopped || from != cl.target {
		return // a stale answer from a member the client left; its retries go elsewhere
	}
	cl.lastHeard = c.now
	switch m.Kind {
	case wire.CAttached:
		cl.opened, cl.attached = true, true
	case wire.CResponse:
		switch m.Status {
		case wire.StatusOK, wire.StatusEvicted, wire.StatusBadRequest:
			if _, ok := cl.out[m.Seq]; ok {
				delete(cl.out, m.Seq)
				cl.Results[m.Seq] = Result{Status: m.Status, Reply: m.Payload, At: c.now}
			}
		case wire.StatusSessionExpired:
			cl.expire()
		default:
			// Not applied (a limit, no quorum): retry on the next client tick.
		}
	case wire.CQueryResponse:
		if _, ok := cl.queries[m.RequestID]; ok && m.Status == wire.StatusOK {
			delete(cl.queries, m.RequestID)
			cl.QueryResults[m.RequestID] = Result{Status: m.Status, Reply: m.Payload, At: c.now}
		}
	case wire.CRedirect:
		cl.Redirects++
		if m.Term < cl.term {
			return // a hint from an older term
		}
		cl.failover(m.LeaderID, m.Term)
	case wire.CSessionEvent:
		if m.Status == wire.StatusSessionExpired || m.Reason != 0 {
			cl.expire()
		}
	case wire.CKeepAliveAck:
		if m.Status == wire.StatusSessionExpired {
			cl.expire()
		}
	}
}

func (cl *Client) expire() {
	cl.Expired = true
	cl.connected = false
}

// tick runs the client's timers: failover on silence, keep-alive when idle.
func (cl *Client) tick() {
	c := cl.c
	if cl.stopped || cl.Expired {
		return
	}
	busy := len(cl.out) > 0 || len(cl.queries) > 0 || (cl.connected && !cl.attached)
	switch {
	case cl.lastSent >= cl.lastHeard && c.now-cl.lastHeard > int64(cl.RetryTimeout):
		cl.Timeouts++
		cl.failover(-1, 0)
	case busy && c.now-cl.lastSent > int64(cl.RetryTimeout)/2:
		// Not applied answers (limits, no quorum) leave work outstanding: resend it.
		for _, seq := range cl.Outstanding() {
			cl.sendCommand(seq)
		}
		cl.resendQueries()
	case cl.opened && c.now-cl.lastSent > int64(cl.KeepAlive):
		cl.send(cl.target, &wire.ClientMsg{Kind: wire.CKeepAlive, Session: cl.Session})
	}
}
