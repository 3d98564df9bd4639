package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
)

const clientHelp = `Usage: tandem client [flags] [increment [delta] | decrement [delta] | get | reset]

Sends counter commands to a cluster. With no command it runs the seed's sequence — INCREMENT,
INCREMENT, GET — showing each request and reply (never a RESET, so repeated runs accumulate).
get is a linearizable query; the others go through the log, exactly once.

Exit codes: 0 ok; 1 failed, nothing applied; 3 outcome unknown (the command may have been
applied); 4 refused by the cluster or the service, not applied; 64 usage; 70 internal error
(tandem help lists them all).

Flags (before or after the command):
`

const clientExamples = `
Examples:
  tandem client                          # INCREMENT, INCREMENT, GET
  tandem client increment 5
  tandem client get --endpoints 10.0.0.1:9000,10.0.0.2:9000
  tandem client --count 10000 --concurrency 64   # throughput probe (progress on a terminal)
  tandem client --count 25600 --payload 4096 --timeout 5m   # write 100 MB of commands
`

func runClient(args []string) int {
	fs := newFlagSet("client")
	endpoints := fs.String("endpoints", defaultEndpoints(), "client endpoints of the members, comma-separated [TANDEM_ENDPOINTS]")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the whole call")
	count := fs.Int("count", 0, "send this many increments (throughput probe)")
	concurrency := fs.Int("concurrency", 16, "with --count: goroutines sending at once")
	payload := fs.Int("payload", 0, "with --count: pad each increment to this many bytes, 16 to 65536 (the padding is logged and replicated like any command)")
	creds := addCredentialFlags(fs)
	pos, code, done := parseVerb(fs, args, verbHelp{clientHelp, clientExamples})
	if done {
		return code
	}
	tlsCfg, token, err := creds.load(strings.Split(*endpoints, ","))
	if err != nil {
		return usageError(os.Stderr, "client", "%v", err)
	}
	var reqs []counter.Request
	switch {
	case *count > 0:
		if len(pos) > 0 {
			return usageError(os.Stderr, "client", "--count sends increments; give no command with it")
		}
		if *payload != 0 && (*payload < 16 || *payload > counter.MaxPad) {
			return usageError(os.Stderr, "client", "--payload %d: want 16 to %d", *payload, counter.MaxPad)
		}
	case len(pos) == 0:
		reqs = []counter.Request{{Op: counter.OpIncrement}, {Op: counter.OpIncrement}, {Op: counter.OpGet}}
	default:
		if _, err := strconv.ParseInt(pos[len(pos)-1], 10, 64); err == nil && len(pos) == 2 && negativeNumber(pos[1]) {
			if code, refused := refuseNegativeDelta(pos[0], pos[1]); refused {
				return code
			}
		}
		req, err := counter.ParseCommand(pos[0], pos[1:])
		if err != nil {
			return usageError(os.Stderr, "client", "%v", err)
		}
		reqs = []counter.Request{req}
	}
	eps := strings.Split(*endpoints, ",")
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Endpoints: eps, TLS: tlsCfg, Token: token})
	if errors.Is(err, client.ErrUnauthenticated) {
		fmt.Fprintf(os.Stderr, "tandem client: %v\n", err)
		return exitNotApplied
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tandem client: cannot reach the cluster at %s within %s: %v\n", *endpoints, *timeout, err)
		return exitFailed
	}
	defer c.Close()
	if *count > 0 {
		req := counter.Request{Op: counter.OpIncrement}
		if *payload > 0 {
			// The request's own bytes (3) and the padding's length prefix (up to 3) come first.
			req.Pad = *payload - len(counter.EncodeRequest(req)) - 3
		}
		// A line redrawn as it goes is for a person watching: not into a file or a pipe, nor on
		// a dumb terminal (no \x1b[K to clear it).
		var progress io.Writer
		if isTerminal(os.Stdout) && os.Getenv("TERM") != "dumb" {
			progress = os.Stdout
		}
		return probe(ctx, c, *count, *concurrency, req, progress)
	}
	verbose := len(pos) == 0
	for _, req := range reqs {
		if verbose {
			fmt.Println("──────────────────────────────────────")
			fmt.Printf("  → request: %s\n", describe(req))
		}
		resp, err := do(ctx, c, req)
		if err != nil {
			fmt.Fprintf(os.Stderr, "tandem client: %s: %v\n", describe(req), err)
			return exitCode(err)
		}
		if verbose {
			fmt.Printf("  ← reply:   %s\n", resp)
		} else {
			fmt.Println(resp)
		}
		if !resp.OK {
			return exitNotApplied
		}
	}
	return exitOK
}

// refuseNegativeDelta refuses "increment -3" and "decrement -3" naming the command that means
// it. The counter's delta runs from 1 to counter.MaxDelta, on the wire an unsigned integer: a
// negative increment is spelled DECREMENT, so that every request has one spelling.
func refuseNegativeDelta(cmd, delta string) (code int, refused bool) {
	var other, does string
	switch strings.ToLower(cmd) {
	case "increment", "incr", "inc":
		other, does = "decrement", "subtract"
	case "decrement", "decr", "dec":
		other, does = "increment", "add"
	default:
		return 0, false // not a command that takes a delta: ParseCommand says what is wrong
	}
	abs := strings.TrimPrefix(delta, "-")
	return usageError(os.Stderr, "client", "%s %s: the counter's delta is a positive integer (1 to %d); to %s %s, run tandem client %s %s",
		cmd, delta, int64(counter.MaxDelta), does, abs, other, abs), true
}

