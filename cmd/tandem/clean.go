package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/vfs"
)

const cleanHelp = `Usage: tandem clean [--all] [--data DIR]

Removes the data of the localhost cluster (./data/node-*), as the seed's "run.sh clean" does.
With --all it also removes the whole data directory and any logs in it ("run.sh cleanall").
Stop the members first: a running member's data is not removed from under it safely.

Examples:
  tandem clean
  tandem clean --all
`

func runClean(args []string) int {
	fs := flag.NewFlagSet("clean", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	all := fs.Bool("all", false, "remove the whole data directory, logs included")
	data := fs.String("data", "data", "the data directory")
	fs.Usage = func() { fmt.Fprint(os.Stderr, cleanHelp); fs.PrintDefaults() }
	if _, err := parseInterspersed(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *all {
		if err := os.RemoveAll(*data); err != nil {
			fmt.Fprintf(os.Stderr, "tandem clean: %v\n", err)
			return exitFailed
		}
		fmt.Printf("removed %s\n", *data)
		return exitOK
	}
	dirs, _ := filepath.Glob(filepath.Join(*data, "node-*"))
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			fmt.Fprintf(os.Stderr, "tandem clean: %v\n", err)
			return exitFailed
		}
		fmt.Printf("removed %s\n", d)
	}
	if len(dirs) == 0 {
		fmt.Printf("nothing to clean under %s\n", *data)
	}
	return exitOK
}

const archiveHelp = `Usage: tandem archive verify <dir>

Checks every log record and snapshot of a member's data directory and prints what it found. Exits
non-zero and names the file and offset of the first corruption.

Example:
  tandem archive verify data/node-0
`

func runArchive(args []string) int {
	if len(args) != 2 || args[0] != "verify" {
		fmt.Fprint(os.Stderr, archiveHelp)
		if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
			return exitOK
		}
		return exitUsage
	}
	if _, err := archive.Verify(vfs.OS(), args[1], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "tandem archive verify: %v\n", err)
		return exitFailed
	}
	return exitOK
}
