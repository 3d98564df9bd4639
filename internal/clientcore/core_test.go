package clientcore

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

const ms = int64(time.Millisecond)

type dialed struct {
	conn     ConnID
	endpoint string
	after    time.Duration
}

type written struct {
	conn ConnID
	m    wire.ClientMsg
}

type outcome struct {
	reply string
	err   error
}

// rec is an Output that records the core's decisions.
type rec struct {
	dials   []dialed
	writes  []written
	hangups []ConnID
	done    map[string]outcome // by the ref, a name
	pushes  []string
}

func (r *rec) Dial(conn ConnID, endpoint string, after time.Duration) {
	r.dials = append(r.dials, dialed{conn, endpoint, after})
}
func (r *rec) Write(conn ConnID, m *wire.ClientMsg) {
	cp := *m
	cp.Payload = slices.Clone(m.Payload)
	r.writes = append(r.writes, written{conn, cp})
}
func (r *rec) Hangup(conn ConnID) { r.hangups = append(r.hangups, conn) }
func (r *rec) Complete(ref any, reply []byte, err error) {
	name := ref.(string)
	if _, dup := r.done[name]; dup {
		panic("completed twice: " + name)
	}
	r.done[name] = outcome{string(reply), err}
}

func (r *rec) Push(payload []byte) { r.pushes = append(r.pushes, string(payload)) }

func (r *rec) lastDial() dialed { return r.dials[len(r.dials)-1] }

// take returns the messages written since the last take.
func (r *rec) take() []wire.ClientMsg {
	var ms []wire.ClientMsg
	for _, w := range r.writes {
		ms = append(ms, w.m)
	}
	r.writes = nil
	return ms
}

func testConfig() Config {
	return Config{
		Endpoints:         []string{"a", "b", "c"},
		AttemptTimeout:    time.Second,
		KeepAliveInterval: 2 * time.Second,
		BackoffMin:        20 * time.Millisecond,
		BackoffMax:        200 * time.Millisecond,
		MaxRedirects:      3,
		MaxInFlight:       8,
		Jitter:            func(n int64) int64 { return n - 1 }, // the longest wait: predictable
	}
}

// harness is a core with a recording output and a clock.
type harness struct {
	t   *testing.T
	s   *Core
	out *rec
	now int64
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, out: &rec{done: map[string]outcome{}}, now: 1000 * ms}
	h.s = New(cfg, wire.SessionID{9}, h.out)
	return h
}

func (h *harness) at(d time.Duration) int64 { h.now += int64(d); return h.now }

// connect runs the pending dial to success and answers the open or attach.
func (h *harness) connect() ConnID {
	h.t.Helper()
	d := h.out.lastDial()
	h.s.Connected(d.conn, h.at(d.after+time.Millisecond))
	return d.conn
}

func (h *harness) recv(conn ConnID, m wire.ClientMsg) {
	h.s.Heard(conn, h.at(time.Millisecond))
	h.s.Received(conn, &m)
}

func (h *harness) attach(conn ConnID) {
	h.recv(conn, wire.ClientMsg{Kind: wire.CAttached, Session: h.s.Session()})
}

func (h *harness) submit(name, payload string) wire.Seq {
	h.t.Helper()
	seq, err := h.s.Submit(h.now, []byte(payload), name, 0)
	if err != nil {
		h.t.Fatalf("submit %s: %v", name, err)
	}
	return seq
}

func kinds(ms []wire.ClientMsg) string {
	var b strings.Builder
	for _, m := range ms {
		switch m.Kind {
		case wire.COpen:
			b.WriteString("open ")
		case wire.CAttach:
			b.WriteString("attach ")
		case wire.CCommand:
			b.WriteString("cmd" + string(rune('0'+m.Seq)) + "/" + string(rune('0'+m.LowestUnacked)) + " ")
		case wire.CQuery:
			b.WriteString("query ")
		case wire.CKeepAlive:
			b.WriteString("keepalive ")
		case wire.CClose:
			b.WriteString("close ")
		case wire.CAdmin:
			b.WriteString("admin ")
		default:
			b.WriteString("? ")
		}
	}
	return strings.TrimSpace(b.String())
}

