package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tandem-cluster/tandem/internal/admin"
	"github.com/tandem-cluster/tandem/internal/wire"
)

const clusterHelp = `Usage: tandem cluster [flags] <verb> [arguments]

Shows and changes a running cluster's membership and controls it, through the members' client
ports (the admin channel, client protocol 4: members of a build that has it; the controls need
cluster version 5).

Verbs:
  leader                          the leader's member id, as the members that answered see it
  is-leader ID                    exit 0 if member ID leads, 1 if another does, 3 if unknown
  status                          every endpoint's own view of itself and of the cluster: id,
                                  raft id, role, term, leader, commit, applied and snapshot index,
                                  lag (the leader's view of the others), addresses, build, cluster
                                  version. Each member answers for itself: no quorum needed
  errors [--member ID]            every endpoint's own recent warnings and errors (or member ID's
                                  only, wherever it is): one line per record, "member N  time
                                  LEVEL  msg  k=v …", the newest 200 at most. Each member answers
                                  for itself, from its data directory's errors.log: no quorum needed
  list-members                    the replicated membership, as the leader has it
  remove-member ID [--force]      remove member ID (a leader asked to remove itself hands
                                  leadership over first)
  promote ID                      make learner ID a voter
  replace-member OLD --with NEW [--force]
                                  in one change, make learner NEW a voter and remove member OLD
  suspend                         the service gets no commands or timer events
                                  (refused with a reason, not retried); queries are served and
                                  sessions do not expire; replicated: a new leader keeps it
  resume                          ends a suspension
  snapshot                        every member takes a snapshot at one log index; waits until
                                  each endpoint reports it
  shutdown [--abort]              every member stops at one log index, after a snapshot there
                                  (--abort: without); starting them again resumes with nothing
                                  lost. Waits until no endpoint answers
  set-preferred-leader ID[,ID] | --clear
                                  the members preferred to lead, most preferred first: the
                                  leader hands over to the first that is up and caught up for a
                                  few seconds (tandem node --preferred-leader is the founding
                                  value)
  transfer-leader ID | --auto     hand leadership to voter ID (--auto: to the most caught-up live
                                  voter); exits 0 once it leads ("member N leads (term T)"), 4 if
                                  the leader refuses (unknown id, a learner, a removed member), 3
                                  if it did not take over within the wait the leader states

The leader refuses a change that would leave fewer live voters than the new configuration's
quorum; --force makes it anyway. While it answers "not now" (another change under way, a
hand-over, a learner catching up), tandem cluster tries again until --timeout.

Exit codes: 0 ok; 1 not done: a member unreachable, no leader, "not now" until the timeout
(status: not every endpoint answered, or they do not agree on one leader; errors: not every
member asked answered); 3 outcome unknown (the change may have been made: list-members tells);
4 refused by the cluster (errors --member: not a member); 64 usage (or a request the members
call malformed); 70 internal error (tandem help lists them all).

Flags (before or after the verb):
`

const clusterExamples = `
Examples:
  tandem cluster status
  tandem cluster status --json --endpoints 10.0.0.1:9000,10.0.0.2:9000,10.0.0.3:9000
  tandem cluster list-members
  tandem cluster errors --member 2
  tandem cluster remove-member 2
  tandem cluster replace-member 2 --with 3 --timeout 1m
  tandem cluster set-preferred-leader 0,1
  tandem cluster suspend && tandem cluster snapshot && tandem cluster resume
  tandem cluster shutdown --timeout 30s
  tandem cluster transfer-leader 2
`

func runCluster(args []string) int { return clusterMain(args, os.Stdout, os.Stderr) }

// clusterCmd is one tandem cluster invocation.
type clusterCmd struct {
	stdout, stderr io.Writer
	endpoints      []string
	timeout        time.Duration
	json           bool
	// opts carries the credentials (--cacert, --cert, --key, --token-file) to every request.
	opts admin.Options
}

