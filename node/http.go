package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The member's HTTP endpoint (Config.HTTPAddr, WithHTTPListener) serves
//
//	/metrics  Prometheus metrics (metrics.go), from the node's own registry
//	/livez    200 while the member's loop turns; 503 when it has not ticked for livezStaleTicks
//	          ticks (it is stuck) or it stopped
//	/readyz   200 when a leader is known and this member is caught up; 503 with the reason
//	/status   the member's Status as JSON, with the probes' answers
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

// httpStatus is what /status answers: Status with the role's name and the probes' answers.
type httpStatus struct {
	Status
	RoleName    string `json:"RoleName"`
	Live        bool   `json:"Live"`
	Ready       bool   `json:"Ready"`
	NotReady    string `json:"NotReady,omitempty"`
	Unreachable []int  `json:"Unreachable,omitempty"`
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
		st := n.Status()
		hs := httpStatus{Status: st, RoleName: st.Role.String(), Live: n.Live() == nil}
		if err := n.Ready(); err != nil {
			hs.NotReady = err.Error()
		} else {
			hs.Ready = true
		}
		for id, down := range n.unreachableSet() {
			if down {
				hs.Unreachable = append(hs.Unreachable, id)
			}
		}
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
