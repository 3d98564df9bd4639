package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/tandem-cluster/tandem/internal/admin"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// tandem cluster errors [--member ID]: the members' recent warnings and errors, which each keeps
// in its data directory (node's errlog.go) and answers for itself, like status: no quorum needed,
// which is when an operator asks.

// errorsEntry is one endpoint's answer to errors, as --json prints it.
type errorsEntry struct {
	Endpoint string          `json:"endpoint"`
	Errors   json.RawMessage `json:"errors,omitempty"`
	Error    string          `json:"error,omitempty"`

	me     *wire.MemberErrors
	reason string // why there is no answer, for the human output (the endpoint not repeated)
}

// recentErrors asks every endpoint (or, with member >= 0, that member only, wherever it is) for
// its recent warnings and errors, and prints them: exit 0 if every one asked answered, 1 if not.
func (c *clusterCmd) recentErrors(ctx context.Context, member int) int {
	eps := c.endpoints
	if member >= 0 {
		ep, code := c.findMember(ctx, member)
		if code != exitOK {
			return code
		}
		eps = []string{ep}
	}
	entries := make([]errorsEntry, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			entries[i] = askErrors(ctx, ep, c.opts)
		}()
	}
	wg.Wait()
	var errs []string
	for _, e := range entries {
		errs = append(errs, e.Error)
	}
	if code, refused := c.refusedByAll(errs); refused {
		return code
	}
	var missing []string
	for _, e := range entries {
		if e.me == nil {
			missing = append(missing, e.Endpoint)
		}
	}
	if c.json {
		b, err := json.MarshalIndent(entries, "", "  ")
		if err != nil {
			panic(err) // raw JSON from a member was checked when it was decoded
		}
		fmt.Fprintf(c.stdout, "%s\n", b)
	} else {
		c.printErrors(entries)
	}
	if len(missing) > 0 {
		if member >= 0 {
			return c.fail(exitFailed, "errors --member %d: %s: %s", member, entries[0].Endpoint, entries[0].reason)
		}
		return c.fail(exitFailed, "%d of %d endpoints did not answer (%s)", len(missing), len(entries), strings.Join(missing, ", "))
	}
	return exitOK
}

// findMember finds member id's client address: an endpoint that answers status as that member,
// or else the leader's membership (list-members), which knows members the endpoints do not name.
func (c *clusterCmd) findMember(ctx context.Context, id int) (string, int) {
	var unanswered []string
	for _, e := range c.askAll(ctx) {
		if e.st != nil && e.st.ID == id {
			return e.Endpoint, exitOK
		}
		if e.st == nil {
			unanswered = append(unanswered, e.Endpoint)
		}
	}
	res, err := admin.Do(ctx, c.endpoints, wire.AdminRequest{Op: wire.AdminListMembers}, c.opts)
	if err == nil && res.Status != wire.StatusOK {
		err = fmt.Errorf("%s answered status %d: %s", res.Endpoint, res.Status, res.Response.Error)
	}
	if err != nil {
		why := "no endpoint answered as member " + strconv.Itoa(id)
		if len(unanswered) > 0 {
			why += " (" + strings.Join(unanswered, ", ") + " did not answer)"
		}
		return "", c.fail(exitFailed, "errors --member %d: %s, and the membership could not be read: %v", id, why, err)
	}
	for _, m := range res.Response.Members {
		if m.ID == id && m.ClientAddr != "" {
			return m.ClientAddr, exitOK
		}
	}
	return "", c.fail(exitNotApplied, "errors --member %d: member %d is not a member (members: %s)", id, id, memberList(res.Response.Members))
}

func askErrors(ctx context.Context, ep string, opts admin.Options) errorsEntry {
	e := errorsEntry{Endpoint: ep}
	var res admin.Result
	// (A member of a build from before "errors" answers that it does not know the operation.)
	res, e.Errors, e.Error, e.reason = askMember(ctx, ep, opts, wire.AdminErrors, "errors",
		func(r wire.AdminResponse) bool { return r.Errors != nil })
	if e.Error == "" {
		e.me = res.Response.Errors
	}
	return e
}

// printErrors prints one line per record, "member N  time  LEVEL  msg  k=v …", each member's
// oldest first; then what a member left out, and a line per endpoint that did not answer.
func (c *clusterCmd) printErrors(entries []errorsEntry) {
	for _, e := range entries {
		me := e.me
		if me == nil {
			continue
		}
		if len(me.Records) == 0 {
			fmt.Fprintf(c.stdout, "member %d  no warnings or errors kept\n", me.ID)
		}
		for _, r := range me.Records {
			var b strings.Builder
			fmt.Fprintf(&b, "member %d  %s  %s  %s", me.ID, r.Time, r.Level, logText(r.Msg, false))
			for i, a := range r.Attrs {
				if i == 0 {
					b.WriteString(" ")
				}
				fmt.Fprintf(&b, " %s=%s", logText(a.Key, true), logText(a.Value, true))
			}
			fmt.Fprintln(c.stdout, b.String())
		}
		var notes []string
		if me.Omitted > 0 {
			notes = append(notes, fmt.Sprintf("%d older records kept and not shown", me.Omitted))
		}
		if me.Dropped > 0 {
			notes = append(notes, fmt.Sprintf("%d not kept (logged faster than written)", me.Dropped))
		}
		if me.WriteFailures > 0 {
			notes = append(notes, fmt.Sprintf("%d writes of its errors.log failed", me.WriteFailures))
		}
		if len(notes) > 0 {
			fmt.Fprintf(c.stdout, "member %d  (%s)\n", me.ID, strings.Join(notes, "; "))
		}
	}
	for _, e := range entries {
		if e.me == nil {
			fmt.Fprintf(c.stdout, "%s: %s\n", e.Endpoint, e.reason)
		}
	}
}

// logText is s as one line of output: quoted (Go syntax) if it holds a line break or another
// control character, or, for a key or value (attr), a space, a quote or '=', or nothing.
func logText(s string, attr bool) string {
	if strings.ContainsFunc(s, unicode.IsControl) || attr && (s == "" || strings.ContainsAny(s, " \"=")) {
		return strconv.Quote(s)
	}
	return s
}
