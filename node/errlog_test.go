package node

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// fileRecords reads every line of a file as a record, failing on one that is not.
func fileRecords(t *testing.T, path string) []wire.LogRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var recs []wire.LogRecord
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, errorsLogBytesMax)
	for sc.Scan() {
		var r wire.LogRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: line %q is not a record: %v", path, sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// attr is the value of a record's attr key ("" if absent).
func attr(r wire.LogRecord, key string) string {
	for _, a := range r.Attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}

// A member's logger keeps WARN and above, whatever its own level, with its attrs (With's, and
// groups flattened) as strings; the member's own handler still gets what its level allows.
func TestErrorLogKeepsWarningsWithTheirAttrs(t *testing.T) {
	var out bytes.Buffer
	inner := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelError})
	errs := newErrorLog(inner)
	log := slog.New(&teeHandler{inner: inner, errs: errs})
	dir := t.TempDir()
	errs.open(dir)

	log.Info("not kept")
	log.With("member", 2).WithGroup("peer").Warn("dial failed", "addr", "10.0.0.1:9100", "err", errors.New("connection refused"),
		slog.Group("retry", "after", "1s"))
	log.Error("disk", "file", "a b=c")
	long := strings.Repeat("é", errorsMsgBytesMax) // two bytes each: cut on a character's boundary
	var many []any
	for i := range errorsAttrsMax + 3 {
		many = append(many, "k"+strconv.Itoa(i), i)
	}
	log.Warn(long, many...)
	errs.close()

	recs := fileRecords(t, filepath.Join(dir, errorsLogName))
	if len(recs) != 3 {
		t.Fatalf("errors.log holds %d records, want 3 (WARN and above): %+v", len(recs), recs)
	}
	r := recs[0]
	want := []wire.LogAttr{{Key: "member", Value: "2"}, {Key: "peer.addr", Value: "10.0.0.1:9100"},
		{Key: "peer.err", Value: "connection refused"}, {Key: "peer.retry.after", Value: "1s"}}
	if r.Level != "WARN" || r.Msg != "dial failed" || fmt.Sprint(r.Attrs) != fmt.Sprint(want) || len(r.Time) != len("2006-01-02T15:04:05.000Z") &&
		len(r.Time) != len("2006-01-02T15:04:05.000+00:00") {
		t.Fatalf("first record %+v, want WARN \"dial failed\" with %v", r, want)
	}
	if recs[1].Level != "ERROR" || recs[1].Msg != "disk" || attr(recs[1], "file") != "a b=c" {
		t.Fatalf("second record %+v", recs[1])
	}
	r = recs[2]
	if len(r.Msg) > errorsMsgBytesMax || !strings.HasSuffix(r.Msg, "…") || !strings.HasPrefix(r.Msg, "éé") ||
		strings.ToValidUTF8(r.Msg, "?") != r.Msg {
		t.Fatalf("a long message: %d bytes, %q…, want at most %d bytes, cut on a character and ending in …", len(r.Msg), r.Msg[:8], errorsMsgBytesMax)
	}
	if len(r.Attrs) != errorsAttrsMax+1 || attr(r, errorsAttrsCutKey) != "3" || attr(r, "k0") != "0" {
		t.Fatalf("a record with %d attrs kept %d: %v; want %d and %s=3", errorsAttrsMax+3, len(r.Attrs), r.Attrs, errorsAttrsMax, errorsAttrsCutKey)
	}
	// The member's own handler, at ERROR: the error only.
	if got := out.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, "level=ERROR msg=disk") {
		t.Fatalf("the member's own handler got %q, want the ERROR line only", got)
	}
}

// writeN has the writer write n records of about size bytes, numbered from first, checking
// after each that neither file is over the bound.
func writeN(t *testing.T, w *errorWriter, first, n, size int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		rec := wire.LogRecord{Time: "2026-01-01T00:00:00.000Z", Level: "WARN", Msg: strings.Repeat("x", size),
			Attrs: []wire.LogAttr{{Key: "seq", Value: strconv.Itoa(i)}}}
		line, _ := json.Marshal(rec)
		w.write(append(line, '\n'))
		for _, name := range []string{errorsLogName, errorsLogPrevName} {
			if st, err := os.Stat(filepath.Join(w.dir, name)); err == nil && st.Size() > errorsLogBytesMax {
				t.Fatalf("after record %d, %s is %d bytes: over the bound of %d", i, name, st.Size(), errorsLogBytesMax)
			}
		}
	}
}

