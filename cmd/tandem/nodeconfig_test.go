package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/node"
)

// These tests read tandem node's configuration in-process (prepareNode: no member is started,
// no port bound), with an environment of their own, not the test process's.

// prepare runs prepareNode on args with env as the whole environment.
func prepare(t *testing.T, env map[string]string, args ...string) (setup nodeSetup, stdout, stderr string, code int, done bool) {
	t.Helper()
	var o, e bytes.Buffer
	lookup := func(name string) (string, bool) { v, ok := env[name]; return v, ok }
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	sort.Strings(environ)
	setup, code, done = prepareNode(args, lookup, environ, &o, &e)
	return setup, o.String(), e.String(), code, done
}

// writeFile writes content to name in a new temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Command line > environment > file > default, the same for YAML and TOML, for flags of each
// type, and each value's origin is what --print-config says.
func TestNodeConfigPrecedence(t *testing.T) {
	for _, f := range []struct{ name, content string }{
		{"tandem.yaml", "tick: 50ms\nelection-ticks: 20\ncluster-id: file\nverbose: true\nsnapshot-entries: 50\nmembers:\n  - 0,127.0.0.1:7000,127.0.0.1:7100\n  - 1,127.0.0.1:7001,127.0.0.1:7101\n  - 2,127.0.0.1:7002,127.0.0.1:7102\n"},
		{"tandem.toml", "tick = \"50ms\"\nelection-ticks = 20\ncluster-id = \"file\"\nverbose = true\nsnapshot-entries = 50\nmembers = [\"0,127.0.0.1:7000,127.0.0.1:7100\", \"1,127.0.0.1:7001,127.0.0.1:7101\", \"2,127.0.0.1:7002,127.0.0.1:7102\"]\n"},
	} {
		path := writeFile(t, f.name, f.content)
		env := map[string]string{"TANDEM_CONFIG": path, "TANDEM_ELECTION_TICKS": "30", "TANDEM_CLUSTER_ID": "env", "TANDEM_SNAPSHOT_ENTRIES": "60"}
		data := filepath.Join(t.TempDir(), "d")
		setup, out, stderr, code, done := prepare(t, env, "1", "--cluster-id", "flag", "--data", data)
		if done || code != exitOK {
			t.Fatalf("%s: exit %d, stderr %q", f.name, code, stderr)
		}
		c := setup.cfg
		if c.ClusterID != "flag" || c.ElectionTicks != 30 || c.SnapshotIntervalEntries != 60 || c.TickInterval != 50*time.Millisecond ||
			setup.logLevel != slog.LevelDebug || c.HeartbeatTicks != 1 || c.SessionTimeout != 10*time.Second || len(c.Members) != 3 ||
			c.Members[1].ClientAddr != "127.0.0.1:7001" || c.ID != 1 || c.DataDir != data || out != "" {
			t.Fatalf("%s: precedence not flag > env > file > default: %+v (log level %v), stdout %q", f.name, c, setup.logLevel, out)
		}
		_, out, stderr, code, done = prepare(t, env, "1", "--cluster-id", "flag", "--print-config")
		if !done || code != exitOK {
			t.Fatalf("%s --print-config: exit %d, stderr %q", f.name, code, stderr)
		}
		for _, want := range []string{
			"cluster-id: flag", "# from --cluster-id",
			"election-ticks: 30", "# from TANDEM_ELECTION_TICKS",
			"tick: 50ms", "verbose: true", "# from " + path,
			"heartbeat-ticks: 1", "# default",
			"data: data/node-1", "# default: ./data/node-<id>",
			"http-addr: 127.0.0.1:9201",
			"  - 1,127.0.0.1:7001,127.0.0.1:7101",
			// The advertised addresses as the member will give them, not "".
			"client-addr: 127.0.0.1:7001", "member-addr: 127.0.0.1:7101", "# default: member 1's in members",
		} {
			if !strings.Contains(out, want) {
				t.Fatalf("%s --print-config lacks %q:\n%s", f.name, want, out)
			}
		}
		if !regexp.MustCompile(`(?m)^tick: 50ms +# from `+regexp.QuoteMeta(path)+`$`).MatchString(out) ||
			!regexp.MustCompile(`(?m)^election-ticks: 30 +# from TANDEM_ELECTION_TICKS$`).MatchString(out) ||
			!regexp.MustCompile(`(?m)^cluster-id: flag +# from --cluster-id$`).MatchString(out) ||
			!regexp.MustCompile(`(?m)^heartbeat-ticks: 1 +# default$`).MatchString(out) {
			t.Fatalf("%s --print-config: a value's origin is not on its line:\n%s", f.name, out)
		}
	}
	// http-addr given empty by any source serves none; given by none, the best-effort default.
	for _, tc := range []struct {
		env         map[string]string
		args        []string
		addr, deflt string
	}{
		{nil, nil, "", "127.0.0.1:9200"},
		{map[string]string{"TANDEM_HTTP_ADDR": ""}, nil, "", ""},
		{map[string]string{"TANDEM_HTTP_ADDR": "127.0.0.1:1"}, []string{"--http-addr", ""}, "", ""},
		{map[string]string{"TANDEM_CONFIG": writeFile(t, "h.yaml", `http-addr: ""`)}, nil, "", ""},
		{map[string]string{"TANDEM_CONFIG": writeFile(t, "h.yaml", `http-addr: "127.0.0.1:2"`)}, nil, "127.0.0.1:2", ""},
	} {
		setup, _, stderr, code, done := prepare(t, tc.env, append([]string{"0"}, tc.args...)...)
		if done || code != exitOK || setup.cfg.HTTPAddr != tc.addr || setup.httpDefault != tc.deflt {
			t.Fatalf("env %v args %q: exit %d %q, HTTPAddr %q default %q; want %q and %q",
				tc.env, tc.args, code, stderr, setup.cfg.HTTPAddr, setup.httpDefault, tc.addr, tc.deflt)
		}
	}
}

