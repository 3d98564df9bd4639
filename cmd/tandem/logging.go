package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// How tandem node logs. Everything the member says goes through one slog.Logger: its own lines
// (node.Config.Logger, on stderr) and, in JSON, its events too.
//
//   - --log-format text (the default): the member's log is slog's text format on stderr
//     ("time=… level=INFO msg=… self=0 member=2 …"), and standard output is the seed's
//     walk-through, as it was: the start banner, the ROLE CHANGE bars, the "New leader elected"
//     box, and one short line per other event ("15:04:05.000 member 2 unreachable").
//   - --log-format json: one stream for a log pipeline. Every line is a JSON object on stderr
//     (time, level, msg, self and the line's attributes), the events included: the banners are
//     records too ("member started", "role changed"), not boxes, and standard output stays
//     empty. "new leader elected" and "leader lost" are the member's own lines (node's
//     noteLeader), in both formats. An error that stops the member (a refused start, Run's
//     error) is an error record too, not a line of text; the exit code is the same.
//
// --log-level (debug, info, warn, error; default info) filters the log in both formats, and the
// event records in JSON; the walk-through on standard output in text is not filtered. Whatever
// the level, warnings and errors are also kept in the data directory's errors.log (node/errlog.go),
// the event records at WARN among them (they go through node.Node.Logger).
// --verbose is the deprecated spelling of --log-level debug: it wins over a --log-level from a
// source of lower precedence only (the command line > the environment > the config file).

// logFormat is the value of --log-format.
type logFormat string

const (
	logFormatText logFormat = "text"
	logFormatJSON logFormat = "json"
)

func (f *logFormat) String() string { return string(*f) }

func (f *logFormat) Set(s string) error {
	switch v := logFormat(strings.ToLower(s)); v {
	case logFormatText, logFormatJSON:
		*f = v
		return nil
	}
	return fmt.Errorf("%q is not a log format: text or json", s)
}

// logLevel is the value of --log-level (--verbose is folded in by prepareNode).
type logLevel struct {
	level slog.Level
}

func (l *logLevel) String() string { return strings.ToLower(l.level.String()) }

func (l *logLevel) Set(s string) error {
	switch strings.ToLower(s) {
	case "debug":
		l.level = slog.LevelDebug
	case "info":
		l.level = slog.LevelInfo
	case "warn", "warning":
		l.level = slog.LevelWarn
	case "error":
		l.level = slog.LevelError
	default:
		return fmt.Errorf("%q is not a log level: debug, info, warn or error", s)
	}
	return nil
}

// newLogger is the member's logger: format and level as the flags say, writing to w.
func newLogger(w io.Writer, format logFormat, level slog.Level) *slog.Logger {
	if format == logFormatJSON {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: jsonAttr}))
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// jsonAttr writes a duration as people read it ("1.5s", as the text format does), not as a
// count of nanoseconds.
func jsonAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}
