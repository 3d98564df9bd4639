package wire

import (
	"encoding/binary"
	"fmt"
)

// Protocol versions this build speaks. Each connection speaks one version, negotiated when it
// opens (doc.go, "Versions"): the highest both sides speak.
const (
	// MemberProtocolMin/Max: the member protocol (raft messages, snapshot transfers). Version 1
	// is the first negotiating one; the builds before it (up to 045a031) are refused at the
	// handshake (ErrLegacyHandshake).
	MemberProtocolMin uint16 = 1
	MemberProtocolMax uint16 = 1
	// ClientProtocolMin/Max: the client protocol. Version 1 is the layouts of 045a031's clients
	// (CAttached carries the session only, CSessionEvent no text); version 2 adds the member's
	// limits to CAttached and a text to CSessionEvent; version 3 the cluster's identity
	// (ClusterUUID) to CAttached; version 4 the admin channel (CAdmin, CAdminResponse); version
	// 5 authentication (CAuth, CAuthRefused) and the statuses StatusDenied and
	// StatusUnauthenticated.
	ClientProtocolMin uint16 = 1
	ClientProtocolMax uint16 = 5
)

// MaxRefusalTextBytes bounds the text of a handshake reply and of a version refusal.
const MaxRefusalTextBytes = 1024

// ErrLegacyHandshake: the handshake is in layout 1, a build from before version negotiation
// (045a031 or older). Such a member cannot join this build's cluster: the whole cluster must be
// stopped and restarted on one build. It wraps ErrVersion.
var ErrLegacyHandshake = fmt.Errorf("%w: handshake of a build from before version negotiation (045a031 or older)", ErrVersion)

// Range is a closed range of protocol versions, [Min, Max]. A valid range has 1 <= Min <= Max.
type Range struct{ Min, Max uint16 }

// MemberProtocol and ClientProtocol are the ranges this build speaks.
var (
	MemberProtocol = Range{MemberProtocolMin, MemberProtocolMax}
	ClientProtocol = Range{ClientProtocolMin, ClientProtocolMax}
)

// Common returns the highest version both r and o contain; ok is false if they have none in
// common (or either is not valid).
func (r Range) Common(o Range) (v uint16, ok bool) {
	if !r.Valid() || !o.Valid() {
		return 0, false
	}
	lo, hi := max(r.Min, o.Min), min(r.Max, o.Max)
	if lo > hi {
		return 0, false
	}
	return hi, true
}

// Contains reports whether v is in r.
func (r Range) Contains(v uint16) bool { return r.Min <= v && v <= r.Max }

// Valid reports whether 1 <= Min <= Max.
func (r Range) Valid() bool { return r.Min >= 1 && r.Min <= r.Max }

// String is "[min,max]".
func (r Range) String() string { return fmt.Sprintf("[%d,%d]", r.Min, r.Max) }

// OrDefault returns r, or def if r is zero (a configuration's "this build's").
func (r Range) OrDefault(def Range) Range {
	if r == (Range{}) {
		return def
	}
	return r
}

// ---- member handshake ----

var handshakeMagic = [4]byte{'T', 'N', 'D', 'M'}

// Handshake layouts: the byte after the magic.
const (
	handshakeLayoutLegacy uint8 = 1 // builds up to 045a031: no versions; refused
	handshakeLayout       uint8 = 2
)

// Handshake is the first frame on a member connection. Its layout is frozen: it is read the same
// whatever the versions it negotiates.
type Handshake struct {
	ClusterID  string
	SenderID   uint64 // raft id of the sender
	ReceiverID uint64 // raft id the sender believes it talks to
	// Protocol is the member protocol versions the sender speaks.
	Protocol Range
	// ClusterVersionMax is the highest cluster (log) version the sender can apply.
	ClusterVersionMax uint16
	// Extensions carry what later builds add (Extension).
	Extensions []Extension
}

// Extension is a tagged field of a frozen message (the handshake and its reply): a later build
// adds what it needs there (a cluster's identity, the digest of its founding members) without a
// new layout, and a receiver ignores the tags it does not know. Encoded after the fixed fields:
//
//	count u8 (at most MaxExtensions) | each, tags strictly increasing: tag u8 | value bytes(MaxExtensionBytes)
type Extension struct {
	Tag   uint8
	Value []byte
}

