package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/vfs"
)

const archiveHelp = `Usage: tandem archive verify <dir>
       tandem archive describe [--json] [--cluster-id ID --member N] <dir>

verify checks every log record and snapshot of a member's data directory and prints what it
found. It exits non-zero and names the file and offset of the first corruption.

describe says what the directory holds and what starting a member on it would do, running the
member's own recovery without changing anything: its IDENTITY and VERIFICATION files; each log
segment (its entries, size, and whether it is intact, has a torn tail, or is damaged); each
snapshot (index, term, size, whether it decodes and its checksum holds, and the one recovery
starts from); the hard state; and the plan: the snapshot to start from, the entries to replay,
a torn tail to cut, or the refusal and why (lost synced data, another cluster's directory). It
takes no lock and may look at a running member's directory: it says the directory is in use,
by which process, and describes what the files held at that moment. With --cluster-id and
--member it also checks the directory is that member's. --json prints the same for scripts.

Exit codes (both): 0 a member would start on the directory; 1 it would be refused, or the
directory is missing or not a Tandem data directory (one line on stderr); 64 usage.

Examples:
  tandem archive verify data/node-0
  tandem archive describe data/node-0
  tandem archive describe --json data/node-0
`

// archiveUsage is tandem archive's help: archiveHelp, then describe's flags.
var archiveUsage = verbHelp{head: archiveHelp + "\nFlags of describe:\n"}

func runArchive(args []string) int {
	if len(args) == 0 {
		return usageError(os.Stderr, "archive", "which one? verify <dir> or describe <dir>")
	}
	switch {
	case isHelpFlag(args[0]):
		fs, _, _, _ := describeFlags()
		archiveUsage.print(os.Stdout, fs)
		return exitOK
	case args[0] == "verify":
		return runArchiveVerify(args[1:])
	case args[0] == "describe":
		return runArchiveDescribe(args[1:])
	}
	return usageError(os.Stderr, "archive", "unknown subcommand %q: verify <dir> or describe <dir>", args[0])
}

// runArchiveVerify is tandem archive verify <dir>. It has no flags of its own, but parses them
// as every verb does: --help is the help, --no-such-flag a usage error; a directory whose name
// starts with a dash follows "--".
func runArchiveVerify(args []string) int {
	fs := newFlagSet("archive verify")
	help, _, _, _ := describeFlags()
	pos, code, done := parseVerb(fs, args, verbHelp{})
	if done {
		if code == exitOK {
			archiveUsage.print(os.Stdout, help)
		}
		return code
	}
	if len(pos) != 1 {
		return usageError(os.Stderr, "archive verify", "give one data directory")
	}
	if _, err := archive.Verify(vfs.OS(), pos[0], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "tandem archive verify: %v\n", err)
		return exitFailed
	}
	return exitOK
}

// describeFlags is tandem archive describe's flag set.
func describeFlags() (fs *flag.FlagSet, asJSON *bool, clusterID *string, member *int) {
	fs = newFlagSet("archive describe")
	asJSON = fs.Bool("json", false, "print the description as JSON")
	clusterID = fs.String("cluster-id", "", "with --member: refuse, as the member would, a directory of another cluster or member")
	member = fs.Int("member", -1, "with --cluster-id: the member id the directory should be")
	return fs, asJSON, clusterID, member
}

