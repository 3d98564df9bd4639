package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/node"
	"github.com/tandem-cluster/tandem/service"
)

// parseInterspersed parses flags that may stand before or after positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if len(args) > 0 && negativeNumber(args[0]) {
			// An argument, not a flag: "is-leader -1" is refused for its id ("not a member
			// id"), not with "flag provided but not defined" and the whole usage.
			pos, args = append(pos, args[0]), args[1:]
			continue
		}
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func negativeNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return len(s) > 1 && s[0] == '-' && err == nil
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

const nodeHelp = `Usage: tandem node <id> [flags]

Runs member <id> of a cluster, serving the counter service. With no flags, member <id> of the
seed's three-member localhost cluster: clients on 127.0.0.1:9000+id, members on 127.0.0.1:9100+id,
data under ./data/node-<id>. Ctrl+C on the leader hands leadership to a caught-up follower first.

Every flag but --print-config can also be set in the environment, as TANDEM_ and its name in
capitals, dashes as underscores (--election-ticks: TANDEM_ELECTION_TICKS; each flag's help below
ends with its variable), and in a config file (--config FILE or TANDEM_CONFIG; .yaml, .yml or
.toml), whose keys are the flags' names (election-ticks: 10) and key id the member id. The command line wins over the environment, which wins over the file,
which wins over the default. A value that does not parse is an error naming where it came from;
a TANDEM_ variable that is no flag's is ignored with a warning naming the nearest.
--print-config shows the effective configuration, each value's origin in a comment, as a config
file, and exits without starting the member.

Logs: stderr, in slog's text format, with the seed's banners and event lines on stdout; with
--log-format json every line is one JSON object on stderr, the events and banners too ("member
started", "role changed"), and stdout stays empty. Each record carries self (this member's id),
and names another member by its member id, never its raft id. --log-level filters (default
info); warnings and errors are also kept in the data directory's errors.log.

Flags:
`

const nodeExamples = `
Examples:
  tandem node 0                                  # seed layout, member 0
  tandem node 1 --data /var/lib/tandem/1
  tandem node 0 --members "0,10.0.0.1:9000,10.0.0.1:9100|1,10.0.0.2:9000,10.0.0.2:9100|2,10.0.0.3:9000,10.0.0.3:9100"
  TANDEM_MEMBERS="0,localhost:9000,localhost:9100,localhost:9200,localhost:9300,localhost:8010|..." tandem node 0
                                                 # Aeron's member string is accepted too
  tandem node 0 --config deploy/tandem.example.yaml --print-config
                                                 # what member 0 would run with, and why
`

// nodeSetup is what tandem node runs with, once every source is read and checked.
type nodeSetup struct {
	cfg node.Config
	// httpDefault, if set, is the HTTP endpoint's best-effort address (node.WithHTTPDefault):
	// http-addr was given by no source.
	httpDefault        string
	clientFD, memberFD int
	// logFormat and logLevel are --log-format and --log-level (--verbose folded in).
	logFormat logFormat
	logLevel  slog.Level
	// warnings are said once the log is set up (the unknown TANDEM_ variables).
	warnings []string
	// insecure is --insecure: a port may bind a non-loopback address without TLS (insecure.go).
	insecure bool
}

