package replica

// Latency of client requests on the leader, for the driver's metrics (Config.Meter).
//
// A command's latency runs from the round of input in which the leader took it to the round in
// which it applied the command's entry (where the answer is handed to the client's queue, which
// the driver flushes at the end of that round): commit plus apply, the syncs included. A query's
// runs from the round that took it to the round that served it. Both are read off the meter's
// clock once per round, not per request: a round is bounded to well under a tick, so the grain is
// that of a round, and a clock read per command would cost as much as the rest of its ingress.
// The time a request waited in the transport's queue before its round is not counted.
//
// The stamps of the commands proposed and not yet applied wait in a FIFO (cmdRecv), with the
// number of commands of each proposed batch in another (batchCmds): a leader's own entries
// apply in the order it proposed them, so applying a batch of its term pops its count of stamps.
// Both slices are reused, and compacted once half spent (meterApplied): no allocation per command
// once they have grown to twice what is in flight.

import "github.com/tandem-cluster/tandem/internal/wire"

// Meter observes what the replica measures. Its methods are called on the replica's goroutine and
// must not block.
type Meter interface {
	// Now returns a monotonic clock, in nanoseconds.
	Now() int64
	// CommandDone and QueryDone observe one command's, one query's latency in nanoseconds.
	CommandDone(nanos int64)
	QueryDone(nanos int64)
}

// meterNow returns the meter's clock as read once per round of inputs (0 without a meter).
func (r *Replica) meterNow() int64 {
	if r.cfg.Meter == nil {
		return 0
	}
	if !r.meterRead {
		r.meterAt, r.meterRead = r.cfg.Meter.Now(), true
	}
	return r.meterAt
}

// meterProposed notes the stamps of the commands in a batch this leader proposed.
func (r *Replica) meterProposed(items []wire.Item) {
	if r.cfg.Meter == nil {
		return
	}
	n := 0
	for i := range items {
		if items[i].Kind == wire.ItemCommand {
			r.cmdRecv = append(r.cmdRecv, items[i].Received)
			n++
		}
	}
	r.batchCmds = append(r.batchCmds, n)
}

// meterApplied observes the commands of a batch of this leader's term, just applied.
func (r *Replica) meterApplied(term uint64) {
	if r.cfg.Meter == nil || !r.isLeader() || term != r.core.State().Term || r.batchHead == len(r.batchCmds) {
		return
	}
	n := r.batchCmds[r.batchHead]
	r.batchHead++
	now := r.meterNow()
	for _, at := range r.cmdRecv[r.cmdHead : r.cmdHead+n] {
		r.cfg.Meter.CommandDone(now - at)
	}
	r.cmdHead += n
	switch {
	case r.batchHead == len(r.batchCmds):
		r.meterReset() // all applied: the slices start over
	case r.batchHead >= meterCompactAt && r.batchHead >= len(r.batchCmds)/2:
		// Under steady load the leader proposes the next batch before the last applies, so the
		// FIFOs are never empty: once half of each is spent, what is in flight moves to the
		// front (a copy of what is in flight, amortised over at least as many applied batches),
		// and the slices stay as long as what is in flight.
		r.batchCmds = r.batchCmds[:copy(r.batchCmds, r.batchCmds[r.batchHead:])]
		r.cmdRecv = r.cmdRecv[:copy(r.cmdRecv, r.cmdRecv[r.cmdHead:])]
		r.batchHead, r.cmdHead = 0, 0
	}
}

// meterCompactAt is the least spent length of the FIFOs worth compacting.
const meterCompactAt = 64

// meterReset forgets the commands in flight (all applied, or this member stopped leading: their
// answers come from another leader).
func (r *Replica) meterReset() {
	r.cmdRecv, r.cmdHead = r.cmdRecv[:0], 0
	r.batchCmds, r.batchHead = r.batchCmds[:0], 0
}

// meterQuery observes a query served.
func (r *Replica) meterQuery(received int64) {
	if r.cfg.Meter != nil {
		r.cfg.Meter.QueryDone(r.meterNow() - received)
	}
}