// Commands are numbered from 1, ride with the open, and after a failover every unanswered one
// is resent in order under its original number behind the attach, with the lowest
// unacknowledged number.
func TestNumberingAndResendUnderTheSameNumbers(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	if d := h.out.lastDial(); d.endpoint != "a" || d.after != 0 {
		t.Fatalf("first dial %+v", d)
	}
	h.submit("x1", "p1") // before any connection: waits
	c1 := h.connect()
	h.submit("x2", "p2")
	if got := kinds(h.out.take()); got != "open cmd1/1 cmd2/1" {
		t.Fatalf("first connection wrote %q", got)
	}
	h.attach(c1)
	if got := kinds(h.out.take()); got != "" {
		t.Fatalf("the attach resent what rode with the open: %q", got)
	}
	h.recv(c1, wire.ClientMsg{Kind: wire.CResponse, Seq: 1, Payload: []byte("r1")})
	h.submit("x3", "p3")
	if got := kinds(h.out.take()); got != "cmd3/2" {
		t.Fatalf("attached: %q", got)
	}
	// The connection fails with 2 and 3 unanswered: both are resent on the next one.
	h.s.Failed(c1, h.at(time.Millisecond))
	d := h.out.lastDial()
	if d.endpoint != "b" || d.after == 0 {
		t.Fatalf("after a failure the core dials %+v, want the next endpoint after a backoff", d)
	}
	c2 := h.connect()
	if got := kinds(h.out.take()); got != "attach cmd2/2 cmd3/2" {
		t.Fatalf("second connection wrote %q, want the attach, then 2 and 3 under their numbers", got)
	}
	h.attach(c2)
	if got := kinds(h.out.take()); got != "" {
		t.Fatalf("the attach resent %q", got)
	}
	h.recv(c2, wire.ClientMsg{Kind: wire.CResponse, Seq: 3, Payload: []byte("r3")})
	h.recv(c2, wire.ClientMsg{Kind: wire.CResponse, Seq: 2, Payload: []byte("r2")})
	h.recv(c2, wire.ClientMsg{Kind: wire.CResponse, Seq: 2, Payload: []byte("again")}) // a duplicate answer: ignored
	for name, want := range map[string]string{"x1": "r1", "x2": "r2", "x3": "r3"} {
		if got := h.out.done[name]; got.err != nil || got.reply != want {
			t.Fatalf("%s completed with %+v, want %q", name, got, want)
		}
	}
	h.submit("x4", "p4")
	if got := kinds(h.out.take()); got != "cmd4/4" {
		t.Fatalf("after all answered: %q", got)
	}
	// What a connection the core left delivers is ignored.
	h.recv(c1, wire.ClientMsg{Kind: wire.CResponse, Seq: 4, Payload: []byte("stale")})
	if _, ok := h.out.done["x4"]; ok {
		t.Fatal("an answer on a connection the core left completed a command")
	}
}

// A redirect is followed at once to a fresh hint; a hint from an older term is ignored; after
// MaxRedirects hops the core backs off and tries the configured endpoints again.
func TestRedirects(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	c := h.connect()
	h.recv(c, wire.ClientMsg{Kind: wire.CRedirect, Term: 5, LeaderID: 2, LeaderAddr: "c"})
	if d := h.out.lastDial(); d.endpoint != "c" || d.after != 0 || !slices.Contains(h.out.hangups, c) {
		t.Fatalf("redirect to c (term 5): dial %+v, hangups %v", d, h.out.hangups)
	}
	c = h.connect()
	h.recv(c, wire.ClientMsg{Kind: wire.CRedirect, Term: 4, LeaderID: 0, LeaderAddr: "a"})
	if d := h.out.lastDial(); d.endpoint != "b" {
		t.Fatalf("after an old hint the core dials %q, want the next configured endpoint", d.endpoint)
	}
	// Hops 3 and 4 (MaxRedirects is 3): a redirect without a hint counts too, or members that
	// know no leader would be tried in a loop without a pause.
	for i := 3; i <= 4; i++ {
		c = h.connect()
		h.recv(c, wire.ClientMsg{Kind: wire.CRedirect, Term: 6, LeaderID: -1})
		if d := h.out.lastDial(); (d.after == 0) != (i <= 3) {
			t.Fatalf("after %d hops the core dials %+v", i, d)
		}
	}
	if st := h.s.Stats(); st.Redirects != 4 {
		t.Fatalf("redirects counted %d, want 4", st.Redirects)
	}
}