// fail prints a one-line reason on stderr and returns code; for exitUsage, as usageError does,
// the hint where the help is under it.
func (c *clusterCmd) fail(code int, format string, args ...any) int {
	if code == exitUsage {
		return usageError(c.stderr, "cluster", format, args...)
	}
	fmt.Fprintln(c.stderr, "tandem cluster: "+oneLine(fmt.Sprintf(format, args...)))
	return code
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

func clusterMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("cluster")
	endpoints := fs.String("endpoints", defaultEndpoints(), "client endpoints of the members, comma-separated [TANDEM_ENDPOINTS]")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the whole command")
	asJSON := fs.Bool("json", false, "print the members' answers as JSON")
	force := fs.Bool("force", false, "remove-member, replace-member: make the change even if the live voters left could not make a quorum")
	with := fs.String("with", "", "replace-member: the learner that takes the place")
	abort := fs.Bool("abort", false, "shutdown: stop without the snapshot")
	clear := fs.Bool("clear", false, "set-preferred-leader: no member is preferred")
	member := fs.Int("member", -1, "errors: ask only member `ID` (found through the endpoints)")
	auto := fs.Bool("auto", false, "transfer-leader: hand leadership to the most caught-up live voter")
	creds := addCredentialFlags(fs)
	pos, code, done := parseVerbTo(fs, args, verbHelp{clusterHelp, clusterExamples}, stdout, stderr)
	if done {
		return code
	}
	c := &clusterCmd{stdout: stdout, stderr: stderr, timeout: *timeout, json: *asJSON}
	for _, ep := range strings.Split(*endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			c.endpoints = append(c.endpoints, ep)
		}
	}
	tlsCfg, token, err := creds.load(c.endpoints)
	if err != nil {
		return c.fail(exitUsage, "%v", err)
	}
	c.opts = admin.Options{TLS: tlsCfg, Token: token}
	switch {
	case len(c.endpoints) == 0:
		return c.fail(exitUsage, "--endpoints names no member")
	case *timeout <= 0:
		return c.fail(exitUsage, "--timeout %s: want a positive duration", *timeout)
	case len(pos) == 0:
		return c.fail(exitUsage, "which verb? status, leader, is-leader ID, errors, list-members, remove-member ID, promote ID, "+
			"replace-member OLD --with NEW, transfer-leader ID|--auto, set-preferred-leader ID[,ID]|--clear, suspend, resume, "+
			"snapshot, shutdown")
	}
	verb, rest := pos[0], pos[1:]
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["force"] && verb != wire.AdminRemoveMember && verb != wire.AdminReplaceMember {
		return c.fail(exitUsage, "--force is for remove-member and replace-member, not %s", verb)
	}
	if set["with"] && verb != wire.AdminReplaceMember {
		return c.fail(exitUsage, "--with is for replace-member, not %s", verb)
	}
	if set["abort"] && verb != wire.AdminShutdown {
		return c.fail(exitUsage, "--abort is for shutdown, not %s", verb)
	}
	if set["clear"] && verb != wire.AdminSetPreferred {
		return c.fail(exitUsage, "--clear is for set-preferred-leader, not %s", verb)
	}
	if set["member"] && verb != wire.AdminErrors {
		return c.fail(exitUsage, "--member is for errors, not %s", verb)
	}
	if set["member"] && *member < 0 {
		return c.fail(exitUsage, "--member %d: want a member id (a non-negative integer)", *member)
	}
	if set["auto"] && verb != wire.AdminTransferLeader {
		return c.fail(exitUsage, "--auto is for transfer-leader, not %s", verb)
	}
	ids := func(n int, what string) ([]int, bool) {
		if len(rest) != n {
			c.fail(exitUsage, "%s takes %s", verb, what)
			return nil, false
		}
		var out []int
		for _, a := range rest {
			id, err := parseMemberID(a)
			if err != nil {
				c.fail(exitUsage, "%s: %v", verb, err)
				return nil, false
			}
			out = append(out, id)
		}
		return out, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	switch verb {
	case wire.AdminStatus:
		if _, ok := ids(0, "no arguments"); !ok {
			return exitUsage
		}
		return c.status(ctx)
	case wire.AdminListMembers:
		if _, ok := ids(0, "no arguments"); !ok {
			return exitUsage
		}
		return c.change(ctx, wire.AdminRequest{Op: verb})
	case wire.AdminRemoveMember, wire.AdminPromote:
		id, ok := ids(1, "a member id")
		if !ok {
			return exitUsage
		}
		return c.change(ctx, wire.AdminRequest{Op: verb, ID: id[0], Force: *force})
	case wire.AdminReplaceMember:
		id, ok := ids(1, "the id of the member to replace, and --with the learner's")
		if !ok {
			return exitUsage
		}
		if !set["with"] {
			return c.fail(exitUsage, "replace-member %d: --with NEW names the learner that takes its place", id[0])
		}
		nu, err := parseMemberID(*with)
		if err != nil {
			return c.fail(exitUsage, "replace-member --with: %v", err)
		}
		if nu == id[0] {
			return c.fail(exitUsage, "replace-member %d --with %d: a member cannot take its own place", nu, nu)
		}
		return c.change(ctx, wire.AdminRequest{Op: verb, ID: id[0], Member: &wire.AdminMember{ID: nu}, Force: *force})
	case "leader":
		if _, ok := ids(0, "no arguments"); !ok {
			return exitUsage
		}
		return c.leader(ctx, -1)
	case "is-leader":
		id, ok := ids(1, "a member id")
		if !ok {
			return exitUsage
		}
		return c.leader(ctx, id[0])
	case wire.AdminSuspend, wire.AdminResume, wire.AdminSnapshot, wire.AdminShutdown:
		if _, ok := ids(0, "no arguments"); !ok {
			return exitUsage
		}
		return c.control(ctx, wire.AdminRequest{Op: verb, Abort: *abort})
	case wire.AdminSetPreferred:
		req := wire.AdminRequest{Op: verb, Clear: *clear}
		switch {
		case *clear && len(rest) == 0:
		case !*clear && len(rest) == 1:
			var err error
			if req.IDs, err = parseIDs(rest[0]); err != nil || len(req.IDs) == 0 {
				return c.fail(exitUsage, "set-preferred-leader %s: want member ids ID[,ID]", rest[0])
			}
		default:
			return c.fail(exitUsage, "set-preferred-leader takes ID[,ID] (most preferred first), or --clear")
		}
		return c.control(ctx, req)
	case wire.AdminErrors:
		if _, ok := ids(0, "no arguments (--member ID for one member)"); !ok {
			return exitUsage
		}
		return c.recentErrors(ctx, *member)
	case wire.AdminTransferLeader:
		if *auto {
			if _, ok := ids(0, "no member id with --auto"); !ok {
				return exitUsage
			}
			return c.transferLeader(ctx, wire.AdminRequest{Op: verb, Auto: true}) // transfer.go
		}
		id, ok := ids(1, "a member id, or --auto")
		if !ok {
			return exitUsage
		}
		return c.transferLeader(ctx, wire.AdminRequest{Op: verb, ID: id[0]})
	case wire.AdminJoin:
		return c.fail(exitUsage, "join is the joining member's request: tandem node sends it when it starts")
	}
	return c.fail(exitUsage, "unknown verb %q: status, leader, is-leader, errors, list-members, remove-member, promote, replace-member, transfer-leader, suspend, resume, snapshot, shutdown or set-preferred-leader", verb)
}

