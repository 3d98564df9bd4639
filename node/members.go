package node

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// The founding member list's digests — of its ids, and of the whole list — which every member
// handshake carries (the transport's identity.go says why; ids that differ are refused,
// addresses that differ only logged). A member that starts on an empty directory founds with its configured
// list, and sends that list's digest at once; a member with data sends the digest of the
// membership recorded in it, once it has read it back (until then it sends none, and is not
// checked: a restart must not be refused for addresses its flags moved). The recorded
// membership is the founding one while membership cannot change (issue 19 keeps the founding
// list's digest apart when it can).

// membersDigest is a member list's digest and its canonical text.
type membersDigest struct {
	ids, addrs wire.MembersDigest // of the ids; of the whole list
	text       string
	ms         []replica.Member // sorted by id
}

func digestOf(ms []replica.Member) *membersDigest {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b replica.Member) int { return a.ID - b.ID })
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%d,%s,%s", m.ID, m.ClientAddr, m.MemberAddr)
	}
	text := strings.Join(parts, "|")
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = fmt.Sprint(m.ID)
	}
	idSum, sum := sha256.Sum256([]byte(strings.Join(ids, ","))), sha256.Sum256([]byte(text))
	return &membersDigest{ids: wire.MembersDigest(idSum[:16]), addrs: wire.MembersDigest(sum[:16]), text: text, ms: ms}
}

// foundingMembers holds the digest the handshakes carry (nil: none yet).
type foundingMembers struct{ p atomic.Pointer[membersDigest] }

func (f *foundingMembers) get() (ids, addrs wire.MembersDigest, text string) {
	if d := f.p.Load(); d != nil {
		return d.ids, d.addrs, d.text
	}
	return
}

// recorded sets the digest from the membership the member read back from its data.
func (f *foundingMembers) recorded(ms []replica.Member) {
	if len(ms) == 0 {
		return
	}
	if d := f.p.Load(); d == nil || !slices.Equal(ms, d.ms) {
		f.p.Store(digestOf(ms))
	}
}
