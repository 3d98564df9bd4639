package kv_test

import (
	"fmt"
	"maps"
	"testing"

	"github.com/tandem-cluster/tandem/examples/kv"
	"github.com/tandem-cluster/tandem/service"
	"github.com/tandem-cluster/tandem/tandemtest"
)

func TestStore(t *testing.T) {
	c := tandemtest.New(t, tandemtest.Options{Seed: 1, NewService: func() service.Service { return kv.New() }})
	cl := c.NewClient()
	if reply, err := cl.Send([]byte("colour=blue")); err != nil || string(reply) != "OK" {
		t.Fatalf("Send: %q, %v", reply, err)
	}
	c.Crash(c.Leader()) // a power loss: what the leader never synced is gone
	if value, err := cl.Query([]byte("colour")); err != nil || string(value) != "blue" {
		t.Fatalf("Query after the leader crashed: %q, %v", value, err)
	}
	c.Check() // every running member applied the whole log, and they all computed the same
}

// Many keys through crashes, restarts and partitions, on many seeds: every query answers what
// the acknowledged commands set, and the members agree throughout.
func TestStoreUnderFaults(t *testing.T) {
	for seed := range uint64(10) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			c := tandemtest.New(t, tandemtest.Options{Seed: seed, NewService: func() service.Service { return kv.New() }})
			cl := c.NewClient()
			want := map[string]string{}
			for i := range 120 {
				k, v := fmt.Sprintf("key%d", i%13), fmt.Sprint(i)
				if reply, err := cl.Send([]byte(k + "=" + v)); err != nil || string(reply) != "OK" {
					t.Fatalf("set %s: %q, %v", k, reply, err)
				}
				want[k] = v
				switch i % 40 {
				case 10:
					c.Restart(c.Leader())
				case 20:
					c.Partition(c.Leader())
				case 30:
					c.Heal()
				}
				if i%7 == 0 {
					if got, err := cl.Query([]byte(k)); err != nil || string(got) != v {
						t.Fatalf("get %s: %q, %v, want %q", k, got, err, v)
					}
				}
			}
			c.Heal()
			c.Check()
			for m := range c.Members() {
				got := map[string]string{}
				for k := range want {
					got[k] = string(c.Service(m).OnQuery([]byte(k)))
				}
				if !maps.Equal(got, want) {
					t.Fatalf("member %d holds %v, want %v", m, got, want)
				}
			}
		})
	}
}

// A malformed command is answered with an error and changes nothing.
func TestBadCommand(t *testing.T) {
	c := tandemtest.New(t, tandemtest.Options{Seed: 2, NewService: func() service.Service { return kv.New() }})
	cl := c.NewClient()
	for _, cmd := range []string{"no equals sign", "=value", ""} {
		if reply, err := cl.Send([]byte(cmd)); err != nil || string(reply) != "ERROR: want key=value" {
			t.Fatalf("%q answered %q, %v", cmd, reply, err)
		}
	}
	if value, err := cl.Query([]byte("")); err != nil || len(value) != 0 {
		t.Fatalf("the empty key holds %q, %v", value, err)
	}
	c.Check()
}