// seedEndpoints are the client addresses of the seed's three-member localhost cluster.
const seedEndpoints = "127.0.0.1:9000,127.0.0.1:9001,127.0.0.1:9002"

// defaultEndpoints is --endpoints' default for the verbs that talk to a cluster:
// TANDEM_ENDPOINTS, else the seed's cluster.
func defaultEndpoints() string { return envOr("TANDEM_ENDPOINTS", seedEndpoints) }

func do(ctx context.Context, c *client.Client, req counter.Request) (counter.Response, error) {
	var raw []byte
	var err error
	if req.Op == counter.OpGet {
		raw, err = c.Query(ctx, counter.EncodeRequest(req))
	} else {
		raw, err = c.Send(ctx, counter.EncodeRequest(req))
	}
	if err != nil {
		return counter.Response{}, err
	}
	return counter.DecodeResponse(raw)
}

func exitCode(err error) int {
	switch {
	case errors.Is(err, client.ErrOutcomeUnknown):
		return exitUnknown
	case errors.Is(err, client.ErrNotApplied), errors.Is(err, client.ErrUnauthenticated), errors.Is(err, client.ErrDenied):
		return exitNotApplied
	}
	return exitFailed
}

// probe sends n increments from c goroutines and prints time, errors and latency percentiles:
// the SOFAJRaft counter client's throughput probe. With progress non-nil (a terminal), it
// redraws a line there as it goes, cleared before the results.
func probe(ctx context.Context, c *client.Client, n, conc int, req counter.Request, progress io.Writer) int {
	var mu sync.Mutex
	lat := make([]time.Duration, 0, n)
	errs := map[string]int{}
	next, failed := 0, 0
	var stopped error // the client ended (a revoked credential, its session expired)
	start := time.Now()
	stopProgress := showProgress(progress, progressInterval, func() string {
		mu.Lock()
		defer mu.Unlock()
		return progressLine(len(lat), failed, n, time.Since(start))
	})
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= n {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				t0 := time.Now()
				_, err := do(ctx, c, req)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					errs[err.Error()]++
					failed++
					if errors.Is(err, client.ErrUnauthenticated) || errors.Is(err, client.ErrSessionExpired) {
						// The client is finished: every increment after it would fail alike.
						stopped = err
						next = n
					}
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	stopProgress()
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	sent := n
	if stopped != nil {
		sent = len(lat) + failed
	}
	fmt.Printf("%d increments from %d goroutines in %s: %.0f ops/s, %d errors\n",
		sent, conc, el.Round(time.Millisecond), float64(len(lat))/el.Seconds(), sent-len(lat))
	fmt.Printf("latency p50 %s  p90 %s  p99 %s  max %s\n", pct(0.5), pct(0.9), pct(0.99), pct(1))
	for e, k := range errs {
		fmt.Printf("  %d × %s\n", k, e)
	}
	if stopped != nil {
		fmt.Printf("stopped after %d of %d: %v\n", sent, n, stopped)
		return exitCode(stopped)
	}
	if len(errs) > 0 {
		return exitFailed
	}
	return exitOK
}

// progressInterval is how often tandem client --count redraws its progress line.
const progressInterval = 250 * time.Millisecond

// isTerminal reports whether f is a terminal (a character device: /dev/null is one too, where
// what is drawn is lost, harmlessly).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// showProgress redraws line() on w every interval, on one line ("\r"), until the returned stop
// is called, which clears the line so that what follows starts on a clean one. A nil w shows
// nothing.
func showProgress(w io.Writer, interval time.Duration, line func() string) (stop func()) {
	if w == nil {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				fmt.Fprint(w, "\r\x1b[K")
				return
			case <-t.C:
				fmt.Fprint(w, "\r\x1b[K"+line())
			}
		}
	}()
	return func() { close(quit); <-done }
}

// progressLine says how far tandem client --count has got: acknowledged and failed of n, after
// elapsed.
func progressLine(acked, failed, n int, elapsed time.Duration) string {
	rate := 0.0
	if elapsed > 0 {
		rate = float64(acked) / elapsed.Seconds()
	}
	return fmt.Sprintf("%d of %d increments (%d%%), %.0f ops/s, %d errors, %s",
		acked+failed, n, (acked+failed)*100/max(n, 1), rate, failed, elapsed.Round(100*time.Millisecond))
}

// describe names a request the way the seed prints it.
func describe(r counter.Request) string {
	name := map[counter.Op]string{counter.OpIncrement: "INCREMENT", counter.OpDecrement: "DECREMENT",
		counter.OpGet: "GET", counter.OpReset: "RESET"}[r.Op]
	if r.Delta > 1 {
		return fmt.Sprintf("%s %d", name, r.Delta)
	}
	return name
}
