package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/admin"
	"github.com/tandem-cluster/tandem/internal/version"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// get fetches url and returns its status code and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// scrape fetches and parses a member's /metrics; a parse error (an invalid exposition) fails.
func scrape(t *testing.T, base string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not a valid exposition: %v\n%s", err, body)
	}
	return fams, body
}

// value is the value of the family's only series (or of its series whose labels include want).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range f.GetMetric() {
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == want[i] && lp.GetValue() == want[i+1])
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no series of %s with %v", name, want)
	return 0
}

// httpCluster is a cluster whose members serve their HTTP endpoint on ephemeral ports; bases[i]
// is member i's "http://host:port" (of its latest start).
func httpCluster(t *testing.T) (*cluster, []string) {
	c := newCluster(t, 3, nil)
	bases := make([]string, 3)
	var mu sync.Mutex
	c.opts = func(i int) []Option {
		l := listenLocal(t)
		mu.Lock()
		bases[i] = "http://" + l.Addr().String()
		mu.Unlock()
		return []Option{WithHTTPListener(l)}
	}
	return c, bases
}

func TestHTTPMetricsUnderLoad(t *testing.T) {
	c, bases := httpCluster(t)
	c.startAll(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	for range 50 {
		inc(ctx, t, cl)
	}
	for range 10 {
		if _, err := cl.Query(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpGet})); err != nil {
			t.Fatal(err)
		}
	}
	// Every member has applied the 50 commands (and the entries before them).
	deadline := time.Now().Add(10 * time.Second)
	for _, m := range c.members {
		for m.n.Status().Applied < 50 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	leaders, hasLeader, commands, clients := 0.0, 0.0, 0.0, 0.0
	commandsTimed, queriesTimed := 0.0, 0.0
	for i, base := range bases {
		fams, body := scrape(t, base)
		leaders += value(t, fams, "tandem_server_is_leader")
		hasLeader += value(t, fams, "tandem_server_has_leader")
		if v := value(t, fams, "tandem_server_proposals_committed_total"); v < 50 {
			t.Errorf("member %d: committed %v, want ≥ 50", i, v)
		}
		if v := value(t, fams, "tandem_server_proposals_applied_total"); v < 50 {
			t.Errorf("member %d: applied %v, want ≥ 50", i, v)
		}
		if v := value(t, fams, "tandem_disk_wal_fsync_duration_seconds"); v == 0 {
			t.Errorf("member %d: no log sync observed", i)
		}
		if v := value(t, fams, "tandem_server_leader_changes_seen_total"); v < 1 {
			t.Errorf("member %d: leader changes seen %v, want ≥ 1", i, v)
		}
		if v := value(t, fams, "tandem_build_info", "version", version.Version); v != 1 {
			t.Errorf("member %d: build info %v", i, v)
		}
		// Present, with the values of a healthy cluster: no proposal is lost here, but a
		// command may meet a leader that is still settling, so only presence is asserted.
		if v := value(t, fams, "tandem_server_proposals_failed_total"); v < 0 {
			t.Errorf("member %d: proposals failed %v", i, v)
		}
		if v := value(t, fams, "tandem_disk_failed"); v != 0 {
			t.Errorf("member %d: disk failed %v", i, v)
		}
		if v := value(t, fams, "tandem_client_sessions_opened_total"); v < 1 {
			t.Errorf("member %d: sessions opened %v, want ≥ 1 (every member applies the open)", i, v)
		}
		value(t, fams, "tandem_client_sessions_expired_total")
		value(t, fams, "tandem_server_snapshots_sent_total")
		commandsTimed += value(t, fams, "tandem_client_command_duration_seconds")
		queriesTimed += value(t, fams, "tandem_client_query_duration_seconds")
		// The leader reaches every follower (every member reaches every other:
		// TestPeerReachabilityFollowsTheMembers).
		if value(t, fams, "tandem_server_is_leader") == 1 {
			for _, peer := range []string{"0", "1", "2"} {
				if peer == strconv.Itoa(i) {
					continue
				}
				if v := value(t, fams, "tandem_network_peer_reachable", "member", peer); v != 1 {
					t.Errorf("leader %d: peer %s reachable %v", i, peer, v)
				}
				// It replicated 50 commands to each follower, and heard their answers.
				if v := value(t, fams, "tandem_network_peer_sent_bytes_total", "member", peer); v < 50*8 {
					t.Errorf("leader %d: %v bytes sent to peer %s", i, v, peer)
				}
				if v := value(t, fams, "tandem_network_peer_received_bytes_total", "member", peer); v <= 0 {
					t.Errorf("leader %d: %v bytes received from peer %s", i, v, peer)
				}
				value(t, fams, "tandem_network_peer_sent_failures_total", "member", peer)
				value(t, fams, "tandem_network_peer_received_failures_total", "member", peer)
			}
			if v := value(t, fams, "tandem_client_sessions_open"); v != 1 {
				t.Errorf("leader %d: sessions open %v, want 1", i, v)
			}
		}
		commands += value(t, fams, "tandem_client_commands_received_total")
		clients += value(t, fams, "tandem_client_connections_open")
		if strings.Contains(body, "session=") {
			t.Errorf("member %d: a per-session label", i)
		}
		boundedLabels(t, fams)
		// CI pipes a live member's exposition through promtool check metrics (.ci/run).
		if out := os.Getenv("TANDEM_METRICS_OUT"); out != "" && i == 0 {
			if err := os.WriteFile(out, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The leader timed every command it applied and every query it served.
	if commandsTimed < 50 || queriesTimed < 10 {
		t.Errorf("commands timed %v (want ≥ 50), queries timed %v (want ≥ 10)", commandsTimed, queriesTimed)
	}
	if commands < 50 || clients < 1 {
		t.Errorf("commands received %v (want ≥ 50), client connections %v (want ≥ 1)", commands, clients)
	}
	if leaders != 1 || hasLeader != 3 {
		t.Errorf("is_leader sums to %v (want 1), has_leader to %v (want 3)", leaders, hasLeader)
	}
}

// boundedLabels fails if a Tandem series has a label whose values can grow without bound: only
// the labels listed here are allowed (their values are bounded by the cluster's size, two ports,
// or one build), and no family has more series than a 3-member cluster's peers and ports.
func boundedLabels(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	allowed := map[string]bool{"member": true, "port": true, "version": true, "commit": true, "go": true,
		"member_protocol": true, "client_protocol": true, "cluster_version_max": true}
	for name, f := range fams {
		if !strings.HasPrefix(name, "tandem_") {
			continue
		}
		if len(f.GetMetric()) > 2 {
			t.Errorf("%s has %d series, more than a 3-member cluster's peers", name, len(f.GetMetric()))
		}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !allowed[lp.GetName()] {
					t.Errorf("%s has a label %q not known to be bounded", name, lp.GetName())
				}
			}
		}
	}
}

func TestHTTPProbes(t *testing.T) {
	c, bases := httpCluster(t)
	lead, _ := c.startAll(10 * time.Second)
	// Healthy: every member is live and, once it has heard from the leader, ready.
	for i, base := range bases {
		if code, body := get(t, base+"/livez"); code != http.StatusOK {
			t.Errorf("member %d /livez: %d %s", i, code, body)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			code, body := get(t, base+"/readyz")
			if code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("member %d /readyz: %d %s", i, code, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	code, body := get(t, bases[lead]+"/status")
	var st httpStatus
	var keys map[string]any
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil || json.Unmarshal([]byte(body), &keys) != nil {
		t.Fatalf("/status: %d %v %s", code, err, body)
	}
	// The names and values of tandem cluster status --json: snake_case, the role in words.
	if keys["role"] != "leader" || keys["leader"] != float64(lead) || keys["live"] != true || keys["ready"] != true ||
		keys["raft_id"] == nil || keys["cluster_version_max"] == nil || keys["Role"] != nil || keys["RoleName"] != nil {
		t.Errorf("/status of the leader:\n%s", body)
	}
	if len(st.Members) != 3 || st.Members[0].Role != "voter" || st.ClientAddr != c.clients[lead] {
		t.Errorf("/status of the leader: %+v", st)
	}
	checkStatusLikeAdmin(t, c.clients[lead], bases[lead])
	// Cut off: the two others stop, and the remaining member loses its leader (a leader steps
	// down without a quorum, a follower campaigns): not ready, saying why, yet live.
	keep := (lead + 1) % 3
	for i := range 3 {
		if i != keep {
			c.stop(i)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(t, bases[keep]+"/readyz")
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "no leader") || strings.Count(body, "\n") != 1 {
				t.Errorf("/readyz without a leader: %q", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz of a member cut off: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := get(t, bases[keep]+"/livez"); code != http.StatusOK {
		t.Errorf("/livez of a member cut off (its loop still turns): %d %s", code, body)
	}
	fams, _ := scrape(t, bases[keep])
	if v := value(t, fams, "tandem_server_has_leader"); v != 0 {
		t.Errorf("has_leader of a member cut off: %v", v)
	}
	// A stopped member's endpoint is gone with it.
	c.stop(keep)
	if _, err := http.Get(bases[keep] + "/livez"); err == nil {
		t.Errorf("the endpoint still answers after Run returned")
	}
}

// checkStatusLikeAdmin checks that a member's /status (at base) says what its answer to
// tandem cluster status --json (the admin channel's status, at its client address) says, in the
// same JSON, but for what moves between the two questions (the indexes) and the leader's lag.
// /status reads what the loop published at its last tick: it may lag a tick behind, so the
// check asks again until the two agree (for up to 5 s).
func checkStatusLikeAdmin(t *testing.T, clientAddr, base string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, code, err := admin.Call(ctx, []string{clientAddr}, wire.AdminRequest{Op: wire.AdminStatus}, admin.Options{})
		cancel()
		if err != nil || code != wire.StatusOK || resp.Status == nil {
			t.Fatalf("status of %s: %v %v %s", clientAddr, code, err, resp.Error)
		}
		_, body := get(t, base+"/status")
		var fromHTTP, fromAdmin wire.MemberStatus
		adminJSON, _ := json.Marshal(resp.Status)
		if err := json.Unmarshal([]byte(body), &fromHTTP); err != nil {
			t.Fatalf("/status: %v %s", err, body)
		}
		if err := json.Unmarshal(adminJSON, &fromAdmin); err != nil {
			t.Fatal(err)
		}
		fromAdmin.Commit, fromAdmin.Applied, fromAdmin.SnapshotIndex = fromHTTP.Commit, fromHTTP.Applied, fromHTTP.SnapshotIndex
		fromAdmin.Lag = nil
		if reflect.DeepEqual(fromHTTP, fromAdmin) {
			return
		}
		last = fmt.Sprintf("/status:      %+v\nadmin status: %+v", fromHTTP, fromAdmin)
	}
	t.Fatalf("/status and the admin channel's status differ:\n%s", last)
}

func TestHTTPLiveStale(t *testing.T) {
	n, err := New(func() Config {
		cfg := DefaultConfig()
		cfg.ID, cfg.Members, cfg.DataDir = 0, LocalCluster(1), t.TempDir()
		return cfg
	}(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Live(); err != nil {
		t.Errorf("a member that has not started its loop is alive: %v", err)
	}
	if err := n.Ready(); err == nil {
		t.Errorf("a starting member is ready")
	}
	n.metrics.heartbeat.Store(time.Now().Add(-time.Minute).UnixNano())
	if err := n.Live(); err == nil || !strings.Contains(err.Error(), "has not ticked") {
		t.Errorf("a loop that has not ticked for a minute: %v", err)
	}
	n.metrics.heartbeat.Store(time.Now().UnixNano())
	n.metrics.ended.Store(true)
	if err := n.Live(); err == nil {
		t.Errorf("a stopped member is alive")
	}
}

func TestHTTPAddrAndListenerExclusive(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ID, cfg.Members, cfg.DataDir, cfg.HTTPAddr = 0, LocalCluster(1), t.TempDir(), "127.0.0.1:0"
	l := listenLocal(t)
	defer l.Close()
	if _, err := New(cfg, nil, WithHTTPListener(l)); err == nil || !strings.Contains(err.Error(), "HTTPAddr") {
		t.Errorf("both an HTTPAddr and a listener: %v", err)
	}
}

// BenchmarkHTTPScrape measures what one scrape of /metrics costs the process (the collector
// reading Status, the Go runtime's and the process's collectors, the encoding), so that the
// endpoint's cost can be told apart from a noisy machine's (docs/PERFORMANCE.md).
func BenchmarkHTTPScrape(b *testing.B) {
	cfg := DefaultConfig()
	cfg.ID, cfg.Members, cfg.DataDir = 0, LocalCluster(3), b.TempDir()
	n, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	h := n.httpHandler()
	for _, path := range []string{"/metrics", "/readyz", "/status"} {
		b.Run(path[1:], func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
			}
		})
	}
}

// A default address (WithHTTPDefault) that is taken leaves the member running without the
// endpoint, saying so; a free one is served.
func TestHTTPDefaultTakenIsSkipped(t *testing.T) {
	taken := listenLocal(t)
	defer taken.Close()
	c := newCluster(t, 1, nil)
	c.opts = func(int) []Option { return []Option{WithHTTPDefault(taken.Addr().String())} }
	c.startAll(10 * time.Second)
	if logs := c.members[0].logs.String(); !strings.Contains(logs, "no HTTP endpoint: its default address is taken") {
		t.Errorf("no warning about the taken default; logs:\n%s", logs)
	}
	c.stop(0)

	free := listenLocal(t)
	addr := free.Addr().String()
	free.Close()
	c.opts = func(int) []Option { return []Option{WithHTTPDefault(addr)} }
	c.start(0)
	c.leader(10 * time.Second)
	if code, body := get(t, "http://"+addr+"/livez"); code != http.StatusOK {
		t.Errorf("/livez at a free default address: %d %s", code, body)
	}
}
