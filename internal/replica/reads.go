package replica

import (
	"errors"

	"github.com/tandem-cluster/tandem/internal/bugs"
	"github.com/tandem-cluster/tandem/internal/consensus"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Reads: a query taken on the leader (newReads) waits for a ReadIndex round (readWaits), then for
// the round's read index to be applied (readyReads), and is served after Process applied it.
// MaxPendingReads bounds the queries wherever they wait (readsPending). A lost leadership fails
// them all with a redirect (stepDown); the client asks again.

// pendingRead is one query, from taking to answering; or, with req, a request whose answer that
// its session is gone waits for the round (confirmFirst).
type pendingRead struct {
	conn      ConnID
	requestID uint64
	payload   []byte
	req       *wire.ClientMsg
	received  int64 // the meter's clock when the query was taken (meter.go)
}

// readyRead is a round of queries whose read index is known: they are served once it is applied.
type readyRead struct {
	index uint64
	reads []pendingRead
}

// takeQuery takes a query for the next ReadIndex round, unless MaxPendingReads are pending.
func (r *Replica) takeQuery(conn ConnID, m *wire.ClientMsg) {
	if r.readsPending >= r.cfg.MaxPendingReads {
		r.out.SendClient(conn, &wire.ClientMsg{Kind: wire.CQueryResponse, RequestID: m.RequestID,
			Status: wire.StatusRejected, Payload: []byte("too many pending queries")})
		return
	}
	r.newReads = append(r.newReads, pendingRead{conn: conn, requestID: m.RequestID, payload: m.Payload, received: r.meterNow()})
	r.readsPending++
}

// startReads, on the leader, starts one ReadIndex round for every query taken since the last
// round (Process calls it once the batched commands are proposed). The round's id maps to its
// queries in readWaits until ReadReady or ReadFailed.
func (r *Replica) startReads() {
	if bugs.Active(bugs.ReadWithoutReadIndex) {
		r.readyReads = append(r.readyReads, readyRead{index: 0, reads: r.newReads})
		r.newReads = nil
	}
	if len(r.newReads) > 0 {
		reads := r.newReads
		r.newReads = nil
		// One ReadIndex round serves every query that arrived since the last one.
		id, err := r.core.ReadIndex()
		if err != nil {
			r.failReads(reads, err)
		} else {
			r.readWaits[id] = reads
		}
	}
}

// serveReads answers the queries whose read index has been applied.
func (r *Replica) serveReads() {
	applied := r.ctr.Applied()
	keep := r.readyReads[:0]
	for _, rr := range r.readyReads {
		if rr.index > applied {
			keep = append(keep, rr)
			continue
		}
		r.readsPending -= len(rr.reads)
		for _, q := range rr.reads {
			if q.req != nil {
				r.verdict(q.conn, q.req)
				continue
			}
			reply := r.ctr.Query(q.payload)
			r.out.SendClient(q.conn, &wire.ClientMsg{Kind: wire.CQueryResponse, RequestID: q.requestID,
				Status: wire.StatusOK, Payload: reply})
			r.meterQuery(q.received)
		}
	}
	r.readyReads = keep
}

// failReads answers a round of queries that cannot be served here: a redirect when this member
// is not (or no longer) the leader, "unavailable" otherwise (e.g. the round timed out).
func (r *Replica) failReads(reads []pendingRead, err error) {
	r.readsPending -= len(reads)
	for _, q := range reads {
		switch {
		case q.req != nil && errors.Is(err, consensus.ErrNotLeader):
			r.redirect(q.conn, q.req)
			continue
		case q.req != nil:
			r.refuse(q.conn, q.req, err.Error())
			continue
		case errors.Is(err, consensus.ErrNotLeader):
			r.redirect(q.conn, &wire.ClientMsg{Kind: wire.CQuery, RequestID: q.requestID})
			continue
		}
		r.out.SendClient(q.conn, &wire.ClientMsg{Kind: wire.CQueryResponse, RequestID: q.requestID,
			Status: wire.StatusUnavailable, Payload: []byte(err.Error())})
	}
}
