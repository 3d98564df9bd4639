package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// The member's recent warnings and errors, kept for `tandem cluster errors` (the admin channel's
// "errors"): whatever its log says at WARN and above also goes, one JSON object a line
// (wire.LogRecord: time, level, msg, attrs), to errors.log in its data directory, so that an
// operator can read what went wrong after the fact, across restarts, and without having kept the
// process's stderr.
//
// Disk use is bounded whatever happens: when errors.log would grow past errorsLogBytesMax it
// becomes errors.log.1 (replacing the previous one) and a new errors.log begins, so the two never
// hold more than twice the bound. One record is at most a few KiB (errorsMsgBytesMax and the attrs'
// bounds), far under the bound, so a record always fits a fresh file.
//
// The decision: these are diagnostics, not acknowledged data, so nothing is synced, and nothing
// waits for the disk on the logging goroutine (often the member's loop, sometimes under a flood
// of warnings). The logging goroutine only encodes the record, keeps it in memory (the newest
// wire.ErrorsAnswerRecordsMax, which the admin channel serves without touching the disk) and hands
// it to a writer goroutine through a bounded queue (errorsQueueRecordsMax); when the queue is
// full the record is not written, and counted (Status.ErrorsLogDropped). A crash may lose the
// last records written, or tear the last line: a torn line is skipped when the file is read, and
// the next record starts on a line of its own. A write that fails is counted
// (Status.ErrorsLogFailures) and said once in the member's log: the member goes on.
//
// The files are written only while Run holds the data directory's lock; they are not the
// archive's (which neither reads nor minds them), and tandem clean removes them with the rest.
const (
	errorsLogName     = "errors.log"
	errorsLogPrevName = errorsLogName + ".1"
	// errorsLogBytesMax bounds each of the two files.
	errorsLogBytesMax = 256 << 10
	// errorsQueueRecordsMax bounds the records waiting for the writer.
	errorsQueueRecordsMax = 1024
	// errorsMsgBytesMax, errorsAttrsMax, errorsAttrKeyBytesMax and errorsAttrValueBytesMax bound
	// one record: longer texts are cut (ending in "…"), further attrs are counted in one last
	// attr, errorsAttrsCutKey.
	errorsMsgBytesMax       = 1 << 10
	errorsAttrsMax          = 24
	errorsAttrKeyBytesMax   = 64
	errorsAttrValueBytesMax = 256
	errorsAttrsCutKey       = "attrs_not_kept"
	// errorsTimeLayout is RFC 3339 to the millisecond.
	errorsTimeLayout = "2006-01-02T15:04:05.000Z07:00"
)

// keptRecord is a record and its line in the file (its JSON and a newline).
type keptRecord struct {
	rec  wire.LogRecord
	line []byte
}

// errorLog keeps the member's warnings and errors: in memory, the newest, for the admin channel;
// on disk, through its writer goroutine, while a file is open (open … close, within Run).
type errorLog struct {
	// inner is the member's own log handler, where the writer says once that it failed.
	inner slog.Handler

	mu sync.Mutex
	// recent holds the newest records, oldest first: at most 2×wire.ErrorsAnswerRecordsMax (it is
	// cut back to the newest wire.ErrorsAnswerRecordsMax when it reaches that). Behind mu.
	recent []keptRecord
	// queue carries lines to the writer; nil while no file is open. Behind mu: close closes it
	// under mu, so that nobody sends on a closed channel.
	queue chan []byte
	done  chan struct{} // closed when the writer has ended (nil before open)

	// inFiles counts the records the two files hold (counted at open, then kept by the writer).
	inFiles    atomic.Int64
	dropped    atomic.Int64 // records not written: the queue was full
	failures   atomic.Int64 // writes (or opens, renames) of the files that failed
	failLogged atomic.Bool  // the first failure was said in the log
}

func newErrorLog(inner slog.Handler) *errorLog { return &errorLog{inner: inner} }

// add keeps a record. It never waits for the disk: the line goes to the writer only if the queue
// has room.
func (e *errorLog) add(rec wire.LogRecord) {
	line, err := json.Marshal(rec)
	if err != nil {
		return // strings only: cannot fail
	}
	line = append(line, '\n')
	e.mu.Lock()
	defer e.mu.Unlock()
	e.recent = append(e.recent, keptRecord{rec, line})
	if len(e.recent) >= 2*wire.ErrorsAnswerRecordsMax {
		e.recent = append(e.recent[:0], e.recent[len(e.recent)-wire.ErrorsAnswerRecordsMax:]...)
	}
	if e.queue == nil {
		return
	}
	select {
	case e.queue <- line:
	default:
		e.dropped.Add(1)
	}
}

