package counter

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

func cmd(s *Service, r Request) Response {
	resp, err := DecodeResponse(s.OnSessionMessage(nil, time.Time{}, EncodeRequest(r)))
	if err != nil {
		panic(err)
	}
	return resp
}

func TestOperations(t *testing.T) {
	s := New()
	steps := []struct {
		req  Request
		want string
	}{
		{Request{Op: OpIncrement}, "OK: counter=1"},
		{Request{Op: OpIncrement, Delta: 5}, "OK: counter=6"},
		{Request{Op: OpDecrement}, "OK: counter=5"},
		{Request{Op: OpDecrement, Delta: 10}, "OK: counter=-5"},
		{Request{Op: OpReset}, "OK: counter=0"},
		{Request{Op: OpGet}, "ERROR: GET is a query: send it with Query, not as a command"},
	}
	for i, st := range steps {
		if got := cmd(s, st.req).String(); got != st.want {
			t.Fatalf("step %d %+v: %q, want %q", i, st.req, got, st.want)
		}
	}
	q, _ := DecodeResponse(s.OnQuery(EncodeRequest(Request{Op: OpGet})))
	if q.String() != "VALUE: 0" {
		t.Fatalf("GET answered %q", q)
	}
	if q, _ := DecodeResponse(s.OnQuery(EncodeRequest(Request{Op: OpIncrement}))); q.OK {
		t.Fatalf("INCREMENT as a query was accepted")
	}
}

func TestOverflowIsAnErrorNotWrapAround(t *testing.T) {
	s := New()
	cmd(s, Request{Op: OpIncrement, Delta: math.MaxInt64})
	if r := cmd(s, Request{Op: OpIncrement}); r.OK || s.Value() != math.MaxInt64 {
		t.Fatalf("increment past MaxInt64: %v, value %d", r, s.Value())
	}
	cmd(s, Request{Op: OpReset})
	cmd(s, Request{Op: OpDecrement, Delta: math.MaxInt64})
	cmd(s, Request{Op: OpDecrement}) // MinInt64 exactly
	if s.Value() != math.MinInt64 {
		t.Fatalf("value %d, want MinInt64", s.Value())
	}
	if r := cmd(s, Request{Op: OpDecrement}); r.OK || s.Value() != math.MinInt64 {
		t.Fatalf("decrement past MinInt64: %v, value %d", r, s.Value())
	}
}

func TestBadInput(t *testing.T) {
	s := New()
	for _, b := range [][]byte{nil, {1}, {2, 1, 1}, {1, 9, 1}, {1, 1, 0x80}, {1, 1, 1, 0}, {1, 1, 1, 2, 0}, bytes.Repeat([]byte{0xff}, 12)} {
		if r, _ := DecodeResponse(s.OnSessionMessage(nil, time.Time{}, b)); r.OK {
			t.Fatalf("request %x accepted", b)
		}
		if _, err := DecodeRequest(b); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("DecodeRequest(%x) = %v, want ErrBadRequest", b, err)
		}
	}
	if s.Value() != 0 {
		t.Fatalf("bad input changed the counter to %d", s.Value())
	}
	for _, args := range [][]string{{"increment", "0"}, {"increment", "-3"}, {"increment", "x"}, {"get", "1"}, {"frobnicate"}, {"increment", "1", "2"}} {
		if _, err := ParseCommand(args[0], args[1:]); err == nil {
			t.Fatalf("ParseCommand(%q) accepted", args)
		}
	}
	padded := EncodeRequest(Request{Op: OpIncrement, Delta: 3, Pad: 4000})
	if r, err := DecodeRequest(padded); err != nil || r.Pad != 4000 || len(padded) < 4000 {
		t.Fatalf("padded request: %+v %v", r, err)
	}
	if r, err := ParseCommand("INCR", []string{"7"}); err != nil || r != (Request{Op: OpIncrement, Delta: 7}) {
		t.Fatalf("ParseCommand(INCR 7) = %+v, %v", r, err)
	}
}

func TestSnapshotReplacesState(t *testing.T) {
	a := New()
	cmd(a, Request{Op: OpIncrement, Delta: 2})
	var snap bytes.Buffer
	if err := a.OnTakeSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	b := New()
	cmd(b, Request{Op: OpIncrement, Delta: 5})
	if err := b.OnStart(nil, bytes.NewReader(snap.Bytes())); err != nil || b.Value() != 2 {
		t.Fatalf("OnStart(snapshot of 2) gave %d, %v", b.Value(), err)
	}
	var again bytes.Buffer
	_ = b.OnTakeSnapshot(&again)
	if !bytes.Equal(again.Bytes(), snap.Bytes()) {
		t.Fatalf("same state, different snapshot bytes")
	}
	if err := b.OnStart(nil, nil); err != nil || b.Value() != 0 {
		t.Fatalf("OnStart(nil) gave %d, %v", b.Value(), err)
	}
	bad := bytes.Clone(snap.Bytes())
	bad[3] ^= 1
	if err := b.OnStart(nil, bytes.NewReader(bad)); err == nil {
		t.Fatalf("corrupt snapshot accepted")
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(EncodeRequest(Request{Op: OpIncrement, Delta: 5}))
	f.Add(EncodeRequest(Request{Op: OpGet}))
	f.Add(EncodeRequest(Request{Op: OpIncrement, Delta: 1, Pad: 100}))
	f.Add([]byte{1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			return
		}
		if r2, err := DecodeRequest(EncodeRequest(r)); err != nil || r2 != r {
			t.Fatalf("round trip of %+v: %+v, %v", r, r2, err)
		}
	})
}

func Example() {
	svc := New()
	reply := svc.OnSessionMessage(nil, time.Time{}, EncodeRequest(Request{Op: OpIncrement, Delta: 5}))
	resp, _ := DecodeResponse(reply)
	fmt.Println(resp)
	resp, _ = DecodeResponse(svc.OnQuery(EncodeRequest(Request{Op: OpGet})))
	fmt.Println(resp)
	// Output:
	// OK: counter=5
	// VALUE: 5
}
