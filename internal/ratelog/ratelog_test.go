package ratelog

import (
	"testing"
	"time"
)

func TestLimiterLetsOneLinePerIntervalAndCountsTheRest(t *testing.T) {
	l := Limiter{Every: time.Second}
	t0 := time.Unix(1000, 0)
	if ok, held := l.Allow(t0); !ok || held != 0 {
		t.Fatalf("first occurrence: ok %v held %d, want true 0", ok, held)
	}
	for i := range 5 {
		if ok, _ := l.Allow(t0.Add(time.Duration(i+1) * 100 * time.Millisecond)); ok {
			t.Fatalf("occurrence %d within the interval was let through", i+2)
		}
	}
	if ok, held := l.Allow(t0.Add(time.Second)); !ok || held != 5 {
		t.Fatalf("after the interval: ok %v held %d, want true 5", ok, held)
	}
	if ok, held := l.Allow(t0.Add(3 * time.Second)); !ok || held != 0 {
		t.Fatalf("after a quiet interval: ok %v held %d, want true 0", ok, held)
	}
}

// An outage is logged when it begins, then once per interval with the count held meanwhile, and
// when it ends, with how long it lasted and how many occurrences it had; a later outage starts
// afresh.
func TestOutageSaysWhenItStartsRepeatsAndStops(t *testing.T) {
	o := Outage{Every: 30 * time.Second}
	t0 := time.Unix(1000, 0)
	if _, ok := o.Recover(t0); ok {
		t.Fatal("Recover without an outage reported one")
	}
	if r, ok := o.Fail(t0); !ok || !r.First || r.Count != 1 {
		t.Fatalf("first failure: %+v %v, want a first line", r, ok)
	}
	// Failures every 2 s: none logged until 30 s after the first.
	at := t0
	for range 14 {
		at = at.Add(2 * time.Second)
		if r, ok := o.Fail(at); ok {
			t.Fatalf("failure at %s logged within the interval: %+v", at.Sub(t0), r)
		}
	}
	at = t0.Add(30 * time.Second)
	if r, ok := o.Fail(at); !ok || r.First || r.For != 30*time.Second || r.Count != 16 || r.Held != 14 {
		t.Fatalf("failure at 30 s: %+v %v, want a repeat for 30s, 16 failures, 14 held", r, ok)
	}
	if r, ok := o.Fail(at.Add(time.Second)); ok {
		t.Fatalf("failure at 31 s logged: %+v", r)
	}
	end := t0.Add(47 * time.Second)
	// The end is noticed at 47 s, 16 s after the last failure: the outage lasted 31 s.
	if r, ok := o.Recover(end); !ok || r.For != 31*time.Second || r.LastAgo != 16*time.Second || r.Count != 17 || r.Held != 1 {
		t.Fatalf("recovery at 47 s: %+v %v, want 31s (first to last failure), last 16s ago, 17 failures, 1 held", r, ok)
	}
	if _, ok := o.Recover(end.Add(time.Second)); ok {
		t.Fatal("a second Recover reported the outage again")
	}
	if r, ok := o.Fail(end.Add(time.Minute)); !ok || !r.First || r.Count != 1 {
		t.Fatalf("a later outage: %+v %v, want a first line", r, ok)
	}
}

// Each key is limited on its own; a full set forgets the keys that are quiet, and a new key
// beyond the bound shares one overflow limiter.
func TestKeyedLimitsEachKeyAndStaysBounded(t *testing.T) {
	k := Keyed{Every: time.Second, KeysMax: 2}
	t0 := time.Unix(1000, 0)
	if ok, _ := k.Allow("a", t0); !ok {
		t.Fatal("a's first line held")
	}
	if ok, _ := k.Allow("b", t0); !ok {
		t.Fatal("b's first line held behind a's")
	}
	if ok, _ := k.Allow("a", t0.Add(time.Millisecond)); ok {
		t.Fatal("a's second line within the interval let through")
	}
	// Full, and neither key is quiet (a held a line, b's interval runs): c overflows.
	if ok, _ := k.Allow("c", t0.Add(2*time.Millisecond)); !ok {
		t.Fatal("the overflow's first line held")
	}
	if ok, _ := k.Allow("d", t0.Add(3*time.Millisecond)); ok {
		t.Fatal("a second overflowing key's line within the interval let through")
	}
	if len(k.keys) != 2 {
		t.Fatalf("%d keys kept, bound 2", len(k.keys))
	}
	// After the interval b is quiet and forgotten for e; a, which held a line, is kept.
	if ok, _ := k.Allow("e", t0.Add(2*time.Second)); !ok {
		t.Fatal("e's first line held")
	}
	if _, kept := k.keys["a"]; !kept || k.keys["b"] != nil || k.keys["e"] == nil {
		t.Fatalf("keys %v: want a (it holds a count) and e", k.keys)
	}
	if ok, held := k.Allow("a", t0.Add(2*time.Second)); !ok || held != 1 {
		t.Fatalf("a after the interval: %v held %d, want true 1", ok, held)
	}
}