// describe fills in an admin answer: the newest records, at most wire.ErrorsAnswerRecordsMax and
// wire.ErrorsAnswerBytesMax of them encoded, and how many more the member keeps. It does not
// touch the disk (the replica calls it on the loop's goroutine).
func (e *errorLog) describe(me *wire.MemberErrors) {
	e.mu.Lock()
	rs := e.recent[max(0, len(e.recent)-wire.ErrorsAnswerRecordsMax):]
	held := len(e.recent)
	first, total := len(rs), 0
	for first > 0 && total+len(rs[first-1].line) <= wire.ErrorsAnswerBytesMax {
		total += len(rs[first-1].line)
		first--
	}
	me.Records = make([]wire.LogRecord, 0, len(rs)-first)
	for _, k := range rs[first:] {
		me.Records = append(me.Records, k.rec)
	}
	e.mu.Unlock()
	me.Omitted = max(held, int(e.inFiles.Load())) - len(me.Records)
	me.Dropped, me.WriteFailures = int(e.dropped.Load()), int(e.failures.Load())
}

// open starts keeping the records in dir's errors.log: it reads the newest records the files
// hold (from an earlier run) into memory, opens errors.log to append, and starts the writer. A
// failure is counted and said in the log, and the records are then kept in memory only: the
// member runs on.
func (e *errorLog) open(dir string) {
	path := filepath.Join(dir, errorsLogName)
	prev, nPrev, _ := readRecords(filepath.Join(dir, errorsLogPrevName))
	cur, nCur, torn := readRecords(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	var size int64
	if err == nil {
		size, err = startLine(f, torn)
	}
	if err != nil {
		if f != nil {
			_ = f.Close()
		}
		e.failed(path, err)
		return
	}
	e.inFiles.Store(int64(nPrev + nCur))
	old := append(prev, cur...)
	q, done := make(chan []byte, errorsQueueRecordsMax), make(chan struct{})
	e.mu.Lock()
	// Records from before the files were open (none, as Run opens them first) stay the newest.
	e.recent = append(old[max(0, len(old)-wire.ErrorsAnswerRecordsMax):], e.recent...)
	e.queue, e.done = q, done
	e.mu.Unlock()
	w := &errorWriter{e: e, dir: dir, f: f, size: size, cur: nCur, prev: nPrev}
	go w.run(q, done)
}

// close stops the writer once it has written what was queued, and closes the file. Records
// logged afterwards are kept in memory only.
func (e *errorLog) close() {
	e.mu.Lock()
	q, done := e.queue, e.done
	e.queue = nil
	e.mu.Unlock()
	if q != nil {
		close(q)
		<-done
	}
}

// failed counts a failure to keep the file, and says so in the member's log the first time. Not
// through the tee: the file is what fails.
func (e *errorLog) failed(path string, err error) {
	e.failures.Add(1)
	if !e.failLogged.CompareAndSwap(false, true) {
		return
	}
	ctx := context.Background()
	if e.inner.Enabled(ctx, slog.LevelWarn) {
		r := slog.NewRecord(time.Now(), slog.LevelWarn, "cannot keep this member's warnings and errors in its data "+
			"directory (they are still logged here; further failures are only counted, in Status.ErrorsLogFailures)", 0)
		r.AddAttrs(slog.String("file", path), slog.String("err", err.Error()))
		_ = e.inner.Handle(ctx, r)
	}
}

// startLine makes the next write start a line of its own (a crash may have torn the last one:
// torn says the file does not end with a newline) and returns the file's size.
func startLine(f *os.File, torn bool) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Size() == 0 || !torn {
		return st.Size(), nil
	}
	n, err := f.Write([]byte{'\n'})
	return st.Size() + int64(n), err
}

// readRecords reads the records a file holds, skipping lines that are not one (a torn last line:
// torn says the file does not end with a newline); a file that is missing holds none. It reads at
// most errorsLogBytesMax from the file's end (there is more only if something else wrote to it),
// and keeps the newest wire.ErrorsAnswerRecordsMax; n counts them all.
func readRecords(path string) (recs []keptRecord, n int, torn bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, false
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > errorsLogBytesMax {
		_, _ = f.Seek(st.Size()-errorsLogBytesMax, io.SeekStart)
	}
	b, err := io.ReadAll(io.LimitReader(f, errorsLogBytesMax))
	if err != nil {
		return nil, 0, false
	}
	torn = len(b) > 0 && b[len(b)-1] != '\n'
	for line := range bytes.Lines(b) {
		var rec wire.LogRecord
		if !bytes.HasSuffix(line, []byte{'\n'}) || json.Unmarshal(line, &rec) != nil || rec.Time == "" {
			continue
		}
		n++
		recs = append(recs, keptRecord{rec, slices.Clone(line)})
		if len(recs) >= 2*wire.ErrorsAnswerRecordsMax {
			recs = append(recs[:0], recs[len(recs)-wire.ErrorsAnswerRecordsMax:]...)
		}
	}
	return recs[max(0, len(recs)-wire.ErrorsAnswerRecordsMax):], n, torn
}

