package node_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/vfs"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/node"
	"github.com/tandem-cluster/tandem/service"
)

// The fixture of TestDataOf045a031: three data directories written by the build at commit
// 045a031 (testdata/045a031/make.sh tells how), and what that build's cluster held when it
// stopped.
const (
	fixture045a031 = "testdata/045a031/data-045a031.tar.gz"
	// value045a031 is the counter's value the old cluster acknowledged last (make.sh's workload:
	// 40 increments, three of 5, two decrements of 2, one increment).
	value045a031 = 52
	// snapshot045a031 and last045a031: every member holds snapshots up to index 48 and log
	// entries up to 59 (version-1 segments).
	snapshot045a031 = 48
	last045a031     = 59
)

// Data written by the build at 045a031 (issue 17, "today's data") opens under this build: every
// member's archive verifies clean, the three members start on it, elect a leader and answer a
// linearizable query with the value the old cluster acknowledged; new commands are applied, new
// snapshots are taken, and a restart keeps it all.
//
// Addresses: the members run on new ports. A member dials its peers at the addresses it is
// configured with (Config.Members), so the cluster forms although nothing listens where the old
// build did. The replicated membership (Status.Members, and the leader address in a follower's
// redirect) keeps the addresses recorded when the old cluster was bootstrapped: membership
// changes are not built, so nothing replaces them. The test checks both, and its client dials the
// leader it found rather than follow redirects to the old addresses.
func TestDataOf045a031(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	untarSparse(t, fixture045a031, dir)
	recorded := readMembers(t, filepath.Join(dir, "members.txt"))
	for i := range recorded {
		recorded[i].RaftID = uint64(recorded[i].ID) + 1 // founding members: Status shows their raft ids
	}

	for i := range 3 {
		rep := verifyArchive(t, filepath.Join(dir, fmt.Sprintf("node-%d", i)))
		if rep.LastIndex != last045a031 || rep.LastSegmentVersion != 1 || len(rep.Snapshots) == 0 ||
			!strings.Contains(rep.Snapshots[len(rep.Snapshots)-1], fmt.Sprintf("index %d ", snapshot045a031)) {
			t.Fatalf("node-%d: the fixture is not what make.sh wrote: %+v", i, rep)
		}
	}

	c := &oldCluster{t: t, dir: dir}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// First start: the old data opens, keeps its value, and takes new commands.
	c.start()
	l := c.leader(10 * time.Second)
	// Every member started from the old build's newest snapshot (replica.New starts the service
	// from the archive's snapshot and fails Run if the container cannot read it).
	c.waitAll(time.Second, "the old snapshot as each member's newest", func(st node.Status) bool {
		return st.SnapshotIndex >= snapshot045a031
	})
	// The old data holds cluster version 1 (no version recorded); every member of this build
	// applies 2, so the leader raises it, in the log, once each has said so in its handshake.
	c.waitAll(10*time.Second, "the cluster version raised to this build's", func(st node.Status) bool {
		return st.ClusterVersion == container.ClusterVersionMax
	})
	c.checkRecordedMembers(recorded)
	c.checkRedirect(l, recorded)
	cl := c.dial(ctx, l)
	if got := query(ctx, t, cl); got != value045a031 {
		t.Fatalf("the counter after the upgrade is %d, the old cluster acknowledged %d", got, value045a031)
	}
	// Enough commands for every member to take a snapshot of its own (every 16 entries), which
	// makes the archive retire the oldest snapshot of the old build.
	const added = 20
	for i := range added {
		if got, want := send(ctx, t, cl, counter.OpIncrement), int64(value045a031+i+1); got != want {
			t.Fatalf("increment %d answered %d, want %d", i, got, want)
		}
	}
	want := int64(value045a031 + added)
	c.waitAll(10*time.Second, "a snapshot of this build, applied through the last command", func(st node.Status) bool {
		return st.SnapshotIndex > snapshot045a031 && st.Applied >= st.Commit && st.Commit > last045a031+added
	})
	cl.Close()
	c.stop()

	// The directories, now holding the old build's segments and snapshots and this build's, still
	// verify clean. This build wrote on in a segment of its own format (the newest), and its
	// snapshots are the newest.
	for i := range 3 {
		rep := verifyArchive(t, filepath.Join(dir, fmt.Sprintf("node-%d", i)))
		if rep.LastSegmentVersion != archive.SegmentFormatMax || rep.LastIndex <= last045a031+added || rep.Segments < 2 {
			t.Fatalf("node-%d after the upgrade: want a segment of this build's format after the old one, ending past %d: %+v",
				i, last045a031+added, rep)
		}
	}

	// Restart (on new ports again): the state is still there and moves on.
	c.start()
	l = c.leader(10 * time.Second)
	c.checkRecordedMembers(recorded)
	cl = c.dial(ctx, l)
	if got := query(ctx, t, cl); got != want {
		t.Fatalf("the counter after a restart is %d, want %d", got, want)
	}
	if got := send(ctx, t, cl, counter.OpDecrement); got != want-1 {
		t.Fatalf("a decrement after the restart answered %d, want %d", got, want-1)
	}
	cl.Close()
	c.stop()
}