func parseMemberID(s string) (int, error) {
	id, err := strconv.Atoi(s)
	if err != nil || id < 0 {
		return 0, fmt.Errorf("%q is not a member id (a non-negative integer)", s)
	}
	return id, nil
}

// describeRequest names a request the way the command line said it.
func describeRequest(req wire.AdminRequest) string {
	switch req.Op {
	case wire.AdminListMembers:
		return req.Op
	case wire.AdminReplaceMember:
		return fmt.Sprintf("%s %d --with %d", req.Op, req.ID, req.Member.ID)
	case wire.AdminSuspend, wire.AdminResume, wire.AdminSnapshot:
		return req.Op
	case wire.AdminShutdown:
		if req.Abort {
			return req.Op + " --abort"
		}
		return req.Op
	case wire.AdminSetPreferred:
		if req.Clear {
			return req.Op + " --clear"
		}
		return fmt.Sprintf("%s %s", req.Op, joinIDs(req.IDs))
	}
	return fmt.Sprintf("%s %d", req.Op, req.ID)
}

// change sends a request the leader serves (list-members, or a change) and reports its answer.
func (c *clusterCmd) change(ctx context.Context, req wire.AdminRequest) int {
	_, code := c.do(ctx, req)
	return code
}

// do sends a request the leader serves and reports a failure; code is exitOK with the answer to
// print (printed already for list-members and the membership changes).
func (c *clusterCmd) do(ctx context.Context, req wire.AdminRequest) (wire.AdminResponse, int) {
	what := describeRequest(req)
	fail := func(code int, format string, args ...any) (wire.AdminResponse, int) {
		return wire.AdminResponse{}, c.fail(code, format, args...)
	}
	res, err := admin.Do(ctx, c.endpoints, req, c.opts)
	if c.json && res.Raw != nil {
		c.printJSON(res.Raw)
	}
	switch {
	case errors.Is(err, admin.ErrUnauthenticated):
		return fail(exitNotApplied, "%s: %v", what, err)
	case errors.Is(err, admin.ErrOutcomeUnknown):
		hint := ""
		if !strings.Contains(err.Error(), "list-members") {
			hint = " (tandem cluster list-members tells)"
		}
		return fail(exitUnknown, "%s: %v%s", what, err, hint)
	case err != nil:
		return fail(exitFailed, "%s: %v", what, err)
	}
	resp := res.Response
	switch res.Status {
	case wire.StatusOK:
	case wire.StatusRejected:
		return fail(exitNotApplied, "%s: refused: %s", what, resp.Error)
	case wire.StatusDenied:
		return fail(exitNotApplied, "%s: permission denied: %s", what, resp.Error)
	case wire.StatusBadRequest:
		return fail(exitUsage, "%s: bad request: %s", what, resp.Error)
	case wire.StatusUnavailable:
		return fail(exitFailed, "%s: not done within %s: %s", what, c.timeout, resp.Error)
	default:
		return fail(exitFailed, "%s: not done: %s answered status %d: %s", what, res.Endpoint, res.Status, resp.Error)
	}
	if c.json {
		return resp, exitOK
	}
	switch req.Op {
	case wire.AdminListMembers:
		tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tRAFT ID\tROLE\tCLIENT\tMEMBER")
		for _, m := range resp.Members {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", m.ID, m.RaftID, orDash(m.Role), orDash(m.ClientAddr), orDash(m.MemberAddr))
		}
		_ = tw.Flush()
	case wire.AdminRemoveMember, wire.AdminPromote, wire.AdminReplaceMember:
		if resp.Already != "" {
			fmt.Fprintf(c.stdout, "nothing to do: %s; members: %s\n", resp.Already, memberList(resp.Members))
			break
		}
		c.printChange(req, resp)
	}
	return resp, exitOK
}