// A member that stays silent while the client waits is abandoned after AttemptTimeout, so is a
// dial that never completes; an idle attached session sends keep-alives.
func TestSilentMemberAbandonedAndKeepAlives(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	c := h.connect()
	h.attach(c)
	h.out.take()
	h.s.Tick(h.at(1500 * time.Millisecond))
	if got := kinds(h.out.take()); got != "" {
		t.Fatalf("idle for 1.5 s (keep-alive interval 2 s): %q", got)
	}
	h.s.Tick(h.at(600 * time.Millisecond))
	if got := kinds(h.out.take()); got != "keepalive" {
		t.Fatalf("idle for 2.1 s: %q, want a keep-alive", got)
	}
	h.recv(c, wire.ClientMsg{Kind: wire.CKeepAliveAck})
	h.submit("x", "p")
	h.out.take()
	h.s.Tick(h.at(900 * time.Millisecond))
	if len(h.out.hangups) != 0 {
		t.Fatal("abandoned before AttemptTimeout")
	}
	h.s.Tick(h.at(200 * time.Millisecond))
	if !slices.Contains(h.out.hangups, c) || h.s.Stats().Timeouts != 1 {
		t.Fatalf("a member silent for 1.1 s with a command unanswered was not abandoned: %v", h.out.hangups)
	}
	// The next dial never completes: abandoned too.
	d := h.out.lastDial()
	h.s.Tick(h.at(d.after + 1100*time.Millisecond))
	if !slices.Contains(h.out.hangups, d.conn) {
		t.Fatal("a dial that never completed was not abandoned")
	}
	// Its late success is hung up.
	h.s.Connected(d.conn, h.at(time.Millisecond))
	if n := len(h.out.hangups); h.out.hangups[n-1] != d.conn {
		t.Fatal("a connection the core gave up on was not hung up when it completed")
	}
}

// Issue 15, client liveness: a command answered "unavailable" on a healthy connection is resent
// under its number after a backoff, until it is answered.
func TestUnavailableIsResentAfterABackoff(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	c := h.connect()
	h.attach(c)
	seq := h.submit("x", "p")
	h.out.take()
	for i := range 3 {
		h.recv(c, wire.ClientMsg{Kind: wire.CResponse, Seq: seq, Status: wire.StatusUnavailable, Payload: []byte("no quorum")})
		h.s.Tick(h.at(5 * time.Millisecond))
		if got := kinds(h.out.take()); got != "" {
			t.Fatalf("refusal %d: resent at once: %q", i, got)
		}
		h.s.Tick(h.at(400 * time.Millisecond))
		if got := kinds(h.out.take()); got != "cmd1/1" {
			t.Fatalf("refusal %d: after the backoff the core wrote %q, want the command again", i, got)
		}
	}
	h.recv(c, wire.ClientMsg{Kind: wire.CResponse, Seq: seq, Payload: []byte("ok")})
	if got := h.out.done["x"]; got.err != nil || got.reply != "ok" {
		t.Fatalf("completed with %+v", got)
	}
}

// What the cluster refused is reported as not applied, with its reason: at once for a lasting
// refusal (a limit) of a command no other attempt of which may have been applied; a command
// that an earlier attempt may have applied is resent instead (the record answers it).
func TestRefusalsAreNotApplied(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	c := h.connect()
	h.attach(c)
	a := h.submit("a", "p")
	h.recv(c, wire.ClientMsg{Kind: wire.CResponse, Seq: a, Status: wire.StatusRejected, Payload: []byte("response window full")})
	if got := h.out.done["a"]; !errors.Is(got.err, ErrNotApplied) || !strings.Contains(got.err.Error(), "response window full") {
		t.Fatalf("a rejected command completed with %+v", got)
	}
	b := h.submit("b", "p")
	h.s.Failed(c, h.at(time.Millisecond)) // b may have been applied
	c = h.connect()
	h.attach(c)
	h.out.take()
	h.recv(c, wire.ClientMsg{Kind: wire.CResponse, Seq: b, Status: wire.StatusRejected, Payload: []byte("budget")})
	if _, ok := h.out.done["b"]; ok {
		t.Fatalf("a command an earlier attempt may have applied was reported: %+v", h.out.done["b"])
	}
	h.s.Tick(h.at(time.Second))
	if got := kinds(h.out.take()); got != "cmd2/2" {
		t.Fatalf("the refused resend was not resent: %q", got)
	}
	h.recv(c, wire.ClientMsg{Kind: wire.CResponse, Seq: b, Payload: []byte("from the record")})
	if got := h.out.done["b"]; got.err != nil || got.reply != "from the record" {
		t.Fatalf("b completed with %+v", got)
	}
}