// Limits of extensions.
const (
	MaxExtensions     = 16
	MaxExtensionBytes = 256
)

func appendExtensions(dst []byte, exts []Extension) []byte {
	dst = append(dst, uint8(len(exts)))
	for _, e := range exts {
		dst = append(dst, e.Tag)
		dst = putBytes(dst, e.Value)
	}
	return dst
}

func (r *reader) extensions() []Extension {
	n := int(r.u8())
	if r.err == nil && n > MaxExtensions {
		r.fail("%d extensions, at most %d", n, MaxExtensions)
	}
	var exts []Extension
	for i := 0; i < n && r.err == nil; i++ {
		e := Extension{Tag: r.u8(), Value: r.bytes(MaxExtensionBytes)}
		if r.err == nil && i > 0 && e.Tag <= exts[i-1].Tag {
			r.fail("extension tags out of order")
		}
		exts = append(exts, e)
	}
	return exts
}

// Extension tags of the handshake and its reply.
const (
	// ExtClusterUUID: the sender's cluster identity (ClusterUUID, 16 bytes), sent once the
	// sender knows it. Absent: the sender knows none yet (a new cluster before its identity
	// entry, a cluster below cluster version 3, or an older build).
	ExtClusterUUID uint8 = 1
	// ExtMembersDigest: a digest of the ids of the sender's founding members (MembersDigest, 16
	// bytes): members founded with different ids must not talk, or raft would take their
	// bootstrap entries, equal in index and term, for the same configuration.
	ExtMembersDigest uint8 = 2
	// ExtAddressesDigest: a digest of the sender's founding member list with its addresses:
	// a difference is only logged (the same address may be spelled two ways).
	ExtAddressesDigest uint8 = 3
	// ExtStanding: what the sender says of itself (Standing), for peers that decide from it
	// whether a member on an empty log may vote (consensus/verify.go): term u64 | last index
	// u64 | flags u8 (StandingBlank, StandingUnverified; others ignored). Absent: an older build,
	// which such a peer cannot count on.
	ExtStanding uint8 = 4
)

// Standing is what a member says of itself in its handshakes: its raft term; the last index of
// its log; whether it is blank (never took part in anything: term at most 1, no vote); whether
// it is unverified (it started on an empty log and may not vote yet).
type Standing struct {
	Term, Last        uint64
	Blank, Unverified bool
}

// Flags of ExtStanding.
const (
	StandingBlank      uint8 = 1
	StandingUnverified uint8 = 2
)

const standingBytes = 8 + 8 + 1

// StandingExtension returns the extension that carries s.
func StandingExtension(s Standing) Extension {
	var flags uint8
	if s.Blank {
		flags |= StandingBlank
	}
	if s.Unverified {
		flags |= StandingUnverified
	}
	v := binary.LittleEndian.AppendUint64(make([]byte, 0, standingBytes), s.Term)
	v = binary.LittleEndian.AppendUint64(v, s.Last)
	return Extension{Tag: ExtStanding, Value: append(v, flags)}
}

// StandingOf returns the standing an ExtStanding extension among exts carries, and whether there
// is one. One of another length than standingBytes is malformed; unknown flags are ignored.
func StandingOf(exts []Extension) (Standing, bool, error) {
	v, ok := findExtension(exts, ExtStanding)
	if !ok {
		return Standing{}, false, nil
	}
	if len(v) != standingBytes {
		return Standing{}, false, fmt.Errorf("%w: standing extension of %d bytes, want %d", ErrMalformed, len(v), standingBytes)
	}
	flags := v[16]
	return Standing{Term: binary.LittleEndian.Uint64(v), Last: binary.LittleEndian.Uint64(v[8:]),
		Blank: flags&StandingBlank != 0, Unverified: flags&StandingUnverified != 0}, true, nil
}

// MembersDigest is the first 16 bytes of the SHA-256 of a member list's canonical text.
type MembersDigest [16]byte

