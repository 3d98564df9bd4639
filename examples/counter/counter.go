// Package counter is Tandem's flagship example: the counter service of the seed (Aeron Cluster's
// INCREMENT, DECREMENT, GET, RESET and SOFAJRaft's incrementAndGet(delta)), plus the codec its
// clients use.
//
// Commands go through the log and reply with the new value ("OK: counter=N"); GET is a query,
// answered linearizably without a log entry ("VALUE: N"). Overflow and bad input are errors in
// the reply, and leave the counter unchanged: never wrap-around.
//
//	svc := counter.New()                    // run it: node.New(cfg, svc)
//	req := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement, Delta: 5})
//	raw, _ := client.Send(ctx, req)         // exactly once
//	resp, _ := counter.DecodeResponse(raw)  // resp.String() == "OK: counter=5"
package counter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-cluster/tandem/service"
)

// Op is a counter operation.
type Op uint8

// Operations. OpGet is valid only as a query.
const (
	OpIncrement Op = 1
	OpDecrement Op = 2
	OpReset     Op = 3
	OpGet       Op = 4
)

const codecVersion uint8 = 1

// MaxDelta bounds the delta of one increment or decrement. The delta must be at least 1: a
// negative increment is a DECREMENT, so every request has one spelling.
const MaxDelta = math.MaxInt64

// Request is a counter request. Delta is used by increment and decrement; 0 means 1. Pad
// bytes of padding travel with it and are ignored: the benchmark uses them to measure payload
// sizes.
type Request struct {
	Op    Op
	Delta int64
	Pad   int
}

// MaxPad bounds the padding of a request.
const MaxPad = 64 << 10

// ErrBadRequest wraps every request decoding and parsing error.
var ErrBadRequest = errors.New("counter: bad request")

// EncodeRequest encodes r: version, op, uvarint delta, and, when Pad > 0, uvarint pad length and
// that many zero bytes.
func EncodeRequest(r Request) []byte {
	b := []byte{codecVersion, byte(r.Op)}
	b = binary.AppendUvarint(b, uint64(r.Delta))
	if r.Pad > 0 {
		b = binary.AppendUvarint(b, uint64(r.Pad))
		b = append(b, make([]byte, r.Pad)...)
	}
	return b
}

// DecodeRequest decodes a request; it rejects unknown versions and ops, negative or oversized
// deltas and trailing bytes.
func DecodeRequest(b []byte) (Request, error) {
	if len(b) < 3 {
		return Request{}, fmt.Errorf("%w: %d bytes", ErrBadRequest, len(b))
	}
	if b[0] != codecVersion {
		return Request{}, fmt.Errorf("%w: version %d", ErrBadRequest, b[0])
	}
	op := Op(b[1])
	if op < OpIncrement || op > OpGet {
		return Request{}, fmt.Errorf("%w: op %d", ErrBadRequest, op)
	}
	d, n := binary.Uvarint(b[2:])
	if n <= 0 {
		return Request{}, fmt.Errorf("%w: bad delta encoding", ErrBadRequest)
	}
	if d > math.MaxInt64 {
		return Request{}, fmt.Errorf("%w: delta %d too large", ErrBadRequest, d)
	}
	r := Request{Op: op, Delta: int64(d)}
	rest := b[2+n:]
	if len(rest) == 0 {
		return r, nil
	}
	pad, k := binary.Uvarint(rest)
	if k <= 0 || pad == 0 || pad > MaxPad || uint64(len(rest)-k) != pad {
		return Request{}, fmt.Errorf("%w: bad padding", ErrBadRequest)
	}
	r.Pad = int(pad)
	return r, nil
}

// Response is a counter reply.
type Response struct {
	OK    bool
	Value int64
	Err   string
	Query bool // a GET answer
}

// EncodeResponse encodes r: version, flags (ok, query), zigzag value, error text.
func EncodeResponse(r Response) []byte {
	flags := byte(0)
	if r.OK {
		flags |= 1
	}
	if r.Query {
		flags |= 2
	}
	b := make([]byte, 0, 2+binary.MaxVarintLen64+len(r.Err)) // one allocation
	b = append(b, codecVersion, flags)
	b = binary.AppendVarint(b, r.Value)
	return append(b, r.Err...)
}

// DecodeResponse decodes a reply.
func DecodeResponse(b []byte) (Response, error) {
	if len(b) < 3 || b[0] != codecVersion || b[1] > 3 {
		return Response{}, fmt.Errorf("counter: bad response %x", b)
	}
	v, n := binary.Varint(b[2:])
	if n <= 0 {
		return Response{}, fmt.Errorf("counter: bad response value %x", b)
	}
	return Response{OK: b[1]&1 != 0, Query: b[1]&2 != 0, Value: v, Err: string(b[2+n:])}, nil
}

