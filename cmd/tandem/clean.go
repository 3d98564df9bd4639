package main

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/vfs"
)

const cleanHelp = `Usage: tandem clean [--all] [--data DIR] [ID...]

Removes the data of the localhost cluster (./data/node-*), as the seed's "run.sh clean" does;
with member ids, only theirs (./data/node-ID): a member started again on an empty directory
rejoins without voting until the leader has repaired it (README, "Rebuilding a member").
With --all it also removes the whole data directory and any logs in it ("run.sh cleanall").
A member's directory that a running member holds (its LOCK file is locked) is kept and named with
the member's pid; the rest is still removed, and clean exits 1. Stop the members first.

Examples:
  tandem clean
  tandem clean 2
  tandem clean --all
`

func runClean(args []string) int {
	fs := newFlagSet("clean")
	all := fs.Bool("all", false, "remove the whole data directory, logs included")
	data := fs.String("data", "data", "the data directory")
	ids, code, done := parseVerb(fs, args, verbHelp{cleanHelp, ""})
	if done {
		return code
	}
	if len(ids) > 0 && *all {
		return usageError(os.Stderr, "clean", "--all removes every member's data; give member ids without it")
	}
	// What is removed, each whole: the members' directories, or with --all every entry of the
	// data directory (and then the directory itself).
	var units []string
	if *all {
		names, err := vfs.OS().ReadDir(*data)
		if errors.Is(err, iofs.ErrNotExist) {
			fmt.Printf("nothing to clean under %s\n", *data)
			return exitOK
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "tandem clean: %v\n", err)
			return exitFailed
		}
		for _, n := range names {
			units = append(units, filepath.Join(*data, n))
		}
	} else if len(ids) > 0 {
		for _, a := range ids {
			id, err := strconv.Atoi(a)
			if err != nil || id < 0 {
				return usageError(os.Stderr, "clean", "%q is not a member id", a)
			}
			u := filepath.Join(*data, fmt.Sprintf("node-%d", id))
			if _, err := os.Stat(u); err == nil {
				units = append(units, u)
			}
		}
		if len(units) == 0 {
			fmt.Printf("nothing to clean under %s for members %v\n", *data, ids)
			return exitOK
		}
	} else {
		units, _ = filepath.Glob(filepath.Join(*data, "node-*"))
		if len(units) == 0 {
			fmt.Printf("nothing to clean under %s\n", *data)
			return exitOK
		}
	}
	kept, failed := 0, 0
	for _, u := range units {
		locks, err := lockDataDirs(u)
		if err != nil {
			fmt.Fprintf(os.Stderr, "tandem clean: kept %s: %v\n", u, err)
			kept++
			continue
		}
		err = os.RemoveAll(u)
		// The locks are released only now: a member starting meanwhile is refused rather than
		// run on a directory being removed.
		for _, l := range locks {
			_ = l.Close()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "tandem clean: %v\n", err)
			failed++
			continue
		}
		fmt.Printf("removed %s\n", u)
	}
	if kept+failed > 0 {
		fmt.Fprintf(os.Stderr, "tandem clean: %d of %d not removed (the others were)\n", kept+failed, len(units))
		return exitFailed
	}
	if *all {
		if err := os.Remove(*data); err != nil {
			fmt.Fprintf(os.Stderr, "tandem clean: %v\n", err)
			return exitFailed
		}
		fmt.Printf("removed %s\n", *data)
	}
	return exitOK
}

// lockDataDirs takes the lock of every member's data directory under root (a directory holding
// a LOCK file: archive.LockDir), so that none is removed from under a running member and none
// starts while it is removed. If a member holds one, it releases what it took and returns the
// *archive.InUseError naming the member's pid. A directory of a build before the lock has no
// LOCK file and is not detected.
func lockDataDirs(root string) ([]*archive.DirLock, error) {
	var locks []*archive.DirLock
	err := filepath.WalkDir(root, func(path string, d iofs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != archive.LockName {
			return err
		}
		l, err := archive.LockDir(vfs.OS(), filepath.Dir(path))
		if err != nil {
			return err
		}
		locks = append(locks, l)
		return nil
	})
	if err != nil {
		for _, l := range locks {
			_ = l.Close()
		}
		return nil, err
	}
	return locks, nil
}
