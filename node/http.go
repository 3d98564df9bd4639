package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// The member's HTTP endpoint (Config.HTTPAddr, WithHTTPListener) serves
//
//	/metrics  Prometheus metrics (metrics.go), from the node's own registry
//	/livez    200 while the member's loop turns; 503 when it has not ticked for livezStaleTicks
//	          ticks (it is stuck) or it stopped
//	/readyz   200 when a leader is known and this member is caught up; 503 with the reason
//	/status   the member's Status as JSON, in tandem cluster status --json's names (httpStatus),
//	          with the probes' answers
//
// Its handlers read what Status publishes (under n.mu, held for a copy) and atomics: a scrape or
// a probe never waits for the loop, and the loop never waits for them. The server is bounded:
// timeouts on every phase of a request, a small header limit, and few handlers that each answer
// from memory.

// Bounds of the HTTP server.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 10 * time.Second
	httpWriteTimeout      = 30 * time.Second
	httpIdleTimeout       = 60 * time.Second
	httpHeaderBytesMax    = 16 << 10
	// livezStaleTicks: a loop that has not ticked for this many ticks (and at least
	// livezStaleMin) is stuck. A round of the loop is bounded to less than a tick of work
	// (takeRound), so even a flood leaves it far below.
	livezStaleTicks = 20
	livezStaleMin   = 2 * time.Second
	// readyLagEntries: a member whose applied index is further than this behind its commit
	// index is catching up, not ready.
	readyLagEntries = 1000
)

// WithHTTPListener makes Run serve the member's HTTP endpoint on l instead of binding
// Config.HTTPAddr (which must then be empty); Run closes it when it returns, as it does the
// listeners of WithListeners.
func WithHTTPListener(l net.Listener) Option {
	return func(n *Node) { n.httpL = l }
}

// WithHTTPDefault makes Run serve the member's HTTP endpoint at addr if it can bind it, after it
// has locked the data directory; if the port is taken it logs a warning and runs without the
// endpoint. It is for a default address (tandem node's 127.0.0.1:9200+id), which must not stop a
// member that was given no address: Config.HTTPAddr or WithHTTPListener, when given, win.
func WithHTTPDefault(addr string) Option {
	return func(n *Node) { n.httpDefault = addr }
}

// Live says whether the member's loop is turning: nil while it ticks (or has not started yet:
// a member joining a cluster, or asking it whether it may start, is alive), an error saying why
// not otherwise.
func (n *Node) Live() error {
	if n.metrics.ended.Load() {
		return errors.New("the member stopped")
	}
	hb := n.metrics.heartbeat.Load()
	if hb == 0 {
		return nil
	}
	stale := max(livezStaleTicks*n.cfg.TickInterval, livezStaleMin)
	if age := time.Since(time.Unix(0, hb)); age > stale {
		return fmt.Errorf("the member's loop has not ticked for %s (more than %s)", age.Round(time.Millisecond), stale)
	}
	return nil
}

// Ready says whether the member can serve: nil when a leader is known, this member may vote (it
// is not unverified) and it has applied nearly all it knows committed; an error saying why not
// otherwise.
func (n *Node) Ready() error {
	if err := n.Live(); err != nil {
		return err
	}
	if n.metrics.heartbeat.Load() == 0 {
		return errors.New("the member is starting")
	}
	st := n.Status()
	switch {
	case st.Leader < 0:
		return errors.New("no leader is known")
	case st.Unverified:
		return errors.New("the member started on an empty log and is not verified yet")
	case st.Commit > st.Applied+readyLagEntries:
		return fmt.Errorf("the member is catching up: applied %d of %d committed", st.Applied, st.Commit)
	}
	return nil
}

