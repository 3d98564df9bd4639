package consensus

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	"go.etcd.io/raft/v3/quorum"
	"go.etcd.io/raft/v3/tracker"
)

// raftLogger routes raft's logging to slog: libraries never print. Raft's lines name members by
// raft id, which people never see (a founding member's is its member id + 1, a member added later
// has another altogether), so they are translated: raft formats every id with %x and nothing else
// (its terms and indexes are %d), so each uint64 argument is printed, for %x, as "member N" (N the
// member id, Config.MemberOf), "raft id N" for one the member cannot name (a member added while
// it lagged: never a guess, which would name a member that is not the sender), or "none" for 0;
// other verbs print it as raft would. A configuration (tracker.Config, as in "switched to
// configuration voters=(1 2 3)", and its quorum parts) prints its id lists — voters=(…),
// the outgoing &&(…), learners=(…), learners_next=(…), raft's %x each — as lists of members:
// "voters=(member 0, member 1, raft id 7)". What raft says only with %v (the peer lists of its
// debug lines) keeps its raft ids: debug only.
//
// Raft's Info lines (elections, votes, term changes) say what the member's own lines and events
// already say, in its own words: they are demoted to Debug. Its warnings and errors keep their
// level. Every line carries component=raft.
type raftLogger struct {
	l    *slog.Logger
	name func(raftID uint64) (int, bool) // nil: the founding mapping (member id = raft id - 1)
}

// raftID is a uint64 argument of one of raft's lines, printed with %x as the member it names.
type raftID struct {
	id   uint64
	name func(uint64) (int, bool)
}

func (r raftID) Format(f fmt.State, verb rune) {
	if verb != 'x' {
		fmt.Fprintf(f, fmt.FormatString(f, verb), r.id)
		return
	}
	switch {
	case r.id == 0:
		fmt.Fprint(f, "none")
	case r.name != nil:
		if m, ok := r.name(r.id); ok {
			fmt.Fprint(f, "member "+strconv.Itoa(m))
		} else {
			fmt.Fprint(f, "raft id "+strconv.FormatUint(r.id, 10))
		}
	default:
		fmt.Fprint(f, "member "+strconv.Itoa(int(r.id)-1))
	}
}

// args wraps raft's uint64 arguments in raftID, and prints its configurations with members.
func (r *raftLogger) args(v []any) []any {
	out := make([]any, len(v))
	for i, a := range v {
		switch c := a.(type) {
		case uint64:
			a = raftID{id: c, name: r.name}
		case tracker.Config, *tracker.Config, quorum.JointConfig, quorum.MajorityConfig:
			a = r.idLists(c.(fmt.Stringer).String())
		}
		out[i] = a
	}
	return out
}

// idList is one parenthesised list of raft ids in a configuration's text, as raft prints them:
// hexadecimal, space-separated ("(1 2 a)"; "()" when empty).
var idList = regexp.MustCompile(`\(([0-9a-f]+(?: [0-9a-f]+)*)?\)`)

// idLists rewrites every id list of a configuration's text with the members they name, as
// raftID prints them: "voters=(1 2 3)&&(1 2)" becomes "voters=(member 0, member 1, member
// 2)&&(member 0, member 1)". A text it cannot parse is left as it is.
func (r *raftLogger) idLists(s string) string {
	return idList.ReplaceAllStringFunc(s, func(list string) string {
		fields := strings.Fields(list[1 : len(list)-1])
		names := make([]string, 0, len(fields))
		for _, f := range fields {
			id, err := strconv.ParseUint(f, 16, 64)
			if err != nil {
				return list
			}
			names = append(names, fmt.Sprintf("%x", raftID{id: id, name: r.name}))
		}
		return "(" + strings.Join(names, ", ") + ")"
	})
}

func (r *raftLogger) log(level slog.Level, format string, v []any) string {
	var s string
	if format == "" {
		s = fmt.Sprint(r.args(v)...)
	} else {
		s = fmt.Sprintf(format, r.args(v)...)
	}
	r.l.Log(context.Background(), level, s)
	return s
}

// logf formats only if the level is logged: raft's debug lines are many.
func (r *raftLogger) logf(level slog.Level, format string, v []any) {
	if r.l.Enabled(context.Background(), level) {
		r.log(level, format, v)
	}
}

func (r *raftLogger) Debug(v ...any)                   { r.logf(slog.LevelDebug, "", v) }
func (r *raftLogger) Debugf(format string, v ...any)   { r.logf(slog.LevelDebug, format, v) }
func (r *raftLogger) Info(v ...any)                    { r.logf(slog.LevelDebug, "", v) }
func (r *raftLogger) Infof(format string, v ...any)    { r.logf(slog.LevelDebug, format, v) }
func (r *raftLogger) Warning(v ...any)                 { r.logf(slog.LevelWarn, "", v) }
func (r *raftLogger) Warningf(format string, v ...any) { r.logf(slog.LevelWarn, format, v) }
func (r *raftLogger) Error(v ...any)                   { r.logf(slog.LevelError, "", v) }
func (r *raftLogger) Errorf(format string, v ...any)   { r.logf(slog.LevelError, format, v) }
func (r *raftLogger) Fatal(v ...any)                   { r.Panic(v...) }
func (r *raftLogger) Fatalf(format string, v ...any)   { r.Panicf(format, v...) }
func (r *raftLogger) Panic(v ...any)                   { panic(r.log(slog.LevelError, "", v)) }
func (r *raftLogger) Panicf(format string, v ...any)   { panic(r.log(slog.LevelError, format, v)) }
