package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// The operator's controls: tandem cluster suspend | resume | snapshot | shutdown [--abort] |
// set-preferred-leader ID[,ID] | --clear. The leader answers once the control is applied, with
// its log index; snapshot and shutdown then watch the members (their own status) until each
// took its snapshot, or stopped, within --timeout.

// control sends a control request and reports it.
func (c *clusterCmd) control(ctx context.Context, req wire.AdminRequest) int {
	var down map[string]bool
	if req.Op == wire.AdminShutdown {
		// Who is down already: after the shutdown, not answering is what stopping looks like.
		actx, cancel := context.WithTimeout(ctx, time.Second)
		for _, e := range c.askAll(actx) {
			if e.st == nil {
				if down == nil {
					down = map[string]bool{}
				}
				down[e.Endpoint] = true
			}
		}
		cancel()
	}
	resp, code := c.do(ctx, req)
	if code != exitOK {
		return code
	}
	say := func(format string, args ...any) {
		if !c.json {
			fmt.Fprintf(c.stdout, format+"\n", args...)
		}
	}
	if resp.Already != "" {
		say("nothing to do: %s", resp.Already)
		return exitOK
	}
	switch req.Op {
	case wire.AdminSuspend:
		say("cluster suspended at index %d: commands are refused, queries served, until tandem cluster resume", resp.Index)
	case wire.AdminResume:
		say("cluster resumed at index %d", resp.Index)
	case wire.AdminSetPreferred:
		if len(resp.Preferred) == 0 {
			say("no member is preferred to lead (set at index %d)", resp.Index)
		} else {
			say("preferred leaders: %s (set at index %d); the leader hands over to the first that is up and caught up", joinIDs(resp.Preferred), resp.Index)
		}
	case wire.AdminSnapshot:
		say("every member takes a snapshot at index %d", resp.Index)
		return c.watch(ctx, "took the snapshot", nil, func(e statusEntry) bool { return e.st != nil && e.st.SnapshotIndex >= resp.Index },
			func(e statusEntry) string { return fmt.Sprintf("snapshot at index %d", e.st.SnapshotIndex) })
	case wire.AdminShutdown:
		how := "after a snapshot there"
		if req.Abort {
			how = "without a snapshot"
		}
		say("every member stops at index %d, %s", resp.Index, how)
		return c.watch(ctx, "stopped", down, func(e statusEntry) bool { return e.st == nil }, func(statusEntry) string { return "stopped" })
	}
	return exitOK
}

// watch asks every endpoint for its status until done holds for each, or ctx ends; it prints
// each endpoint's state (line, or why it did not answer) and exits 1 naming those that did not
// get there. down are the endpoints that did not answer before the request: they are said to be
// down, and not counted against it.
func (c *clusterCmd) watch(ctx context.Context, what string, down map[string]bool, done func(statusEntry) bool,
	line func(statusEntry) string) int {
	var entries []statusEntry
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		got := c.askAll(actx)
		cancel()
		if ctx.Err() != nil && entries != nil {
			break // this round was cut short by the timeout: the previous one is what is known
		}
		entries = got
		all := true
		for _, e := range entries {
			all = all && (done(e) || down[e.Endpoint])
		}
		if all || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	var late []string
	for _, e := range entries {
		say := ""
		switch {
		case down[e.Endpoint]:
			say = "did not answer before the request either (down?): the request did not reach it"
		case !done(e):
			late = append(late, e.Endpoint)
			say = "not yet"
			if e.st == nil {
				say = "no answer: " + e.reason
			}
		default:
			say = line(e)
		}
		if !c.json {
			who := e.Endpoint
			if e.st != nil {
				who = fmt.Sprintf("member %d", e.st.ID)
			}
			fmt.Fprintf(c.stdout, "  %s: %s\n", who, say)
		}
	}
	if len(late) > 0 {
		return c.fail(exitFailed, "not every endpoint %s within %s: %s", what, c.timeout, strings.Join(late, ", "))
	}
	return exitOK
}

// joinIDs is "2,0,1".
func joinIDs(ids []int) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(id)
	}
	return strings.Join(parts, ",")
}