// printChange prints a change made.
func (c *clusterCmd) printChange(req wire.AdminRequest, resp wire.AdminResponse) {
	raftID := func(id int) string {
		for _, m := range resp.Members {
			if m.ID == id && m.RaftID != 0 {
				return fmt.Sprintf(" (raft id %d)", m.RaftID)
			}
		}
		return ""
	}
	switch req.Op {
	case wire.AdminRemoveMember:
		fmt.Fprintf(c.stdout, "removed member %d at index %d; members: %s\n", req.ID, resp.Index, memberList(resp.Members))
	case wire.AdminPromote:
		fmt.Fprintf(c.stdout, "promoted member %d%s to voter at index %d; members: %s\n", req.ID, raftID(req.ID), resp.Index, memberList(resp.Members))
	case wire.AdminReplaceMember:
		fmt.Fprintf(c.stdout, "replaced member %d with member %d%s at index %d; members: %s\n", req.ID, req.Member.ID, raftID(req.Member.ID),
			resp.Index, memberList(resp.Members))
	}
}

// memberList is "0, 1, 3 (learner)".
func memberList(ms []wire.AdminMember) string {
	ms = slices.Clone(ms)
	slices.SortStableFunc(ms, func(a, b wire.AdminMember) int { return a.ID - b.ID })
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		s := strconv.Itoa(m.ID)
		if m.Role != "" && m.Role != "voter" {
			s += " (" + m.Role + ")"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *clusterCmd) printJSON(raw []byte) {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		b.Reset()
		b.Write(raw)
	}
	b.WriteByte('\n')
	_, _ = c.stdout.Write(b.Bytes())
}