// oldCluster runs three members of this build on the fixture's directories, on fresh ephemeral
// ports each start.
type oldCluster struct {
	t     *testing.T
	dir   string
	nodes []*node.Node
	logs  []*lockedBuffer
	addrs []node.Member     // the configured (advertised) addresses of this start
	stops []func() error    // stop member i and return what its Run returned
	dones []<-chan struct{} // closed when member i's Run returned
}

func (c *oldCluster) start() {
	t := c.t
	t.Helper()
	type ports struct{ client, member net.Listener }
	ls := make([]ports, 3)
	c.addrs = nil
	for i := range ls {
		ls[i] = ports{listen(t), listen(t)}
		c.addrs = append(c.addrs, node.Member{ID: i, ClientAddr: ls[i].client.Addr().String(), MemberAddr: ls[i].member.Addr().String()})
	}
	c.nodes, c.logs, c.stops, c.dones = nil, nil, nil, nil
	for i := range 3 {
		cfg := node.DefaultConfig() // cluster id "tandem", as make.sh's members had
		cfg.ID, cfg.Members, cfg.DataDir = i, c.addrs, filepath.Join(c.dir, fmt.Sprintf("node-%d", i))
		cfg.TickInterval = 20 * time.Millisecond // elections in 140–280 ms
		cfg.SnapshotIntervalEntries = 16
		cfg.ShutdownTransferTimeout = time.Second
		logs := &lockedBuffer{}
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		n, err := node.New(cfg, counter.New(), node.WithListeners(ls[i].client, ls[i].member))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		var runErr error
		go func() { runErr = n.Run(ctx); close(done) }()
		stop := func() error { cancel(); <-done; return runErr }
		t.Cleanup(func() { _ = stop() })
		c.nodes, c.logs, c.stops, c.dones = append(c.nodes, n), append(c.logs, logs), append(c.stops, stop), append(c.dones, done)
	}
}

// stop stops the three members, the leader first (it hands over to a follower that is still
// up), and fails the test if one returns an error.
func (c *oldCluster) stop() {
	c.t.Helper()
	order := []int{0, 1, 2}
	for i, n := range c.nodes {
		if n.Status().Role == service.Leader {
			order = append([]int{i}, slices.Delete(order, i, i+1)...)
		}
	}
	for _, i := range order {
		if err := c.stops[i](); err != nil {
			c.t.Fatalf("member %d: Run returned %v\n%s", i, err, c.logs[i])
		}
	}
}

// leader waits for a leader that every member knows, and returns its id. A member that could not
// open its directory has returned from Run: its error is reported at once.
func (c *oldCluster) leader(timeout time.Duration) int {
	c.t.Helper()
	var l int
	c.waitAll(timeout, "a leader every member follows", func(st node.Status) bool {
		if st.Role == service.Leader {
			l = st.ID
		}
		return st.Leader >= 0 && st.Leader == c.nodes[0].Status().Leader
	})
	return l
}