// Every call completes by its deadline, saying whether it may have been applied: never sent and
// refused every time are not applied (with the cluster's reason), sent and unanswered is of
// unknown outcome. The number given up on is never sent again, and the lowest unacknowledged
// number moves past it.
func TestDeadlines(t *testing.T) {
	cfg := testConfig()
	h := newHarness(t, cfg)
	h.s.Start(h.now)
	deadline := h.now + int64(time.Second)
	if _, err := h.s.Submit(h.now, []byte("p"), "never", deadline); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Query(h.now, []byte("q"), "query", deadline); err != nil {
		t.Fatal(err)
	}
	h.s.Tick(h.at(1100 * time.Millisecond)) // (the dial was abandoned meanwhile too)
	if got := h.out.done["never"]; !errors.Is(got.err, ErrNotApplied) || !errors.Is(got.err, ErrTimeout) || !strings.Contains(got.err.Error(), "reachable") {
		t.Fatalf("a command never sent, past its deadline: %+v", got)
	}
	if got := h.out.done["query"]; !errors.Is(got.err, ErrTimeout) {
		t.Fatalf("a query past its deadline: %+v", got)
	}

	c := h.connect()
	h.attach(c)
	deadline = h.now + int64(time.Second)
	sent, _ := h.s.Submit(h.now, []byte("p"), "sent", deadline)
	refused, _ := h.s.Submit(h.now, []byte("p"), "refused", deadline)
	h.recv(c, wire.ClientMsg{Kind: wire.CResponse, Seq: refused, Status: wire.StatusUnavailable, Payload: []byte("uncommitted limit")})
	for h.now < deadline+100*ms {
		h.s.Tick(h.at(100 * time.Millisecond))
		for _, m := range h.out.take() {
			if m.Seq == refused {
				h.recv(c, wire.ClientMsg{Kind: wire.CResponse, Seq: refused, Status: wire.StatusUnavailable, Payload: []byte("uncommitted limit")})
			}
		}
		h.recv(c, wire.ClientMsg{Kind: wire.CKeepAliveAck}) // the member is alive
	}
	if got := h.out.done["sent"]; !errors.Is(got.err, ErrOutcomeUnknown) || !errors.Is(got.err, ErrTimeout) {
		t.Fatalf("a sent command past its deadline: %+v", got)
	}
	if got := h.out.done["refused"]; !errors.Is(got.err, ErrNotApplied) || !strings.Contains(got.err.Error(), "uncommitted limit") {
		t.Fatalf("a command refused until its deadline: %+v", got)
	}
	if c, _ := h.s.Unanswered(); c != 0 || h.s.calls.low != h.s.calls.next {
		t.Fatalf("after the deadlines: %d unanswered, low %d next %d", c, h.s.calls.low, h.s.calls.next)
	}
	h.submit("next", "p")
	for _, m := range h.out.take() {
		if m.Seq == sent || m.Seq == refused {
			t.Fatalf("a command given up on was sent again: %+v", m)
		}
		if m.Kind == wire.CCommand && m.LowestUnacked != m.Seq {
			t.Fatalf("the lowest unacknowledged number did not move past the given-up ones: %+v", m)
		}
	}
	// Cancel (the caller's context) classifies the same way.
	x := h.submit("cancelled", "p")
	h.s.Cancel(h.now, x, ErrDeadline)
	if got := h.out.done["cancelled"]; !errors.Is(got.err, ErrOutcomeUnknown) {
		t.Fatalf("a cancelled sent command: %+v", got)
	}
}

