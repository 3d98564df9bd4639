package container

import (
	"errors"
	"fmt"
	"slices"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// The operator's controls (wire.EntryControl, cluster version 5): replicated like any state, so
// every member applies them at the same index and a new leader knows them.
//
// Suspended: the service's commands stop — a command is refused (StatusRejected,
// SuspendedMessage: a final answer, which a client does not retry) and due timers wait — while
// queries are served, sessions open and close (a client that only reads must be able to
// connect: a monitoring dashboard, an operator's tandem client get) and the leader expires no
// session (replica). The point is a service whose state the commands do not move: to look at
// it, back it up or upgrade what is around it. A command refused at apply is not recorded: it was never applied,
// and its client was told so; a command applied before the suspension is still answered from
// its record when retried.
//
// Preferred: the members the operator wants to lead, most preferred first (replica's
// preferred.go decides when the leader yields). PreferredSet tells "cleared" from "never set": a
// leader proposes the founding value (node's --preferred-leader) only if none was ever set.

// SuspendedMessage is the answer to a command while the cluster is suspended.
const SuspendedMessage = "the cluster is suspended: commands are refused until it is resumed (tandem cluster resume)"

// ClusterVersionControl is the cluster version from which control entries are proposed and
// applied.
const ClusterVersionControl uint16 = 5

// ErrControlBeforeVersion: a control entry was committed below cluster version 5. No build
// proposes one then: the member stops there (the others, of older builds, could not apply it).
var ErrControlBeforeVersion = errors.New("container: a control entry below cluster version 5")

// LastShutdown returns the index of the last shutdown entry applied (0: none): a member that
// installs the snapshot taken there learns from it that it is to stop there too.
func (c *Container) LastShutdown() uint64 { return c.lastShutdown }

// Suspended reports whether the cluster is suspended.
func (c *Container) Suspended() bool { return c.suspended }

// Preferred returns the cluster's preference for its leader, most preferred first, and whether
// one was ever set.
func (c *Container) Preferred() ([]int, bool) { return slices.Clone(c.preferred), c.preferredSet }

// SuspendRefuses reports whether applying command seq of session id now would refuse it for the
// suspension: the cluster is suspended, the session is open, and the command is neither
// answered from its record (a retry) nor evicted. The leader refuses such a command at once
// rather than proposing it.
func (c *Container) SuspendRefuses(id wire.SessionID, seq, low wire.Seq) bool {
	if !c.suspended {
		return false
	}
	s, ok := c.sessions[id]
	if !ok {
		return false
	}
	if seq < max(s.win.floor, low) {
		return false
	}
	_, dup := s.win.get(seq)
	return !dup
}

// ApplyControl applies a control entry. It reports whether the index is a snapshot point: a
// ControlSnapshot, and a ControlShutdown without Abort, always are (every member snapshots at
// that index), besides the regular points.
func (c *Container) ApplyControl(index uint64, ctl *wire.Control) (bool, error) {
	if c.clusterVersion < ClusterVersionControl {
		return false, fmt.Errorf("%w: the entry at index %d (%v), at cluster version %d", ErrControlBeforeVersion, index, ctl.Op, c.clusterVersion)
	}
	if index <= c.applied {
		return false, fmt.Errorf("container: entry %d applied after %d", index, c.applied)
	}
	due := false
	switch ctl.Op {
	case wire.ControlSuspend:
		c.suspended = true
	case wire.ControlResume:
		c.suspended = false
	case wire.ControlSnapshot:
		due = true
	case wire.ControlShutdown:
		due = !ctl.Abort
		c.lastShutdown = index
	case wire.ControlPreferred:
		c.preferred, c.preferredSet = slices.Clone(ctl.Preferred), true
	default:
		return false, fmt.Errorf("container: the entry at index %d: unknown %v", index, ctl.Op)
	}
	return c.ApplyEmpty(index) || due, nil
}
