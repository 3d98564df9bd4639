package wire

import (
	"strings"
	"testing"
)

// An admin request decodes strictly: an operator's typo is refused, never read as a default.
func TestAdminRequestDecodesStrictly(t *testing.T) {
	req := AdminRequest{Op: AdminJoin, Member: &AdminMember{ID: 3, ClientAddr: "127.0.0.1:9003", MemberAddr: "127.0.0.1:9103"}, Learner: true}
	got, err := DecodeAdminRequest(EncodeAdmin(req))
	if err != nil || got.Op != req.Op || *got.Member != *req.Member || !got.Learner {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{
		`{"op":"remove-member","idd":2}`,  // a typo
		`{"op":"remove-member","id":"2"}`, // a string for a number
		`{"op":"status"} {"op":"status"}`, // two requests
		`{"op":"status"`,                  // cut short
		`{"op":"status","x":"` + strings.Repeat("a", MaxAdminBytes) + `"}`,
	} {
		if _, err := DecodeAdminRequest([]byte(bad)); err == nil {
			t.Errorf("%.60q decoded", bad)
		}
	}
	// A newer member's answer may say more: what this build does not know is ignored.
	resp, err := DecodeAdminResponse([]byte(`{"error":"busy","later":1}`))
	if err != nil || resp.Error != "busy" {
		t.Fatalf("response with an unknown field: %+v %v", resp, err)
	}
}

// Admin requests exist from client protocol 4 on: one claiming an older version is malformed.
func TestAdminRequestNeedsVersion4(t *testing.T) {
	m := ClientMsg{Kind: CAdmin, RequestID: 1, Protocol: Range{1, 4}, Payload: []byte(`{"op":"status"}`)}
	if _, err := DecodeClientMsg(AppendClientMsg(nil, &m, 3)); err == nil || !strings.Contains(err.Error(), "version 4 on") {
		t.Fatalf("an admin request in version 3: %v", err)
	}
	m.Protocol = Range{}
	if _, err := DecodeClientMsg(AppendClientMsg(nil, &m, 4)); err == nil {
		t.Fatal("an admin request without a protocol range decoded")
	}
}