// statusEntry is one endpoint's answer to status, as --json prints it.
type statusEntry struct {
	Endpoint string          `json:"endpoint"`
	Status   json.RawMessage `json:"status,omitempty"`
	Error    string          `json:"error,omitempty"`

	st     *wire.MemberStatus
	reason string // why there is no status, for the table (the endpoint not repeated)
}

func errorTexts(entries []statusEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Error)
	}
	return out
}

// refusedByAll reports, for a request every member answers for itself, whether every endpoint
// refused the credential (a missing, wrong or revoked one, an untrusted member certificate):
// then it says so and the exit code is exitNotApplied, as for any refused credential, rather
// than a status of members that "did not answer".
func (c *clusterCmd) refusedByAll(errs []string) (int, bool) {
	if len(errs) == 0 {
		return 0, false
	}
	for _, e := range errs {
		if !strings.Contains(e, admin.ErrUnauthenticated.Error()) {
			return 0, false
		}
	}
	return c.fail(exitNotApplied, "%s", errs[0]), true
}

// askAll asks every endpoint for its own status at once.
func (c *clusterCmd) askAll(ctx context.Context) []statusEntry {
	entries := make([]statusEntry, len(c.endpoints))
	var wg sync.WaitGroup
	for i, ep := range c.endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			entries[i] = askStatus(ctx, ep, c.opts)
		}()
	}
	wg.Wait()
	return entries
}

// status asks every endpoint for its own status at once, prints them, and judges the cluster.
func (c *clusterCmd) status(ctx context.Context) int {
	entries := c.askAll(ctx)
	if code, refused := c.refusedByAll(errorTexts(entries)); refused {
		return code
	}
	verdict := judge(entries)
	if c.json {
		b, err := json.MarshalIndent(entries, "", "  ")
		if err != nil {
			panic(err) // raw JSON from a member was checked when it was decoded
		}
		fmt.Fprintf(c.stdout, "%s\n", b)
	} else {
		c.statusTable(entries)
		for _, id := range outsiders(entries) {
			fmt.Fprintf(c.stdout, "note: member %d answers, but the leader does not count it among the members (removed?)\n", id)
		}
	}
	if verdict != "" {
		return c.fail(exitFailed, "degraded: %s", verdict)
	}
	if !c.json {
		st := entries[0].st
		fmt.Fprintf(c.stdout, "%d of %d endpoints answered; leader: member %d (term %d)\n", len(entries), len(entries), st.Leader, st.Term)
	}
	return exitOK
}

// leader prints the leader as the members that answered see it (want < 0: tandem cluster
// leader), or says whether member want leads (is-leader: exit 0 yes, 1 no, 3 unknown). The leader
// is a member that says it leads, in a term no member that answered has passed: a leader cut off
// with a minority is passed by the others' newer term, if they answered.
func (c *clusterCmd) leader(ctx context.Context, want int) int {
	entries := c.askAll(ctx)
	if code, refused := c.refusedByAll(errorTexts(entries)); refused {
		return code
	}
	var lead *wire.MemberStatus
	var ep string
	var maxTerm uint64
	for _, e := range entries {
		if e.st == nil {
			continue
		}
		maxTerm = max(maxTerm, e.st.Term)
		if e.st.Role == "leader" && (lead == nil || e.st.Term > lead.Term) {
			lead, ep = e.st, e.Endpoint
		}
	}
	why := ""
	switch {
	case lead == nil && judge(entries) != "":
		why = judge(entries)
	case lead == nil:
		why = "no member that answered leads"
	case lead.Term < maxTerm:
		why = fmt.Sprintf("member %d leads term %d, but a member that answered is in term %d (an election?)", lead.ID, lead.Term, maxTerm)
		lead = nil
	}
	if c.json {
		out := map[string]any{"leader": -1}
		if lead != nil {
			out = map[string]any{"leader": lead.ID, "raft_id": lead.RaftID, "term": lead.Term, "endpoint": ep}
		} else {
			out["error"] = why
		}
		if want >= 0 {
			out["member"], out["is_leader"] = want, lead != nil && lead.ID == want
		}
		b, _ := json.Marshal(out)
		fmt.Fprintf(c.stdout, "%s\n", b)
	}
	switch {
	case lead == nil && want < 0:
		if !strings.Contains(why, "no leader") {
			why = "no leader: " + why
		}
		return c.fail(exitFailed, "%s", why)
	case lead == nil:
		return c.fail(exitUnknown, "unknown whether member %d leads: %s", want, why)
	case want < 0:
		if !c.json {
			fmt.Fprintf(c.stdout, "%d\n", lead.ID)
		}
		return exitOK
	case lead.ID == want:
		if !c.json {
			fmt.Fprintf(c.stdout, "member %d leads (term %d)\n", want, lead.Term)
		}
		return exitOK
	}
	if !c.json {
		// The leader's lag lists every other member it replicates to: a member it does not
		// list is no member at all, which is worth saying.
		if _, known := lead.Lag[strconv.Itoa(want)]; !known && lead.Lag != nil {
			fmt.Fprintf(c.stdout, "member %d does not lead: it is not a member (member %d leads, term %d)\n", want, lead.ID, lead.Term)
			return exitFailed
		}
		fmt.Fprintf(c.stdout, "member %d does not lead: member %d does (term %d)\n", want, lead.ID, lead.Term)
	}
	return exitFailed
}