func runArchiveDescribe(args []string) int {
	fs, asJSON, clusterID, member := describeFlags()
	pos, code, done := parseVerb(fs, args, archiveUsage)
	if done {
		return code
	}
	if len(pos) != 1 {
		return usageError(os.Stderr, "archive describe", "give one data directory")
	}
	if (*clusterID == "") != (*member < 0) {
		return usageError(os.Stderr, "archive describe", "--cluster-id and --member go together")
	}
	d, err := archive.Describe(vfs.OS(), pos[0], archive.DescribeOptions{ClusterID: *clusterID, MemberID: *member})
	if errors.Is(err, archive.ErrEmptyDir) {
		// A member starts on an empty directory: it is not refused.
		plan := "a member started here begins with an empty log: with --members it founds a cluster " +
			"(it votes once its peers say the cluster is new), with --join it joins a running one; a member that " +
			"was in the cluster before and lost its data must join again (tandem node N --join ADDR)"
		if *asJSON {
			b, _ := json.MarshalIndent(map[string]any{"dir": pos[0], "empty": true, "plan": plan}, "", "  ")
			fmt.Printf("%s\n", b)
		} else {
			fmt.Printf("%s: empty (no IDENTITY file, no log, no snapshot)\nplan: %s\n", pos[0], plan)
		}
		return exitOK
	}
	if err != nil {
		if *asJSON {
			b, _ := json.Marshal(map[string]string{"dir": pos[0], "error": err.Error()})
			fmt.Printf("%s\n", b)
		}
		fmt.Fprintf(os.Stderr, "tandem archive describe: %v\n", err)
		return exitFailed
	}
	if *asJSON {
		b, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			fmt.Fprintf(os.Stderr, "tandem archive describe: %v\n", err)
			return exitFailed
		}
		fmt.Printf("%s\n", b)
	} else {
		printDescription(os.Stdout, d)
	}
	if d.Plan.Action != archive.PlanStart {
		if !*asJSON {
			fmt.Fprintf(os.Stderr, "tandem archive describe: a member would not start on %s: %s\n", d.Dir, d.Plan.Refusal)
		}
		return exitFailed
	}
	return exitOK
}

