package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// sendGarbage writes a frame no member sends (its length is shorter than a frame's header) to a
// member port, which closes the connection and logs a warning naming where it came from: the
// address returned.
func sendGarbage(t *testing.T, memberAddr string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", memberAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{2, 0, 0, 0, 'g', 'a', 'r', 'b', 'a', 'g', 'e'}); err != nil {
		t.Fatal(err)
	}
	return conn.LocalAddr().String()
}

// waitErrors runs tandem cluster errors with args until its output matches want (within 10 s).
func waitErrors(t *testing.T, want *regexp.Regexp, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, stderr, code := runClusterCmd(append([]string{"errors"}, args...)...)
		if code == exitOK && stderr == "" && want.MatchString(out) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("tandem cluster errors %q: exit %d, no line matching %s:\n%s%s", args, code, want, out, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A member warns of a garbage frame on its member port; tandem cluster errors --member shows the
// warning, with where the frame came from, whichever endpoints it is given; the warning is in the
// member's errors.log; every endpoint answers for itself without --member; a member that does
// not answer makes it exit 1, and one that is no member exit 4.
func TestClusterErrorsShowsAMembersWarning(t *testing.T) {
	t.Parallel()
	lc, eps := startAdminCluster(t)
	const target = 1
	from := sendGarbage(t, lc.members[target].cfg.Members[target].MemberAddr)
	line := regexp.MustCompile(`(?m)^member 1  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\S*  WARN  closing member connection: no valid handshake: ` +
		`.*frame length 2 shorter than its header  remote=` + regexp.QuoteMeta(from) + `$`)
	out := waitErrors(t, line, "--member", "1", "--endpoints", eps)
	if strings.Contains(out, "member 0 ") || strings.Contains(out, "member 2 ") {
		t.Fatalf("errors --member 1 shows other members' records:\n%s", out)
	}

	// Through member 0's endpoint alone: member 1's address comes from the membership.
	waitErrors(t, line, "--member", "1", "--endpoints", lc.eps[0])

	// Kept in member 1's data directory, as one JSON line.
	b, err := os.ReadFile(filepath.Join(lc.members[target].cfg.DataDir, "errors.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `{"key":"remote","value":"`+from+`"}`) {
		t.Fatalf("member 1's errors.log does not hold the warning about %s:\n%s", from, b)
	}

	// --json: the answer as the member sent it.
	out, stderr, code := runClusterCmd("errors", "--member", "1", "--json", "--endpoints", eps)
	var entries []struct {
		Endpoint string             `json:"endpoint"`
		Errors   *wire.MemberErrors `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil || code != exitOK || len(entries) != 1 {
		t.Fatalf("errors --member 1 --json: exit %d, %v\n%s%s", code, err, out, stderr)
	}
	me := entries[0].Errors
	found := false
	for _, r := range me.Records {
		for _, a := range r.Attrs {
			found = found || a.Key == "remote" && a.Value == from && r.Level == "WARN"
		}
	}
	if entries[0].Endpoint != lc.eps[target] || me == nil || me.ID != target || !found {
		t.Fatalf("errors --member 1 --json: want member 1's answer from %s with the warning about %s:\n%s", lc.eps[target], from, out)
	}

	// Without --member every endpoint answers for itself; the warning is member 1's alone.
	out, stderr, code = runClusterCmd("errors", "--endpoints", eps)
	if code != exitOK || stderr != "" || !line.MatchString(out) {
		t.Fatalf("errors: exit %d\n%s%s", code, out, stderr)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, from) && !strings.HasPrefix(l, "member 1  ") {
			t.Fatalf("errors: a line not member 1's names %s: %q", from, l)
		}
	}
	for _, id := range []string{"0", "2"} {
		if !regexp.MustCompile(`(?m)^member ` + id + `  `).MatchString(out) {
			t.Fatalf("errors: no line of member %s (a record, or \"no warnings or errors kept\"):\n%s", id, out)
		}
	}

	// Not a member: refused, exit 4.
	out, stderr, code = runClusterCmd("errors", "--member", "7", "--endpoints", eps)
	if code != exitNotApplied || out != "" {
		t.Fatalf("errors --member 7: exit %d, want %d\n%s%s", code, exitNotApplied, out, stderr)
	}
	oneReason(t, stderr, "member 7 is not a member")

	// A member stopped: without --member, exit 1 naming it; with --member, exit 1 too.
	if err := lc.stop(2); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = runClusterCmd("errors", "--endpoints", eps)
	if code != exitFailed || !line.MatchString(out) || !strings.Contains(out, lc.eps[2]+": unreachable") {
		t.Fatalf("errors with member 2 stopped: exit %d\n%s%s", code, out, stderr)
	}
	oneReason(t, stderr, "1 of 3 endpoints did not answer ("+lc.eps[2]+")")
	out, stderr, code = runClusterCmd("errors", "--member", "2", "--endpoints", eps)
	if code != exitFailed {
		t.Fatalf("errors --member 2 with member 2 stopped: exit %d, want %d\n%s%s", code, exitFailed, out, stderr)
	}
	oneReason(t, stderr, "errors --member 2: "+lc.eps[2]+": unreachable")
}

// The file stays bounded however many warnings a member logs: a flood of garbage connections,
// each warned of, leaves errors.log and errors.log.1 under their bound, and the member serving.
func TestClusterErrorsFileStaysBounded(t *testing.T) {
	t.Parallel()
	lc, eps := startAdminCluster(t)
	addr := lc.members[0].cfg.Members[0].MemberAddr
	dir := lc.members[0].cfg.DataDir
	const bound = 256 << 10
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for {
		for range 200 {
			last = sendGarbage(t, addr)
		}
		for _, name := range []string{"errors.log", "errors.log.1"} {
			if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Size() > bound {
				t.Fatalf("%s is %d bytes, over its bound of %d", name, st.Size(), bound)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "errors.log.1")); err == nil {
			break // rotated at least once
		}
		if time.Now().After(deadline) {
			t.Fatal("errors.log was not rotated within 60 s of garbage connections")
		}
	}
	// Still serving, and the newest warning is there.
	line := regexp.MustCompile(`(?m)^member 0  .*  WARN  closing member connection: no valid handshake: .*  remote=` + regexp.QuoteMeta(last) + `$`)
	out := waitErrors(t, line, "--member", "0", "--endpoints", eps)
	if !strings.Contains(out, "older records kept and not shown") {
		t.Fatalf("errors --member 0 after a flood does not say how many records it left out:\n%s", out)
	}
}

// Mistakes with errors and --member exit with the usage code before any member is asked.
func TestClusterErrorsUsage(t *testing.T) {
	dead, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"errors", "1"}, "errors takes no arguments"},
		{[]string{"errors", "--member", "-2"}, "--member -2: want a member id"},
		{[]string{"status", "--member", "1"}, "--member is for errors, not status"},
	} {
		out, stderr, code := runClusterCmd(append(tc.args, "--endpoints", dead[0])...)
		if code != exitUsage || out != "" {
			t.Fatalf("tandem cluster %q: exit %d, want %d\n%s%s", tc.args, code, exitUsage, out, stderr)
		}
		oneReason(t, stderr, tc.want)
	}
	if _, stderr, code := runClusterCmd("errors", "--member", "x", "--endpoints", dead[0]); code != exitUsage {
		t.Fatalf("errors --member x: exit %d, want %d: %s", code, exitUsage, stderr)
	}
	// Unreachable: exit 1, at once.
	out, stderr, code := runClusterCmd("errors", "--endpoints", dead[0])
	if code != exitFailed || !strings.Contains(out, dead[0]+": unreachable") {
		t.Fatalf("errors with nothing listening: exit %d\n%s%s", code, out, stderr)
	}
}
