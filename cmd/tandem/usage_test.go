package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// usageErrorLines checks that a usage error was one line saying what is wrong (containing want)
// and the hint where the help is, on stderr with nothing on stdout and the usage code: never
// the whole help.
func usageErrorLines(t *testing.T, args []string, stdout, stderr string, code int, prefix, hint, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if code != exitUsage || stdout != "" || len(lines) != 2 || !strings.HasPrefix(lines[0], prefix+": ") ||
		!strings.Contains(lines[0], want) || lines[1] != hint || strings.Contains(stderr, "Usage:") {
		t.Fatalf("tandem %q: exit %d, stdout %q, stderr %q; want exit %d and on stderr one line %q…%q… then %q",
			args, code, stdout, stderr, exitUsage, prefix, want, hint)
	}
}

// A usage error is one line and a hint, whatever the verb and whatever is wrong.
func TestUsageErrorIsOneLineAndAHint(t *testing.T) {
	bin := tandemBinary(t)
	for _, tc := range []struct {
		args       []string
		verb, want string
	}{
		{[]string{"node", "--no-such-flag"}, "node", "unknown flag --no-such-flag"},
		{[]string{"node", "0", "-x"}, "node", "unknown flag -x"},
		{[]string{"node", "--tick=soon"}, "node", `--tick: "soon" is not a duration (like 100ms)`},
		{[]string{"node"}, "node", "a member id expected, e.g. tandem node 0"},
		{[]string{"node", "0", "1"}, "node", "exactly one member id expected"},
		{[]string{"node", "x"}, "node", `member id "x" is not a non-negative integer`},
		{[]string{"node", "0", "--members", "0,a"}, "node", `--members: entry 1 "0,a"`},
		{[]string{"node", "0", "--config", "tandem.json"}, "node", `config file tandem.json (from --config): unknown format ".json"`},
		{[]string{"node", "0", "--log-format", "yaml"}, "node", `"yaml" is not a log format: text or json`},
		{[]string{"node", "0", "--log-level=loud"}, "node", `"loud" is not a log level: debug, info, warn or error`},
		{[]string{"client", "--count", "many"}, "client", `--count: "many" is not an integer`},
		{[]string{"client", "--endpoints"}, "client", "flag needs an argument"},
		{[]string{"client", "frobnicate"}, "client", `unknown command "frobnicate"`},
		{[]string{"client", "--count", "5", "get"}, "client", "give no command with it"},
		{[]string{"cluster", "--no-such-flag", "status"}, "cluster", "unknown flag --no-such-flag"},
		{[]string{"cluster", "promote"}, "cluster", "promote takes a member id"},
		{[]string{"bench", "--duration", "soon"}, "bench", `--duration: "soon" is not a duration (like 100ms)`},
		{[]string{"bench", "--workload", "x"}, "bench", `--workload "x": want inc, query or mix`},
		{[]string{"clean", "--all", "1"}, "clean", "give member ids without it"},
		{[]string{"clean", "x"}, "clean", `"x" is not a member id`},
		{[]string{"demo", "--no-such-flag"}, "demo", "unknown flag --no-such-flag"},
		{[]string{"clean", "--no-such-flag"}, "clean", "unknown flag --no-such-flag"},
		{[]string{"version", "--no-such-flag"}, "version", "unknown flag --no-such-flag"},
		{[]string{"version", "extra"}, "version", `unexpected argument "extra"`},
		{[]string{"archive"}, "archive", "verify <dir> or describe <dir>"},
		{[]string{"archive", "frobnicate"}, "archive", `unknown subcommand "frobnicate"`},
		{[]string{"archive", "verify"}, "archive verify", "give one data directory"},
		{[]string{"archive", "verify", "a", "b"}, "archive verify", "give one data directory"},
		{[]string{"archive", "verify", "--no-such-flag", "a"}, "archive verify", "unknown flag --no-such-flag"},
		{[]string{"archive", "describe", "--no-such-flag", "a"}, "archive describe", "unknown flag --no-such-flag"},
		{[]string{"archive", "describe"}, "archive describe", "give one data directory"},
	} {
		out, stderr, code := runCLI(t, bin, tc.args...)
		usageErrorLines(t, tc.args, out, stderr, code, "tandem "+tc.verb, "tandem "+tc.verb+" --help for the flags", tc.want)
	}
	// Before a verb: where the verbs are.
	for _, tc := range []struct {
		args         []string
		prefix, want string
	}{
		{[]string{"frobnicate"}, "tandem", `unknown verb "frobnicate"`},
		{[]string{"--endpoints", "x", "client"}, "tandem", `the verb comes first, then its flags: "--endpoints" is not a verb`},
		{[]string{"help", "frobnicate"}, "tandem help", `unknown verb "frobnicate"`},
	} {
		out, stderr, code := runCLI(t, bin, tc.args...)
		usageErrorLines(t, tc.args, out, stderr, code, tc.prefix, "tandem help for the verbs", tc.want)
	}
}