// Every mistake in the configuration is one line naming where it is, then the hint, with the
// usage code; --print-config fails as the start does.
func TestNodeConfigErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.yaml")
	for _, tc := range []struct {
		file, content string // a config file to give with --config ("": none)
		env           map[string]string
		args          []string
		want          string
	}{
		{"c.yaml", "election_ticks: 5\n", nil, nil, `c.yaml:1: unknown key "election_ticks" (did you mean election-ticks?)`},
		{"c.yaml", "tick: 100ms\nelection-tick: 5\n", nil, nil, `c.yaml:2: unknown key "election-tick" (did you mean election-ticks?)`},
		{"c.yaml", "TANDEM_TICK: 100ms\n", nil, nil, `(did you mean tick?)`},
		{"c.yaml", "frobnicate: 1\n", nil, nil, `c.yaml:1: unknown key "frobnicate": the keys are the flags' names`},
		{"c.toml", "election_ticks = 5\n", nil, nil, `c.toml: unknown key "election_ticks" (did you mean election-ticks?)`},
		{"c.yaml", "tick: 5\n", nil, nil, "c.yaml:1: tick: 5 is not a duration (like 100ms)"},
		{"c.toml", "tick = 5\n", nil, nil, "c.toml: tick: 5 is not a duration (like 100ms)"},
		{"c.yaml", "tick: abc\n", nil, nil, `c.yaml:1: tick: "abc" is not a duration (like 100ms)`},
		{"c.toml", "election-ticks = \"many\"\n", nil, nil, `c.toml: election-ticks: "many" is not an integer`},
		{"c.yaml", "verbose: 3\n", nil, nil, `c.yaml:1: verbose: 3 is not true or false`},
		{"c.yaml", "tick:\n", nil, nil, `c.yaml:1: tick has no value (write "" for an empty one)`},
		{"c.yaml", "tick: [1s]\n", nil, nil, "c.yaml:1: tick: a list is not a value (only join, members, peer-allowed-names and preferred-leader take lists)"},
		{"c.yaml", "members:\n  a: b\n", nil, nil, "c.yaml:1: members: a map is not a value"},
		{"c.toml", "[node]\ntick = \"1s\"\n", nil, nil, `c.toml (from --config): key "node.tick" is inside a table: the keys are the flags' names, at the top level`},
		{"c.toml", "node.tick = \"1s\"\n", nil, nil, `c.toml (from --config): key "node.tick" is inside a table`},
		{"c.toml", "tick = \"1s\"\n[a.b]\nc = 1\n", nil, nil, `key "a.b" is inside a table`},
		{"c.yaml", "tick: 1s\n---\ntick: 2s\n", nil, nil, "c.yaml (from --config): line 2: a second YAML document (after ---): a config file is one document"},
		{"c.yaml", "log-format: jsn\n", nil, nil, `c.yaml:1: log-format: "jsn" is not a log format: text or json`},
		{"c.toml", "log-level = \"loud\"\n", nil, nil, `c.toml: log-level: "loud" is not a log level: debug, info, warn or error`},
		{"c.yaml", "tick: 1s\ntick: 2s\n", nil, nil, "line 2: key tick again (first on line 1)"},
		{"c.yaml", "config: other.yaml\n", nil, nil, "c.yaml:1: config: a config file cannot name another"},
		{"c.yaml", "print-config: true\n", nil, nil, "c.yaml:1: print-config: an action for the command line"},
		{"c.yaml", "tick: 1s\n  bad: [\n", nil, nil, "c.yaml (from --config): line 2:"},
		{"c.toml", "tick = \n", nil, nil, "c.toml (from --config): line 1"},
		{"c.yaml", "- tick\n", nil, nil, "line 1: want keys and values (flag names as keys), got a list"},
		{"c.json", "{}", nil, nil, `unknown format ".json": the extension says which, .yaml, .yml (YAML) or .toml (TOML)`},
		{"", "", map[string]string{"TANDEM_CONFIG": missing}, nil, "config file " + missing + " (from TANDEM_CONFIG): open " + missing + ": no such file or directory"},
		// An invalid value names its source, whichever it is.
		// … and says what the flag takes, in the same words as for a file's (above).
		{"", "", map[string]string{"TANDEM_TICK": "abc"}, nil, `TANDEM_TICK (from the environment): "abc" is not a duration (like 100ms)`},
		{"", "", map[string]string{"TANDEM_TICK": "5"}, nil, `TANDEM_TICK (from the environment): "5" is not a duration (like 100ms)`},
		{"", "", nil, []string{"--tick", "abc"}, `tandem node: --tick: "abc" is not a duration (like 100ms)`},
		{"", "", nil, []string{"0", "--tick=5"}, `tandem node: --tick: "5" is not a duration (like 100ms)`},
		{"", "", map[string]string{"TANDEM_ELECTION_TICKS": "many"}, nil, `TANDEM_ELECTION_TICKS (from the environment): "many" is not an integer`},
		{"", "", nil, []string{"0", "--election-ticks", "many"}, `--election-ticks: "many" is not an integer`},
		{"", "", nil, []string{"0", "--election-ticks", "99999999999999999999"}, `--election-ticks: "99999999999999999999" is out of range for an integer`},
		{"", "", map[string]string{"TANDEM_VERBOSE": "3"}, nil, `TANDEM_VERBOSE (from the environment): "3" is not true or false`},
		{"", "", nil, []string{"0", "--verbose=maybe"}, `--verbose: "maybe" is not true or false`},
		{"", "", nil, []string{"0", "--snapshot-entries", "-1"}, `--snapshot-entries: "-1" is not a non-negative integer`},
		{"", "", map[string]string{"TANDEM_LOG_FORMAT": "jsn"}, nil, `TANDEM_LOG_FORMAT (from the environment): "jsn" is not a log format: text or json`},
		{"", "", nil, []string{"0", "--log-format", "jsn"}, `--log-format: "jsn" is not a log format: text or json`},
		{"", "", map[string]string{"TANDEM_MEMBERS": "0,a"}, nil, `TANDEM_MEMBERS: entry 1 "0,a": want id,clientAddr,memberAddr`},
		{"c.yaml", "preferred-leader: x\n", nil, nil, `c.yaml: preferred-leader: "x" is not a member id`},
		// The checks across settings, whatever their source.
		{"c.yaml", "learner: true\n", nil, nil, "c.yaml: learner is for a member that joins (--join)"},
		{"", "", map[string]string{"TANDEM_MEMBERS": "0,127.0.0.1:7000,127.0.0.1:7100"}, nil, "TANDEM_MEMBERS names one member only"},
		// Validate's errors in the flags' words, with where each value came from.
		{"c.yaml", "election-ticks: 1\n", nil, nil, "tandem node: invalid configuration: election-ticks (1) must be larger than heartbeat-ticks (1) (election-ticks from "},
		{"", "", map[string]string{"TANDEM_HEARTBEAT_TICKS": "10"}, nil, "election-ticks (7) must be larger than heartbeat-ticks (10) (election-ticks default, heartbeat-ticks from TANDEM_HEARTBEAT_TICKS)"},
		{"", "", nil, []string{"0", "--max-client-conns", "0"}, "invalid configuration: max-client-conns (0) must be at least 1 (max-client-conns from --max-client-conns)"},
		{"", "", nil, []string{"0", "--election-ticks", "-1", "--heartbeat-ticks", "0"},
			"invalid configuration: heartbeat-ticks (0) must be at least 1 (heartbeat-ticks from --heartbeat-ticks); election-ticks (-1) must be larger than heartbeat-ticks (0) (election-ticks from --election-ticks, heartbeat-ticks from --heartbeat-ticks)"},
		{"", "", nil, []string{"0", "--session-timeout", "1s"}, "session-timeout (1s) must be at least two election timeouts (2 × election-ticks × tick = 1.4s) (session-timeout from --session-timeout, election-ticks default, tick default)"},
		// A tick under a millisecond.
		{"", "", map[string]string{"TANDEM_TICK": "1ns"}, nil, "invalid configuration: tick (1ns) must be at least 1ms: a member that ticks faster than it can process its inputs spends its time ticking (tick from TANDEM_TICK)"},
		// Every address: host:port, a port 1-65535 (0 where the member binds), named by member
		// and by the setting that gave it.
		{"", "", nil, []string{"0", "--members", "0,127.0.0.1:99999,127.0.0.1:9100|1,127.0.0.1:9001,127.0.0.1:9101"},
			`--members: member 0's client address "127.0.0.1:99999": port 99999 is not 1 to 65535`},
		{"", "", map[string]string{"TANDEM_MEMBERS": "0,127.0.0.1:9000,127.0.0.1:9100|1,127.0.0.1:9001,127.0.0.1:-1"}, nil,
			`TANDEM_MEMBERS: member 1's member address "127.0.0.1:-1": port -1 is not 1 to 65535`},
		{"c.yaml", "members:\n  - 0,my host:9000,127.0.0.1:9100\n  - 1,127.0.0.1:9001,127.0.0.1:9101\n", nil, nil,
			`c.yaml: members: member 0's client address "my host:9000": host "my host" is not a host name or an IP address`},
		{"c.yaml", "http-addr: localhost\n", nil, nil, `invalid configuration: http-addr ("localhost"): missing port in address (http-addr from `},
		{"", "", nil, []string{"0", "--client-bind", "0.0.0.0:65536"}, `client-bind ("0.0.0.0:65536"): port 65536 is not 0 to 65535 (client-bind from --client-bind)`},
		{"", "", map[string]string{"TANDEM_MEMBER_BIND": "a b:1"}, nil, `member-bind ("a b:1"): host "a b" is not a host name or an IP address (member-bind from TANDEM_MEMBER_BIND)`},
		{"", "", nil, []string{"0", "--client-addr", "127.0.0.1:-1"},
			`invalid configuration: client-addr: member 0's client address "127.0.0.1:-1": port -1 is not 1 to 65535 (client-addr from --client-addr)`},
		{"", "", map[string]string{"TANDEM_MEMBER_ADDR": "localhost"}, nil,
			`member-addr: member 0's member address "localhost": missing port in address (member-addr from TANDEM_MEMBER_ADDR)`},
		{"", "", nil, []string{"3", "--join", "127.0.0.1:9000,127.0.0.1:0"}, `join: address "127.0.0.1:0": port 0 is not 1 to 65535 (join from --join)`},
		// A member id the member list does not name: one sentence, in the flags' words.
		{"", "", nil, []string{"5"}, "tandem node: member 5 is not in the member list (members: default, the localhost layout of 3 members): give --members that names it, or --size 6"},
		{"", "", map[string]string{"TANDEM_SIZE": "2"}, []string{"2"}, "member 2 is not in the member list (members: default, the localhost layout of 2 members, size from TANDEM_SIZE): give --members that names it, or --size 3"},
		{"c.yaml", "members: [\"0,127.0.0.1:7000,127.0.0.1:7100\", \"1,127.0.0.1:7001,127.0.0.1:7101\"]\n", nil, []string{"5"},
			"member 5 is not in the member list (members from "},
		{"c.yaml", "client-addr: 127.0.0.1:1\n", nil, []string{"5"}, "c.yaml: client-addr set member 5's addresses, which the member list (the localhost layout of 3 members) does not name"},
		{"", "", map[string]string{"TANDEM_MEMBERS": "0,127.0.0.1:7000,127.0.0.1:7100|1,127.0.0.1:7001,127.0.0.1:7101"},
			[]string{"5", "--client-addr", "127.0.0.1:1"}, "--client-addr set member 5's addresses, which the member list (TANDEM_MEMBERS) does not name"},
		{"", "", map[string]string{"TANDEM_MEMBER_ADDR": "127.0.0.1:1"}, []string{"5"},
			"TANDEM_MEMBER_ADDR set member 5's addresses"},
		{"", "", map[string]string{"TANDEM_CLIENT_FD": "2"}, nil, "TANDEM_CLIENT_FD 2: descriptors 0 to 2 are stdin, stdout and stderr"},
		// The member id.
		{"c.yaml", "id: 1\n", nil, nil, "member id 0 on the command line, but "},
		{"c.yaml", "id: x\n", nil, []string{}, `c.yaml:1: id: "x" is not a member id`},
		{"c.yaml", "id: zero\n", nil, []string{"0"}, `c.yaml:1: id: "zero" is not a member id (a non-negative integer)`},
		{"c.yaml", "id: -1\n", nil, []string{"1"}, `c.yaml:1: id: "-1" is not a member id`},
		{"", "", nil, []string{}, "a member id expected, e.g. tandem node 0"},
		{"", "", nil, []string{"0", "1"}, "exactly one member id expected, got 2 arguments (0 1)"},
		{"", "", nil, []string{"x"}, `member id "x" is not a non-negative integer`},
	} {
		args := tc.args
		if args == nil {
			args = []string{"0"}
		}
		if tc.file != "" {
			args = append([]string{"--config", writeFile(t, tc.file, tc.content)}, args...)
		}
		for _, print := range []bool{false, true} {
			a := args
			if print {
				a = append(a[:len(a):len(a)], "--print-config")
			}
			_, out, stderr, code, done := prepare(t, tc.env, a...)
			if !done {
				t.Fatalf("tandem node %q (env %v, file %q): accepted, want an error with %q", a, tc.env, tc.content, tc.want)
			}
			usageErrorLines(t, a, out, stderr, code, "tandem node", "tandem node --help for the flags", tc.want)
		}
	}
}

