package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/tandem-cluster/tandem/node"
	"gopkg.in/yaml.v3"
)

// prepareNode reads tandem node's settings from args, the environment (lookup) and the config
// file, and checks them as the start would (node.Config.Validate needs no port; it reads the
// member port's TLS files, as the start does), so that --print-config fails exactly as the start
// would. When the verb must return at once (its
// help, --print-config, or an error printed as a usage error), done is true and code its exit
// code.
func prepareNode(args []string, lookup func(string) (string, bool), environ []string, stdout, stderr io.Writer) (setup nodeSetup, code int, done bool) {
	fs := newFlagSet("node")
	def := node.DefaultConfig()
	fs.String("config", "", "read settings from this `file` (.yaml, .yml or .toml; keys are the flags' names, and id the member id)")
	printConfig := fs.Bool("print-config", false, "print the effective configuration, with each value's origin, as a config file, and exit without starting")
	members := fs.String("members", "", "member list `id,client,member|…` or Aeron's six-field form")
	size := fs.Int("size", 3, "with no --members: members in the localhost layout; with a --members list of one, 1 confirms a one-member cluster")
	data := fs.String("data", "", "data directory (default ./data/node-<id>)")
	clusterID := fs.String("cluster-id", def.ClusterID, "cluster id")
	clientBind := fs.String("client-bind", "", "address to listen on for clients (default: the advertised one)")
	memberBind := fs.String("member-bind", "", "address to listen on for members (default: the advertised one)")
	clientFD := fs.Int("client-fd", 0, "serve clients on this inherited listening socket instead of binding one (socket activation; 0: bind)")
	memberFD := fs.Int("member-fd", 0, "serve members on this inherited listening socket instead of binding one (socket activation; 0: bind)")
	tick := fs.Duration("tick", def.TickInterval, "raft tick")
	election := fs.Int("election-ticks", def.ElectionTicks, "election timeout in ticks (randomised up to twice)")
	heartbeat := fs.Int("heartbeat-ticks", def.HeartbeatTicks, "heartbeat interval in ticks")
	sessionTimeout := fs.Duration("session-timeout", def.SessionTimeout, "idle session timeout")
	snapEntries := fs.Uint64("snapshot-entries", def.SnapshotIntervalEntries, "take a snapshot every this many log entries")
	maxClientConns := fs.Int("max-client-conns", def.MaxClientConns, "client connections served at once; more are refused (closed at once, logged)")
	maxMemberConns := fs.Int("max-member-conns", def.MaxMemberConns, "member connections served at once; more are refused (closed at once, logged)")
	maxClusterVersion := fs.Uint("max-cluster-version", 0, "apply and report cluster versions up to this one only (0: this build's highest): on any one member, holds the cluster's version during a rolling upgrade (docs/COMPATIBILITY.md)")
	logFmt, logLvl := logFormatText, logLevel{level: slog.LevelInfo}
	fs.Var(&logFmt, "log-format", "`text` (stderr; the seed's banners and event lines on stdout) or json (every line a JSON object on stderr, events too)")
	fs.Var(&logLvl, "log-level", "log `level`: debug, info, warn or error (default info)")
	verbose := fs.Bool("verbose", false, "deprecated: --log-level debug")
	join := fs.String("join", "", "on an empty data directory, join the running cluster through these members' client addresses `host:port,…` (a data directory with data ignores it)")
	preferred := fs.String("preferred-leader", "", "the founding preference for the leader `ID[,ID]`, most preferred first: the leader hands over to the first that is up and caught up (afterwards: tandem cluster set-preferred-leader)")
	learner := fs.Bool("learner", false, "with --join: stay a learner (no vote) until promoted or made a replacement")
	clientAddr := fs.String("client-addr", "", "this member's advertised client address (default: from --members, or 127.0.0.1:9000+id)")
	memberAddr := fs.String("member-addr", "", "this member's advertised member address (default: from --members, or 127.0.0.1:9100+id)")
	httpAddr := fs.String("http-addr", "", "serve /metrics, /livez, /readyz and /status on this address; empty: none (default 127.0.0.1:9200+id, skipped with a warning if taken)")
	// The client port's security (README, "A secured cluster").
	tlsCert := fs.String("tls-cert", "", "serve the client port over TLS with this certificate `file` (PEM; with --tls-key)")
	tlsKey := fs.String("tls-key", "", "the client port certificate's key `file` (PEM)")
	clientCA := fs.String("client-ca", "", "clients authenticate with certificates this CA `file` signed (PEM; needs --tls-cert): the common name is the principal, the organizations its roles")
	authTokens := fs.String("auth-tokens", "", "clients authenticate with the tokens this `file` lists, a line \"TOKEN NAME ROLE[,ROLE]\" each (roles: admin, write, read); reread when it changes")
	// ---- member port TLS and --insecure (issue 22; insecure.go, node/peertls.go) ----
	peerCert := fs.String("peer-cert", "", "this member's certificate `file` (PEM) for mutual TLS on the member port, with --peer-key and --peer-ca; it must allow serverAuth and clientAuth and name this member's advertised member host")
	peerKey := fs.String("peer-key", "", "the key `file` (PEM) of --peer-cert")
	peerCA := fs.String("peer-ca", "", "the CA bundle `file` (PEM) that signs the members' certificates: a peer must present a member certificate it signed")
	peerAllowed := fs.String("peer-allowed-names", "", "the `names` (comma-separated) a peer's certificate must carry one of, as a DNS or IP name or its common name; empty: any member certificate of --peer-ca")
	insecure := fs.Bool("insecure", false, "serve a port bound to a non-loopback address without TLS (the member port without --peer-cert), with a warning; without it such a member does not start")
	// ---- end of member port TLS ----
	s, pos, code, done := loadSettings(fs, args, lookup, environ, verbHelp{nodeHelp, nodeExamples}, stdout, stderr)
	if done {
		return setup, code, true
	}
	fail := func(format string, args ...any) (nodeSetup, int, bool) {
		return setup, usageError(stderr, "node", format, args...), true
	}

	// The member id: the argument, or key id of the config file. Both and different is an error,
	// not a precedence: a member started with another member's file would take its addresses.
	idText, idOrigin := "", origin{fromFlag, "the command line"}
	var err error
	switch {
	case len(pos) > 1:
		return fail("exactly one member id expected, got %d arguments (%s)", len(pos), strings.Join(pos, " "))
	case len(pos) == 1:
		idText = pos[0]
	case s.fileID != "":
		idText, idOrigin = s.fileID, origin{fromFile, s.config}
	default:
		return fail("a member id expected, e.g. tandem node 0")
	}
	// The file's id is checked whether or not the command line gives one: an invalid value is
	// said as such, not as a mismatch.
	fileID := -1
	if s.fileID != "" {
		if fileID, err = strconv.Atoi(s.fileID); err != nil || fileID < 0 {
			return fail("%s:%d: id: %q is not a member id (a non-negative integer)", s.config, s.fileIDLine, s.fileID)
		}
	}
	id, err := strconv.Atoi(idText)
	if err != nil || id < 0 {
		return fail("member id %q is not a non-negative integer", idText)
	}
	if fileID >= 0 && idOrigin.kind == fromFlag && fileID != id {
		return fail("member id %s on the command line, but %s:%d says id: %s: run each member with its own file",
			idText, s.config, s.fileIDLine, s.fileID)
	}

	cfg := def
	cfg.ID = id
	cfg.ClusterID = *clusterID
	if *members != "" {
		if cfg.Members, err = node.ParseMembers(*members); err != nil {
			return fail("%s: %v", s.source("members"), err)
		}
		// A list of this member alone founds a cluster of one, which never joins the others: the
		// typo that once made a second cluster that clients read 0 from. On purpose, --size 1.
		if len(cfg.Members) == 1 && (!s.set("size") || *size != 1) && *join == "" {
			return fail("%s names one member only: that founds a one-member cluster, "+
				"which never joins any other; list every member, or say --size 1 if one member is what you want", s.source("members"))
		}
	} else {
		if *size < 1 {
			return fail("%s: %d members is not a cluster", s.source("size"), *size)
		}
		cfg.Members = node.LocalCluster(max(*size, id+1))[:*size]
	}
	// The member list as it will found the cluster, for --print-config: with no --members, the
	// localhost layout, written out.
	effectiveMembers := formatMembers(cfg.Members)
	listed := slices.ContainsFunc(cfg.Members, func(m node.Member) bool { return m.ID == id })
	if *learner && *join == "" {
		return fail("%s is for a member that joins (--join)", s.source("learner"))
	}
	if cfg.PreferredLeaders, err = parseIDs(*preferred); err != nil {
		return fail("%s: %v", s.source("preferred-leader"), err)
	}
	if *join != "" {
		// A joiner needs its own addresses only: the cluster's membership comes from the cluster.
		self := node.LocalCluster(id + 1)[id]
		for _, m := range cfg.Members {
			if m.ID == id {
				self = m
			}
		}
		cfg.Members = []node.Member{self}
		cfg.Learner = *learner
		for _, ep := range strings.Split(*join, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				cfg.Join = append(cfg.Join, ep)
			}
		}
	}
	if *clientAddr != "" || *memberAddr != "" {
		found := false
		for i, m := range cfg.Members {
			if m.ID == id {
				found = true
				if *clientAddr != "" {
					cfg.Members[i].ClientAddr = *clientAddr
				}
				if *memberAddr != "" {
					cfg.Members[i].MemberAddr = *memberAddr
				}
			}
		}
		if !found {
			var given []string
			for _, name := range []string{"client-addr", "member-addr"} {
				if s.set(name) && s.fs.Lookup(name).Value.String() != "" {
					given = append(given, s.source(name))
				}
			}
			list := fmt.Sprintf("the localhost layout of %d members", *size)
			if s.set("members") {
				list = s.source("members")
			}
			return fail("%s set member %d's addresses, which the member list (%s) does not name",
				strings.Join(given, " and "), id, list)
		}
	}
	// Not in the member list: said here in the flags' words, once (Validate says it of its fields).
	if !slices.ContainsFunc(cfg.Members, func(m node.Member) bool { return m.ID == id }) {
		if s.set("members") {
			ids := make([]string, len(cfg.Members))
			for i, m := range cfg.Members {
				ids[i] = strconv.Itoa(m.ID)
			}
			return fail("member %d is not in the member list (members %s: ids %s): give a member list that names it",
				id, s.origins["members"], strings.Join(ids, ", "))
		}
		layout := fmt.Sprintf("the localhost layout of %d members", *size)
		if s.set("size") {
			layout += ", size " + s.origins["size"].String()
		}
		return fail("member %d is not in the member list (members: default, %s): give --members that names it, or --size %d",
			id, layout, id+1)
	}
	cfg.DataDir = *data
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join("data", fmt.Sprintf("node-%d", id))
	}
	cfg.ClientBind, cfg.MemberBind = *clientBind, *memberBind
	cfg.TickInterval, cfg.ElectionTicks, cfg.HeartbeatTicks = *tick, *election, *heartbeat
	cfg.SessionTimeout = *sessionTimeout
	cfg.SnapshotIntervalEntries = *snapEntries
	if *maxClusterVersion > math.MaxUint16 {
		return fail("%s: %d is not a cluster version", s.source("max-cluster-version"), *maxClusterVersion)
	}
	cfg.MaxClusterVersion = uint16(*maxClusterVersion)
	cfg.MaxClientConns, cfg.MaxMemberConns = *maxClientConns, *maxMemberConns
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.ClientCAFile, cfg.AuthTokensFile = *tlsCert, *tlsKey, *clientCA, *authTokens
	// ---- member port TLS (issue 22) ----
	cfg.PeerCertFile, cfg.PeerKeyFile, cfg.PeerCAFile = *peerCert, *peerKey, *peerCA
	for _, n := range strings.Split(*peerAllowed, ",") {
		if n = strings.TrimSpace(n); n != "" {
			cfg.PeerAllowedNames = append(cfg.PeerAllowedNames, n)
		}
	}
	// ---- end of member port TLS ----
	// The HTTP endpoint: http-addr from any source, set and empty meaning none; given by none,
	// the seed layout's 127.0.0.1:9200+id, which is best effort: taken, the member runs without it.
	if s.set("http-addr") {
		cfg.HTTPAddr = *httpAddr
	} else {
		setup.httpDefault = fmt.Sprintf("127.0.0.1:%d", 9200+id)
	}
	// What node.New and inheritedListener would refuse, checked here too, so that --print-config
	// refuses it (they need the listener itself, which --print-config does not open).
	// A bind given empty is no bind (the default), whatever its source: --print-config writes
	// client-bind: "" next to client-fd, and its printout must read back.
	for _, fd := range []struct {
		name       string
		fd         int
		bind, addr string
	}{{"client-fd", *clientFD, "client-bind", *clientBind}, {"member-fd", *memberFD, "member-bind", *memberBind}} {
		if fd.fd != 0 && fd.fd < 3 {
			return fail("%s %d: descriptors 0 to 2 are stdin, stdout and stderr", s.source(fd.name), fd.fd)
		}
		if fd.fd != 0 && fd.addr != "" {
			return fail("%s and %s: a port is either inherited or bound, not both", s.source(fd.name), s.source(fd.bind))
		}
	}
	if err := cfg.Validate(); err != nil {
		return fail("invalid configuration: %s", s.describe(err, id, *clientAddr, *memberAddr))
	}
	setup.cfg, setup.clientFD, setup.memberFD = cfg, *clientFD, *memberFD
	// ---- --insecure (issue 22; insecure.go) ----
	// A port bound to a non-loopback address needs TLS, or --insecure. An inherited socket's
	// address is checked by runNode, once it has it.
	setup.insecure = *insecure
	self := cfg.Members[slices.IndexFunc(cfg.Members, func(m node.Member) bool { return m.ID == id })]
	if err := insecureMemberPort(memberPortBind(cfg.MemberBind, self.MemberAddr, *memberFD), cfg.PeerCertFile != "", *insecure); err != nil {
		return fail("%v", err)
	}
	if err := insecureClientPort(memberPortBind(cfg.ClientBind, self.ClientAddr, *clientFD), cfg.TLSCertFile != "", cfg.ClientCAFile != "" || cfg.AuthTokensFile != "", *insecure); err != nil {
		return fail("%v", err)
	}
	// ---- end of --insecure ----
	// --verbose is log-level debug at verbose's own origin: it wins over a log-level of lower
	// precedence (TANDEM_LOG_LEVEL=warn and --verbose: debug), loses to one of the same or
	// higher (the deprecated spelling never overrides the new one given alike). The level is
	// set in the flag itself, so that --print-config prints the level in force.
	if *verbose && s.origins["verbose"].kind > s.origins["log-level"].kind {
		logLvl.level = slog.LevelDebug
		s.origins["log-level"] = s.origins["verbose"]
	}
	setup.logFormat, setup.logLevel = logFmt, logLvl.level
	setup.warnings = s.warnings
	if *printConfig {
		for _, w := range s.warnings {
			fmt.Fprintf(stderr, "tandem node: warning: %s\n", w)
		}
		derived := map[string]derivedValue{
			"data":    {cfg.DataDir, "./data/node-<id>"},
			"members": {effectiveMembers, "the localhost layout of --size members"},
		}
		// The advertised addresses as the member will give them: its entry in the member list
		// (the founding list, or a joiner's own entry, from the list or the localhost layout).
		self := cfg.Members[slices.IndexFunc(cfg.Members, func(m node.Member) bool { return m.ID == id })]
		how := fmt.Sprintf("member %d's in members", id)
		if !listed {
			how = "the localhost layout's (a joiner the member list does not name)"
		}
		derived["client-addr"] = derivedValue{self.ClientAddr, how}
		derived["member-addr"] = derivedValue{self.MemberAddr, how}
		if setup.httpDefault != "" {
			derived["http-addr"] = derivedValue{setup.httpDefault, "127.0.0.1:9200+id, best effort: skipped with a warning if taken (not so when given)"}
		}
		s.print(stdout, id, idOrigin, derived)
		return setup, exitOK, true
	}
	return setup, exitOK, false
}