// tandem help VERB is VERB's help, on standard output, for every verb and only for verbs.
func TestHelpForAVerb(t *testing.T) {
	bin := tandemBinary(t)
	out, stderr, code := runCLI(t, bin, "help", "cluster")
	if code != exitOK || stderr != "" || !strings.HasPrefix(out, "Usage: tandem cluster") || !strings.Contains(out, "-endpoints") {
		t.Fatalf("tandem help cluster: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	// Words after the verb are no error: tandem help archive verify is tandem archive's help.
	if out2, _, code := runCLI(t, bin, "help", "archive", "verify"); code != exitOK || !strings.HasPrefix(out2, "Usage: tandem archive verify") {
		t.Fatalf("tandem help archive verify: exit %d, stdout %q", code, out2)
	}
}

// tandem archive verify --help (and describe's) is the help, not a directory named --help; a
// directory of that name follows "--".
func TestArchiveHelpIsNotADirectory(t *testing.T) {
	bin := tandemBinary(t)
	want, _, _ := runCLI(t, bin, "archive", "--help")
	if !strings.HasPrefix(want, "Usage: tandem archive verify <dir>") || !strings.Contains(want, "-cluster-id") || !strings.Contains(want, "Examples") {
		t.Fatalf("tandem archive --help: %q", want)
	}
	for _, args := range [][]string{
		{"archive", "verify", "--help"}, {"archive", "verify", "-h"}, {"archive", "verify", "data/node-0", "--help"},
		{"archive", "describe", "--help"}, {"archive", "describe", "-h"}, {"archive", "describe", "--json", "--help"},
		{"help", "archive"},
	} {
		if out, stderr, code := runCLI(t, bin, args...); code != exitOK || stderr != "" || out != want {
			t.Fatalf("tandem %q: exit %d, stderr %q, stdout %q; want the archive help and 0", args, code, stderr, out)
		}
	}
	_, stderr, code := runCLI(t, bin, "archive", "verify", "--", "--help")
	if code != exitFailed || !strings.Contains(stderr, "--help is not a Tandem data directory") {
		t.Fatalf("tandem archive verify -- --help: exit %d, stderr %q; want the directory --help looked at", code, stderr)
	}
}

// tandem --version, -v and -version are tandem version; --json goes with them.
func TestVersionFlag(t *testing.T) {
	bin := tandemBinary(t)
	text, _, _ := runCLI(t, bin, "version")
	js, _, _ := runCLI(t, bin, "version", "--json")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--version"}, text}, {[]string{"-v"}, text}, {[]string{"-version"}, text},
		{[]string{"--version", "--json"}, js}, {[]string{"-v", "--json"}, js},
		{[]string{"archive", "describe", "--version"}, text}, {[]string{"cluster", "status", "--version"}, text},
	} {
		if out, stderr, code := runCLI(t, bin, tc.args...); code != exitOK || stderr != "" || out != tc.want {
			t.Fatalf("tandem %q: exit %d, stderr %q, stdout %q; want tandem version's", tc.args, code, stderr, out)
		}
	}
	out, stderr, code := runCLI(t, bin, "--version", "extra")
	usageErrorLines(t, []string{"--version", "extra"}, out, stderr, code, "tandem version", "tandem version --help for the flags", `unexpected argument "extra"`)
}

// tandem client increment -3 is read as a negative delta, not a flag, and refused as the counter
// refuses it (its delta runs from 1 up: a negative increment is spelled decrement), naming the
// command that means it, before any member is dialled.
func TestClientNegativeDelta(t *testing.T) {
	bin := tandemBinary(t)
	dead, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"client", "increment", "-3"}, "increment -3: the counter's delta is a positive integer (1 to 9223372036854775807); to subtract 3, run tandem client decrement 3"},
		{[]string{"client", "-3", "increment"}, `unknown command "-3"`},
		{[]string{"client", "--timeout", "30s", "decr", "-2"}, "decr -2: the counter's delta is a positive integer (1 to 9223372036854775807); to add 2, run tandem client increment 2"},
		{[]string{"client", "increment", "-1.5"}, `delta "-1.5" must be an integer from 1`},
		{[]string{"client", "get", "-3"}, "get takes no arguments"},
	} {
		start := time.Now()
		args := append(tc.args, "--endpoints", dead[0])
		out, stderr, code := runCLI(t, bin, args...)
		usageErrorLines(t, args, out, stderr, code, "tandem client", "tandem client --help for the flags", tc.want)
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("tandem %q took %s: it waited for the cluster", args, took)
		}
	}
}