// Issue 15, session limit: a refused open ends the session at once with the cluster's reason,
// and the core dials no more.
func TestSessionRefused(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	h.submit("x", "p")
	c := h.connect()
	h.recv(c, wire.ClientMsg{Kind: wire.CSessionEvent, Status: wire.StatusRejected, Payload: []byte("session limit reached: 5 sessions open (SessionsMax 5)")})
	err := h.s.Err()
	if !errors.Is(err, ErrSessionRefused) || !strings.Contains(err.Error(), "SessionsMax 5") {
		t.Fatalf("terminal error %v", err)
	}
	if got := h.out.done["x"]; got.err == nil {
		t.Fatalf("a command of the refused session: %+v", got)
	}
	dials := len(h.out.dials)
	for range 20 {
		h.s.Tick(h.at(time.Second))
	}
	if len(h.out.dials) != dials {
		t.Fatalf("the core kept dialing after the refusal: %d dials", len(h.out.dials)-dials)
	}
	if _, err := h.s.Submit(h.now, []byte("p"), "y", 0); !errors.Is(err, ErrSessionRefused) {
		t.Fatalf("submit after the refusal: %v", err)
	}
}

// Issue 15, oversized commands: the limits announced on attach hold: a larger payload is refused
// before it is sent, naming the limit, and a smaller window lowers MaxInFlight.
func TestAnnouncedLimits(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	if _, err := h.s.Submit(h.now, make([]byte, wire.MaxPayloadBytes+1), "big", 0); !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrNotApplied) {
		t.Fatalf("before the attach, a payload over wire.MaxPayloadBytes: %v", err)
	}
	c := h.connect()
	h.recv(c, wire.ClientMsg{Kind: wire.CAttached, CommandBytesMax: 100, WindowMax: 3})
	if _, err := h.s.Submit(h.now, make([]byte, 101), "big", 0); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "at most 100") {
		t.Fatalf("a command over the announced limit: %v", err)
	}
	if _, err := h.s.Query(h.now, make([]byte, 101), "bigq", 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a query over the announced limit: %v", err)
	}
	h.out.take()
	for i := range 3 {
		h.submit(string(rune('a'+i)), "p")
	}
	if _, err := h.s.Submit(h.now, []byte("p"), "d", 0); !errors.Is(err, ErrInFlightFull) {
		t.Fatalf("a fourth command with an announced window of 3: %v", err)
	}
	if got := kinds(h.out.take()); got != "cmd1/1 cmd2/1 cmd3/1" {
		t.Fatalf("written: %q", got)
	}
	if len(h.out.done) != 0 {
		t.Fatalf("refused submissions completed: %v", h.out.done)
	}
}

// Expiry and Close end the session: what may have been applied completes as of unknown outcome,
// what was refused or never sent as not applied, queries with the cause.
func TestExpiryAndClose(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	c := h.connect()
	h.attach(c)
	h.submit("sent", "p")
	refused := h.submit("refused", "p")
	h.recv(c, wire.ClientMsg{Kind: wire.CResponse, Seq: refused, Status: wire.StatusUnavailable})
	if _, err := h.s.Query(h.now, []byte("q"), "q", 0); err != nil {
		t.Fatal(err)
	}
	h.recv(c, wire.ClientMsg{Kind: wire.CSessionEvent, Status: wire.StatusSessionExpired, Reason: 1})
	if got := h.out.done["sent"]; !errors.Is(got.err, ErrOutcomeUnknown) || !errors.Is(got.err, ErrSessionExpired) {
		t.Fatalf("sent: %+v", got)
	}
	if got := h.out.done["refused"]; !errors.Is(got.err, ErrNotApplied) || !errors.Is(got.err, ErrSessionExpired) {
		t.Fatalf("refused: %+v", got)
	}
	if got := h.out.done["q"]; !errors.Is(got.err, ErrSessionExpired) {
		t.Fatalf("query: %+v", got)
	}
	if !slices.Contains(h.out.hangups, c) {
		t.Fatal("the connection of an expired session was not hung up")
	}

	h2 := newHarness(t, testConfig())
	h2.s.Start(h2.now)
	h2.submit("pending", "p")
	h2.s.Close(ErrClosed)
	if got := h2.out.done["pending"]; !errors.Is(got.err, ErrClosed) || !errors.Is(got.err, ErrNotApplied) {
		t.Fatalf("pending at Close: %+v", got)
	}
	if !slices.Contains(h2.out.hangups, h2.out.lastDial().conn) {
		t.Fatal("Close did not abandon the dial under way")
	}
}

