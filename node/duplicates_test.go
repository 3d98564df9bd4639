package node

import (
	"strings"
	"testing"
)

// A member list that repeats an id or an address is refused, naming what is repeated and by
// whom; a list of distinct entries is accepted.
func TestValidateRefusesDuplicateIDsAndAddresses(t *testing.T) {
	ok := []Member{{ID: 0, ClientAddr: "h:1", MemberAddr: "h:2"}, {ID: 1, ClientAddr: "h:3", MemberAddr: "h:4"}, {ID: 2, ClientAddr: "h:5", MemberAddr: "h:6"}}
	for _, tc := range []struct {
		name string
		edit func(ms []Member)
		want string
	}{
		{"distinct", func([]Member) {}, ""},
		{"id", func(ms []Member) { ms[2].ID = 1 }, "member id 1 appears twice"},
		{"client address", func(ms []Member) { ms[2].ClientAddr = "h:3" },
			`address "h:3" is both member 1's client address and member 2's client address`},
		{"member address", func(ms []Member) { ms[1].MemberAddr = "H:2" },
			`address "H:2" is both member 0's member address and member 1's member address`},
		{"client address of another's member address", func(ms []Member) { ms[2].ClientAddr = "h:4" },
			`address "h:4" is both member 1's member address and member 2's client address`},
		{"one member's two addresses", func(ms []Member) { ms[0].MemberAddr = "h:1" },
			`address "h:1" is both member 0's client address and member 0's member address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.DataDir = t.TempDir()
			cfg.Members = append([]Member(nil), ok...)
			tc.edit(cfg.Members)
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), "Members: "+tc.want)):
				t.Fatalf("Validate() = %v, want it to say %q", err, tc.want)
			}
		})
	}
}