// outsiders are the members that answered and that the leader, which answered too, does not
// track (its lag lists every other member it replicates to, by member id).
func outsiders(entries []statusEntry) []int {
	var leader *wire.MemberStatus
	for _, e := range entries {
		if e.st != nil && e.st.Role == "leader" {
			leader = e.st
		}
	}
	if leader == nil || leader.Lag == nil {
		return nil
	}
	tracked := map[string]bool{}
	for k := range leader.Lag {
		tracked[strings.SplitN(k, "/", 2)[0]] = true // "2", or "2/raft-5" for a member rebuilt in place
	}
	var out []int
	for _, e := range entries {
		if e.st != nil && e.st.ID != leader.ID && !tracked[strconv.Itoa(e.st.ID)] {
			out = append(out, e.st.ID)
		}
	}
	return out
}

func askStatus(ctx context.Context, ep string, opts admin.Options) statusEntry {
	e := statusEntry{Endpoint: ep}
	var res admin.Result
	res, e.Status, e.Error, e.reason = askMember(ctx, ep, opts, wire.AdminStatus, "status",
		func(r wire.AdminResponse) bool { return r.Status != nil })
	if e.Error == "" {
		e.st = res.Response.Status
	}
	return e
}

// askMember asks endpoint ep alone for op, a request every member answers for itself (status,
// errors). It returns the answer and its field as the member sent it (fields this build does not
// know too), or the failure in one line (errText) and as a table says it, without the endpoint
// (reason). has tells whether the answer holds what op asks for: a member of a build without op
// answers without it.
func askMember(ctx context.Context, ep string, opts admin.Options, op, field string, has func(wire.AdminResponse) bool) (res admin.Result,
	raw json.RawMessage, errText, reason string) {
	res, err := admin.Do(ctx, []string{ep}, wire.AdminRequest{Op: op}, opts)
	switch {
	case err != nil:
		errText = oneLine(err.Error())
		reason = strings.Replace(errText, ep+": ", "", 1)
		if errors.Is(err, admin.ErrUnreachable) {
			reason = "unreachable: " + strings.TrimPrefix(reason, admin.ErrUnreachable.Error()+": ")
		}
		return res, nil, errText, reason
	case res.Status != wire.StatusOK || !has(res.Response):
		errText = oneLine(fmt.Sprintf("answered status %d without its %s: %s", res.Status, field, res.Response.Error))
		return res, nil, errText, errText
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(res.Raw, &fields) == nil {
		raw = fields[field]
	}
	return res, raw, "", ""
}

// judge says what is wrong with the cluster the entries show ("" if nothing): an endpoint that
// did not answer; no leader, or not one that all agree on.
func judge(entries []statusEntry) string {
	var problems, missing []string
	leaders := map[int][]int{} // leader id → the members that name it
	var leading []int          // the members that say they lead
	byID := map[int]*wire.MemberStatus{}
	for _, e := range entries {
		if e.st == nil {
			missing = append(missing, e.Endpoint)
			continue
		}
		leaders[e.st.Leader] = append(leaders[e.st.Leader], e.st.ID)
		byID[e.st.ID] = e.st
		if e.st.Role == "leader" {
			leading = append(leading, e.st.ID)
		}
	}
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d endpoints did not answer (%s)", len(missing), len(entries), strings.Join(missing, ", ")))
	}
	if len(byID) == 0 {
		return strings.Join(problems, "; ")
	}
	switch ids := slices.Sorted(maps.Keys(leaders)); {
	case len(ids) > 1:
		var views []string
		for _, l := range ids {
			views = append(views, fmt.Sprintf("%s: %s", idList(leaders[l]), leaderName(l)))
		}
		problems = append(problems, "the members do not agree on the leader ("+strings.Join(views, "; ")+")")
	case ids[0] == -1:
		problems = append(problems, "no leader ("+idList(leaders[-1])+map[bool]string{true: " knows", false: " know"}[len(leaders[-1]) == 1]+" none)")
	default:
		if st, ok := byID[ids[0]]; ok && st.Role != "leader" {
			problems = append(problems, fmt.Sprintf("member %d, which all name the leader, says it is a %s", ids[0], st.Role))
		}
	}
	if len(leading) > 1 {
		slices.Sort(leading)
		problems = append(problems, fmt.Sprintf("%s all say they lead", idList(leading)))
	}
	return strings.Join(problems, "; ")
}

