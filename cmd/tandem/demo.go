package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/node"
	"github.com/tandem-cluster/tandem/service"
)

const demoHelp = `Usage: tandem demo [flags]

Runs the seed's walk-through in one process: three members over real TCP on free loopback ports,
real archives (fsync on) in a temporary directory, and the real client. It shows the election,
commands, the leader stopped and a new election with the client carrying on by itself, the old
leader catching up, and a restart of the whole cluster with the counter recovered. It cleans up
after itself.

Flags:
`

type demo struct {
	out io.Writer
	r   *renderer
	lc  *localCluster
	mu  sync.Mutex
}

func runDemo(args []string) int {
	fs := newFlagSet("demo")
	keep := fs.Bool("keep", false, "keep the data directory")
	const examples = "\nExamples:\n  tandem demo\n  tandem demo --keep     # look at the archives afterwards (tandem archive verify)\n"
	if _, code, done := parseVerb(fs, args, verbHelp{demoHelp, examples}); done {
		return code
	}
	dir, err := os.MkdirTemp("", "tandem-demo-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "tandem demo: %v\n", err)
		return exitFailed
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	d := &demo{out: os.Stdout, r: newRenderer(os.Stdout)}
	start := time.Now()
	if err := d.run(dir); err != nil {
		if d.lc != nil {
			d.lc.stopAll()
		}
		fmt.Fprintf(os.Stderr, "tandem demo: FAILED: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(d.out, "\nDemo finished in %s. Data was in %s%s.\n", time.Since(start).Round(time.Millisecond), dir,
		map[bool]string{true: " (kept)", false: " (removed)"}[*keep])
	return exitOK
}

func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.out, "\n%s\n", d.r.paint("1", "▶ "+fmt.Sprintf(format, args...)))
}

// showLeaders prints member i's becoming leader while it runs.
func (d *demo) showLeaders(i int, n *node.Node) {
	go func() {
		for ev := range n.Events() { // closed when the member's Run returns
			if ev.Kind == node.EventRoleChange && ev.Role == service.Leader {
				d.mu.Lock()
				fmt.Fprintf(d.out, "   %s\n", d.r.paint(roleColor(ev.Role), fmt.Sprintf("node %d: ROLE CHANGE: LEADER (term %d)", i, ev.Term)))
				d.mu.Unlock()
			}
		}
	}()
}

func (d *demo) send(ctx context.Context, c *client.Client, req counter.Request) (counter.Response, error) {
	fmt.Fprintf(d.out, "   → %s\n", describe(req))
	resp, err := do(ctx, c, req)
	if err != nil {
		return resp, err
	}
	fmt.Fprintf(d.out, "   ← %s\n", resp)
	return resp, nil
}

func (d *demo) run(dir string) error {
	lc, err := newLocalCluster(dir)
	if err != nil {
		return err
	}
	lc.onStart = d.showLeaders
	d.lc = lc
	endpoints := lc.eps
	d.step("Starting three members on %s", strings.Join(endpoints, ", "))
	if err := lc.startAll(); err != nil {
		return err
	}
	t0 := time.Now()
	l, err := lc.waitLeader(10 * time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "   leader elected: node %d after %s\n", l, time.Since(t0).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	d.step("A client opens a session and sends commands")
	c, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(d.out, "   session %s…\n", c.SessionID()[:12])
	for _, req := range []counter.Request{{Op: counter.OpReset}, {Op: counter.OpIncrement}, {Op: counter.OpIncrement}, {Op: counter.OpIncrement, Delta: 5}, {Op: counter.OpGet}} {
		if _, err := d.send(ctx, c, req); err != nil {
			return err
		}
	}

	d.step("Stopping the leader, node %d, as Ctrl+C does (it hands leadership to a follower first)", l)
	if err := lc.stop(l); err != nil {
		return err
	}
	t0 = time.Now()
	fmt.Fprintln(d.out, "   the client keeps sending; it finds the new leader by itself")
	if _, err := d.send(ctx, c, counter.Request{Op: counter.OpIncrement}); err != nil {
		return err
	}
	nl, err := lc.waitLeader(10 * time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "   new leader node %d; first command acknowledged %s after the stop\n", nl, time.Since(t0).Round(time.Millisecond))
	if _, err := d.send(ctx, c, counter.Request{Op: counter.OpDecrement}); err != nil {
		return err
	}

	d.step("Restarting node %d: it rejoins as a follower and catches up", l)
	if err := lc.start(l); err != nil {
		return err
	}
	if err := d.waitCaughtUp(l, 10*time.Second); err != nil {
		return err
	}
	st := lc.members[l].n.Status()
	fmt.Fprintf(d.out, "   node %d: %s, applied index %d, leader node %d\n", l, st.Role, st.Applied, st.Leader)

	before, err := d.send(ctx, c, counter.Request{Op: counter.OpGet})
	if err != nil {
		return err
	}
	d.step("Stopping all three members, then starting them again")
	for i := range lc.members {
		if err := lc.stop(i); err != nil {
			return err
		}
	}
	// The client notices as it next reads from its connection, and learns that the others are
	// down as it tries them: show what it waits for once it has.
	w := c.Waiting()
	for deadline := time.Now().Add(5 * time.Second); (w.Attached || w.Reachable > 0) && time.Now().Before(deadline); w = c.Waiting() {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Fprintln(d.out, "   all members down; the client waits:", w)
	if err := lc.startAll(); err != nil {
		return err
	}
	if _, err := lc.waitLeader(10 * time.Second); err != nil {
		return err
	}
	after, err := d.send(ctx, c, counter.Request{Op: counter.OpGet})
	if err != nil {
		return err
	}
	if after.Value != before.Value {
		return fmt.Errorf("counter was %d before the restart and %d after", before.Value, after.Value)
	}
	fmt.Fprintf(d.out, "   counter recovered from the archives: %d; the same session carries on\n", after.Value)
	if _, err := d.send(ctx, c, counter.Request{Op: counter.OpIncrement}); err != nil {
		return err
	}
	d.step("Stopping the cluster")
	c.Close()
	lc.stopAll()
	return nil
}

func (d *demo) waitCaughtUp(i int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		st := d.lc.members[i].n.Status()
		l := st.Leader
		if l >= 0 && l != i && d.lc.members[l].cancel != nil {
			if st.Applied >= d.lc.members[l].n.Status().Commit && st.Applied > 0 {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("node %d did not catch up within %s", i, timeout)
}