// configFlags are the flags that set node.Config's fields, by field, for Validate's errors.
var configFlags = map[string]string{
	"ID": "id", "ClusterID": "cluster-id", "DataDir": "data", "Members": "members", "PreferredLeaders": "preferred-leader",
	"TickInterval": "tick", "ElectionTicks": "election-ticks", "HeartbeatTicks": "heartbeat-ticks",
	"SessionTimeout": "session-timeout", "SnapshotIntervalEntries": "snapshot-entries",
	"MaxClientConns": "max-client-conns", "MaxMemberConns": "max-member-conns", "MaxClusterVersion": "max-cluster-version",
	"ClientBind": "client-bind", "MemberBind": "member-bind", "HTTPAddr": "http-addr", "Join": "join",
	"TLSCertFile": "tls-cert", "TLSKeyFile": "tls-key", "ClientCAFile": "client-ca", "AuthTokensFile": "auth-tokens",
	// member port TLS (issue 22)
	"PeerCertFile": "peer-cert", "PeerKeyFile": "peer-key", "PeerCAFile": "peer-ca", "PeerAllowedNames": "peer-allowed-names",
}

// describe is node.Config.Validate's err in the flags' words: each of its mistakes (a
// *node.FieldError) with the fields named as the flags that set them, then where those flags'
// values came from: "election-ticks (1) must be larger than heartbeat-ticks (1) (election-ticks
// from tandem.yaml, heartbeat-ticks default)". An address of this member (id) that client-addr
// or member-addr gave (clientAddr, memberAddr: "" if none) is named as that flag, not members.
func (s *settings) describe(err error, id int, clientAddr, memberAddr string) string {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	parts := make([]string, len(errs))
	for i, e := range errs {
		var fe *node.FieldError
		if !errors.As(e, &fe) {
			parts[i] = e.Error() // not one of the flags' fields (the replica's own checks)
			continue
		}
		var named []string
		text := fe.Describe(func(field string) string {
			name, ok := configFlags[field]
			if !ok {
				return field // no flag sets it: its default is wrong, a bug
			}
			if field == "Members" && fe.Member == id {
				if fe.Addr == "ClientAddr" && clientAddr != "" {
					name = "client-addr"
				} else if fe.Addr == "MemberAddr" && memberAddr != "" {
					name = "member-addr"
				}
			}
			if !slices.Contains(named, name) {
				named = append(named, name)
			}
			return name
		})
		var from []string
		for _, name := range named {
			if name != "id" {
				from = append(from, name+" "+s.origins[name].String())
			}
		}
		if len(from) > 0 {
			text += " (" + strings.Join(from, ", ") + ")"
		}
		parts[i] = text
	}
	return strings.Join(parts, "; ")
}

