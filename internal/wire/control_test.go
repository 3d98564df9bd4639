package wire

import (
	"errors"
	"reflect"
	"testing"
)

func TestControlRoundTrip(t *testing.T) {
	for _, c := range []Control{
		{Op: ControlSuspend, Token: "3.1"},
		{Op: ControlResume},
		{Op: ControlSnapshot, Token: "7.12"},
		{Op: ControlShutdown, Abort: true, Token: "x"},
		{Op: ControlShutdown},
		{Op: ControlPreferred, Preferred: []int{2, 0, 7}},
		{Op: ControlPreferred, Token: "9.9"},
	} {
		b := AppendControl(nil, &c)
		if k, err := EntryKindOf(b); err != nil || k != EntryControl {
			t.Fatalf("%+v: kind %v, %v", c, k, err)
		}
		got, err := DecodeControl(b)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("decoded %+v, want %+v", got, c)
		}
		for n := range len(b) {
			if _, err := DecodeControl(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%+v cut at %d: %v, want malformed", c, n, err)
			}
		}
	}
}

func TestControlRefusesNonsense(t *testing.T) {
	for name, b := range map[string][]byte{
		"unknown op":        AppendControl(nil, &Control{Op: 9}),
		"op zero":           AppendControl(nil, &Control{}),
		"abort on suspend":  AppendControl(nil, &Control{Op: ControlSuspend, Abort: true}),
		"preferred on stop": AppendControl(nil, &Control{Op: ControlShutdown, Preferred: []int{1}}),
		"twice":             AppendControl(nil, &Control{Op: ControlPreferred, Preferred: []int{1, 1}}),
		"too many":          AppendControl(nil, &Control{Op: ControlPreferred, Preferred: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}),
		"negative id":       AppendControl(nil, &Control{Op: ControlPreferred, Preferred: []int{-1}}),
		"trailing":          append(AppendControl(nil, &Control{Op: ControlResume}), 0),
		"flags":             {Version, uint8(EntryControl), uint8(ControlResume), 2, 0, 0},
		"long token":        AppendControl(nil, &Control{Op: ControlResume, Token: string(make([]byte, MaxControlTokenBytes+1))}),
	} {
		if _, err := DecodeControl(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
}
