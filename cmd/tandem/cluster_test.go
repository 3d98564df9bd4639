package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/internal/admin"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// runClusterCmd runs tandem cluster in this process.
func runClusterCmd(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = clusterMain(args, &o, &e)
	return o.String(), e.String(), code
}

// oneReason checks that stderr is one line, "tandem cluster: " and a reason containing want; for
// a usage error (TestClusterUsageErrors) followed by the hint where the help is.
func oneReason(t *testing.T, stderr, want string) {
	t.Helper()
	reason, hint, _ := strings.Cut(stderr, "\n")
	if !strings.HasPrefix(reason, "tandem cluster: ") || !strings.Contains(reason, want) ||
		(hint != "" && hint != "tandem cluster --help for the flags\n") {
		t.Fatalf("want one line \"tandem cluster: …%s…\" (and for a usage error the hint), got %q", want, stderr)
	}
}

// Mistakes on the command line exit with the usage code, with a one-line reason, before any
// member is asked.
func TestClusterUsageErrors(t *testing.T) {
	dead, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string // in the one-line reason; "" for a flag the flag package refuses (one line and the hint)
	}{
		{nil, "which verb?"},
		{[]string{"frobnicate"}, `unknown verb "frobnicate"`},
		{[]string{"join"}, "tandem node sends it"},
		{[]string{"status", "extra"}, "status takes no arguments"},
		{[]string{"list-members", "0"}, "list-members takes no arguments"},
		{[]string{"remove-member"}, "remove-member takes a member id"},
		{[]string{"remove-member", "two"}, `"two" is not a member id`},
		{[]string{"promote"}, "promote takes a member id"},
		{[]string{"promote", "1", "2"}, "promote takes a member id"},
		{[]string{"replace-member", "2"}, "--with NEW"},
		{[]string{"replace-member", "--with", "3"}, "replace-member takes the id"},
		{[]string{"replace-member", "2", "--with", "x"}, `"x" is not a member id`},
		{[]string{"replace-member", "2", "--with", "2"}, "its own place"},
		{[]string{"promote", "1", "--force"}, "--force is for remove-member and replace-member"},
		{[]string{"remove-member", "1", "--with", "2"}, "--with is for replace-member"},
		{[]string{"transfer-leader"}, "transfer-leader takes a member id, or --auto"},
		{[]string{"transfer-leader", "1", "--auto"}, "transfer-leader takes no member id with --auto"},
		{[]string{"promote", "1", "--auto"}, "--auto is for transfer-leader"},
		{[]string{"status", "--timeout", "0s"}, "--timeout"},
		{[]string{"status", "--endpoints", " , "}, "--endpoints names no member"},
		{[]string{"status", "--timeout", "soon"}, ""},
		{[]string{"--no-such-flag", "status"}, ""},
		{[]string{"remove-member", "-1"}, `"-1" is not a member id`},
	} {
		args := tc.args
		if !slices.Contains(args, "--endpoints") {
			args = append(slices.Clone(args), "--endpoints", dead[0]) // nothing listens there
		}
		out, stderr, code := runClusterCmd(args...)
		if code != exitUsage || out != "" {
			t.Fatalf("tandem cluster %q: exit %d, stdout %q, stderr %q; want %d (usage)", tc.args, code, out, stderr, exitUsage)
		}
		if tc.want != "" {
			oneReason(t, stderr, tc.want)
			if !strings.HasSuffix(stderr, "\ntandem cluster --help for the flags\n") {
				t.Fatalf("tandem cluster %q: no hint under the reason: %q", tc.args, stderr)
			}
		} else if lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n"); len(lines) != 2 ||
			!strings.HasPrefix(lines[0], "tandem cluster: ") || lines[1] != "tandem cluster --help for the flags" ||
			strings.Contains(stderr, "Usage:") {
			t.Fatalf("tandem cluster %q: want one line and the hint, not the usage; stderr %q", tc.args, stderr)
		}
	}
	// As a process too: usage errors are 64, never Go's 2.
	bin := tandemBinary(t)
	for _, args := range [][]string{{"cluster"}, {"cluster", "frobnicate"}, {"cluster", "promote"}} {
		if _, stderr, code := runCLI(t, bin, append(args, "--endpoints", dead[0])...); code != exitUsage {
			t.Fatalf("tandem %q exited %d, want %d; stderr %q", args, code, exitUsage, stderr)
		}
	}
}