// HandshakeExtensions returns the extensions of a handshake or reply: the cluster's identity and
// the members digests (ids, and with addresses), each when not zero.
func HandshakeExtensions(u ClusterUUID, ids, addrs MembersDigest) []Extension {
	exts := ClusterUUIDExtensions(u)
	if ids != (MembersDigest{}) {
		exts = append(exts, Extension{Tag: ExtMembersDigest, Value: append([]byte(nil), ids[:]...)})
	}
	if addrs != (MembersDigest{}) {
		exts = append(exts, Extension{Tag: ExtAddressesDigest, Value: append([]byte(nil), addrs[:]...)})
	}
	return exts
}

// MembersDigestOf returns the digest an extension tagged tag (ExtMembersDigest or
// ExtAddressesDigest) among exts carries: zero if there is none. One of another length than 16
// is malformed.
func MembersDigestOf(exts []Extension, tag uint8) (MembersDigest, error) {
	var d MembersDigest
	v, ok := findExtension(exts, tag)
	if !ok {
		return d, nil
	}
	if len(v) != len(d) {
		return d, fmt.Errorf("%w: members digest extension of %d bytes, want %d", ErrMalformed, len(v), len(d))
	}
	copy(d[:], v)
	return d, nil
}

// ClusterUUIDExtensions returns the extensions that carry u: none for the zero uuid.
func ClusterUUIDExtensions(u ClusterUUID) []Extension {
	if u.IsZero() {
		return nil
	}
	return []Extension{{Tag: ExtClusterUUID, Value: append([]byte(nil), u[:]...)}}
}

// ClusterUUIDOf returns the cluster identity an ExtClusterUUID extension among exts carries: the
// zero uuid if there is none. One of another length than 16, or zero, is malformed.
func ClusterUUIDOf(exts []Extension) (ClusterUUID, error) {
	v, ok := findExtension(exts, ExtClusterUUID)
	if !ok {
		return ClusterUUID{}, nil
	}
	var u ClusterUUID
	if len(v) != len(u) {
		return ClusterUUID{}, fmt.Errorf("%w: cluster uuid extension of %d bytes, want %d", ErrMalformed, len(v), len(u))
	}
	copy(u[:], v)
	if u.IsZero() {
		return ClusterUUID{}, fmt.Errorf("%w: zero cluster uuid extension", ErrMalformed)
	}
	return u, nil
}

// Extension returns the value of the extension tagged tag, and whether there is one.
func (h *Handshake) Extension(tag uint8) ([]byte, bool) { return findExtension(h.Extensions, tag) }

// Extension returns the value of the extension tagged tag, and whether there is one.
func (h *HandshakeReply) Extension(tag uint8) ([]byte, bool) { return findExtension(h.Extensions, tag) }

func findExtension(exts []Extension, tag uint8) ([]byte, bool) {
	for _, e := range exts {
		if e.Tag == tag {
			return e.Value, true
		}
	}
	return nil, false
}

// AppendHandshake appends the encoding of h (layout 2).
func AppendHandshake(dst []byte, h *Handshake) []byte {
	dst = append(dst, handshakeMagic[:]...)
	dst = append(dst, handshakeLayout)
	dst = putBytes(dst, []byte(h.ClusterID))
	dst = putU64(dst, h.SenderID)
	dst = putU64(dst, h.ReceiverID)
	dst = putU16(dst, h.Protocol.Min)
	dst = putU16(dst, h.Protocol.Max)
	dst = putU16(dst, h.ClusterVersionMax)
	return appendExtensions(dst, h.Extensions)
}

