package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// The command line's contract, the same for every verb:
//
//   - Help that was asked for (tandem help, tandem --help, tandem help VERB, tandem VERB --help
//     or -h) goes to standard output and exits 0: it is the answer, and it pipes into less.
//   - A usage error is one line on stderr saying what is wrong, then one line saying where the
//     help is, and exits exitUsage. Never the whole help: it buries the line that matters.
//
// So the flag package prints nothing (its output is discarded and its Usage does nothing);
// parseVerb prints what it would have.

// newFlagSet returns the flag set of verb ("node", "archive describe"), which prints nothing
// itself: parseVerb prints its help and its errors.
func newFlagSet(verb string) *flag.FlagSet {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// verbHelp is a verb's help: head, then its flags (fs.PrintDefaults), then tail.
type verbHelp struct {
	head, tail string
}

// print writes the help of fs's verb to w.
func (h verbHelp) print(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, h.head)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	fmt.Fprint(w, h.tail)
}

// parseVerb parses args (flags before or after the positional arguments) with fs, whose name is
// the verb's. When the verb must return at once, done is true and code is its exit code: the
// help was asked for (printed to standard output, exitOK), or the arguments are wrong (one line
// and the hint on stderr, exitUsage).
func parseVerb(fs *flag.FlagSet, args []string, help verbHelp) (pos []string, code int, done bool) {
	return parseVerbTo(fs, args, help, os.Stdout, os.Stderr)
}

// parseVerbTo is parseVerb printing to stdout and stderr.
func parseVerbTo(fs *flag.FlagSet, args []string, help verbHelp, stdout, stderr io.Writer) (pos []string, code int, done bool) {
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		help.print(stdout, fs)
		return nil, exitOK, true
	}
	if err != nil {
		return nil, usageError(stderr, fs.Name(), "%s", flagError(err, args, fs)), true
	}
	return pos, exitOK, false
}

// usageError prints, on w, "tandem VERB: " (verb "": "tandem: ") and what is wrong, then the
// hint where the help is, and returns exitUsage.
func usageError(w io.Writer, verb, format string, args ...any) int {
	prefix := "tandem"
	if verb != "" {
		prefix += " " + verb
	}
	fmt.Fprintf(w, "%s: %s\n", prefix, oneLine(fmt.Sprintf(format, args...)))
	fmt.Fprintln(w, usageHint(verb))
	return exitUsage
}

// usageHint is the line under a usage error that says where the help is.
func usageHint(verb string) string {
	if verb == "" || verb == "help" {
		return "tandem help for the verbs"
	}
	return "tandem " + verb + " --help for the flags"
}

// flagValueRE matches the flag package's error about a value: the value quoted, the flag's
// name, and its Value's error.
var flagValueRE = regexp.MustCompile(`(?s)^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-([^:]+): (.*)$`)

// flagError rewords the flag package's error about args (parsed with fs) for people: an unknown
// flag is named as it was typed (--no-such-flag, where the flag package says "-no-such-flag"),
// and a bad value says what the flag takes, as a config file's and a variable's do
// (--tick: "abc" is not a duration (like 100ms), where the flag package says "parse error").
func flagError(err error, args []string, fs *flag.FlagSet) string {
	const undefined = "flag provided but not defined: -"
	msg := err.Error()
	if m := flagValueRE.FindStringSubmatch(msg); m != nil {
		if f := fs.Lookup(m[2]); f != nil {
			return fmt.Sprintf("--%s: %s", f.Name, badValue(f, m[1], errors.New(m[3])))
		}
		return msg
	}
	name, ok := strings.CutPrefix(msg, undefined)
	if !ok {
		return msg
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		typed, _, _ := strings.Cut(a, "=")
		if strings.TrimLeft(typed, "-") == name && strings.HasPrefix(typed, "-") {
			return "unknown flag " + typed
		}
	}
	return "unknown flag -" + name
}

// isHelpFlag reports whether arg asks for help, as the flag package understands it.
func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "--h", "-help", "--help":
		return true
	}
	return false
}