// tandem node --help names every flag's variable, made from its name; --print-config, an
// action, has none.
func TestNodeHelpNamesEveryVariable(t *testing.T) {
	_, out, stderr, code, done := prepare(t, nil, "--help")
	if !done || code != exitOK || stderr != "" {
		t.Fatalf("--help: exit %d, stderr %q", code, stderr)
	}
	// PrintDefaults: "  -name type" then the usage, indented, on the next line(s).
	flagLine := regexp.MustCompile(`^  -([a-z-]+)`)
	help := map[string]string{}
	name := ""
	for _, l := range strings.Split(out, "\n") {
		if m := flagLine.FindStringSubmatch(l); m != nil {
			name = m[1]
			help[name] = ""
		} else if name != "" && strings.HasPrefix(l, "    \t") {
			help[name] += l
		} else {
			name = ""
		}
	}
	if len(help) < 25 {
		t.Fatalf("found the help of %d flags only:\n%s", len(help), out)
	}
	variable := regexp.MustCompile(`\[TANDEM_[A-Z_]+\]`)
	for name, usage := range help {
		got := variable.FindAllString(usage, -1)
		want := []string{"[" + envName(name) + "]"}
		if name == "print-config" {
			want = nil
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("--%s's help names %q, want %q: %s", name, got, want, usage)
		}
	}
}