// printDescription writes d for a human: what each file holds, then the plan.
func printDescription(w io.Writer, d *archive.Description) {
	fmt.Fprintf(w, "data directory %s\n", d.Dir)
	if d.InUse {
		who := "another process"
		if d.InUsePID > 0 {
			who = fmt.Sprintf("process %d", d.InUsePID)
		}
		fmt.Fprintf(w, "in use by %s: a member runs on it, and starting another is refused until it stops; "+
			"what follows is what the files held as they were read, while it writes\n", who)
	}
	if d.LockProblem != "" {
		fmt.Fprintf(w, "in use: not known (the lock could not be probed: %s)\n", d.LockProblem)
	}
	id := d.Identity
	switch {
	case id.Problem != "" && !id.Present:
		fmt.Fprintln(w, "identity: no IDENTITY file")
	case id.Problem != "":
		fmt.Fprintf(w, "identity: %s\n", id.Problem)
	default:
		raft := fmt.Sprintf("founding member (raft id %d)", id.Member+1)
		if id.RaftID != 0 {
			raft = fmt.Sprintf("joined member, raft id %d", id.RaftID)
		}
		uuid := "not known yet"
		if id.UUID != "" {
			uuid = id.UUID
		}
		fmt.Fprintf(w, "identity: cluster %q member %d, %s, cluster uuid %s, format %d, checksum ok\n", id.Cluster, id.Member, raft, uuid, id.Format)
	}
	v := d.Verification
	switch {
	case v.Problem != "":
		fmt.Fprintf(w, "verification: %s\n", v.Problem)
	case !v.Present:
		fmt.Fprintln(w, "verification: no file (verified, no vote floor: a directory of an older build, or one that never started on an empty log)")
	case v.Unverified:
		fmt.Fprintf(w, "verification: unverified (it started on an empty log: it votes once verified), vote floor %d\n", v.VoteFloor)
	default:
		fmt.Fprintf(w, "verification: verified, votes only in terms after %d\n", v.VoteFloor)
	}
	fmt.Fprintf(w, "snapshots: %d\n", len(d.Snapshots))
	for _, s := range d.Snapshots {
		switch {
		case s.Unfinished:
			fmt.Fprintf(w, "  %s  unfinished write, %d bytes (deleted on start)\n", s.Name, s.Bytes)
		case !s.Decodes:
			fmt.Fprintf(w, "  %s  index %d term %d, %d bytes, DOES NOT DECODE: %s\n", s.Name, s.Index, s.Term, s.Bytes, s.Problem)
		default:
			mark := ""
			if s.Newest {
				mark = " (recovery starts from it)"
			}
			fmt.Fprintf(w, "  %s  index %d term %d, %d bytes, decodes, checksum ok%s\n", s.Name, s.Index, s.Term, s.Bytes, mark)
		}
	}
	fmt.Fprintf(w, "segments: %d\n", len(d.Segments))
	for _, s := range d.Segments {
		if s.State == archive.SegmentUnread {
			fmt.Fprintf(w, "  %s  %d bytes, not read (recovery stops at the damage before it)\n", s.Name, s.Bytes)
			continue
		}
		ents := fmt.Sprintf("entries %d..%d", s.FirstIndex, s.LastIndex)
		if s.Entries == 0 {
			ents = fmt.Sprintf("no entries (starts at %d)", s.FirstIndex)
		}
		if s.Reset {
			ents += " after a snapshot from the leader"
		}
		var state string
		switch s.State {
		case archive.SegmentIntact:
			state = fmt.Sprintf("intact, records end at offset %d", s.RecordsEnd)
		case archive.SegmentTorn:
			state = fmt.Sprintf("torn tail at offset %d (cut on start)", s.TornOffset)
		case archive.SegmentEmpty:
			state, ents = "no record (removed on start)", "no entries"
		default:
			state = "DAMAGED: " + s.Problem
		}
		fmt.Fprintf(w, "  %s  %s, %d bytes, format %d, %s\n", s.Name, ents, s.Bytes, s.Version, state)
	}
	if d.SpareBytes > 0 {
		fmt.Fprintf(w, "spare segment: %d bytes (zero-filled again on start)\n", d.SpareBytes)
	}
	p := d.Plan
	when := ""
	if d.InUse {
		when = " (once the member stops)"
	}
	if p.Action != archive.PlanStart {
		what := "REFUSE"
		if p.LostSyncedData {
			what = "REFUSE, LOST SYNCED DATA"
		}
		fmt.Fprintf(w, "plan%s: %s: %s\n", when, what, p.Refusal)
		return
	}
	fmt.Fprintf(w, "hard state: term %d vote %d commit %d\n", d.HardState.Term, d.HardState.Vote, d.HardState.Commit)
	var steps []string
	if p.CutFile != "" {
		steps = append(steps, fmt.Sprintf("cut the torn tail of %s at offset %d", filepath.Base(p.CutFile), p.CutOffset))
	}
	for _, r := range p.Removes {
		steps = append(steps, "remove "+r)
	}
	if p.Snapshot != "" {
		steps = append(steps, fmt.Sprintf("start from snapshot %s (index %d term %d)", p.Snapshot, p.SnapshotIndex, p.SnapshotTerm))
	}
	switch {
	case p.LastIndex < p.FirstIndex && p.Snapshot == "":
		steps = append(steps, "start on an empty log")
	case p.ReplayTo >= p.ReplayFrom:
		steps = append(steps, fmt.Sprintf("replay the committed entries %d..%d", p.ReplayFrom, p.ReplayTo))
	default:
		steps = append(steps, "no committed entry to replay")
	}
	if p.LastIndex > p.ReplayTo && p.LastIndex >= p.FirstIndex {
		steps = append(steps, fmt.Sprintf("keep entries %d..%d for a leader to commit", max(p.ReplayTo+1, p.FirstIndex), p.LastIndex))
	}
	if p.LastIndex >= p.FirstIndex {
		steps = append(steps, fmt.Sprintf("the log holds entries %d..%d", p.FirstIndex, p.LastIndex))
	}
	if p.WritesUnverified {
		steps = append(steps, "record the member unverified (an empty log: it votes once verified)")
	}
	fmt.Fprintf(w, "plan%s: START: %s\n", when, strings.Join(steps, "; "))
}
