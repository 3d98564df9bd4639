// Command tandem runs Tandem cluster members, talks to a cluster as a client, and demonstrates
// both in one process.
//
//	tandem node 0            member 0 of the seed's three-member localhost cluster
//	tandem client increment  send a command to that cluster
//	tandem demo              all of it in one process, in a temporary directory
//
// Run `tandem help` for every verb.
package main

import (
	"fmt"
	"os"
)

// Exit codes. A script can tell "not applied" (safe to retry) from "outcome unknown".
const (
	exitOK         = 0
	exitFailed     = 1 // not applied, or a failure before anything was sent
	exitUsage      = 2
	exitUnknown    = 3 // the command may or may not have been applied
	exitNotApplied = 4
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
		{"demo", "three members and a client in one process: election, failover, restart", runDemo},
		{"bench", "measure a three-member cluster: throughput and latency, fsync on", runBench},
		{"clean", "remove the data of the localhost cluster (--all: also logs)", runClean},
		{"archive", "inspect a data directory (tandem archive verify <dir>)", runArchive},
		{"help", "show help for a verb", runHelp},
	}
}

func main() {
	os.Exit(dispatch(os.Args[1:]))
}

func dispatch(args []string) int {
	if len(args) == 0 {
		usage()
		return exitUsage
	}
	name := args[0]
	if name == "-h" || name == "--help" {
		usage()
		return exitOK
	}
	for _, v := range verbs {
		if v.name == name {
			return v.run(args[1:])
		}
	}
	fmt.Fprintf(os.Stderr, "tandem: unknown verb %q\n\n", name)
	usage()
	return exitUsage
}

func usage() {
	fmt.Fprint(os.Stderr, `tandem — replicated, fault-tolerant services under Raft

Usage: tandem <verb> [flags] [arguments]

Verbs:
`)
	for _, v := range verbs {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", v.name, v.summary)
	}
	fmt.Fprint(os.Stderr, `
Quick start (four terminals):
  tandem node 0
  tandem node 1
  tandem node 2
  tandem client            # INCREMENT, INCREMENT, GET

Run "tandem help <verb>" or "tandem <verb> --help" for a verb's flags and examples.
`)
}

func runHelp(args []string) int {
	if len(args) == 0 {
		usage()
		return exitOK
	}
	for _, v := range verbs {
		if v.name == args[0] && v.name != "help" {
			return v.run([]string{"--help"})
		}
	}
	usage()
	return exitUsage
}
