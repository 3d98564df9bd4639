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

// The founding member list's digest, which every member handshake carries (the transport's
// identity.go says why). A member that starts on an empty directory founds with its configured
// list, and sends that list's digest at once; a member with data sends the digest of the
// membership recorded in it, once it has read it back (until then it sends none, and is not
// checked: a restart must not be refused for addresses its flags moved). The recorded
// membership is the founding one while membership cannot change (issue 19 keeps the founding
// list's digest apart when it can).

// membersDigest is a member list's digest and its canonical text.
type membersDigest struct {
	digest wire.MembersDigest
	text   string
	ms     []replica.Member // sorted by id
}

func digestOf(ms []replica.Member) *membersDigest {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b replica.Member) int { return a.ID - b.ID })
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%d,%s,%s", m.ID, m.ClientAddr, m.MemberAddr)
	}
	text := strings.Join(parts, "|")
	sum := sha256.Sum256([]byte(text))
	return &membersDigest{digest: wire.MembersDigest(sum[:16]), text: text, ms: ms}
}

// foundingMembers holds the digest the handshakes carry (nil: none yet).
type foundingMembers struct{ p atomic.Pointer[membersDigest] }

func (f *foundingMembers) get() (wire.MembersDigest, string) {
	if d := f.p.Load(); d != nil {
		return d.digest, d.text
	}
	return wire.MembersDigest{}, ""
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