func runNode(args []string) int {
	setup, code, done := prepareNode(args, os.LookupEnv, os.Environ(), os.Stdout, os.Stderr)
	if done {
		return code
	}
	cfg, id := setup.cfg, setup.cfg.ID
	logFmt := setup.logFormat
	cfg.Logger = newLogger(os.Stderr, logFmt, setup.logLevel)
	for _, w := range setup.warnings {
		cfg.Logger.Warn(w, "self", id)
	}
	// jsonLog, in JSON, is where an error that stops the member is said (failed): a log pipeline
	// reads one format, the last line too.
	var jsonLog *slog.Logger
	if logFmt == logFormatJSON {
		jsonLog = cfg.Logger.With("self", id)
	}
	cl, err := inheritedListener("--client-fd", setup.clientFD)
	if err != nil {
		return failed(os.Stderr, jsonLog, "cannot start", err, exitUsage, true)
	}
	ml, err := inheritedListener("--member-fd", setup.memberFD)
	if err != nil {
		return failed(os.Stderr, jsonLog, "cannot start", err, exitUsage, true)
	}
	// ---- --insecure (issue 22; insecure.go) ----
	memberBind := memberPortBind(cfg.MemberBind, selfOf(cfg).MemberAddr, setup.memberFD)
	if ml != nil {
		memberBind = ml.Addr().String() // an inherited socket: checked now that its address is known
		if err := insecureMemberPort(memberBind, cfg.PeerCertFile != "", setup.insecure); err != nil {
			_ = ml.Close()
			return failed(os.Stderr, jsonLog, "cannot start", err, exitUsage, true)
		}
	}
	if memberBind != "" && cfg.PeerCertFile == "" && insecureBind(memberBind) {
		cfg.Logger.Warn(insecureWarning("member", memberBind), "self", id) // (--insecure: prepareNode checked)
	}
	clientBind := memberPortBind(cfg.ClientBind, selfOf(cfg).ClientAddr, setup.clientFD)
	if cl != nil {
		clientBind = cl.Addr().String()
		if err := insecureClientPort(clientBind, cfg.TLSCertFile != "", cfg.ClientCAFile != "" || cfg.AuthTokensFile != "", setup.insecure); err != nil {
			_ = cl.Close()
			if ml != nil {
				_ = ml.Close()
			}
			return failed(os.Stderr, jsonLog, "cannot start", err, exitUsage, true)
		}
	}
	if clientBind != "" && (cfg.TLSCertFile == "" || cfg.ClientCAFile == "" && cfg.AuthTokensFile == "") && insecureBind(clientBind) {
		cfg.Logger.Warn(insecureWarning("client", clientBind), "self", id)
	}
	// ---- end of --insecure ----
	opts := []node.Option{node.WithListeners(cl, ml)}
	if setup.httpDefault != "" {
		opts = append(opts, node.WithHTTPDefault(setup.httpDefault))
	}
	n, err := node.New(cfg, counter.New(), opts...)
	if err != nil {
		return failed(os.Stderr, jsonLog, "cannot start", err, exitUsage, true)
	}
	r := newRenderer(os.Stdout)
	r.cfg = &cfg // the start banner waits for node.EventStarted (see renderer.event)
	if logFmt == logFormatJSON {
		// The member's own log, not Config.Logger: an event record at WARN (member
		// unreachable) is kept in errors.log as the member's own warnings are.
		r.log = n.Logger()
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		r.say(fmt.Sprintf("stopping member %d (leaders hand over first)…", id), "stopping (a leader hands over first)")
		stop()
		<-sigs
		os.Exit(130) // a second Ctrl+C does not wait
	}()
	rendered := make(chan struct{})
	go func() {
		for ev := range n.Events() { // closed when Run returns
			r.event(ev)
		}
		close(rendered)
	}()
	err = n.Run(ctx)
	<-rendered // every event is printed before the last line
	if errors.Is(err, node.ErrShutdown) {
		r.say(err.Error(), "member stopped: the cluster was shut down", "err", err)
		return exitOK
	}
	if err != nil {
		code := exitFailed
		if errors.Is(err, node.ErrCannotApply) {
			code = exitCannotApply
		}
		if errors.Is(err, node.ErrMembersDiffer) {
			code = exitUsage // a member list that disagrees with the data: fix the flags
		}
		return failed(os.Stderr, jsonLog, "member stopped", err, code, false)
	}
	r.say(fmt.Sprintf("member %d stopped", id), "member stopped")
	return exitOK
}

// failed says err, which stops the member, and returns code: in JSON (jsonLog set) as an error
// record msg; in text as the usage error (usage: the hint to the flags follows) or the line
// "tandem node: err".
func failed(stderr io.Writer, jsonLog *slog.Logger, msg string, err error, code int, usage bool) int {
	switch {
	case jsonLog != nil:
		jsonLog.Error(msg, "err", err)
	case usage:
		usageError(stderr, "node", "%v", err)
	default:
		fmt.Fprintf(stderr, "tandem node: %v\n", err)
	}
	return code
}

