package replica

import (
	"strings"
	"testing"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// "errors", like "status", is answered by any member for itself, with no leader known: with what
// the driver fills in (RecentErrors) and the member's id; a member whose driver keeps no log
// refuses it, saying so. An unknown operation's refusal names "errors" among those it knows.
func TestAdminErrorsIsAnsweredByAnyMember(t *testing.T) {
	rec := wire.LogRecord{Time: "2026-01-01T00:00:00.000Z", Level: "WARN", Msg: "peer unreachable",
		Attrs: []wire.LogAttr{{Key: "peer", Value: "2"}}}
	h := newHarness(t, 3, func(c *Config) {
		c.RecentErrors = func(me *wire.MemberErrors) { me.Records, me.Omitted = []wire.LogRecord{rec}, 4 }
	})
	ask := func(h *harness, op string) (wire.Status, wire.AdminResponse) {
		t.Helper()
		h.request(7, wire.ClientMsg{Kind: wire.CAdmin, RequestID: 1, Payload: wire.EncodeAdmin(wire.AdminRequest{Op: op})})
		got := h.out.take(7)
		if len(got) != 1 || got[0].Kind != wire.CAdminResponse {
			t.Fatalf("%s: sent %+v, want one admin answer", op, got)
		}
		resp, err := wire.DecodeAdminResponse(got[0].Payload)
		if err != nil {
			t.Fatal(err)
		}
		return got[0].Status, resp
	}
	if l := h.r.Summary().Leader; l != -1 {
		t.Fatalf("leader %d known: the test wants a member that knows none", l)
	}
	st, resp := ask(h, wire.AdminErrors)
	me := resp.Errors
	if st != wire.StatusOK || me == nil || me.ID != 0 || len(me.Records) != 1 || me.Records[0].Msg != "peer unreachable" ||
		me.Records[0].Attrs[0] != (wire.LogAttr{Key: "peer", Value: "2"}) || me.Omitted != 4 {
		t.Fatalf("errors: status %v, %+v; want OK with member 0's record and 4 omitted", st, me)
	}
	st, resp = ask(h, "frobnicate")
	if st != wire.StatusBadRequest || !strings.Contains(resp.Error, "status, errors, list-members") {
		t.Fatalf("an unknown operation: status %v, %q", st, resp.Error)
	}

	bare := newHarness(t, 1, nil)
	st, resp = ask(bare, wire.AdminErrors)
	if st != wire.StatusRejected || resp.Error != "this member keeps no log of its warnings and errors" {
		t.Fatalf("errors without RecentErrors: status %v, %q", st, resp.Error)
	}
}
