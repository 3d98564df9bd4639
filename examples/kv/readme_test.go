package kv_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The README's "Write your own service" shows this package's code, so that what a reader copies
// compiles and runs: each of the section's Go blocks must appear verbatim in kv.go,
// example_test.go or kv_test.go (a block taken from inside a function without its indentation).
func TestREADMEShowsThisCode(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const heading = "## Write your own service\n"
	_, section, ok := strings.Cut(string(readme), heading)
	if !ok {
		t.Fatalf("README.md has no %q", heading)
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(blocks) < 3 {
		t.Fatalf("the section has %d Go blocks, want the service, running it and testing it", len(blocks))
	}
	var sources strings.Builder
	for _, name := range []string{"kv.go", "example_test.go", "kv_test.go"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		sources.WriteString(string(b) + "\n" + dedent(string(b)) + "\n")
	}
	for i, b := range blocks {
		if !strings.Contains(sources.String(), b[1]) {
			t.Errorf("README.md's Go block %d of %q is not in examples/kv's code (copy it from there):\n%s", i+1, heading, b[1])
		}
	}
}

// dedent removes one leading tab from every line.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, "\t")
	}
	return strings.Join(lines, "\n")
}