// With no member reachable, every verb exits 1 (not done) at once, naming the endpoints.
func TestClusterUnreachable(t *testing.T) {
	dead, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	eps := strings.Join(dead, ",")
	start := time.Now()
	_, stderr, code := runClusterCmd("remove-member", "2", "--endpoints", eps)
	if code != exitFailed {
		t.Fatalf("exit %d, want %d: %s", code, exitFailed, stderr)
	}
	oneReason(t, stderr, "could not reach any member")
	if !strings.Contains(stderr, dead[0]) || !strings.Contains(stderr, dead[1]) {
		t.Fatalf("the reason does not name the endpoints: %q", stderr)
	}
	out, stderr, code := runClusterCmd("status", "--endpoints", eps)
	if code != exitFailed || !strings.Contains(out, dead[0]+": unreachable") {
		t.Fatalf("status: exit %d\n%s%s", code, out, stderr)
	}
	oneReason(t, stderr, "degraded: 2 of 2 endpoints did not answer")
	if took := time.Since(start); took > 8*time.Second {
		t.Fatalf("took %s: unreachable members must not wait for --timeout", took)
	}
}

// startAdminCluster starts three in-process members and waits until every member answers status
// naming the same leader, and the cluster version has membership changes.
func startAdminCluster(t *testing.T) (*localCluster, string) {
	t.Helper()
	lc, err := newLocalCluster(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lc.close)
	if err := lc.startAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.waitLeader(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	eps := strings.Join(lc.eps, ",")
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, stderr, code := runClusterCmd("status", "--json", "--endpoints", eps)
		sts := decodeStatuses(t, out)
		if code == exitOK && len(sts) == 3 && sts[0].Status.ClusterVersion >= container.ClusterVersionMembership {
			return lc, eps
		}
		if time.Now().After(deadline) {
			t.Fatalf("the members did not agree on a leader at cluster version %d: exit %d\n%s%s", container.ClusterVersionMembership, code, out, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type statusJSON struct {
	Endpoint string             `json:"endpoint"`
	Status   *wire.MemberStatus `json:"status"`
	Error    string             `json:"error"`
}

func decodeStatuses(t *testing.T, out string) []statusJSON {
	t.Helper()
	var sts []statusJSON
	if err := json.Unmarshal([]byte(out), &sts); err != nil {
		t.Fatalf("status --json printed %q: %v", out, err)
	}
	return sts
}

var tableRow = regexp.MustCompile(`(?m)^(\d+)\s+(\d+)\s+(leader|follower)\s+(\d+)\s+(\d+)\s+`)

// status and list-members against three running members; then, with one stopped, status says
// the cluster is degraded and list-members still answers.
func TestClusterStatusAndListMembers(t *testing.T) {
	t.Parallel()
	lc, eps := startAdminCluster(t)

	out, stderr, code := runClusterCmd("status", "--endpoints", eps)
	if code != exitOK || stderr != "" {
		t.Fatalf("status: exit %d\n%s%s", code, out, stderr)
	}
	for _, col := range []string{"ID", "RAFT ID", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "SNAPSHOT", "LAG", "CLIENT", "MEMBER", "BUILD", "CLUSTER VERSION"} {
		if !strings.Contains(strings.SplitN(out, "\n", 2)[0], col) {
			t.Fatalf("status: no %s column:\n%s", col, out)
		}
	}
	rows := tableRow.FindAllStringSubmatch(out, -1)
	leaders := 0
	for _, r := range rows {
		if r[3] == "leader" {
			leaders++
		}
	}
	if len(rows) != 3 || leaders != 1 || !strings.Contains(out, "3 of 3 endpoints answered; leader: member ") {
		t.Fatalf("status: want three members, one leader:\n%s", out)
	}
	for _, ep := range lc.eps {
		if !strings.Contains(out, ep) {
			t.Fatalf("status does not show %s:\n%s", ep, out)
		}
	}

	out, _, code = runClusterCmd("--json", "status", "--endpoints", eps)
	sts := decodeStatuses(t, out)
	if code != exitOK || len(sts) != 3 {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}
	leader := sts[0].Status.Leader
	for i, s := range sts {
		if s.Endpoint != lc.eps[i] || s.Status == nil || s.Error != "" || s.Status.ID != i || s.Status.Leader != leader ||
			s.Status.ClientAddr != lc.eps[i] || s.Status.RaftID == 0 {
			t.Fatalf("status --json entry %d: %+v", i, s)
		}
		if (s.Status.ID == leader) != (s.Status.Role == "leader") || (s.Status.Role == "leader") != (len(s.Status.Lag) == 2) {
			t.Fatalf("status --json entry %d: role %s, lag %v (the leader %d shows the others' lag)", i, s.Status.Role, s.Status.Lag, leader)
		}
	}

	out, stderr, code = runClusterCmd("list-members", "--endpoints", eps)
	if code != exitOK {
		t.Fatalf("list-members: exit %d\n%s%s", code, out, stderr)
	}
	for i, ep := range lc.eps {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s+\d+\s+voter\s+%s\s+\S+$`, i, regexp.QuoteMeta(ep))).MatchString(out) {
			t.Fatalf("list-members does not show member %d, a voter at %s:\n%s", i, ep, out)
		}
	}
	out, _, code = runClusterCmd("list-members", "--json", "--endpoints", eps)
	var resp wire.AdminResponse
	if err := json.Unmarshal([]byte(out), &resp); err != nil || code != exitOK || len(resp.Members) != 3 || resp.Index == 0 {
		t.Fatalf("list-members --json: exit %d, %v\n%s", code, err, out)
	}

	// A follower stops: status is degraded, names it, and still shows the others.
	f := (leader + 1) % 3
	if err := lc.stop(f); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = runClusterCmd("status", "--endpoints", eps)
	if code != exitFailed || len(tableRow.FindAllString(out, -1)) != 2 || !strings.Contains(out, lc.eps[f]+": unreachable") {
		t.Fatalf("status with member %d stopped: exit %d\n%s%s", f, code, out, stderr)
	}
	oneReason(t, stderr, "degraded: 1 of 3 endpoints did not answer ("+lc.eps[f]+")")
	out, _, code = runClusterCmd("status", "--json", "--endpoints", eps)
	sts = decodeStatuses(t, out)
	if code != exitFailed || len(sts) != 3 || sts[f].Status != nil || !strings.Contains(sts[f].Error, "could not reach") {
		t.Fatalf("status --json with member %d stopped: exit %d\n%s", f, code, out)
	}
	// list-members from the stopped member's endpoint on: the next ones answer.
	first := append([]string{lc.eps[f]}, slicesWithout(lc.eps, f)...)
	out, stderr, code = runClusterCmd("list-members", "--endpoints", strings.Join(first, ","))
	if code != exitOK || len(regexp.MustCompile(`(?m)^\d+\s+\d+\s+voter\s`).FindAllString(out, -1)) != 3 {
		t.Fatalf("list-members with member %d stopped: exit %d\n%s%s", f, code, out, stderr)
	}
}

func slicesWithout(s []string, i int) []string {
	return append(append([]string(nil), s[:i]...), s[i+1:]...)
}

// Changes the cluster refuses exit 4 with the leader's reason, whichever member is asked first.
func TestClusterRefusedChanges(t *testing.T) {
	t.Parallel()
	_, eps := startAdminCluster(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"remove-member", "7"}, "refused: member 7 is not a member"},
		{[]string{"replace-member", "1", "--with", "7"}, "refused: member 7 is not a member"},
		{[]string{"replace-member", "1", "--with", "2"}, "refused: member 2 is a voter"},
	} {
		for _, ep := range strings.Split(eps, ",") { // the leader, and followers that redirect
			out, stderr, code := runClusterCmd(append(tc.args, "--endpoints", ep)...)
			if code != exitNotApplied || out != "" {
				t.Fatalf("tandem cluster %q at %s: exit %d, want %d\n%s%s", tc.args, ep, code, exitNotApplied, out, stderr)
			}
			oneReason(t, stderr, tc.want)
		}
	}
	out, stderr, code := runClusterCmd("remove-member", "7", "--json", "--endpoints", eps)
	var resp wire.AdminResponse
	if err := json.Unmarshal([]byte(out), &resp); err != nil || code != exitNotApplied || !strings.Contains(resp.Error, "not a member") || len(resp.Members) != 3 {
		t.Fatalf("remove-member 7 --json: exit %d, %v\n%s%s", code, err, out, stderr)
	}
}

// A follower removed: the leader answers once the change is applied; the membership and the
// remaining members' status show two members.
func TestClusterRemoveMember(t *testing.T) {
	lc, eps := startAdminCluster(t)
	l := lc.leader()
	f := (l + 1) % 3
	out, stderr, code := runClusterCmd("remove-member", strconv.Itoa(f), "--endpoints", eps)
	if code != exitOK || stderr != "" {
		t.Fatalf("remove-member %d: exit %d\n%s%s", f, code, out, stderr)
	}
	want := regexp.MustCompile(fmt.Sprintf(`^removed member %d at index \d+; members: \d, \d\n$`, f))
	if !want.MatchString(out) || strings.Contains(out, strconv.Itoa(f)+",") || strings.HasSuffix(strings.TrimSpace(out), strconv.Itoa(f)) {
		t.Fatalf("remove-member %d printed %q", f, out)
	}
	out, stderr, code = runClusterCmd("list-members", "--endpoints", eps)
	if code != exitOK || len(regexp.MustCompile(`(?m)^\d+\s+\d+\s+voter\s`).FindAllString(out, -1)) != 2 ||
		regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s`, f)).MatchString(out) {
		t.Fatalf("list-members after removing member %d: exit %d\n%s%s", f, code, out, stderr)
	}
	// Again (a script that lost the answer asks again): nothing to do, said as such.
	out, stderr, code = runClusterCmd("remove-member", strconv.Itoa(f), "--endpoints", eps)
	if code != exitOK || !strings.HasPrefix(out, fmt.Sprintf("nothing to do: member %d was removed already", f)) {
		t.Fatalf("removing member %d again: exit %d: %s%s", f, code, out, stderr)
	}
	out, stderr, code = runClusterCmd("promote", strconv.Itoa((f+1)%3), "--endpoints", eps)
	if code != exitOK || !strings.HasPrefix(out, fmt.Sprintf("nothing to do: member %d is a voter already", (f+1)%3)) {
		t.Fatalf("promoting a voter: exit %d: %s%s", code, out, stderr)
	}
	rest := strings.Join(slicesWithout(lc.eps, f), ",")
	if out, stderr, code := runClusterCmd("status", "--endpoints", rest); code != exitOK || strings.Contains(out, "note:") {
		t.Fatalf("status of the two members left: exit %d\n%s%s", code, out, stderr)
	}
	// The removed member still runs and answers for itself: status points it out.
	out, stderr, _ = runClusterCmd("status", "--endpoints", eps)
	if !strings.Contains(out, fmt.Sprintf("note: member %d answers, but the leader does not count it among the members", f)) {
		t.Fatalf("status with the removed member's endpoint does not point it out:\n%s%s", out, stderr)
	}
}

// joinLearner adds member 3 as a learner at addresses nothing listens on: it never answers the
// leader. It returns its raft id.
func joinLearner(t *testing.T, lc *localCluster) uint64 {
	t.Helper()
	addrs, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, st, err := admin.Call(ctx, lc.eps, wire.AdminRequest{Op: wire.AdminJoin, Learner: true,
		Member: &wire.AdminMember{ID: 3, ClientAddr: addrs[0], MemberAddr: addrs[1]}}, admin.Options{})
	if err != nil || st != wire.StatusOK || resp.RaftID == 0 {
		t.Fatalf("join: %+v, %v, %v", resp, st, err)
	}
	out, stderr, code := runClusterCmd("list-members", "--endpoints", strings.Join(lc.eps, ","))
	if code != exitOK || !regexp.MustCompile(fmt.Sprintf(`(?m)^3\s+%d\s+learner\s+%s\s`, resp.RaftID, regexp.QuoteMeta(addrs[0]))).MatchString(out) {
		t.Fatalf("list-members after the join: exit %d\n%s%s", code, out, stderr)
	}
	return resp.RaftID
}

// A learner far behind the leader's log (it joined, and does not run): promote and
// replace-member answer "not now" until --timeout (exit 1, with the leader's reason); then
// remove-member removes it.
func TestClusterLearnerNotCaughtUp(t *testing.T) {
	lc, eps := startAdminCluster(t)
	// More entries than a caught-up learner may lack (replica's catchUpLagMax, 1000): one
	// command at a time, each its own entry.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Endpoints: lc.eps})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 1100 {
		if _, err := increment(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	joinLearner(t, lc)
	for _, args := range [][]string{{"promote", "3"}, {"replace-member", "0", "--with", "3"}} {
		start := time.Now()
		out, stderr, code := runClusterCmd(append(args, "--timeout", "700ms", "--endpoints", eps)...)
		if code != exitFailed || out != "" {
			t.Fatalf("%q: exit %d, want %d\n%s%s", args, code, exitFailed, out, stderr)
		}
		oneReason(t, stderr, "not done within 700ms: member 3 is not caught up yet")
		if took := time.Since(start); took < 700*time.Millisecond || took > 5*time.Second {
			t.Fatalf("%q took %s with --timeout 700ms: it should try until the timeout, and not much longer", args, took)
		}
	}
	out, stderr, code := runClusterCmd("remove-member", "3", "--endpoints", eps)
	if code != exitOK || !regexp.MustCompile(`^removed member 3 at index \d+; members: 0, 1, 2\n$`).MatchString(out) {
		t.Fatalf("remove-member 3: exit %d\n%s%s", code, out, stderr)
	}
}

// A learner the leader never heard from is not caught up, however short the log.
func TestClusterPromoteRefusesALearnerThatNeverAnswered(t *testing.T) {
	t.Parallel()
	lc, eps := startAdminCluster(t)
	joinLearner(t, lc)
	out, stderr, code := runClusterCmd("promote", "3", "--timeout", "700ms", "--endpoints", eps)
	if code != exitFailed {
		t.Fatalf("promote 3: exit %d, want %d\n%s%s", code, exitFailed, out, stderr)
	}
	oneReason(t, stderr, "member 3 is not caught up yet")
}

// leader prints the leader's id; is-leader says whether a member leads: 0 yes, 1 another does,
// 3 unknown (no member leads: here, two of three stopped).
func TestClusterLeaderAndIsLeader(t *testing.T) {
	t.Parallel()
	lc, eps := startAdminCluster(t)
	l := lc.leader()
	out, stderr, code := runClusterCmd("leader", "--endpoints", eps)
	if code != exitOK || out != fmt.Sprintf("%d\n", l) {
		t.Fatalf("leader: exit %d, %q, want %q\n%s", code, out, fmt.Sprintf("%d\n", l), stderr)
	}
	if out, stderr, code := runClusterCmd("is-leader", strconv.Itoa(l), "--endpoints", eps); code != exitOK ||
		!strings.HasPrefix(out, fmt.Sprintf("member %d leads (term ", l)) {
		t.Fatalf("is-leader %d: exit %d, %q\n%s", l, code, out, stderr)
	}
	f := (l + 1) % 3
	if out, stderr, code := runClusterCmd("is-leader", strconv.Itoa(f), "--endpoints", eps); code != exitFailed ||
		!strings.HasPrefix(out, fmt.Sprintf("member %d does not lead: member %d does", f, l)) {
		t.Fatalf("is-leader %d (a follower): exit %d, %q\n%s", f, code, out, stderr)
	}
	out, _, code = runClusterCmd("is-leader", strconv.Itoa(l), "--json", "--endpoints", eps)
	var j struct {
		Leader   int  `json:"leader"`
		IsLeader bool `json:"is_leader"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil || code != exitOK || j.Leader != l || !j.IsLeader {
		t.Fatalf("is-leader --json: exit %d, %q, %v", code, out, err)
	}
	if _, stderr, code := runClusterCmd("is-leader", "--endpoints", eps); code != exitUsage {
		t.Fatalf("is-leader without an id: exit %d, want %d\n%s", code, exitUsage, stderr)
	}
	// Two of three stopped: the one left knows no leader (or still thinks it leads, until its
	// quorum check): unknown, once it has noticed.
	for _, i := range []int{l, f} {
		if err := lc.stop(i); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, stderr, code := runClusterCmd("is-leader", strconv.Itoa(l), "--timeout", "2s", "--endpoints", eps)
		if code == exitUnknown {
			oneReason(t, stderr, "unknown whether member")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("is-leader with two of three members stopped: exit %d, want %d\n%s", code, exitUnknown, stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, stderr, code := runClusterCmd("leader", "--timeout", "2s", "--endpoints", eps); code != exitFailed {
		t.Fatalf("leader with no leader: exit %d, want %d\n%s", code, exitFailed, stderr)
	}
}
