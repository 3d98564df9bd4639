package wire

import "fmt"

// ControlOp is what a control entry (EntryControl) does. Every member applies it at the same
// index, which is the point: a snapshot, a suspension or a stop at one place in the log on every
// member, and a preference for the leader that every leader to come knows.
type ControlOp uint8

// Control operations.
const (
	// ControlSuspend: from this index on, the service gets no commands and no
	// timer events, until a ControlResume (container.Container.Suspended).
	ControlSuspend ControlOp = 1
	// ControlResume ends a suspension.
	ControlResume ControlOp = 2
	// ControlSnapshot: every member takes a snapshot at this index.
	ControlSnapshot ControlOp = 3
	// ControlShutdown: every member stops at this index, after a snapshot at it unless Abort.
	ControlShutdown ControlOp = 4
	// ControlPreferred: Preferred is the cluster's preference for its leader, in order (empty:
	// none).
	ControlPreferred ControlOp = 5
)

// MaxPreferred bounds the members a preference names.
const MaxPreferred = 16

// MaxControlTokenBytes bounds a control entry's token.
const MaxControlTokenBytes = 64

// Control is the content of a control entry.
type Control struct {
	Op ControlOp
	// Token: the proposing leader's name for the request it answers once the entry is applied
	// (empty for a leader's own proposal, such as the founding preference).
	Token string
	// Abort: ControlShutdown without the snapshot.
	Abort bool
	// Preferred: ControlPreferred's member ids, most preferred first.
	Preferred []int
}

func (op ControlOp) String() string {
	switch op {
	case ControlSuspend:
		return "suspend"
	case ControlResume:
		return "resume"
	case ControlSnapshot:
		return "snapshot"
	case ControlShutdown:
		return "shutdown"
	case ControlPreferred:
		return "preferred leader"
	}
	return fmt.Sprintf("control op %d", uint8(op))
}

// AppendControl appends the encoding of a control entry:
//
//	version u8 | kind u8 = 4 | op u8 | flags u8 (bit 0: abort) | token: len uvarint | bytes
//	| preferred: count u8 | each member id u32
func AppendControl(dst []byte, c *Control) []byte {
	dst = append(dst, Version, uint8(EntryControl), uint8(c.Op))
	flags := uint8(0)
	if c.Abort {
		flags |= 1
	}
	dst = append(dst, flags)
	dst = putBytes(dst, []byte(c.Token))
	dst = append(dst, uint8(len(c.Preferred)))
	for _, id := range c.Preferred {
		dst = putU32(dst, uint32(id))
	}
	return dst
}

// DecodeControl decodes a control entry, refusing an op it does not know, unknown flags, an
// oversized token or preference, and a member id twice.
func DecodeControl(data []byte) (Control, error) {
	r := &reader{b: data, what: "control entry"}
	r.version()
	if k := EntryKind(r.u8()); r.err == nil && k != EntryControl {
		r.fail("entry kind %d", k)
	}
	var c Control
	c.Op = ControlOp(r.u8())
	if r.err == nil && (c.Op < ControlSuspend || c.Op > ControlPreferred) {
		r.fail("unknown %v", c.Op)
	}
	flags := r.u8()
	if r.err == nil && flags&^1 != 0 {
		r.fail("unknown flags %#x", flags)
	}
	c.Abort = flags&1 != 0
	c.Token = string(r.bytes(MaxControlTokenBytes))
	n := int(r.u8())
	if r.err == nil && n > MaxPreferred {
		r.fail("%d preferred members (limit %d)", n, MaxPreferred)
	}
	for i := 0; i < n && r.err == nil; i++ {
		id := r.u32()
		if r.err == nil && id > 1<<31-1 {
			r.fail("member id %d", id)
		}
		for _, p := range c.Preferred {
			if r.err == nil && p == int(id) {
				r.fail("member %d named twice", id)
			}
		}
		c.Preferred = append(c.Preferred, int(id))
	}
	if r.err == nil && c.Op != ControlPreferred && len(c.Preferred) > 0 {
		r.fail("%v names preferred members", c.Op)
	}
	if r.err == nil && c.Op != ControlShutdown && c.Abort {
		r.fail("%v with the abort flag", c.Op)
	}
	if err := r.end(); err != nil {
		return Control{}, err
	}
	return c, nil
}
