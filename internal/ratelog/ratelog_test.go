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
