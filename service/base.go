package service

import "time"

// Base has no-op implementations of the five callbacks a service may have no use for:
// OnSessionOpen, OnSessionClose, OnTimerEvent, OnRoleChange and OnTerminate. Embed it and write
// OnStart, OnSessionMessage, OnQuery and OnTakeSnapshot (the package documentation says why those
// four have no default); a method the service writes itself takes precedence over Base's.
//
// Base has no state, so embedding it changes neither the service's snapshot nor its determinism.
type Base struct{}

// OnSessionOpen does nothing.
func (Base) OnSessionOpen(Session, time.Time) {}

// OnSessionClose does nothing.
func (Base) OnSessionClose(Session, time.Time, CloseReason) {}

// OnTimerEvent does nothing. (A service that schedules timers should handle them.)
func (Base) OnTimerEvent(int64, time.Time) {}

// OnRoleChange does nothing.
func (Base) OnRoleChange(Role) {}

// OnTerminate does nothing.
func (Base) OnTerminate() {}