// DecodeHandshake decodes a handshake. A layout-1 handshake (a build from before version
// negotiation) is an error wrapping ErrLegacyHandshake; the Handshake returned with it holds
// what that layout carries (cluster id, sender, receiver), for the refusal's log line.
func DecodeHandshake(data []byte) (Handshake, error) {
	r := &reader{b: data, what: "handshake"}
	if len(data) < 4 || [4]byte(data[:4]) != handshakeMagic {
		r.fail("bad magic")
		return Handshake{}, r.err
	}
	r.off = 4
	layout := r.u8()
	if r.err != nil {
		return Handshake{}, r.err
	}
	var h Handshake
	switch layout {
	case handshakeLayoutLegacy:
		h.ClusterID = string(r.bytes(MaxClusterIDBytes))
		h.SenderID = r.u64()
		h.ReceiverID = r.u64()
		if err := r.end(); err != nil {
			return Handshake{}, fmt.Errorf("%w (%w)", ErrLegacyHandshake, err)
		}
		return h, ErrLegacyHandshake
	case handshakeLayout:
	default:
		return Handshake{}, fmt.Errorf("%w: handshake layout %d, this build reads %d", ErrVersion, layout, handshakeLayout)
	}
	h.ClusterID = string(r.bytes(MaxClusterIDBytes))
	h.SenderID = r.u64()
	h.ReceiverID = r.u64()
	h.Protocol = Range{r.u16(), r.u16()}
	h.ClusterVersionMax = r.u16()
	h.Extensions = r.extensions()
	if r.err == nil && (h.SenderID == 0 || h.ReceiverID == 0) {
		r.fail("raft id 0")
	}
	if r.err == nil && !h.Protocol.Valid() {
		r.fail("protocol range %s", h.Protocol)
	}
	if err := r.end(); err != nil {
		return Handshake{}, err
	}
	return h, nil
}

// AppendLegacyHandshake appends a handshake in layout 1, as builds up to 045a031 send it: for
// tests of its refusal.
func AppendLegacyHandshake(dst []byte, h *Handshake) []byte {
	dst = append(dst, handshakeMagic[:]...)
	dst = append(dst, handshakeLayoutLegacy)
	dst = putBytes(dst, []byte(h.ClusterID))
	dst = putU64(dst, h.SenderID)
	return putU64(dst, h.ReceiverID)
}

// HandshakeReply is the acceptor's answer to a handshake (frame kind 6). Its layout is frozen.
type HandshakeReply struct {
	// Accepted: the connection speaks Version from now on. Refused: Version is 0, Text says why,
	// and the acceptor closes the connection.
	Accepted bool
	Version  uint16
	// Protocol is the member protocol versions the acceptor speaks; ClusterVersionMax the
	// highest cluster version it can apply.
	Protocol          Range
	ClusterVersionMax uint16
	Text              string
	// Extensions carry what later builds add (Extension).
	Extensions []Extension
}

// AppendHandshakeReply appends the encoding of h.
func AppendHandshakeReply(dst []byte, h *HandshakeReply) []byte {
	status := uint8(1)
	if h.Accepted {
		status = 0
	}
	dst = append(dst, status)
	dst = putU16(dst, h.Version)
	dst = putU16(dst, h.Protocol.Min)
	dst = putU16(dst, h.Protocol.Max)
	dst = putU16(dst, h.ClusterVersionMax)
	dst = putBytes(dst, []byte(h.Text))
	return appendExtensions(dst, h.Extensions)
}

// DecodeHandshakeReply decodes a handshake reply.
func DecodeHandshakeReply(data []byte) (HandshakeReply, error) {
	r := &reader{b: data, what: "handshake reply"}
	var h HandshakeReply
	status := r.u8()
	h.Version = r.u16()
	h.Protocol = Range{r.u16(), r.u16()}
	h.ClusterVersionMax = r.u16()
	h.Text = string(r.bytes(MaxRefusalTextBytes))
	h.Extensions = r.extensions()
	if r.err == nil {
		switch {
		case status > 1:
			r.fail("status %d", status)
		case !h.Protocol.Valid():
			r.fail("protocol range %s", h.Protocol)
		case status == 0 && h.Version == 0:
			r.fail("accepted at version 0")
		case status == 1 && h.Version != 0:
			r.fail("refused with version %d", h.Version)
		}
	}
	h.Accepted = status == 0
	if err := r.end(); err != nil {
		return HandshakeReply{}, err
	}
	return h, nil
}

// ---- client protocol versions ----

// errClientVersion is the error for a client message of a version this build does not speak.
func errClientVersion(v uint8) error {
	return fmt.Errorf("%w: client message version %d, this build speaks %s", ErrVersion, v, ClientProtocol)
}

// frozenClientKind reports whether kind's layout is the same at every version: the messages that
// negotiate the version, which must always be readable.
func frozenClientKind(k ClientKind) bool {
	return k == COpen || k == CAttach || k == CVersionRefused
}