// Queries go out on any connection, are answered by id, and are resent after "unavailable".
func TestQueries(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	id, _ := h.s.Query(h.now, []byte("get"), "q", 0)
	c := h.connect()
	if got := kinds(h.out.take()); got != "open query" {
		t.Fatalf("connected: %q", got)
	}
	h.recv(c, wire.ClientMsg{Kind: wire.CQueryResponse, RequestID: id, Status: wire.StatusUnavailable, Payload: []byte("read timeout")})
	h.s.Tick(h.at(300 * time.Millisecond))
	if got := kinds(h.out.take()); got != "query" {
		t.Fatalf("after an unavailable answer and a backoff: %q", got)
	}
	h.recv(c, wire.ClientMsg{Kind: wire.CQueryResponse, RequestID: id, Payload: []byte("7")})
	if got := h.out.done["q"]; got.err != nil || got.reply != "7" {
		t.Fatalf("query completed with %+v", got)
	}
}

// An open the member refuses for now (its proposal dropped, its ingress queue full) is asked
// again after a backoff, with the commands that ride with it resent once it is attached.
func TestRefusedOpenIsRepeated(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	h.submit("x", "p")
	c := h.connect()
	if got := kinds(h.out.take()); got != "open cmd1/1" {
		t.Fatalf("connected: %q", got)
	}
	h.recv(c, wire.ClientMsg{Kind: wire.CResponse, Seq: 0, Status: wire.StatusUnavailable, Payload: []byte("uncommitted limit")})
	h.recv(c, wire.ClientMsg{Kind: wire.CResponse, Seq: 1, Status: wire.StatusUnavailable, Payload: []byte("uncommitted limit")})
	h.s.Tick(h.at(300 * time.Millisecond))
	if got := kinds(h.out.take()); got != "open" {
		t.Fatalf("after the refusal and a backoff: %q, want the open again", got)
	}
	h.attach(c)
	if got := kinds(h.out.take()); got != "cmd1/1" {
		t.Fatalf("attached: %q, want the refused command again", got)
	}
}

// Waiting tells a program what the core waits for: the endpoints it reached on their latest
// attempt, the majority it needs, the leader it last knew (attached to, or named by a redirect).
func TestWaiting(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	if w := h.s.Waiting(); w != (Waiting{Members: 3, Need: 2}) || w.String() != "reachable 0 of 3, need 2" {
		t.Fatalf("before any connection: %+v %q", w, w)
	}
	c := h.connect() // a
	h.recv(c, wire.ClientMsg{Kind: wire.CRedirect, Term: 2, LeaderID: 1, LeaderAddr: "b"})
	if w := h.s.Waiting(); w != (Waiting{Leader: "b", Reachable: 1, Members: 3, Need: 2}) {
		t.Fatalf("after a redirect to b: %+v", w)
	}
	c = h.connect() // b
	h.attach(c)
	if w := h.s.Waiting(); w != (Waiting{Attached: true, Leader: "b", Reachable: 2, Members: 3, Need: 2}) || w.String() != "attached to b" {
		t.Fatalf("attached to b: %+v %q", w, w)
	}
	h.s.Failed(c, h.at(time.Millisecond))
	if w := h.s.Waiting(); w != (Waiting{Leader: "b", Reachable: 1, Members: 3, Need: 2}) || w.String() != "reachable 1 of 3, need 2" {
		t.Fatalf("b failed: %+v %q", w, w)
	}
}

