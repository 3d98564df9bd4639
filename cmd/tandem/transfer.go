package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tandem-cluster/tandem/internal/admin"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// transferAttemptTimeout bounds the wait for the leader's answer to transfer-leader. The leader
// answers only once the target leads, or after its own wait (two election timeouts: 1.4 s with
// the default 100 ms ticks and 7-tick elections, more on a cluster configured slower), so the
// admin client's default (2 s, for answers that come at once) would pass the leader over while
// it waits, and ask another member, which would only redirect back.
const transferAttemptTimeout = 10 * time.Second

// transferLeader sends transfer-leader and reports its answer: 0 once the target leads, 4 when
// refused, 3 when the outcome is unknown, 1 when not done (no leader, "not now" until --timeout).
func (c *clusterCmd) transferLeader(ctx context.Context, req wire.AdminRequest) int {
	what := "transfer-leader --auto"
	if !req.Auto {
		what = fmt.Sprintf("transfer-leader %d", req.ID)
	}
	opts := c.opts
	opts.AttemptTimeout = transferAttemptTimeout
	res, err := admin.Do(ctx, c.endpoints, req, opts)
	if c.json && res.Raw != nil {
		c.printJSON(res.Raw)
	}
	switch {
	case errors.Is(err, admin.ErrUnauthenticated):
		return c.fail(exitNotApplied, "%s: %v", what, err)
	case errors.Is(err, admin.ErrOutcomeUnknown):
		hint := ""
		if !strings.Contains(err.Error(), "leader tells") {
			hint = " (tandem cluster leader tells)"
		}
		return c.fail(exitUnknown, "%s: %v%s", what, err, hint)
	case err != nil:
		return c.fail(exitFailed, "%s: %v", what, err)
	}
	resp := res.Response
	switch res.Status {
	case wire.StatusOK:
	case wire.StatusRejected:
		return c.fail(exitNotApplied, "%s: refused: %s", what, resp.Error)
	case wire.StatusDenied:
		return c.fail(exitNotApplied, "%s: permission denied: %s", what, resp.Error)
	case wire.StatusBadRequest:
		return c.fail(exitUsage, "%s: bad request: %s", what, resp.Error)
	case wire.StatusUnavailable:
		return c.fail(exitFailed, "%s: not done within %s: %s", what, c.timeout, resp.Error)
	default:
		return c.fail(exitFailed, "%s: not done: %s answered status %d: %s", what, res.Endpoint, res.Status, resp.Error)
	}
	if c.json {
		return exitOK
	}
	st := resp.Status
	if st == nil {
		return c.fail(exitFailed, "%s: %s answered OK without its status (a member of another build?)", what, res.Endpoint)
	}
	if resp.Already != "" {
		fmt.Fprintf(c.stdout, "nothing to do: %s (term %d)\n", resp.Already, st.Term)
		return exitOK
	}
	fmt.Fprintf(c.stdout, "member %d leads (term %d)\n", st.Leader, st.Term)
	return exitOK
}