// String renders a reply as the seed prints it.
func (r Response) String() string {
	switch {
	case !r.OK:
		return "ERROR: " + r.Err
	case r.Query:
		return "VALUE: " + strconv.FormatInt(r.Value, 10)
	}
	return "OK: counter=" + strconv.FormatInt(r.Value, 10)
}

// ParseCommand turns a command line into a request: increment|incr|inc [delta],
// decrement|decr|dec [delta], reset, get (case-insensitive).
func ParseCommand(verb string, args []string) (Request, error) {
	var r Request
	switch strings.ToLower(verb) {
	case "increment", "incr", "inc":
		r.Op = OpIncrement
	case "decrement", "decr", "dec":
		r.Op = OpDecrement
	case "reset":
		r.Op = OpReset
	case "get":
		r.Op = OpGet
	default:
		return Request{}, fmt.Errorf("%w: unknown command %q (want increment, decrement, get or reset)", ErrBadRequest, verb)
	}
	takesDelta := r.Op == OpIncrement || r.Op == OpDecrement
	switch {
	case len(args) == 0:
		r.Delta = 1
		if !takesDelta {
			r.Delta = 0
		}
	case len(args) == 1 && takesDelta:
		d, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil || d < 1 {
			return Request{}, fmt.Errorf("%w: delta %q must be an integer from 1 to %d", ErrBadRequest, args[0], int64(MaxDelta))
		}
		r.Delta = d
	default:
		return Request{}, fmt.Errorf("%w: %s takes %s", ErrBadRequest, verb, map[bool]string{true: "at most one delta", false: "no arguments"}[takesDelta])
	}
	return r, nil
}

// Service is the counter service. Create it with New. It keeps no per-session state, schedules
// no timers and ignores roles and shutdown: service.Base has those callbacks.
type Service struct {
	service.Base
	value int64
}

var _ service.Service = (*Service)(nil)

// New returns a counter at zero.
func New() *Service { return &Service{} }

// Value returns the counter (for tests and examples).
func (s *Service) Value() int64 { return s.value }

func fail(format string, args ...any) []byte {
	return EncodeResponse(Response{Err: fmt.Sprintf(format, args...)})
}

func delta(r Request) int64 {
	if r.Delta == 0 {
		return 1
	}
	return r.Delta
}

// OnSessionMessage applies INCREMENT, DECREMENT and RESET.
func (s *Service) OnSessionMessage(_ service.Session, _ time.Time, msg []byte) []byte {
	r, err := DecodeRequest(msg)
	if err != nil {
		return fail("%v", err)
	}
	switch r.Op {
	case OpIncrement:
		d := delta(r)
		if s.value > math.MaxInt64-d {
			return fail("overflow: %d + %d exceeds %d", s.value, d, int64(math.MaxInt64))
		}
		s.value += d
	case OpDecrement:
		d := delta(r)
		if s.value < math.MinInt64+d {
			return fail("overflow: %d - %d is below %d", s.value, d, int64(math.MinInt64))
		}
		s.value -= d
	case OpReset:
		s.value = 0
	default:
		return fail("GET is a query: send it with Query, not as a command")
	}
	return EncodeResponse(Response{OK: true, Value: s.value})
}

// OnQuery answers GET.
func (s *Service) OnQuery(q []byte) []byte {
	r, err := DecodeRequest(q)
	if err != nil {
		return fail("%v", err)
	}
	if r.Op != OpGet {
		return fail("only GET is a query; %d changes state and must be sent as a command", r.Op)
	}
	return EncodeResponse(Response{OK: true, Query: true, Value: s.value})
}

// Snapshot layout: version u8 | value i64 LE | CRC-32C of the 9 bytes before.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// OnTakeSnapshot writes the value.
func (s *Service) OnTakeSnapshot(w io.Writer) error {
	b := []byte{codecVersion}
	b = binary.LittleEndian.AppendUint64(b, uint64(s.value))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	_, err := w.Write(b)
	return err
}

// OnStart replaces the value with the snapshot's, or zero.
func (s *Service) OnStart(_ service.Cluster, snap io.Reader) error {
	s.value = 0
	if snap == nil {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(snap, 64))
	if err != nil {
		return err
	}
	if len(b) != 13 || b[0] != codecVersion || crc32.Checksum(b[:9], castagnoli) != binary.LittleEndian.Uint32(b[9:]) {
		return fmt.Errorf("counter: snapshot of %d bytes is corrupt or of an unknown version", len(b))
	}
	s.value = int64(binary.LittleEndian.Uint64(b[1:9]))
	return nil
}