// httpStatus is what /status answers. Its first fields are wire.MemberStatus, the type of a
// member's answer to tandem cluster status --json: the same names (snake_case) and the same
// values (role as "follower", "pre-candidate", "candidate" or "leader"), so that a script reads
// either the same way (memberStatusOf builds it from Status as the replica does from its
// state; TestHTTPProbes compares the two). Lag, which only the leader's core knows, is the
// admin channel's alone. Then what only /status says: the membership, the counters of Status
// and the probes' answers.
type httpStatus struct {
	wire.MemberStatus
	ClusterVersionMax   uint16             `json:"cluster_version_max"`
	VoteFloor           uint64             `json:"vote_floor,omitempty"`
	Members             []wire.AdminMember `json:"members"`
	EventsDropped       int                `json:"events_dropped"`
	RaftMessagesDropped int                `json:"raft_messages_dropped"`
	RaftSendsDropped    int                `json:"raft_sends_dropped"`
	MemberConnsRefused  int                `json:"member_conns_refused"`
	ClientConnsRefused  int                `json:"client_conns_refused"`
	AcceptFailures      int                `json:"accept_failures"`
	RaftRefused         int                `json:"raft_refused"`
	ErrorsLogDropped    int                `json:"errors_log_dropped"`
	ErrorsLogFailures   int                `json:"errors_log_failures"`
	Live                bool               `json:"live"`
	Ready               bool               `json:"ready"`
	NotReady            string             `json:"not_ready,omitempty"`
}

// memberStatusOf is st as the admin channel's status says it (replica's memberStatus and the
// node's describeSelf), unreachable sorted, without Lag.
func memberStatusOf(st Status, unreachable []int) wire.MemberStatus {
	ms := wire.MemberStatus{ID: st.ID, RaftID: st.RaftID, Role: strings.ToLower(st.Role.String()), Term: st.Term,
		Leader: st.Leader, Commit: st.Commit, Applied: st.Applied, SnapshotIndex: st.SnapshotIndex,
		Build: buildVersion(), ClusterVersion: st.ClusterVersion, ClusterUUID: st.ClusterUUID,
		Unverified: st.Unverified, Unreachable: unreachable, Suspended: st.Suspended, Preferred: st.Preferred}
	for _, m := range st.Members {
		if m.RaftID == st.RaftID {
			ms.ClientAddr, ms.MemberAddr, ms.Learner = m.ClientAddr, m.MemberAddr, m.Learner
		}
	}
	return ms
}

// newHTTPStatus is /status's answer of a member whose state is st.
func newHTTPStatus(st Status, unreachable []int, live, ready error) httpStatus {
	hs := httpStatus{MemberStatus: memberStatusOf(st, unreachable), ClusterVersionMax: st.ClusterVersionMax,
		VoteFloor: st.VoteFloor, Members: make([]wire.AdminMember, 0, len(st.Members)),
		EventsDropped: st.EventsDropped, RaftMessagesDropped: st.RaftMessagesDropped,
		RaftSendsDropped: st.RaftSendsDropped, MemberConnsRefused: st.MemberConnsRefused,
		ClientConnsRefused: st.ClientConnsRefused, AcceptFailures: st.AcceptFailures,
		RaftRefused: st.RaftRefused, ErrorsLogDropped: st.ErrorsLogDropped,
		ErrorsLogFailures: st.ErrorsLogFailures, Live: live == nil, Ready: ready == nil}
	for _, m := range st.Members {
		role := "voter"
		if m.Learner {
			role = "learner"
		}
		hs.Members = append(hs.Members, wire.AdminMember{ID: m.ID, RaftID: m.RaftID, ClientAddr: m.ClientAddr,
			MemberAddr: m.MemberAddr, Role: role})
	}
	if ready != nil {
		hs.NotReady = ready.Error()
	}
	return hs
}

func (n *Node) httpHandler() http.Handler {
	mux := http.NewServeMux()
	reg := n.newRegistry()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:            reg,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	probe := func(check func() error) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			if err := check(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, err)
				return
			}
			fmt.Fprintln(w, "ok")
		}
	}
	mux.HandleFunc("GET /livez", probe(n.Live))
	mux.HandleFunc("GET /readyz", probe(n.Ready))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		var unreachable []int
		for id, down := range n.unreachableSet() {
			if down {
				unreachable = append(unreachable, id)
			}
		}
		slices.Sort(unreachable)
		hs := newHTTPStatus(n.Status(), unreachable, n.Live(), n.Ready())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(hs)
	})
	return mux
}

// serveHTTP serves the endpoint on l until stop is called, which shuts the server down (waiting
// briefly for the requests under way).
func (n *Node) serveHTTP(l net.Listener) (stop func()) {
	srv := &http.Server{
		Handler:           n.httpHandler(),
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpHeaderBytesMax,
		// What net/http says (a failed accept, a handler's panic) goes to the member's log, not
		// to the standard logger's stderr.
		ErrorLog: slog.NewLogLogger(n.log.With("component", "http").Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Warn("the HTTP endpoint stopped", "addr", l.Addr().String(), "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close()
		}
		<-done
	}
}