// The file is rotated before it would pass the bound: errors.log.1 takes the older records (the
// one before it goes), errors.log the newer, and neither is ever over the bound, whatever the
// records' sizes.
func TestErrorLogRotatesAtItsBound(t *testing.T) {
	dir := t.TempDir()
	errs := newErrorLog(slog.DiscardHandler)
	f, err := os.OpenFile(filepath.Join(dir, errorsLogName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	w := &errorWriter{e: errs, dir: dir, f: f}
	// Records of several sizes, a file's worth of each: several rotations.
	next := 0
	for _, size := range []int{100, 3000, 1, 777, 1000} {
		n := errorsLogBytesMax/(size+100) + 50
		writeN(t, w, next, n, size)
		next += n
	}
	_ = w.f.Close()
	prev, cur := fileRecords(t, filepath.Join(dir, errorsLogPrevName)), fileRecords(t, filepath.Join(dir, errorsLogName))
	if len(prev) == 0 || len(cur) == 0 {
		t.Fatalf("errors.log.1 holds %d records, errors.log %d: want both some", len(prev), len(cur))
	}
	t.Logf("%d records written; the files hold the newest %d+%d", next, len(prev), len(cur))
	// One unbroken run of the newest records, across the two files.
	all := append(prev, cur...)
	for i, r := range all {
		if want := strconv.Itoa(next - len(all) + i); attr(r, "seq") != want {
			t.Fatalf("record %d of the files is seq %s, want %s: the files must hold the newest records in order", i, attr(r, "seq"), want)
		}
	}
	if w.cur != len(cur) || w.prev != len(prev) || errs.inFiles.Load() != int64(len(all)) {
		t.Fatalf("the writer counts %d+%d records (%d in all), the files hold %d+%d", w.prev, w.cur, errs.inFiles.Load(), len(prev), len(cur))
	}
	st, _ := os.Stat(filepath.Join(dir, errorsLogPrevName))
	if st.Size() < errorsLogBytesMax-2000 {
		t.Fatalf("errors.log.1 is %d bytes: it was rotated well before the bound (%d)", st.Size(), errorsLogBytesMax)
	}
}

// The records survive a restart: a new errorLog on the directory serves the old ones (the newest
// wire.ErrorsAnswerRecordsMax, oldest first), and appends after them; a torn last line (a
// crash mid-write) is skipped, and the next record starts a line of its own.
func TestErrorLogSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	errs := newErrorLog(slog.DiscardHandler)
	errs.open(dir)
	log := slog.New(&teeHandler{inner: slog.DiscardHandler, errs: errs})
	for i := range wire.ErrorsAnswerRecordsMax + 50 {
		log.Warn("before the restart", "i", i)
	}
	errs.close()
	path := filepath.Join(dir, errorsLogName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"time":"2026-01-01T00:00:00.000Z","level":"WA`); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	errs = newErrorLog(slog.DiscardHandler)
	errs.open(dir)
	var me wire.MemberErrors
	errs.describe(&me)
	if len(me.Records) != wire.ErrorsAnswerRecordsMax || me.Omitted != 50 ||
		attr(me.Records[0], "i") != "50" || attr(me.Records[len(me.Records)-1], "i") != strconv.Itoa(wire.ErrorsAnswerRecordsMax+49) {
		t.Fatalf("after the restart: %d records (first i=%s, last i=%s), %d omitted; want the newest %d, i=50 to %d, and 50 omitted",
			len(me.Records), attr(me.Records[0], "i"), attr(me.Records[len(me.Records)-1], "i"), me.Omitted,
			wire.ErrorsAnswerRecordsMax, wire.ErrorsAnswerRecordsMax+49)
	}
	slog.New(&teeHandler{inner: slog.DiscardHandler, errs: errs}).Error("after the restart")
	errs.close()
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if n := len(lines); n != wire.ErrorsAnswerRecordsMax+52 || !strings.HasSuffix(lines[n-2], `"level":"WA`) ||
		!strings.Contains(lines[n-1], `"msg":"after the restart"`) {
		t.Fatalf("errors.log has %d lines, ending %q; want %d: the old records, the torn line, and the new record on a line of its own",
			n, lines[max(0, n-2):], wire.ErrorsAnswerRecordsMax+52)
	}
	errs = newErrorLog(slog.DiscardHandler)
	errs.open(dir)
	defer errs.close()
	me = wire.MemberErrors{}
	errs.describe(&me)
	if last := me.Records[len(me.Records)-1]; last.Msg != "after the restart" || last.Level != "ERROR" || me.Omitted != 51 {
		t.Fatalf("after a second restart the newest record is %+v, %d omitted; want the ERROR after the restart, 51 (the torn line is no record)",
			last, me.Omitted)
	}
}

// Many goroutines log at once (run with -race): every record is written whole, on a line of its
// own, or counted as dropped; none is lost uncounted.
func TestErrorLogConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	errs := newErrorLog(slog.DiscardHandler)
	errs.open(dir)
	log := slog.New(&teeHandler{inner: slog.DiscardHandler, errs: errs})
	const goroutines, each = 8, 100
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := log.With("g", g)
			for i := range each {
				l.Warn("flood", "i", i)
				var me wire.MemberErrors
				errs.describe(&me) // the admin channel reads meanwhile
			}
		}()
	}
	wg.Wait()
	errs.close()
	recs := append(fileRecords(t, filepath.Join(dir, errorsLogPrevName)), fileRecords(t, filepath.Join(dir, errorsLogName))...)
	seen := map[string]bool{}
	for _, r := range recs {
		key := attr(r, "g") + "/" + attr(r, "i")
		if r.Msg != "flood" || seen[key] {
			t.Fatalf("record %+v: not one of those logged, or twice", r)
		}
		seen[key] = true
	}
	t.Logf("%d records written, %d dropped", len(recs), errs.dropped.Load())
	if got := len(recs) + int(errs.dropped.Load()); got != goroutines*each {
		t.Fatalf("%d records written and %d dropped, want %d in all", len(recs), errs.dropped.Load(), goroutines*each)
	}
	var me wire.MemberErrors
	errs.describe(&me)
	if len(me.Records) != wire.ErrorsAnswerRecordsMax {
		t.Fatalf("the answer holds %d records, want the newest %d", len(me.Records), wire.ErrorsAnswerRecordsMax)
	}
}