// errorWriter writes the queued lines to errors.log, rotating it at errorsLogBytesMax. Its
// goroutine alone uses it.
type errorWriter struct {
	e   *errorLog
	dir string
	f   *os.File // nil after a failed rotation: each later line tries to open the file again
	// size is how long errors.log is (an upper bound, after a failed write); cur and prev count
	// the records in errors.log and errors.log.1.
	size      int64
	cur, prev int
}

func (w *errorWriter) run(q <-chan []byte, done chan<- struct{}) {
	defer close(done)
	for line := range q {
		w.write(line)
	}
	if w.f != nil {
		_ = w.f.Close()
	}
}

func (w *errorWriter) path() string { return filepath.Join(w.dir, errorsLogName) }

func (w *errorWriter) write(line []byte) {
	if w.f == nil || w.size+int64(len(line)) > errorsLogBytesMax {
		if err := w.rotate(); err != nil {
			w.e.failed(w.path(), err)
			return
		}
	}
	n, err := w.f.Write(line)
	w.size += int64(len(line)) // a short write may still have written some of it
	if err != nil || n != len(line) {
		w.e.failed(w.path(), cmpErr(err, io.ErrShortWrite))
		return
	}
	w.cur++
	w.e.inFiles.Store(int64(w.cur + w.prev))
}

// rotate makes errors.log errors.log.1 (the previous one goes) and starts an empty errors.log.
// If errors.log cannot be renamed it is emptied instead: the bound holds either way.
func (w *errorWriter) rotate() error {
	if w.f != nil {
		_ = w.f.Close()
		w.f = nil
		if err := os.Rename(w.path(), filepath.Join(w.dir, errorsLogPrevName)); err == nil {
			w.prev = w.cur
		} else if !errors.Is(err, fs.ErrNotExist) {
			w.prev = 0
			if terr := os.Truncate(w.path(), 0); terr != nil {
				return fmt.Errorf("rotating %s at %d bytes: %w; emptying it: %w", w.path(), errorsLogBytesMax, err, terr)
			}
		}
	}
	f, err := os.OpenFile(w.path(), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	w.f, w.size, w.cur = f, 0, 0
	w.e.inFiles.Store(int64(w.prev))
	return nil
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// teeHandler sends every record to the member's own handler (as that handler's level allows), and
// records at WARN and above to the errorLog too, whatever that level.
type teeHandler struct {
	inner slog.Handler
	errs  *errorLog
	// attrs are those of With, rendered; prefix is the groups of WithGroup ("g.h.").
	attrs  []wire.LogAttr
	prefix string
}

func (h *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.inner.Enabled(ctx, l)
}

func (h *teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.inner.Enabled(ctx, r.Level) {
		err = h.inner.Handle(ctx, r)
	}
	if r.Level >= slog.LevelWarn {
		h.errs.add(h.record(r))
	}
	return err
}

func (h *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := &teeHandler{inner: h.inner.WithAttrs(as), errs: h.errs, attrs: slices.Clip(h.attrs), prefix: h.prefix}
	cut := 0
	for _, a := range as {
		if a.Key == selfKey && h.prefix == "" {
			continue // the member's own id: errors.log is its own, and its answers name it
		}
		out.attrs = appendAttr(out.attrs, h.prefix, a, &cut)
	}
	return out
}

func (h *teeHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &teeHandler{inner: h.inner.WithGroup(name), errs: h.errs, attrs: h.attrs, prefix: h.prefix + name + "."}
}

// record renders r as the errors log keeps it, within the bounds of one record.
func (h *teeHandler) record(r slog.Record) wire.LogRecord {
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	rec := wire.LogRecord{Time: t.Format(errorsTimeLayout), Level: r.Level.String(), Msg: cutText(r.Message, errorsMsgBytesMax)}
	cut := 0
	rec.Attrs = append(rec.Attrs, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs = appendAttr(rec.Attrs, h.prefix, a, &cut)
		return true
	})
	if cut > 0 {
		rec.Attrs = append(rec.Attrs, wire.LogAttr{Key: errorsAttrsCutKey, Value: strconv.Itoa(cut)})
	}
	return rec
}

// appendAttr appends a, a group flattened ("group.key"), counting in cut what is over
// errorsAttrsMax.
func appendAttr(as []wire.LogAttr, prefix string, a slog.Attr, cut *int) []wire.LogAttr {
	v := a.Value.Resolve()
	if a.Key == "" && v.Kind() != slog.KindGroup {
		return as // slog's handlers drop an attr without a key
	}
	if v.Kind() == slog.KindGroup {
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, g := range v.Group() {
			as = appendAttr(as, prefix, g, cut)
		}
		return as
	}
	if len(as) >= errorsAttrsMax {
		*cut++
		return as
	}
	return append(as, wire.LogAttr{Key: cutText(prefix+a.Key, errorsAttrKeyBytesMax), Value: cutText(v.String(), errorsAttrValueBytesMax)})
}

// cutText cuts s to at most n bytes (on a character's boundary), ending it with "…" if it was cut.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n-len("…")]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
