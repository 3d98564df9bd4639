// Command tandem runs Tandem cluster members, talks to a cluster as a client, and demonstrates
// both in one process.
//
//	tandem node 0            member 0 of the seed's three-member localhost cluster
//	tandem client increment  send a command to that cluster
//	tandem cluster status    each member's view of the cluster
//	tandem demo              all of it in one process, in a temporary directory
//
// Run `tandem help` for every verb.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// Exit codes. A script can tell "not applied" (safe to retry) from "outcome unknown", and a
// mistake on the command line from a crash: Go itself exits with 2 when a panic is not
// recovered (on any goroutine but the main one, whose panics run() turns into exitInternal), so
// no code of tandem's own is 2.
const (
	exitOK = 0
	// exitFailed: nothing was applied, and not for a refusal of the command: no session (the
	// cluster unreachable, the session refused or ended), a query that timed out; a member
	// that stopped, or could not start (its data directory in use: archive.ErrInUse); tandem
	// clean keeping a directory a running member holds.
	exitFailed  = 1
	exitUnknown = 3 // the command may or may not have been applied
	// exitNotApplied: the command was not applied: client.ErrNotApplied (refused by the
	// cluster, or never sent), or refused by the service.
	exitNotApplied = 4
	// exitCannotApply: tandem node stopped at a committed entry or snapshot its build cannot
	// apply (a newer cluster version, a newer build's entry): run a build that can.
	exitCannotApply = 5
	exitUsage       = 64 // EX_USAGE (sysexits.h): a bad verb, flag or argument
	exitInternal    = 70 // EX_SOFTWARE: a bug (a panic), with its stack on stderr
	// exitInterrupted (130) is a second Ctrl+C on tandem node, which does not wait.
)

type verb struct {
	name    string
	summary string
	run     func(args []string) int
}

var verbs []verb

func init() {
	verbs = []verb{
		{"node", "run one cluster member (tandem node 0|1|2 for the seed's localhost cluster)", runNode},
		{"client", "send counter commands to a cluster (increment, decrement, get, reset)", runClient},
		{"cluster", "show and change the membership (status, errors, list-members, remove-member, promote, replace-member)", runCluster},
		{"demo", "three members and a client in one process: election, failover, restart", runDemo},
		{"bench", "measure a three-member cluster: throughput and latency, fsync on", runBench},
		{"clean", "remove the data of the localhost cluster (--all: also logs)", runClean},
		{"archive", "inspect a data directory (tandem archive verify|describe <dir>)", runArchive},
		{"version", "this build's version, protocols, cluster version and disk formats", runVersion},
		{"help", "show help for a verb", runHelp},
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

// run dispatches args and turns a panic on the main goroutine (where each verb runs) into
// exitInternal with the stack on stderr, so that a crash is never taken for a usage error.
func run(args []string) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "tandem: internal error (a bug, please report it with what follows): %v\n\n%s", r, debug.Stack())
			code = exitInternal
		}
	}()
	return dispatch(args)
}

func dispatch(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr) // not asked for: the overview, as a reminder, and the usage code
		return exitUsage
	}
	name := args[0]
	switch {
	case isHelpFlag(name):
		usage(os.Stdout)
		return exitOK
	case name == "--version" || name == "-version" || name == "-v":
		return runVersion(args[1:]) // tandem --version --json is tandem version --json
	case wantsVersion(args):
		return runVersion(nil) // every verb takes --version
	}
	for _, v := range verbs {
		if v.name == name {
			return v.run(args[1:])
		}
	}
	if strings.HasPrefix(name, "-") {
		return usageError(os.Stderr, "", "the verb comes first, then its flags: %q is not a verb", name)
	}
	return usageError(os.Stderr, "", "unknown verb %q", name)
}

// usage writes the overview: the verbs, a quick start and the exit codes.
func usage(w io.Writer) {
	fmt.Fprint(w, `tandem — replicated, fault-tolerant services under Raft

Usage: tandem <verb> [flags] [arguments]

Verbs:
`)
	for _, v := range verbs {
		fmt.Fprintf(w, "  %-8s %s\n", v.name, v.summary)
	}
	fmt.Fprint(w, `
Quick start (four terminals):
  tandem node 0
  tandem node 1
  tandem node 2
  tandem client            # INCREMENT, INCREMENT, GET

Run "tandem help <verb>" or "tandem <verb> --help" for a verb's flags and examples;
"tandem --version" (or -v) for the build's versions.

Exit codes:
  0   ok
  1   failed: not applied, nothing sent, a member stopped or could not start (its data
      directory in use), tandem clean kept a directory in use (the reason is on stderr)
  2   crashed: Go's own code for a panic it could not recover (stack on stderr)
  3   outcome unknown: the command or membership change may or may not have been
      applied (tandem client, tandem cluster)
  4   refused by the cluster or the service, not applied (tandem client, tandem cluster)
  5   tandem node met a log entry or snapshot this build cannot apply (a newer
      cluster version): its data is intact; run it on a build that applies it
  64  usage: a bad verb, flag or argument (one line on stderr says which)
  70  internal error: a panic (stack on stderr)
  130 tandem node stopped by a second Ctrl+C, without waiting
`)
}

// runHelp is tandem help [VERB]: the overview, or VERB's help as VERB --help prints it, on
// standard output. An unknown verb is a usage error.
func runHelp(args []string) int {
	if len(args) == 0 || args[0] == "help" || isHelpFlag(args[0]) {
		usage(os.Stdout)
		return exitOK
	}
	// (Words after the verb are ignored: tandem help archive verify is tandem archive's help.)
	for _, v := range verbs {
		if v.name == args[0] {
			return v.run([]string{"--help"})
		}
	}
	return usageError(os.Stderr, "help", "unknown verb %q", args[0])
}
