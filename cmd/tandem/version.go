package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"

	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/version"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// buildVersions is what `tandem version` prints: the build and every version it speaks, reads
// or applies (docs/COMPATIBILITY.md says what each one promises).
type buildVersions struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"` // "" when the build carries no version-control stamp
	Modified  bool   `json:"modified,omitempty"`
	Time      string `json:"commit_time,omitempty"`
	GoVersion string `json:"go"`
	Platform  string `json:"platform"`
	// Wire protocols spoken, negotiated per connection: [min, max].
	MemberProtocol [2]uint16 `json:"member_protocol"`
	ClientProtocol [2]uint16 `json:"client_protocol"`
	// ClusterVersionMax is the highest cluster version (the log's meaning) this build applies.
	ClusterVersionMax uint16 `json:"cluster_version_max"`
	// On-disk formats read: [oldest, newest]; the newest is what the build writes.
	IdentityFormat [2]uint8 `json:"identity_format"`
	SegmentFormat  [2]uint8 `json:"segment_format"`
	SnapshotFormat [2]uint8 `json:"snapshot_file_format"`
	StateFormat    [2]uint8 `json:"state_snapshot_format"`
}

func currentVersions() buildVersions {
	v := buildVersions{
		Version:           version.Version, // internal/version says how a release sets it
		GoVersion:         runtime.Version(),
		Platform:          runtime.GOOS + "/" + runtime.GOARCH,
		MemberProtocol:    [2]uint16{wire.MemberProtocolMin, wire.MemberProtocolMax},
		ClientProtocol:    [2]uint16{wire.ClientProtocolMin, wire.ClientProtocolMax},
		ClusterVersionMax: container.ClusterVersionMax,
		IdentityFormat:    [2]uint8{archive.IdentityFormatMin, archive.IdentityFormat},
		SegmentFormat:     [2]uint8{archive.SegmentFormatMin, archive.SegmentFormatMax},
		SnapshotFormat:    [2]uint8{archive.SnapshotFormat, archive.SnapshotFormat},
		StateFormat:       [2]uint8{container.SnapshotFormatMin, container.SnapshotFormatMax},
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	return v
}

func span[T uint8 | uint16](r [2]T) string {
	if r[0] == r[1] {
		return fmt.Sprint(r[0])
	}
	return fmt.Sprintf("%d to %d", r[0], r[1])
}

func (v buildVersions) text() string {
	commit := "unknown (no version-control stamp: built by go run or go test, with -buildvcs=false, or outside a git checkout)"
	if v.Commit != "" {
		commit = v.Commit
		if v.Time != "" {
			commit += " (" + v.Time + ")"
		}
		if v.Modified {
			commit += ", with uncommitted changes"
		}
	}
	return fmt.Sprintf(`tandem %s
  commit            %s
  go                %s %s
  member protocol   %s (negotiated per connection: the highest both sides speak)
  client protocol   %s
  cluster version   applies up to %d (the log's meaning; raised by the cluster once every member applies it)
  disk formats      reads identity %s, log segments %s, snapshot files %s, state snapshots %s;
                    writes the newest (state snapshots: the format the cluster version asks for)
`, v.Version, commit, v.GoVersion, v.Platform, span(v.MemberProtocol), span(v.ClientProtocol), v.ClusterVersionMax,
		span(v.IdentityFormat), span(v.SegmentFormat), span(v.SnapshotFormat), span(v.StateFormat))
}

const versionHelp = `Usage: tandem version [--json]

Prints this build's version and commit, the Go version, the wire protocol versions it speaks
(members and clients negotiate the highest both sides speak), the highest cluster version it
applies, and the on-disk formats it reads and writes. Every verb takes --version too.
What each version promises: docs/COMPATIBILITY.md.

Flags:
`

const versionExamples = `
Examples:
  tandem version
  tandem node --version             # the same, from any verb
  tandem version --json | jq .cluster_version_max
`

func runVersion(args []string) int {
	fs := newFlagSet("version")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, code, done := parseVerb(fs, args, verbHelp{versionHelp, versionExamples})
	if done {
		return code
	}
	if len(pos) > 0 {
		return usageError(os.Stderr, "version", "unexpected argument %q", pos[0])
	}
	v := currentVersions()
	if *asJSON {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Println(string(b))
		return exitOK
	}
	fmt.Print(v.text())
	return exitOK
}

// wantsVersion reports whether a verb's arguments ask for --version (before any "--").
func wantsVersion(args []string) bool {
	if i := slices.Index(args, "--"); i >= 0 {
		args = args[:i]
	}
	return slices.Contains(args, "--version") || slices.Contains(args, "-version")
}