// The in-flight limit follows the window the member announces on each attach (a new leader
// may have another), and never goes above MaxInFlight.
func TestWindowFollowsEachAnnouncement(t *testing.T) {
	h := newHarness(t, testConfig()) // MaxInFlight 8
	h.s.Start(h.now)
	fill := func(what string, want int) {
		t.Helper()
		n := 0
		for ; n < 20; n++ {
			if _, err := h.s.Submit(h.now, []byte("p"), what+string(rune('a'+n)), 0); err != nil {
				if !errors.Is(err, ErrInFlightFull) {
					t.Fatal(err)
				}
				break
			}
		}
		if _, queries := h.s.Unanswered(); n != want || queries != 0 {
			t.Fatalf("%s: %d more commands taken, want %d", what, n, want)
		}
	}
	c := h.connect()
	h.recv(c, wire.ClientMsg{Kind: wire.CAttached, WindowMax: 3})
	fill("window 3", 3)
	h.s.Failed(c, h.at(time.Millisecond))
	c = h.connect()
	h.recv(c, wire.ClientMsg{Kind: wire.CAttached, WindowMax: 5})
	fill("window 5", 2) // 3 still in flight
	h.s.Failed(c, h.at(time.Millisecond))
	c = h.connect()
	h.recv(c, wire.ClientMsg{Kind: wire.CAttached, WindowMax: 100})
	fill("window 100", 3) // MaxInFlight 8
	h.s.Failed(c, h.at(time.Millisecond))
	c = h.connect()
	h.recv(c, wire.ClientMsg{Kind: wire.CAttached, WindowMax: 2})
	if h.s.Room() {
		t.Fatal("8 in flight and a window of 2: room for more")
	}
	for seq := wire.Seq(1); seq <= 6; seq++ {
		h.recv(c, wire.ClientMsg{Kind: wire.CResponse, Seq: seq, Payload: []byte("r")})
	}
	if h.s.Room() {
		t.Fatal("2 in flight and a window of 2: room for more")
	}
	h.recv(c, wire.ClientMsg{Kind: wire.CResponse, Seq: 7, Payload: []byte("r")})
	fill("window 2", 1)
}

// Pushes on the current connection reach the driver in order, before the attach too (a service
// may push from OnSessionOpen); not from a connection the core left, nor once the session ended.
func TestPushes(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	c := h.connect()
	h.recv(c, wire.ClientMsg{Kind: wire.CPush, Payload: []byte("welcome")})
	h.attach(c)
	h.recv(c, wire.ClientMsg{Kind: wire.CPush, Payload: []byte("p1")})
	h.recv(c, wire.ClientMsg{Kind: wire.CPush, Payload: []byte("p2")})
	h.s.Failed(c, h.at(time.Millisecond))
	h.recv(c, wire.ClientMsg{Kind: wire.CPush, Payload: []byte("stale")})
	c = h.connect()
	h.attach(c)
	h.recv(c, wire.ClientMsg{Kind: wire.CPush, Payload: []byte("p3")})
	h.s.Close(ErrClosed)
	h.recv(c, wire.ClientMsg{Kind: wire.CPush, Payload: []byte("late")})
	if got := strings.Join(h.out.pushes, " "); got != "welcome p1 p2 p3" {
		t.Fatalf("pushes delivered: %q", got)
	}
}