// derivedValue is a setting whose default is computed (the data directory from the id): shown
// by --print-config as what it will be, and how it was computed.
type derivedValue struct {
	value, how string
}

// formatMembers writes ms as --members takes them.
func formatMembers(ms []node.Member) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%d,%s,%s", m.ID, m.ClientAddr, m.MemberAddr)
	}
	return strings.Join(parts, "|")
}

// print writes the effective settings as a YAML config file that gives them all (pasted into a
// file and read with --config, it configures the same member), each value's origin in a comment:
// "# default", "# from TANDEM_TICK", "# from --tick", "# from tandem.yaml". derived are the
// values of defaults that are computed, shown as what they will be.
func (s *settings) print(w io.Writer, id int, idOrigin origin, derived map[string]derivedValue) {
	type line struct {
		key, value, comment string
		items               []string // a list, one item to a line (value "")
	}
	lines := []line{{key: "id", value: strconv.Itoa(id), comment: idOrigin.String()}}
	s.fs.VisitAll(func(f *flag.Flag) {
		if notFromSources[f.Name] {
			return
		}
		l := line{key: f.Name, value: yamlValue(f), comment: s.origins[f.Name].String()}
		v := f.Value.String()
		if d, ok := derived[f.Name]; ok && !s.set(f.Name) {
			v, l.value, l.comment = d.value, yamlScalar(d.value), "default: "+d.how
		}
		if f.Name == "members" && v != "" {
			// One member to a line: the list reads back joined with '|' (listSeparators).
			l.value = ""
			for _, m := range strings.Split(v, "|") {
				if m = strings.TrimSpace(m); m != "" {
					l.items = append(l.items, yamlScalar(m))
				}
			}
		}
		lines = append(lines, l)
	})
	sort.SliceStable(lines[1:], func(i, j int) bool { return lines[1+i].key < lines[1+j].key })
	// Comments aligned in a column, but for the odd long value (a member list, a path), which
	// would push the column off the screen.
	const alignMax = 40
	width := 0
	for _, l := range lines {
		if n := len(l.key) + 2 + len(l.value); n <= alignMax {
			width = max(width, n)
		}
	}
	fmt.Fprintf(w, "# tandem node: the effective configuration of member %d (tandem node --print-config).\n", id)
	fmt.Fprintln(w, "# A config file (--config): each comment says where the value came from.")
	if s.config != "" {
		fmt.Fprintf(w, "# Read from config file %s (%s).\n", s.config, s.configOrigin)
	}
	for _, l := range lines {
		kv := l.key + ": " + l.value
		if l.items != nil {
			kv = l.key + ":"
		}
		fmt.Fprintf(w, "%-*s  # %s\n", width, kv, l.comment)
		for _, it := range l.items {
			fmt.Fprintf(w, "  - %s\n", it)
		}
	}
}

// yamlValue is f's value as a YAML scalar of its type: a duration as a string ("100ms"), which
// is how a config file must give it.
func yamlValue(f *flag.Flag) string {
	switch flagType(f) {
	case "int", "uint", "uint64", "bool":
		return f.Value.String()
	}
	return yamlScalar(f.Value.String())
}

// yamlScalar is string v as YAML writes it: plain if that reads back as the same string, quoted
// otherwise ("" and "42" are quoted, 100ms is not).
func yamlScalar(v string) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return strconv.Quote(v) // not reached: a string always marshals
	}
	return strings.TrimSuffix(string(b), "\n")
}