// The start banner of tandem node appears once the member has bound its ports: a member whose
// port is taken prints the error alone, never a banner saying it started.
func TestNodeBannerOnlyOnceStarted(t *testing.T) {
	bin := tandemBinary(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, members := range []string{
		"0," + free[0] + "," + taken.Addr().String(), // the member port taken
		"0," + taken.Addr().String() + "," + free[0], // the client port taken
	} {
		out, stderr, code := runCLI(t, bin, "node", "0", "--size", "1", "--members", members, "--data", filepath.Join(t.TempDir(), "d"))
		if code != exitFailed || strings.Contains(out, "started") || strings.TrimSpace(out) != "" ||
			!strings.Contains(stderr, "cannot listen") || !strings.Contains(stderr, "address already in use") {
			t.Fatalf("tandem node 0 --members %s with a port taken: exit %d\nstdout:\n%s\nstderr:\n%s", members, code, out, stderr)
		}
	}
}

// tandem client --count redraws a progress line on a terminal, cleared before the results; into
// a pipe it draws nothing (TestSeedScenarios reads the probe's results through one).
func TestClientProgress(t *testing.T) {
	if got, want := progressLine(30, 2, 100, 2*time.Second), "32 of 100 increments (32%), 15 ops/s, 2 errors, 2s"; got != want {
		t.Fatalf("progressLine = %q, want %q", got, want)
	}
	var mu sync.Mutex
	var b strings.Builder
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return b.Write(p) })
	stop := showProgress(w, time.Millisecond, func() string { return "LINE" })
	time.Sleep(50 * time.Millisecond)
	stop()
	mu.Lock()
	out := b.String()
	mu.Unlock()
	if !strings.HasPrefix(out, "\r\x1b[KLINE") || !strings.HasSuffix(out, "LINE\r\x1b[K") || strings.Contains(out, "\n") {
		t.Fatalf("progress drew %q: want LINE redrawn on one line, then cleared", out)
	}
	stop = showProgress(nil, time.Millisecond, func() string { t.Error("drawn with no terminal"); return "" })
	time.Sleep(10 * time.Millisecond)
	stop()
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Fatal("a file is taken for a terminal")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