// inheritedListener is the listening socket the process inherited as file descriptor fd (from a
// supervisor's socket activation, or a test that bound the port first); nil for fd 0.
func inheritedListener(flag string, fd int) (net.Listener, error) {
	if fd == 0 {
		return nil, nil
	}
	if fd < 3 {
		return nil, fmt.Errorf("%s %d: descriptors 0 to 2 are stdin, stdout and stderr", flag, fd)
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("%s %d", flag, fd))
	defer f.Close() // the listener holds a duplicate
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("%s %d is not a listening socket: %w", flag, fd, err)
	}
	return l, nil
}

// renderer prints node events as the seed shows them: banners, colored on a terminal.
type renderer struct {
	w     io.Writer
	color bool
	term  uint64
	lead  int
	// uuid is the cluster identity printed already: it is said once, however often the member
	// learns it again (a restart replays the entry that recorded it).
	uuid string
	// cfg, if set, is the member's configuration: its start banner is printed on
	// node.EventStarted, once the member has accepted its data directory and bound its ports,
	// and the events before it are held until then (a start that fails prints only its error,
	// never a banner that says it started). Nil: events are printed as they come.
	cfg  *node.Config
	held []node.Event
	// log, if set (--log-format json), receives every event as a record instead (record), and
	// nothing is printed: a log pipeline reads one format, so in JSON the banners are records
	// too, not boxes. Nil (text): the seed's walk-through, as it always was.
	log *slog.Logger
}

func newRenderer(w io.Writer) *renderer {
	color := false
	if f, ok := w.(*os.File); ok && os.Getenv("NO_COLOR") == "" {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			color = true
		}
	}
	return &renderer{w: w, color: color, lead: -1}
}

