package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMeasureLeadershipTransfer measures, for docs/PERFORMANCE.md ("Leadership transfer"), how
// long clients go without an acknowledgement when leadership moves on purpose. Under a steady
// load (TANDEM_MEASURE_CLIENTS sessions, default 8, each sending one increment at a time) on
// three `tandem node` processes, leadership is moved TANDEM_MEASURE_N times (default 10) in each
// of these ways (TANDEM_MEASURE_MODES, comma-separated, default all):
//
//	command          tandem cluster transfer-leader (to the follower with the lower id)
//	sigint           the leader gets SIGINT (Ctrl+C): it hands over, stops, and is restarted
//	restart-command  a follower is killed and restarted, and once it follows, the leader is
//	                 told to transfer to the other follower (whose link to it was cut)
//	restart-sigint   likewise, then the leader gets SIGINT
//	preference       tandem cluster set-preferred-leader (the follower with the lower id): the
//	                 leader yields by itself some seconds later (replica/preferred.go); the
//	                 window is then the 3 s around the election (1 s before it, 2 s after)
//	restart-preference  likewise, after a restart as above
//	none             no transfer: the control, what the machine alone costs (not in the default)
//
// For each transfer it reports the longest time without an acknowledgement seen by any client
// in the 3 s from the transfer's start (from the start to the first one included), and the
// p99 and maximum latency of the increments acknowledged in that window. TANDEM_MEASURE_BIN runs
// the members (not the CLI) from another build, for a before/after comparison. It runs only with
// TANDEM_MEASURE set:
//
//	TANDEM_MEASURE=1 go test ./cmd/tandem -run TestMeasureLeadershipTransfer -count=1 -v -timeout 30m
func TestMeasureLeadershipTransfer(t *testing.T) {
	if os.Getenv("TANDEM_MEASURE") == "" {
		t.Skip("a measurement: TANDEM_MEASURE=1 runs it")
	}
	n, clients := 10, 8
	if v, err := strconv.Atoi(os.Getenv("TANDEM_MEASURE_N")); err == nil && v > 0 {
		n = v
	}
	if v, err := strconv.Atoi(os.Getenv("TANDEM_MEASURE_CLIENTS")); err == nil && v > 0 {
		clients = v
	}
	modes := []string{"command", "sigint", "restart-command", "restart-sigint"}
	if v := os.Getenv("TANDEM_MEASURE_MODES"); v != "" {
		modes = strings.Split(v, ",")
	}
	cli := tandemBinary(t)
	pc := newProcCluster(t, 3)
	if b := os.Getenv("TANDEM_MEASURE_BIN"); b != "" {
		pc.bin = b
	}
	pc.dumpOnFailure()
	pc.startAll()
	load := startLoad(t, pc.endpoints(0, 1, 2), clients)
	load.waitAcked(2000, 30*time.Second, "warm-up")
	const window = 3 * time.Second
	var summary []string
	for _, mode := range modes {
		var gaps, p99s []time.Duration
		for k := range n {
			l := pc.leader(20 * time.Second)
			others := slices.DeleteFunc([]int{0, 1, 2}, func(i int) bool { return i == l })
			if strings.HasPrefix(mode, "restart-") {
				// Restart the follower that is not the command's target, and wait until it
				// follows: the transfer comes right after.
				f := others[1]
				pc.kill(f)
				pc.start(f)
				waitRole(t, pc, f, "FOLLOWER", 20*time.Second)
			}
			load.waitAcked(50, 20*time.Second, "before the transfer")
			_, term0 := pc.procs[l].state()
			t0 := time.Since(load.begin)
			// When a new leader's banner is read: the election's end, as seen from outside.
			elected, procs := make(chan time.Duration, 1), slices.Clone(pc.procs)
			electWait := window
			if strings.HasSuffix(mode, "preference") {
				electWait = 20 * time.Second // the leader yields after its looks (about 5 s)
			}
			go func() {
				for deadline := time.Now().Add(electWait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
					for _, p := range procs {
						if p == nil {
							continue
						}
						if r, term := p.state(); r == "LEADER" && term > term0 {
							elected <- time.Since(load.begin)
							return
						}
					}
				}
				elected <- 0
			}()
			switch strings.TrimPrefix(mode, "restart-") {
			case "command":
				stdout, stderr, code := runWithin(t, 60*time.Second, cli, "cluster", "--endpoints",
					strings.Join(pc.endpoints(0, 1, 2), ","), "transfer-leader", strconv.Itoa(others[0]))
				if code != exitOK {
					t.Fatalf("%s %d: transfer-leader %d exited %d: %s%s", mode, k+1, others[0], code, stdout, stderr)
				}
			case "sigint":
				if err := pc.procs[l].cmd.Process.Signal(syscall.SIGINT); err != nil {
					t.Fatal(err)
				}
				if out, code := pc.waitExit(l, 20*time.Second, fmt.Sprintf("leader %d, interrupted,", l)); code != 0 {
					t.Fatalf("leader %d exited %d after SIGINT:\n%s", l, code, out)
				}
			case "preference":
				stdout, stderr, code := runWithin(t, 60*time.Second, cli, "cluster", "--endpoints",
					strings.Join(pc.endpoints(0, 1, 2), ","), "set-preferred-leader", strconv.Itoa(others[0]))
				if code != exitOK {
					t.Fatalf("%s %d: set-preferred-leader %d exited %d: %s%s", mode, k+1, others[0], code, stdout, stderr)
				}
			case "none":
				// The control: the same window with no transfer (the machine's own stalls).
			default:
				t.Fatalf("unknown mode %q", mode)
			}
			if strings.HasSuffix(mode, "preference") {
				te := <-elected
				if te == 0 {
					t.Fatalf("%s %d: member %d did not take over within %s of set-preferred-leader", mode, k+1, others[0], electWait)
				}
				elected <- te
				t0 = te - time.Second
			}
			for time.Since(load.begin) < t0+window {
				time.Sleep(20 * time.Millisecond)
			}
			te := <-elected
			if te == 0 {
				te = t0 // none elected (the control)
			}
			gap, p99, worst, acked := load.window(t0, t0+window)
			firstAck, _, _, _ := load.window(te, te+window)
			gaps, p99s = append(gaps, gap), append(p99s, p99)
			// Terms: one more than before is one election (the transfer's); more is a second.
			nl := pc.leader(20 * time.Second)
			_, term1 := pc.procs[nl].state()
			t.Logf("%s %d: leader %d (term %d) -> %d (term %d) elected after %s, %d acknowledged in %s, longest without one %s "+
				"(from the election on: %s), p99 %s, max %s", mode, k+1, l, term0, nl, term1, (te - t0).Round(time.Millisecond),
				acked, window, gap.Round(time.Millisecond), firstAck.Round(time.Millisecond), p99.Round(time.Millisecond),
				worst.Round(time.Millisecond))
			if pc.procs[l] == nil {
				pc.start(l)
				waitRole(t, pc, l, "FOLLOWER", 20*time.Second)
			}
			load.waitAcked(200, 20*time.Second, "after the transfer")
			if !strings.HasPrefix(mode, "restart-") {
				// Links settle (every member reconnected to the restarted one) before the next.
				for settle := time.Now().Add(2 * time.Second); time.Now().Before(settle); {
					load.waitAcked(10, 20*time.Second, "settling")
				}
			}
		}
		slices.Sort(gaps)
		slices.Sort(p99s)
		over := 0
		for _, g := range gaps {
			if g > 200*time.Millisecond {
				over++
			}
		}
		line := fmt.Sprintf("%-16s n=%d  longest gap: median %s, max %s, %d over 200 ms; window p99: median %s, max %s", mode, len(gaps),
			gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond), over,
			p99s[len(p99s)/2].Round(time.Millisecond), p99s[len(p99s)-1].Round(time.Millisecond))
		summary = append(summary, line)
		t.Log(line)
	}
	load.finish(pc.endpoints(0, 1, 2))
	t.Log("summary:\n" + strings.Join(summary, "\n"))
}

// waitRole waits until member i's last role line says role.
func waitRole(t *testing.T, pc *procCluster, i int, role string, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(5 * time.Millisecond) {
		if p := pc.procs[i]; p != nil {
			if r, _ := p.state(); r == role {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %d is not %s after %s", i, role, d)
		}
	}
}

// window sums up the acknowledgements between from and to (since the load began): the longest
// time without one (from included: the wait for the first counts), the p99 and the maximum
// latency of those acknowledged, and how many there were.
func (l *procLoad) window(from, to time.Duration) (gap, p99, worst time.Duration, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev := from
	var lats []time.Duration
	for i, a := range l.acks {
		if a <= from || a > to {
			continue
		}
		gap, prev = max(gap, a-prev), a
		lats = append(lats, l.lats[i])
	}
	gap = max(gap, to-prev)
	if len(lats) == 0 {
		return gap, 0, 0, 0
	}
	slices.Sort(lats)
	return gap, lats[min(len(lats)-1, len(lats)*99/100)], lats[len(lats)-1], len(lats)
}
