package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// Usage errors exit with exitUsage (64), never 2, which is Go's own code for a crash.
func TestUsageErrorsExitWithTheUsageCode(t *testing.T) {
	bin := tandemBinary(t)
	for _, args := range [][]string{
		{"frobnicate"},
		{"node", "--no-such-flag"},
		{"node", "zero"},
		{"node", "0", "--client-fd", "1"}, // stdout is no listening socket
		{"node", "0", "--member-fd", "9"}, // nor is a descriptor the process does not have
		{"client", "frobnicate"},
		{"client", "--count", "many"},
		{"bench", "--duration", "soon"},
		{},
	} {
		_, stderr, code := runCLI(t, bin, args...)
		if code != 64 {
			t.Fatalf("tandem %q exited %d, want %d (usage); stderr:\n%s", args, code, exitUsage, stderr)
		}
	}
	out, _, _ := runCLI(t, bin, "help")
	for _, code := range []string{"0   ok", "1   failed", "2   crashed", "3   outcome unknown", "4   refused", "64  usage", "70  internal error", "130 "} {
		if !strings.Contains(out, code) {
			t.Fatalf("tandem help does not document exit code %q:\n%s", code, out)
		}
	}
}

// A panic in a verb (on the main goroutine, where tandem node runs its member) exits with
// exitInternal and its stack on stderr, not with the usage code.
func TestPanicExitsWithTheInternalErrorCode(t *testing.T) {
	saved := verbs
	defer func() { verbs = saved }()
	verbs = append(append([]verb(nil), saved...), verb{name: "boom", run: func([]string) int {
		var m map[string]int
		m["x"] = 1 // a nil map write: a runtime panic, as a bug would be
		return exitOK
	}})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	code := run([]string{"boom"})
	os.Stderr = stderr
	w.Close()
	out, _ := io.ReadAll(r)
	if code != exitInternal || code == exitUsage || code == 2 {
		t.Fatalf("a panicking verb exited %d, want %d", code, exitInternal)
	}
	for _, want := range []string{"internal error", "assignment to entry in nil map", "goroutine ", "exit_test.go"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("stderr lacks %q:\n%s", want, out)
		}
	}
}
