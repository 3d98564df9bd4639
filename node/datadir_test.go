package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/examples/counter"
)

// A second Node on a running member's data directory fails at once with ErrDataDirInUse naming
// this process's pid — not with the busy port it would meet next — and closes the listeners it
// was given; the first keeps serving. Once the first stops, the directory runs again.
func TestSecondNodeOnADataDirectoryIsRefused(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, nil)
	c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	inc(ctx, t, cl)

	cfg := c.members[0].cfg
	want := fmt.Sprintf("member 0: data directory %s is in use by process %d: one process per directory; stop it first", cfg.DataDir, os.Getpid())
	ml, clientL := listenLocal(t), listenLocal(t)
	for _, opts := range [][]Option{nil, {WithListeners(clientL, ml)}} {
		n, err := New(cfg, counter.New(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		err = n.Run(ctx)
		if !errors.Is(err, ErrDataDirInUse) || err.Error() != want {
			t.Fatalf("second Run on the directory: %v; want %q", err, want)
		}
		if d := time.Since(started); d > 5*time.Second {
			t.Fatalf("the refusal took %s", d)
		}
	}
	for _, l := range []interface{ Close() error }{ml, clientL} {
		if err := l.Close(); err == nil {
			t.Fatal("the refused Run left a listener it was given open")
		}
	}
	if v := inc(ctx, t, cl); v != 2 {
		t.Fatalf("the first member answered %d after the refusal, want 2", v)
	}
	c.stop(0)
	c.start(0)
	c.leader(15 * time.Second)
	if v := inc(ctx, t, cl); v != 3 {
		t.Fatalf("the restarted member answered %d, want 3", v)
	}
}
