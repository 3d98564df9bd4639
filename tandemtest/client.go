package tandemtest

import (
	"github.com/tandem-cluster/tandem/internal/clustertest"
)

// Client is a simulated client with one session: the client library's own protocol (session,
// numbering, failover, retries, the response window) over the simulated network. It finds the
// leader by itself and resends an unanswered command under its number after a failover, so the
// cluster applies every command exactly once. Its session opens with the first Send or Query.
//
// The errors it returns are the client package's: errors.Is(err, client.ErrNotApplied),
// client.ErrOutcomeUnknown, client.ErrSessionExpired, client.ErrTimeout and the others work as
// they do with a real client.
type Client struct {
	c   *Cluster
	sim *clustertest.Client
	// pending holds the callbacks of the commands and queries not answered yet.
	pending map[callKey]func(reply []byte, err error)
}

// callKey names a command (by its sequence number) or a query (by its request id).
type callKey struct {
	query bool
	key   uint64
}

// completion is an outcome waiting to be handed to its callback after the event that brought it.
type completion struct {
	done  func(reply []byte, err error)
	reply []byte
	err   error
}

// NewClient adds a client. The member it tries first is drawn from the seed.
func (c *Cluster) NewClient() *Client {
	cl := &Client{c: c, sim: c.sim.NewClient(), pending: map[callKey]func([]byte, error){}}
	cl.sim.OnResult = func(query bool, key uint64, r clustertest.Result) {
		k := callKey{query, key}
		if done, ok := cl.pending[k]; ok {
			delete(cl.pending, k)
			// Handed over after the event: a callback may then crash or partition members.
			c.completions = append(c.completions, completion{done, r.Reply, r.Err})
		}
	}
	c.clients = append(c.clients, cl)
	return cl
}

// Send sends a command and runs the simulation until its reply arrives, for at most
// Options.CallTimeout of simulated time. On timeout the command stays in flight: the client
// keeps trying as the simulation goes on, and the cluster applies it at most once.
func (cl *Client) Send(cmd []byte) ([]byte, error) {
	cl.c.t.Helper()
	var reply []byte
	var err error
	answered := false
	if err := cl.SendAsync(cmd, func(r []byte, e error) { reply, err, answered = r, e, true }); err != nil {
		return nil, err
	}
	if !cl.c.runUntil("Send", func() bool { return answered }, cl.c.opts.CallTimeout) {
		return nil, cl.c.timeout("Send")
	}
	return reply, err
}

// Query sends a read-only request and runs the simulation until its answer arrives, for at most
// Options.CallTimeout of simulated time. The answer is linearizable: it reflects every command
// answered before the query was sent.
func (cl *Client) Query(q []byte) ([]byte, error) {
	cl.c.t.Helper()
	var reply []byte
	var err error
	answered := false
	if err := cl.QueryAsync(q, func(r []byte, e error) { reply, err, answered = r, e, true }); err != nil {
		return nil, err
	}
	if !cl.c.runUntil("Query", func() bool { return answered }, cl.c.opts.CallTimeout) {
		return nil, cl.c.timeout("Query")
	}
	return reply, err
}

// SendAsync sends a command and returns at once; done is called with its outcome when it
// arrives, from whichever call is then running the simulation (Send, Query, Run, …). done may
// crash, start, partition and heal members, and send more, but not run the simulation itself.
// It returns an error if the client refuses the command at once (client.ErrInFlightFull: 256
// unanswered commands; a session that ended).
func (cl *Client) SendAsync(cmd []byte, done func(reply []byte, err error)) error {
	seq, err := cl.sim.TrySubmit(cmd)
	if err != nil {
		return err
	}
	cl.pending[callKey{false, uint64(seq)}] = done
	return nil
}

// QueryAsync sends a query and returns at once; done is called as for SendAsync.
func (cl *Client) QueryAsync(q []byte, done func(reply []byte, err error)) error {
	id, err := cl.sim.TryQuery(q)
	if err != nil {
		return err
	}
	cl.pending[callKey{true, id}] = done
	return nil
}

// Unanswered returns how many commands and queries of this client wait for their outcome.
func (cl *Client) Unanswered() int { return len(cl.pending) }
