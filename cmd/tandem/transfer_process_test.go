package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// transferOut matches what tandem cluster transfer-leader prints once the target leads.
var transferOut = regexp.MustCompile(`^member (\d+) leads \(term (\d+)\)\n$`)

// transfer runs tandem cluster transfer-leader args… and, if it exits 0, checks what it prints
// and that the member it names leads (its own role line says so), and returns that member.
func (pc *procCluster) transfer(eps []string, args ...string) (int, string, int) {
	pc.t.Helper()
	start := time.Now()
	stdout, stderr, code := pc.tandemCluster(eps, append([]string{"transfer-leader"}, args...)...)
	pc.t.Logf("transfer-leader %s: exit %d after %s: %s%s", strings.Join(args, " "), code,
		time.Since(start).Round(time.Millisecond), stdout, stderr)
	if code != exitOK || strings.HasPrefix(stdout, "nothing to do") {
		return -1, stdout + stderr, code
	}
	m := transferOut.FindStringSubmatch(stdout)
	if m == nil {
		pc.t.Fatalf("transfer-leader %s printed %q", strings.Join(args, " "), stdout)
	}
	id, _ := strconv.Atoi(m[1])
	term, _ := strconv.ParseUint(m[2], 10, 64)
	// The member named leads in that term (its banner may be read a moment after the answer).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if role, t := pc.procs[id].state(); role == "LEADER" && t == term {
			break
		}
		if time.Now().After(deadline) {
			role, t := pc.procs[id].state()
			pc.t.Fatalf("transfer-leader said member %d leads in term %d; its last role line: %s in term %d", id, term, role, t)
		}
	}
	return id, stdout, code
}

// tandem cluster transfer-leader on real processes under a load of increments: to a named
// voter, back, and --auto, each answered once the target leads (exit 0, "member N leads (term
// T)"), with no client error; refused (exit 4) for an id that is no member and a learner; to the
// leader itself, "nothing to do" (exit 0).
func TestProcessTransferLeader(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	pc.dumpOnFailure()
	l := pc.startAll()
	eps := pc.endpoints(0, 1, 2)
	load := startLoad(t, eps, 3)
	load.waitAcked(300, 20*time.Second, "before the transfers")
	load.mark("before the transfers")

	to := (l + 1) % 3
	if got, out, code := pc.transfer(eps, strconv.Itoa(to)); code != exitOK || got != to {
		t.Fatalf("transfer-leader %d: exit %d, member %d leads: %s", to, code, got, out)
	}
	load.waitAcked(200, 20*time.Second, "after the first transfer")
	if got, out, code := pc.transfer(eps, strconv.Itoa(l)); code != exitOK || got != l {
		t.Fatalf("transfer-leader %d (back): exit %d, member %d leads: %s", l, code, got, out)
	}
	load.waitAcked(200, 20*time.Second, "after the transfer back")
	got, out, code := pc.transfer(eps, "--auto")
	if code != exitOK || got == l || got < 0 {
		t.Fatalf("transfer-leader --auto from member %d: exit %d, member %d leads: %s", l, code, got, out)
	}
	l = got
	load.waitAcked(200, 20*time.Second, "after --auto")
	load.mark("three transfers")

	// Refusals, with the reason.
	if _, out, code := pc.transfer(eps, strconv.Itoa(l)); code != exitOK || !strings.Contains(out,
		fmt.Sprintf("nothing to do: member %d leads already", l)) {
		t.Fatalf("transfer-leader to the leader itself: exit %d: %s", code, out)
	}
	if _, out, code := pc.transfer(eps, "9"); code != exitNotApplied || !strings.Contains(out, "member 9 is not a member") {
		t.Fatalf("transfer-leader 9: exit %d, want %d saying it is not a member: %s", code, exitNotApplied, out)
	}
	pc.addJoiner(3, eps, "--learner")
	pc.start(3)
	pc.waitMembers(eps, "0:1 1:2 2:3 3:4(learner)", 20*time.Second, "the learner joined")
	if _, out, code := pc.transfer(eps, "3"); code != exitNotApplied || !strings.Contains(out, "member 3 is a learner") {
		t.Fatalf("transfer-leader to a learner: exit %d, want %d saying it is a learner: %s", code, exitNotApplied, out)
	}
	if _, _, code := pc.tandemCluster(eps, "transfer-leader", "1", "--auto"); code != exitUsage {
		t.Fatalf("transfer-leader 1 --auto: exit %d, want %d (usage)", code, exitUsage)
	}
	load.waitAcked(200, 20*time.Second, "after the refusals")
	load.finish(pc.endpoints(0, 1, 2, 3))
}
