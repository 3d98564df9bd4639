package replica

import "github.com/tandem-cluster/tandem/internal/wire"

// answerErrors answers the admin channel's "errors": this member's recent warnings and errors,
// which the driver keeps (Config.RecentErrors). Like "status", any member answers for itself, with
// or without a quorum: an operator asks precisely when something is wrong.
func (r *Replica) answerErrors(conn ConnID, id uint64) {
	if r.cfg.RecentErrors == nil {
		r.answerAdmin(conn, id, wire.StatusRejected, &wire.AdminResponse{Error: "this member keeps no log of its warnings and errors"})
		return
	}
	me := wire.MemberErrors{ID: r.cfg.MemberID}
	r.cfg.RecentErrors(&me)
	if me.Records == nil {
		me.Records = []wire.LogRecord{} // "records": [] rather than null, for scripts
	}
	r.answerAdmin(conn, id, wire.StatusOK, &wire.AdminResponse{Errors: &me})
}
