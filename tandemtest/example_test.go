package tandemtest_test

import (
	"fmt"

	"github.com/tandem-cluster/tandem/examples/kv"
	"github.com/tandem-cluster/tandem/service"
	"github.com/tandem-cluster/tandem/tandemtest"
)

// exampleT stands in for the *testing.T a test passes to New.
type exampleT struct{}

func (exampleT) Helper()                           {}
func (exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// A test of the kv example's store: three members, a command, a crash of the leader, a query
// that finds the value on the new leader, and the final check. In a test, t is its *testing.T.
func Example() {
	var t tandemtest.TB = exampleT{}

	c := tandemtest.New(t, tandemtest.Options{Seed: 1, NewService: func() service.Service { return kv.New() }})
	cl := c.NewClient()
	reply, err := cl.Send([]byte("colour=blue"))
	fmt.Println(string(reply), err)

	old := c.Leader()
	c.Crash(old) // a power loss: what the leader never synced is gone
	value, err := cl.Query([]byte("colour"))
	fmt.Println(string(value), err)

	c.Start(old)
	c.Check() // every member applied the whole log, and they all computed the same
	fmt.Println(c.Applied(old) == c.Applied(c.Leader()))
	// Output:
	// OK <nil>
	// blue <nil>
	// true
}
