package consensus

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/quorum"
	"go.etcd.io/raft/v3/tracker"
)

// Raft's lines name members by raft id; the adapter names them by member id. Here raft ids and
// member ids differ as they do for a member added later (raft id 7 is member 2): no line may say
// 7, and terms and indexes (%d) are left alone.
func TestRaftLoggerNamesMembersNotRaftIDs(t *testing.T) {
	var buf bytes.Buffer
	l := &raftLogger{l: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // (a time may hold a 7)
			}
			return a
		}})),
		name: func(id uint64) (int, bool) { m, ok := map[uint64]int{7: 2, 1: 0}[id]; return m, ok }}
	// Lines as raft writes them (raft.go).
	l.Infof("%x became leader at term %d", uint64(7), uint64(5))
	l.Infof("%x [logterm: %d, index: %d, vote: %x] cast %s for %x [logterm: %d, index: %d] at term %d",
		uint64(1), uint64(4), uint64(16), uint64(0), "MsgVote", uint64(7), uint64(4), uint64(16), uint64(5))
	l.Warningf("%x stepped down to follower since quorum is not active", uint64(7))
	out := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="member 2 became leader at term 5"`,
		`msg="member 0 [logterm: 4, index: 16, vote: none] cast MsgVote for member 2 [logterm: 4, index: 16] at term 5"`,
		`level=WARN msg="member 2 stepped down to follower since quorum is not active"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "7") {
		t.Errorf("a line names raft id 7:\n%s", out)
	}
}

// Raft's Info lines are Debug: at Info nothing of them is formatted or written; its warnings are.
func TestRaftLoggerDemotesInfo(t *testing.T) {
	var buf bytes.Buffer
	l := &raftLogger{l: slog.New(slog.NewTextHandler(&buf, nil))}
	l.Infof("%x became follower at term %d", uint64(3), uint64(2))
	l.Debug("chatter")
	if buf.Len() != 0 {
		t.Fatalf("raft's info and debug lines were logged at Info:\n%s", buf.String())
	}
	l.Warningf("%x is unpromotable and can not campaign", uint64(3))
	if want := `msg="member 2 is unpromotable and can not campaign"`; !strings.Contains(buf.String(), want) {
		t.Fatalf("the warning (founding mapping: raft id 3 is member 2) lacks %s:\n%s", want, buf.String())
	}
}

// A raft id the member cannot name (a member added, or rebuilt under a new raft id, while this
// one lagged) is "raft id N", never the founding mapping's guess: raft id 5 is not member 4.
func TestRaftLoggerUnknownRaftID(t *testing.T) {
	var buf bytes.Buffer
	l := &raftLogger{l: slog.New(slog.NewTextHandler(&buf, nil)),
		name: func(id uint64) (int, bool) { m, ok := map[uint64]int{1: 0, 2: 1}[id]; return m, ok }}
	l.Warningf("%x [term: %d] received a %s message with higher term from %x [term: %d]",
		uint64(1), uint64(3), "MsgApp", uint64(5), uint64(4))
	out := buf.String()
	if want := `msg="member 0 [term: 3] received a MsgApp message with higher term from raft id 5 [term: 4]"`; !strings.Contains(out, want) {
		t.Fatalf("the line lacks %s:\n%s", want, out)
	}
	if strings.Contains(out, "member 4") {
		t.Fatalf("an unknown raft id named by the founding mapping:\n%s", out)
	}
	c := &Core{cfg: Config{MemberOf: l.name}}
	if got := c.describeID(5); got != "raft id 5" {
		t.Fatalf("describeID(5) = %q, want raft id 5", got)
	}
	if got := c.describeID(2); got != "1 (raft id 2)" {
		t.Fatalf("describeID(2) = %q", got)
	}
}

// Raft's configuration lines ("switched to configuration voters=(1 2 3)") print their id lists
// from the configuration's own String, in hexadecimal: each list names members, and an id the
// member cannot name is "raft id N" (in decimal, as everywhere else).
func TestRaftLoggerNamesConfigurationMembers(t *testing.T) {
	var buf bytes.Buffer
	l := &raftLogger{l: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		name: func(id uint64) (int, bool) { m, ok := map[uint64]int{1: 0, 2: 1, 3: 2, 26: 3}[id]; return m, ok }}
	cfg := tracker.Config{
		Voters:       quorum.JointConfig{quorum.MajorityConfig{1: {}, 2: {}, 26: {}}, quorum.MajorityConfig{1: {}, 2: {}, 3: {}}},
		Learners:     map[uint64]struct{}{27: {}},
		LearnersNext: map[uint64]struct{}{3: {}},
		AutoLeave:    true,
	}
	// As raft writes it (raft.go, switchToConfig).
	l.Infof("%x switched to configuration %s", uint64(1), cfg)
	l.Infof("%x switched to configuration %s", uint64(1), tracker.Config{Voters: quorum.JointConfig{quorum.MajorityConfig{1: {}}}})
	out := buf.String()
	for _, want := range []string{
		`msg="member 0 switched to configuration voters=(member 0, member 1, member 3)&&(member 0, member 1, member 2) ` +
			`learners=(raft id 27) learners_next=(member 2) autoleave"`,
		`msg="member 0 switched to configuration voters=(member 0)"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s:\n%s", want, out)
		}
	}
	if got := l.idLists("voters=() learners=(zz)"); got != "voters=() learners=(zz)" {
		t.Errorf("idLists changed what it cannot parse: %q", got)
	}
}