func (r *renderer) paint(code, s string) string {
	if !r.color {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// say prints text as a line of the walk-through or, in JSON, logs msg and attrs at Info.
func (r *renderer) say(text, msg string, attrs ...any) {
	if r.log != nil {
		r.log.Info(msg, attrs...)
		return
	}
	r.line("%s", text)
}

func (r *renderer) line(format string, args ...any) {
	fmt.Fprintf(r.w, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func box(lines ...string) string {
	width := 56
	var b strings.Builder
	b.WriteString("╔" + strings.Repeat("═", width) + "╗\n")
	for _, l := range lines {
		pad := width - 2 - len([]rune(l))
		if pad < 0 {
			pad = 0
		}
		b.WriteString("║  " + l + strings.Repeat(" ", pad) + "║\n")
	}
	b.WriteString("╚" + strings.Repeat("═", width) + "╝")
	return b.String()
}

// selfOf returns the member's own entry in cfg.Members (the first if none is: Validate refuses that).
func selfOf(cfg node.Config) node.Member {
	self := cfg.Members[0]
	for _, m := range cfg.Members {
		if m.ID == cfg.ID {
			self = m
		}
	}
	return self
}

func (r *renderer) startBanner(cfg node.Config) {
	self := selfOf(cfg)
	if r.log != nil {
		r.log.Info("member started", "client_addr", self.ClientAddr, "member_addr", self.MemberAddr, "data", cfg.DataDir)
		return
	}
	fmt.Fprintln(r.w, r.paint("1;36", box(fmt.Sprintf("Tandem node started - Node %d", cfg.ID),
		fmt.Sprintf("clients %s  members %s", self.ClientAddr, self.MemberAddr),
		fmt.Sprintf("data %s", cfg.DataDir))))
}

func roleColor(role service.Role) string {
	switch role {
	case service.Leader:
		return "1;32"
	case service.Candidate, service.PreCandidate:
		return "1;33"
	}
	return "1;34"
}

func (r *renderer) event(ev node.Event) {
	if r.cfg != nil {
		if ev.Kind != node.EventStarted {
			r.held = append(r.held, ev) // bounded: the events of one start, before it serves
			return
		}
		r.startBanner(*r.cfg)
		held := r.held
		r.cfg, r.held = nil, nil
		for _, h := range held {
			r.event(h)
		}
		return
	}
	if r.log != nil {
		r.record(ev)
		return
	}
	switch ev.Kind {
	case node.EventRoleChange:
		bar := strings.Repeat("=", 40)
		leader := "unknown"
		if ev.Leader >= 0 {
			leader = strconv.Itoa(ev.Leader)
		}
		fmt.Fprintln(r.w, r.paint(roleColor(ev.Role), fmt.Sprintf("%s\nROLE CHANGE: %s   (leader %s, term %d)\n%s", bar, ev.Role, leader, ev.Term, bar)))
		if ev.Leader >= 0 && (ev.Leader != r.lead || ev.Term != r.term) {
			fmt.Fprintln(r.w, r.paint("1;35", box("New leader elected", fmt.Sprintf("Leader Member ID: %d", ev.Leader), fmt.Sprintf("Term ID: %d", ev.Term))))
			r.lead, r.term = ev.Leader, ev.Term
		}
	case node.EventSnapshotTaken:
		r.line("snapshot taken at log index %d", ev.Index)
	case node.EventSnapshotInstalled:
		r.line("snapshot installed from the leader at log index %d", ev.Index)
	case node.EventMemberUnreachable:
		r.line("%s", r.paint("33", fmt.Sprintf("member %d unreachable", ev.Member)))
	case node.EventMemberReachable:
		r.line("%s", r.paint("32", fmt.Sprintf("member %d reachable", ev.Member)))
	case node.EventClusterVersion:
		r.line("cluster version %d in force from log index %d (every member applies it)", ev.ClusterVersion, ev.Index)
	case node.EventClusterIdentity:
		if ev.ClusterUUID != r.uuid {
			r.uuid = ev.ClusterUUID
			r.line("cluster identity %s", ev.ClusterUUID)
		}
	case node.EventMembership:
		r.line("membership changed at log index %d (tandem cluster list-members)", ev.Index)
	}
}

// record logs an event as a record (--log-format json): what event prints, one record a line
// and the banners included, with the numbers as attributes. Members are named by member id:
// "member" for the one the event is about, "leader" for the leader.
func (r *renderer) record(ev node.Event) {
	switch ev.Kind {
	case node.EventRoleChange:
		attrs := []any{"role", ev.Role.String(), "term", ev.Term}
		if ev.Leader >= 0 {
			attrs = append(attrs, "leader", ev.Leader)
		}
		// "new leader elected" and "leader lost" are the member's own lines (node.Node's
		// noteLeader), in this same log: not repeated here.
		r.log.Info("role changed", attrs...)
	case node.EventSnapshotTaken:
		r.log.Info("snapshot taken", "index", ev.Index)
	case node.EventSnapshotInstalled:
		r.log.Info("snapshot installed from the leader", "index", ev.Index)
	case node.EventMemberUnreachable:
		r.log.Warn("member unreachable", "member", ev.Member)
	case node.EventMemberReachable:
		r.log.Info("member reachable", "member", ev.Member)
	case node.EventClusterVersion:
		r.log.Info("cluster version in force (every member applies it)", "cluster_version", ev.ClusterVersion, "index", ev.Index)
	case node.EventClusterIdentity:
		if ev.ClusterUUID != r.uuid {
			r.uuid = ev.ClusterUUID
			r.log.Info("cluster identity", "cluster_uuid", ev.ClusterUUID)
		}
	case node.EventMembership:
		r.log.Info("membership changed (tandem cluster list-members)", "index", ev.Index)
	}
}

// parseIDs parses a comma-separated list of member ids ("" is none).
func parseIDs(s string) ([]int, error) {
	var ids []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		id, err := strconv.Atoi(f)
		if err != nil || id < 0 {
			return nil, fmt.Errorf("%q is not a member id (a non-negative integer)", f)
		}
		ids = append(ids, id)
	}
	return ids, nil
}