// The answer stays under wire.ErrorsAnswerBytesMax however long the records, saying how many it
// left out.
func TestErrorLogAnswerIsBounded(t *testing.T) {
	errs := newErrorLog(slog.DiscardHandler)
	log := slog.New(&teeHandler{inner: slog.DiscardHandler, errs: errs})
	for i := range 150 {
		log.Warn(strings.Repeat("m", errorsMsgBytesMax), "i", i, "v", strings.Repeat("v", errorsAttrValueBytesMax))
	}
	var me wire.MemberErrors
	errs.describe(&me)
	b, _ := json.Marshal(me.Records)
	if len(b) > wire.ErrorsAnswerBytesMax || len(me.Records) == 0 || len(me.Records)+me.Omitted != 150 ||
		attr(me.Records[len(me.Records)-1], "i") != "149" {
		t.Fatalf("the answer: %d records, %d bytes, %d omitted; want at most %d bytes, the newest, and the rest counted",
			len(me.Records), len(b), me.Omitted, wire.ErrorsAnswerBytesMax)
	}
}

// A file that cannot be written does not stop anything: the failure is counted, said once in
// the member's log, and the records are still served from memory.
func TestErrorLogFailureIsCountedAndSaidOnce(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	inner := slog.NewTextHandler(&out, nil)
	errs := newErrorLog(inner)
	errs.open(dir)
	log := slog.New(&teeHandler{inner: slog.DiscardHandler, errs: errs})
	// The directory goes (a member's directory wiped under it): the next rotation cannot create
	// the file again, nor any after it.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	errs.mu.Lock()
	q := errs.queue
	errs.mu.Unlock()
	for i := range 3 {
		// Forces a rotation for each: the writer believes the file full.
		q <- []byte(strings.Repeat("x", errorsLogBytesMax-10) + "\n")
		log.Warn("still served", "i", i)
	}
	errs.close()
	if f := errs.failures.Load(); f < 3 {
		t.Fatalf("%d failures counted, want at least 3", f)
	}
	if got := out.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, "cannot keep this member's warnings and errors") ||
		!strings.Contains(got, errorsLogName) {
		t.Fatalf("the member's log says %q: want the failure once, naming the file", got)
	}
	var me wire.MemberErrors
	errs.describe(&me)
	if len(me.Records) != 3 || me.Records[2].Msg != "still served" || me.WriteFailures < 3 {
		t.Fatalf("served %+v, want the 3 records and the failures", me)
	}
}

// Node.Logger, where the CLI logs the member's events in JSON, keeps a warning as the member's
// own lines are (errors.log and tandem cluster errors), with the member's id.
func TestNodeLoggerKeepsWarnings(t *testing.T) {
	var out bytes.Buffer
	cfg := DefaultConfig()
	cfg.ID, cfg.Members, cfg.DataDir = 1, LocalCluster(3), t.TempDir()
	cfg.Logger = slog.New(slog.NewJSONHandler(&out, nil))
	n, err := New(cfg, counter.New())
	if err != nil {
		t.Fatal(err)
	}
	n.Logger().Info("member reachable", "member", 2)
	n.Logger().Warn("member unreachable", "member", 2)
	var me wire.MemberErrors
	n.errs.describe(&me)
	if len(me.Records) != 1 || me.Records[0].Msg != "member unreachable" {
		t.Fatalf("kept %+v, want the warning only", me.Records)
	}
	if !strings.Contains(out.String(), `"self":1`) {
		t.Fatalf("Node.Logger's lines lack self: %s", out.String())
	}
}
