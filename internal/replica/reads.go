package replica

import (
	"errors"

	"github.com/tandem-cluster/tandem/internal/consensus"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Reads: queries wait for a ReadIndex round (readWaits), then for the read index to be applied
// (readyReads), and are served between entries. MaxPendingReads bounds them wherever they wait.

type pendingRead struct {
	conn      ConnID
	requestID uint64
	payload   []byte
}

type readyRead struct {
	index uint64
	reads []pendingRead
}

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
			reply := r.ctr.Query(q.payload)
			r.out.SendClient(q.conn, &wire.ClientMsg{Kind: wire.CQueryResponse, RequestID: q.requestID,
				Status: wire.StatusOK, Payload: reply})
		}
	}
	r.readyReads = keep
}

func (r *Replica) failReads(reads []pendingRead, err error) {
	r.readsPending -= len(reads)
	for _, q := range reads {
		if errors.Is(err, consensus.ErrNotLeader) {
			r.redirect(q.conn, &wire.ClientMsg{Kind: wire.CQuery, RequestID: q.requestID})
			continue
		}
		r.out.SendClient(q.conn, &wire.ClientMsg{Kind: wire.CQueryResponse, RequestID: q.requestID,
			Status: wire.StatusUnavailable, Payload: []byte(err.Error())})
	}
}