func leaderName(id int) string {
	if id < 0 {
		return "none"
	}
	return fmt.Sprintf("member %d", id)
}

// idList is "member 2" or "members 0, 1".
func idList(ids []int) string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	if len(ids) == 1 {
		return "member " + s[0]
	}
	return "members " + strings.Join(s, ", ")
}

func (c *clusterCmd) statusTable(entries []statusEntry) {
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	if slices.ContainsFunc(entries, func(e statusEntry) bool { return e.st != nil }) {
		fmt.Fprintln(tw, "ID\tRAFT ID\tROLE\tTERM\tLEADER\tCOMMIT\tAPPLIED\tSNAPSHOT\tLAG\tCLIENT\tMEMBER\tBUILD\tCLUSTER VERSION")
	}
	for _, e := range entries {
		st := e.st
		if st == nil {
			continue
		}
		role := st.Role
		if st.Learner {
			role += " (learner)"
		}
		if st.Unverified {
			role += " (unverified)"
		}
		leader := "-"
		if st.Leader >= 0 {
			leader = strconv.Itoa(st.Leader)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%d\n", st.ID, st.RaftID, role, st.Term, leader, st.Commit,
			st.Applied, st.SnapshotIndex, lagText(st.Lag), orDash(st.ClientAddr), orDash(st.MemberAddr), orDash(st.Build), st.ClusterVersion)
	}
	_ = tw.Flush()
	for _, e := range entries {
		if e.st == nil {
			fmt.Fprintf(c.stdout, "%s: %s\n", e.Endpoint, e.reason)
		}
	}
	// The controls, as the leader applied them (else as the first member that answered).
	var ctl *wire.MemberStatus
	for _, e := range entries {
		if e.st != nil && (ctl == nil || e.st.Role == "leader") {
			ctl = e.st
		}
	}
	if ctl != nil && ctl.Suspended {
		fmt.Fprintln(c.stdout, "the cluster is SUSPENDED: commands are refused (tandem cluster resume)")
	}
	if ctl != nil && len(ctl.Preferred) > 0 {
		fmt.Fprintf(c.stdout, "preferred leaders: %s\n", joinIDs(ctl.Preferred))
	}
}

// lagText is the leader's view of the others' lag, "1:0 2:14" by member id; "-" elsewhere.
func lagText(lag map[string]uint64) string {
	if len(lag) == 0 {
		return "-"
	}
	keys := slices.SortedFunc(maps.Keys(lag), func(a, b string) int {
		ai, aerr := strconv.Atoi(a)
		bi, berr := strconv.Atoi(b)
		if aerr == nil && berr == nil {
			return ai - bi
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, lag[k])
	}
	return strings.Join(parts, " ")
}