// --print-config prints a config file: fed back with --config, it prints the same values; and it
// starts nothing, so the data directory is not made.
func TestNodePrintConfigRoundTrips(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	file := writeFile(t, "f.yaml", "snapshot-entries: 77\npreferred-leader: [2, 1]\n")
	env := map[string]string{"TANDEM_SESSION_TIMEOUT": "1m", "TANDEM_CONFIG": file}
	_, first, stderr, code, done := prepare(t, env, "2", "--data", data, "--join", "127.0.0.1:9000", "--learner", "--http-addr", "", "--print-config")
	if !done || code != exitOK || stderr != "" {
		t.Fatalf("--print-config: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("--print-config made the data directory %s (%v)", data, err)
	}
	for _, want := range []string{"session-timeout: 1m0s", "# from TANDEM_SESSION_TIMEOUT", "snapshot-entries: 77", `preferred-leader: 2,1`,
		"client-addr: 127.0.0.1:9002", "member-addr: 127.0.0.1:9102",
		"learner: true", "# from --learner", `http-addr: ""`, "# from --http-addr", "id: 2", "# from the command line"} {
		if !strings.Contains(first, want) {
			t.Fatalf("--print-config lacks %q:\n%s", want, first)
		}
	}
	printed := writeFile(t, "printed.yaml", first)
	_, second, stderr, code, done := prepare(t, nil, "--config", printed, "--print-config")
	if !done || code != exitOK {
		t.Fatalf("--print-config of the printed file: exit %d, stderr %q\n%s", code, stderr, first)
	}
	if got, want := settingLines(second), settingLines(first); got != want {
		t.Fatalf("the printed configuration read back differs:\n%s\nthen:\n%s", first, second)
	}
	if !strings.Contains(second, "# from "+printed) {
		t.Fatalf("read back, the values do not come from the file:\n%s", second)
	}
	// A joiner the member list does not name: its addresses are the localhost layout's, and
	// read back, the same.
	_, first, stderr, code, done = prepare(t, nil, "5", "--data", data, "--join", "127.0.0.1:9000", "--print-config")
	if !done || code != exitOK || !strings.Contains(first, "client-addr: 127.0.0.1:9005") || !strings.Contains(first, "member-addr: 127.0.0.1:9105") {
		t.Fatalf("a joiner's --print-config: exit %d, stderr %q\n%s", code, stderr, first)
	}
	printed = writeFile(t, "joiner.yaml", first)
	setup, second, stderr, code, done := prepare(t, nil, "--config", printed, "--print-config")
	if !done || code != exitOK || settingLines(second) != settingLines(first) {
		t.Fatalf("a joiner's printed configuration read back: exit %d, stderr %q\n%s\nthen:\n%s", code, stderr, first, second)
	}
	if setup, _, stderr, code, done = prepare(t, nil, "--config", printed); done || code != exitOK ||
		len(setup.cfg.Members) != 1 || setup.cfg.Members[0] != (node.Member{ID: 5, ClientAddr: "127.0.0.1:9005", MemberAddr: "127.0.0.1:9105"}) {
		t.Fatalf("a joiner's printed file: exit %d %q, members %+v", code, stderr, setup.cfg.Members)
	}
	// An inherited port (client-bind: "" is printed next to it) and --verbose (printed as the
	// level in force) read back too, and the env's log level loses to the typed --verbose.
	_, first, stderr, code, done = prepare(t, map[string]string{"TANDEM_LOG_LEVEL": "warn"},
		"0", "--client-fd", "3", "--member-fd", "4", "--verbose", "--print-config")
	if !done || code != exitOK || stderr != "" {
		t.Fatalf("--client-fd --verbose --print-config: exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"client-fd: 3", `client-bind: ""`, "log-level: debug", "verbose: true"} {
		if !strings.Contains(first, want) {
			t.Fatalf("--print-config lacks %q:\n%s", want, first)
		}
	}
	printed = writeFile(t, "fd.yaml", first)
	setup, second, stderr, code, done = prepare(t, nil, "--config", printed, "--print-config")
	if !done || code != exitOK {
		t.Fatalf("--print-config of the printed file: exit %d, stderr %q\n%s", code, stderr, first)
	}
	if got, want := settingLines(second), settingLines(first); got != want {
		t.Fatalf("the printed configuration read back differs:\n%s\nthen:\n%s", first, second)
	}
	if setup, _, stderr, code, done = prepare(t, nil, "--config", printed); done || code != exitOK ||
		setup.clientFD != 3 || setup.memberFD != 4 || setup.logLevel != slog.LevelDebug {
		t.Fatalf("the printed file: exit %d %q, client fd %d, member fd %d, level %v", code, stderr, setup.clientFD, setup.memberFD, setup.logLevel)
	}
	// A bind that is given still conflicts with an inherited port.
	if _, _, stderr, code, _ := prepare(t, nil, "0", "--client-fd", "3", "--client-bind", "127.0.0.1:1"); code != exitUsage ||
		!strings.Contains(stderr, "--client-fd and --client-bind: a port is either inherited or bound, not both") {
		t.Fatalf("--client-fd with --client-bind: exit %d, stderr %q", code, stderr)
	}

	// The default data directory is not made either.
	if _, stdout, stderr, code, _ := prepare(t, nil, "7", "--size", "8", "--print-config"); code != exitOK ||
		!strings.Contains(stdout, "data: data/node-7") {
		t.Fatalf("tandem node 7 --size 8 --print-config: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	if _, err := os.Stat(filepath.Join("data", "node-7")); !os.IsNotExist(err) {
		t.Fatalf("--print-config made data/node-7 (%v)", err)
	}
}

// settingLines is a printed configuration without its comments.
func settingLines(printed string) string {
	var b strings.Builder
	for _, l := range strings.Split(printed, "\n") {
		if l, _, _ = strings.Cut(l, "#"); strings.TrimSpace(l) != "" {
			b.WriteString(strings.TrimRight(l, " ") + "\n")
		}
	}
	return b.String()
}

// The example config file in deploy/ is a valid configuration.
func TestNodeExampleConfigLoads(t *testing.T) {
	example := filepath.Join("..", "..", "deploy", "tandem.example.yaml")
	setup, _, stderr, code, done := prepare(t, nil, "1", "--config", example)
	if done || code != exitOK {
		t.Fatalf("%s: exit %d, stderr %q", example, code, stderr)
	}
	if c := setup.cfg; c.ClusterID != "orders" || len(c.Members) != 3 || c.Members[1].ClientAddr != "10.0.0.2:9000" || c.HTTPAddr == "" {
		t.Fatalf("%s read as %+v", example, c)
	}
}

// --verbose is log-level debug at its own origin: a higher-precedence source wins between them,
// and on a tie log-level does (the deprecated spelling does not override the new one).
func TestNodeVerboseAndLogLevelPrecedence(t *testing.T) {
	file := writeFile(t, "v.yaml", "verbose: true\n")
	for _, tc := range []struct {
		env    map[string]string
		args   []string
		want   slog.Level
		origin string
	}{
		{nil, []string{"--verbose"}, slog.LevelDebug, "# from --verbose"},
		{map[string]string{"TANDEM_LOG_LEVEL": "warn"}, []string{"--verbose"}, slog.LevelDebug, "# from --verbose"},
		{map[string]string{"TANDEM_VERBOSE": "true"}, []string{"--log-level", "error"}, slog.LevelError, "# from --log-level"},
		{nil, []string{"--verbose", "--log-level", "warn"}, slog.LevelWarn, "# from --log-level"},
		{map[string]string{"TANDEM_CONFIG": file, "TANDEM_LOG_LEVEL": "warn"}, nil, slog.LevelWarn, "# from TANDEM_LOG_LEVEL"},
		{map[string]string{"TANDEM_CONFIG": file}, nil, slog.LevelDebug, "# from " + file},
	} {
		setup, _, stderr, code, done := prepare(t, tc.env, append([]string{"0"}, tc.args...)...)
		if done || code != exitOK || setup.logLevel != tc.want {
			t.Fatalf("env %v args %q: exit %d %q, level %v, want %v", tc.env, tc.args, code, stderr, setup.logLevel, tc.want)
		}
		_, out, _, _, _ := prepare(t, tc.env, append([]string{"0", "--print-config"}, tc.args...)...)
		level := strings.ToLower(tc.want.String())
		if !regexp.MustCompile(`(?m)^log-level: ` + level + ` +` + regexp.QuoteMeta(tc.origin) + `$`).MatchString(out) {
			t.Fatalf("env %v args %q: --print-config does not say log-level: %s %s:\n%s", tc.env, tc.args, level, tc.origin, out)
		}
	}
}

// A TANDEM_ variable that is no flag's is said, with the nearest flag's, as a warning: at start
// and in --print-config, which still prints; the repository's other variables are not.
func TestNodeUnknownVariablesWarn(t *testing.T) {
	env := map[string]string{"TANDEM_TIKC": "1s", "TANDEM_FROBNICATE": "1", "TANDEM_ENDPOINTS": "x", "TANDEM_SIM_SEEDS": "3",
		"TANDEM_MEASURE": "1", "TANDEM_TEST_DUMP": "1", "TANDEM_METRICS_OUT": "m", "TANDEM_TICK": "50ms", "TANDEM_CONFIG": "",
		"TANDEM_PRINT_CONFIG": "true"}
	setup, _, stderr, code, done := prepare(t, env, "0")
	if done || code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want := []string{
		"TANDEM_FROBNICATE is not a variable of tandem node, ignored",
		"TANDEM_PRINT_CONFIG is not a variable of tandem node, ignored",
		"TANDEM_TIKC is not a variable of tandem node, ignored (did you mean TANDEM_TICK?)",
	}
	if strings.Join(setup.warnings, "|") != strings.Join(want, "|") {
		t.Fatalf("warnings %q, want %q", setup.warnings, want)
	}
	_, out, stderr, code, done := prepare(t, env, "0", "--print-config")
	if !done || code != exitOK || !strings.Contains(out, "tick: 50ms") ||
		!strings.Contains(stderr, "tandem node: warning: TANDEM_TIKC is not a variable of tandem node, ignored (did you mean TANDEM_TICK?)\n") {
		t.Fatalf("--print-config: exit %d, stderr %q\n%s", code, stderr, out)
	}
}