// CloseSession gives up on what is unanswered at once, then asks the leader to close the
// session, following failovers, until the cluster says it is closed. Nothing is submitted or
// delivered meanwhile.
func TestCloseSession(t *testing.T) {
	h := newHarness(t, testConfig())
	h.s.Start(h.now)
	c := h.connect()
	h.attach(c)
	h.submit("sent", "p")
	h.out.take()
	if !h.s.CloseSession(h.now, ErrClosed) || !h.s.Closing() || h.s.Closed() {
		t.Fatal("a close of an attached session is not under way")
	}
	if got := h.out.done["sent"]; !errors.Is(got.err, ErrOutcomeUnknown) || !errors.Is(got.err, ErrClosed) {
		t.Fatalf("sent before the close: %+v", got)
	}
	if got := kinds(h.out.take()); got != "close" {
		t.Fatalf("close wrote %q", got)
	}
	if _, err := h.s.Submit(h.now, []byte("p"), "late", 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("submit while closing: %v", err)
	}
	h.recv(c, wire.ClientMsg{Kind: wire.CPush, Payload: []byte("push")})
	if len(h.out.pushes) != 0 {
		t.Fatal("a push was delivered while closing")
	}
	// No keep-alive while the close waits; a member silent for AttemptTimeout is abandoned.
	h.s.Tick(h.at(900 * time.Millisecond))
	if got := kinds(h.out.take()); got != "" || len(h.out.hangups) != 0 {
		t.Fatalf("0.9 s into the close: wrote %q, hangups %v", got, h.out.hangups)
	}
	h.s.Tick(h.at(200 * time.Millisecond))
	if !slices.Contains(h.out.hangups, c) {
		t.Fatal("a member silent for 1.1 s after the close was not abandoned")
	}
	// The next member redirects to the leader; there the close is asked again once attached.
	c = h.connect()
	if got := kinds(h.out.take()); got != "attach" {
		t.Fatalf("a new connection while closing wrote %q, want the attach only", got)
	}
	h.recv(c, wire.ClientMsg{Kind: wire.CRedirect, Term: 3, LeaderID: 2, LeaderAddr: "c"})
	if d := h.out.lastDial(); d.endpoint != "c" {
		t.Fatalf("redirect while closing: dialed %+v", d)
	}
	c = h.connect()
	h.attach(c)
	if got := kinds(h.out.take()); got != "attach close" {
		t.Fatalf("attached while closing: wrote %q", got)
	}
	h.recv(c, wire.ClientMsg{Kind: wire.CSessionEvent, Reason: 1}) // service.CloseClient
	if h.s.Closing() || !h.s.Closed() || !slices.Contains(h.out.hangups, c) {
		t.Fatalf("after the cluster's word: closing %v, closed %v, hangups %v", h.s.Closing(), h.s.Closed(), h.out.hangups)
	}
	if !errors.Is(h.s.Err(), ErrClosed) {
		t.Fatalf("Err after the close: %v", h.s.Err())
	}

	// A session found expired is closed too.
	h2 := newHarness(t, testConfig())
	h2.s.Start(h2.now)
	c = h2.connect()
	h2.attach(c)
	h2.s.CloseSession(h2.now, ErrClosed)
	h2.recv(c, wire.ClientMsg{Kind: wire.CSessionEvent, Status: wire.StatusSessionExpired, Reason: 3})
	if h2.s.Closing() || !h2.s.Closed() {
		t.Fatal("a session found expired while closing is not closed")
	}

	// Given up on: Close ends the core without the cluster's word.
	h3 := newHarness(t, testConfig())
	h3.s.Start(h3.now)
	c = h3.connect()
	h3.attach(c)
	h3.s.CloseSession(h3.now, ErrClosed)
	h3.s.Close(ErrClosed)
	if h3.s.Closing() || h3.s.Closed() || !slices.Contains(h3.out.hangups, c) {
		t.Fatal("Close during a close: the core did not end unconfirmed")
	}
	h3.s.Tick(h3.at(10 * time.Second))
	if n := len(h3.out.dials); n != 1 {
		t.Fatalf("the core dialed %d times after Close", n)
	}

	// No session to close: never confirmed by the cluster, or already ended.
	h4 := newHarness(t, testConfig())
	h4.s.Start(h4.now)
	h4.connect()
	if h4.s.CloseSession(h4.now, ErrClosed) || h4.s.Closing() || !errors.Is(h4.s.Err(), ErrClosed) {
		t.Fatal("a session never opened: a close is under way")
	}
	if got := kinds(h4.out.take()); got != "open" {
		t.Fatalf("a session never opened: wrote %q", got)
	}
}

// A session the cluster says is closed ends with ErrSessionExpired naming why, when the cluster
// recorded it (cluster version 2); a reason of 0 (not recorded) says no more than before.
func TestSessionEndedNamesTheReason(t *testing.T) {
	for reason, want := range map[uint8]string{
		uint8(service.CloseClient): "closed by a client", uint8(service.CloseService): "closed by the service",
		uint8(service.CloseTimeout): "timed out", 0: ErrSessionExpired.Error(),
	} {
		err := sessionEnded(reason)
		if !errors.Is(err, ErrSessionExpired) || !strings.Contains(err.Error(), want) {
			t.Errorf("reason %d: %v, want one saying %q", reason, err, want)
		}
	}
}