// waitAll polls until cond holds for every member's Status, up to timeout.
func (c *oldCluster) waitAll(timeout time.Duration, what string, cond func(node.Status) bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for i, n := range c.nodes {
			if ok && !cond(n.Status()) {
				ok = false
			}
			c.failIfStopped(i)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var sts []string
			for _, n := range c.nodes {
				sts = append(sts, fmt.Sprintf("%+v", n.Status()))
			}
			c.t.Fatalf("no %s within %s:\n%s\nlog of member 0:\n%s", what, timeout, strings.Join(sts, "\n"), c.logs[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// failIfStopped fails the test if member i's Run has returned (it refused its directory, or
// stopped itself).
func (c *oldCluster) failIfStopped(i int) {
	c.t.Helper()
	select {
	case <-c.dones[i]:
		c.t.Fatalf("member %d stopped: Run returned %v\n%s", i, c.stops[i](), c.logs[i])
	default:
	}
}

// checkRecordedMembers checks that every member's replicated membership is the one the old build
// recorded (its ports, not this start's).
func (c *oldCluster) checkRecordedMembers(recorded []node.Member) {
	c.t.Helper()
	c.waitAll(5*time.Second, "replicated membership as recorded by 045a031", func(st node.Status) bool {
		return slices.Equal(st.Members, recorded)
	})
}

// checkRedirect opens a session on a follower by hand and checks its redirect: it names the leader
// at the client address recorded in the data, not the one the leader was configured with.
func (c *oldCluster) checkRedirect(l int, recorded []node.Member) {
	t := c.t
	t.Helper()
	f := (l + 1) % 3
	conn, err := net.Dial("tcp", c.addrs[f].ClientAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := wire.ClientMsg{Kind: wire.COpen, Session: wire.SessionID{0x17}}
	if _, err := conn.Write(wire.AppendClientFrame(nil, &m, wire.ClientProtocolMin)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, body, _, err := wire.ReadFrame(bufio.NewReader(conn), 1<<20, nil)
	if err != nil {
		t.Fatalf("member %d answered no open: %v", f, err)
	}
	red, err := wire.DecodeClientMsg(body)
	if err != nil {
		t.Fatal(err)
	}
	if red.Kind != wire.CRedirect || red.LeaderID != l || red.LeaderAddr != recorded[l].ClientAddr {
		t.Fatalf("follower %d answered %+v; want a redirect to leader %d at its recorded address %s",
			f, red, l, recorded[l].ClientAddr)
	}
}

// dial connects a client to member l only: a redirect would name an address of the old build.
func (c *oldCluster) dial(ctx context.Context, l int) *client.Client {
	c.t.Helper()
	cl, err := client.Dial(ctx, client.Config{Endpoints: []string{c.addrs[l].ClientAddr}})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

func query(ctx context.Context, t *testing.T, cl *client.Client) int64 {
	t.Helper()
	raw, err := cl.Query(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpGet}))
	if err != nil {
		t.Fatal(err)
	}
	r, err := counter.DecodeResponse(raw)
	if err != nil || !r.OK {
		t.Fatalf("get: %v %v", r, err)
	}
	return r.Value
}

func send(ctx context.Context, t *testing.T, cl *client.Client, op counter.Op) int64 {
	t.Helper()
	raw, err := cl.Send(ctx, counter.EncodeRequest(counter.Request{Op: op}))
	if err != nil {
		t.Fatal(err)
	}
	r, err := counter.DecodeResponse(raw)
	if err != nil || !r.OK {
		t.Fatalf("%v: %v %v", op, r, err)
	}
	return r.Value
}

// verifyArchive runs archive.Verify (tandem archive verify) on dir and fails the test unless it is
// clean: no error and no torn tail.
func verifyArchive(t *testing.T, dir string) archive.Report {
	t.Helper()
	var out bytes.Buffer
	rep, err := archive.Verify(vfs.OS(), dir, &out)
	if err != nil {
		t.Fatalf("verify %s: %v\n%s", dir, err, out.String())
	}
	if rep.TornTail != "" {
		t.Fatalf("verify %s: a torn tail at %s\n%s", dir, rep.TornTail, out.String())
	}
	return rep
}

// readMembers reads the member list make.sh recorded.
func readMembers(t *testing.T, path string) []node.Member {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := node.ParseMembers(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// untarSparse unpacks the gzipped tarball at path into dir. Runs of zeros (the segments'
// preallocated tails, which the tarball keeps as sparse holes) are skipped with a seek rather
// than written, so unpacking costs no more disk than the data.
func untarSparse(t *testing.T, path, dir string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	buf := make([]byte, 64<<10)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if !filepath.IsLocal(h.Name) {
			t.Fatalf("%s: entry %q leaves the directory", path, h.Name)
		}
		dst := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := writeSparse(dst, tr, h.Size, buf); err != nil {
				t.Fatalf("%s: %v", h.Name, err)
			}
		default:
			t.Fatalf("%s: entry %q of type %q", path, h.Name, h.Typeflag)
		}
	}
}

// writeSparse writes size bytes from r to a new file at dst, seeking over blocks of zeros.
func writeSparse(dst string, r io.Reader, size int64, buf []byte) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		n, rerr := io.ReadFull(r, buf)
		var werr error
		if isZero(buf[:n]) {
			_, werr = f.Seek(int64(n), io.SeekCurrent)
		} else {
			_, werr = f.Write(buf[:n])
		}
		if werr != nil {
			return werr
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Close()
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
