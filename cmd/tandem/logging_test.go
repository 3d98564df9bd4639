package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/node"
	"github.com/tandem-cluster/tandem/service"
)

// jsonLines decodes out as one JSON object a line, failing the test on any other line.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("not one JSON object: %q: %v\n%s", l, err, out)
		}
		recs = append(recs, rec)
	}
	return recs
}

// In JSON, every event is a record on the log — the start and the role changes too, not boxes —
// each with time, level, msg and the member's own id, and nothing is printed on standard output.
func TestJSONRendersEveryEventAsARecord(t *testing.T) {
	var stdout, stderr bytes.Buffer
	cfg := node.DefaultConfig()
	cfg.ID, cfg.Members, cfg.DataDir = 1, node.LocalCluster(3), "data/node-1"
	r := newRenderer(&stdout)
	r.cfg = &cfg
	r.log = newLogger(&stderr, logFormatJSON, slog.LevelInfo).With("self", 1)
	for _, ev := range []node.Event{
		{Kind: node.EventClusterVersion, ClusterVersion: 5, Index: 3}, // held until the start
		{Kind: node.EventStarted, Leader: -1},
		{Kind: node.EventRoleChange, Role: service.Follower, Leader: 2, Term: 4},
		{Kind: node.EventSnapshotTaken, Index: 100},
		{Kind: node.EventSnapshotInstalled, Index: 200},
		{Kind: node.EventMemberUnreachable, Member: 2},
		{Kind: node.EventMemberReachable, Member: 2},
		{Kind: node.EventClusterIdentity, ClusterUUID: "0123456789abcdef0123456789abcdef"},
		{Kind: node.EventMembership, Index: 300},
	} {
		r.event(ev)
	}
	if stdout.Len() != 0 {
		t.Fatalf("JSON printed on standard output:\n%s", stdout.String())
	}
	recs := jsonLines(t, stderr.String())
	var msgs []string
	for _, rec := range recs {
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k].(string); !ok {
				t.Errorf("record without %s: %v", k, rec)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, rec["time"].(string)); err != nil {
			t.Errorf("record's time: %v", err)
		}
		if rec["self"] != 1.0 {
			t.Errorf("record without self=1: %v", rec)
		}
		msgs = append(msgs, rec["msg"].(string))
	}
	want := []string{"member started", "cluster version in force (every member applies it)", "role changed",
		"snapshot taken", "snapshot installed from the leader", "member unreachable", "member reachable", "cluster identity",
		"membership changed (tandem cluster list-members)"}
	if strings.Join(msgs, "|") != strings.Join(want, "|") {
		t.Fatalf("records %q, want %q", msgs, want)
	}
	if recs[2]["leader"] != 2.0 || recs[2]["term"] != 4.0 || recs[5]["member"] != 2.0 || recs[5]["level"] != "WARN" {
		t.Fatalf("attributes: role change %v, unreachable %v", recs[2], recs[5])
	}
}

// --log-level filters; a duration is written as people read it, in JSON too.
func TestLogLevelFilters(t *testing.T) {
	var buf bytes.Buffer
	var lvl logLevel
	if err := lvl.Set("warn"); err != nil {
		t.Fatal(err)
	}
	l := newLogger(&buf, logFormatJSON, lvl.level)
	l.Debug("debug line")
	l.Info("info line")
	l.Warn("warn line", "for", 1500*time.Millisecond)
	l.Error("error line")
	recs := jsonLines(t, buf.String())
	if len(recs) != 2 || recs[0]["msg"] != "warn line" || recs[0]["for"] != "1.5s" || recs[1]["msg"] != "error line" {
		t.Fatalf("at warn: %s", buf.String())
	}
}

// --log-format and --log-level refuse what they do not know, as a flag error (parseVerb makes it
// a usage error: TestUsageErrorIsOneLineAndAHint runs tandem node with them).
func TestLogFlagsRefuseUnknownValues(t *testing.T) {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	format, level := logFormatText, logLevel{level: slog.LevelInfo}
	fs.Var(&format, "log-format", "")
	fs.Var(&level, "log-level", "")
	for _, args := range [][]string{{"--log-format", "yaml"}, {"--log-level", "loud"}} {
		if err := fs.Parse(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	if err := fs.Parse([]string{"--log-format", "JSON", "--log-level", "debug"}); err != nil ||
		format != logFormatJSON || level.level != slog.LevelDebug {
		t.Fatalf("JSON, debug: %v, %s, %s", err, format, level.String())
	}
}

// An error that stops the member is, in JSON, an error record like every other line (the exit
// code kept); in text, the usage error or the plain line it always was.
func TestNodeFailureInJSONIsARecord(t *testing.T) {
	var stderr, log bytes.Buffer
	jsonLog := newLogger(&log, logFormatJSON, slog.LevelInfo).With("self", 2)
	if code := failed(&stderr, jsonLog, "cannot start", errors.New("--client-fd 7 is not a listening socket"), exitUsage, true); code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	recs := jsonLines(t, log.String())
	if stderr.Len() != 0 || len(recs) != 1 || recs[0]["level"] != "ERROR" || recs[0]["msg"] != "cannot start" ||
		recs[0]["err"] != "--client-fd 7 is not a listening socket" || recs[0]["self"] != 2.0 {
		t.Fatalf("JSON: records %v, stderr %q", recs, stderr.String())
	}
	log.Reset()
	if code := failed(&stderr, jsonLog, "member stopped", errors.New("disk full"), exitCannotApply, false); code != exitCannotApply ||
		jsonLines(t, log.String())[0]["msg"] != "member stopped" {
		t.Fatalf("JSON, Run's error: exit %d, %s", code, log.String())
	}
	if code := failed(&stderr, nil, "cannot start", errors.New("bad"), exitUsage, true); code != exitUsage ||
		stderr.String() != "tandem node: bad\n"+usageHint("node")+"\n" {
		t.Fatalf("text, usage: exit %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	if code := failed(&stderr, nil, "member stopped", errors.New("disk full"), exitFailed, false); code != exitFailed ||
		stderr.String() != "tandem node: disk full\n" {
		t.Fatalf("text: exit %d, stderr %q", code, stderr.String())
	}
}
