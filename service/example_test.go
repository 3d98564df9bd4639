package service_test

import (
	"bytes"
	"fmt"
	"io"
	"time"

	"github.com/tandem-cluster/tandem/service"
	"github.com/tandem-cluster/tandem/tandemtest"
)

// Register holds one value; a command replaces it and replies with the value it replaced.
type Register struct {
	service.Base // no-op OnSessionOpen, OnSessionClose, OnTimerEvent, OnRoleChange, OnTerminate
	value        []byte
}

var _ service.Service = (*Register)(nil)

// OnStart replaces all state with the snapshot's, or with the empty state when snap is nil.
func (r *Register) OnStart(_ service.Cluster, snap io.Reader) (err error) {
	r.value = nil
	if snap != nil {
		r.value, err = io.ReadAll(snap)
	}
	return err
}

func (r *Register) OnSessionMessage(_ service.Session, _ time.Time, msg []byte) []byte {
	old := r.value
	r.value = bytes.Clone(msg) // msg must not be retained
	return old
}

func (r *Register) OnQuery([]byte) []byte { return r.value }

func (r *Register) OnTakeSnapshot(w io.Writer) error {
	_, err := w.Write(r.value)
	return err
}

// exampleT stands in for the *testing.T a test passes to tandemtest.New.
type exampleT struct{}

func (exampleT) Helper()                           {}
func (exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// The register on three members (package tandemtest simulates them in memory), through a crash
// of its leader.
func Example() {
	c := tandemtest.New(exampleT{}, tandemtest.Options{Seed: 1, NewService: func() service.Service { return &Register{} }})
	cl := c.NewClient()
	old, _ := cl.Send([]byte("first"))
	fmt.Printf("%q\n", old)
	old, _ = cl.Send([]byte("second"))
	fmt.Printf("%q\n", old)

	c.Crash(c.Leader())
	value, _ := cl.Query(nil)
	fmt.Printf("%q\n", value)
	c.Check()
	// Output:
	// ""
	// "first"
	// "second"
}
