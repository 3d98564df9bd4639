package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The admin channel: an operator's requests on the client port (ARCHITECTURE decision 18).
//
// Requests and answers travel as the payloads of CAdmin and CAdminResponse, in JSON: they are
// rare, small and read by people and scripts (tandem cluster … --json prints the answer as it
// came), and a field added later is ignored by a reader that does not know it. An operation a
// member does not know is refused by name (StatusBadRequest), never guessed at.

// Admin operations.
const (
	// AdminStatus: the member's own view (any member answers, with or without a quorum).
	AdminStatus = "status"
	// AdminListMembers: the replicated membership (the leader answers).
	AdminListMembers = "list-members"
	// AdminJoin: add Member as a learner with a fresh raft id; it is promoted to voter once
	// caught up unless Learner is set. A member of the same id and addresses that is a learner
	// the leader has sent nothing yet is answered with its raft id again (a joiner that crashed
	// before it kept the answer); one of the same id that is a voter is being rebuilt in place:
	// the new raft id replaces the old one once caught up.
	AdminJoin = "join"
	// AdminRemoveMember: remove member ID.
	AdminRemoveMember = "remove-member"
	// AdminPromote: make learner ID a voter.
	AdminPromote = "promote"
	// AdminReplaceMember: in one joint change, make learner Member.ID a voter and remove ID.
	AdminReplaceMember = "replace-member"

	// The operator's controls (the leader answers once the control entry is applied; cluster
	// version 5). AdminSuspend: the service gets no commands or timer events until
	// AdminResume. AdminSnapshot: every member takes a snapshot at one index (Index).
	// AdminShutdown: every member stops at one index, after a snapshot there unless Abort.
	// AdminSetPreferred: the cluster's preferred leaders are IDs, in order (Clear: none).
	AdminSuspend      = "suspend"
	AdminResume       = "resume"
	AdminSnapshot     = "snapshot"
	AdminShutdown     = "shutdown"
	AdminSetPreferred = "set-preferred-leader"
	// AdminTransferLeader: hand leadership to voter ID (or, with Auto, to the most caught-up
	// live voter). The leader answers once the target leads (Status: its own view after, the
	// new leader and term), refuses a target that cannot take over, and answers "outcome
	// unknown" when the target did not take over within the wait the answer states.
	AdminTransferLeader = "transfer-leader"
)

// MaxAdminBytes bounds an admin request's body.
const MaxAdminBytes = 64 << 10

// AdminRequest is an operator's request.
type AdminRequest struct {
	Op string `json:"op"`
	// ID is the member the operation is about (remove-member, promote, replace-member's old).
	ID int `json:"id,omitempty"`
	// Member is the joiner (join) or the learner that takes ID's place (replace-member: only
	// its id is read).
	Member *AdminMember `json:"member,omitempty"`
	// Learner: a joiner stays a learner (join).
	Learner bool `json:"learner,omitempty"`
	// Force skips the check that enough voters are live for the new configuration's quorum.
	Force bool `json:"force,omitempty"`
	// Abort: shutdown without the snapshot.
	Abort bool `json:"abort,omitempty"`
	// IDs: set-preferred-leader's members, most preferred first; Clear: no preference.
	IDs   []int `json:"ids,omitempty"`
	Clear bool  `json:"clear,omitempty"`
	// Auto: transfer-leader picks the target itself (ID is not read).
	Auto bool `json:"auto,omitempty"`
}

// AdminMember is a member as the admin channel shows it.
type AdminMember struct {
	ID         int    `json:"id"`
	RaftID     uint64 `json:"raft_id,omitempty"`
	ClientAddr string `json:"client_addr"`
	MemberAddr string `json:"member_addr"`
	// Role: "voter" or "learner" (in the replicated membership).
	Role string `json:"role,omitempty"`
}

// AdminResponse is the answer to an AdminRequest. With a status other than OK, Error says why in
// one line.
type AdminResponse struct {
	Error string `json:"error,omitempty"`
	// Already: the change was made before (a request asked again after its answer was lost);
	// it says how things stand ("member 2 was removed already"). Nothing was done this time.
	Already string `json:"already,omitempty"`
	// Status: AdminStatus's answer.
	Status *MemberStatus `json:"status,omitempty"`
	// Members: the membership (list-members; join: including the joiner; the changes: after it).
	Members []AdminMember `json:"members,omitempty"`
	// Index: the log index at which the change was applied (list-members: the leader's applied
	// index).
	Index uint64 `json:"index,omitempty"`
	// Removed: list-members', the raft ids removed from the cluster (never to come back): a
	// member learns it was removed from its raft id here, never from its absence (a lagging
	// answer may not list a member that joined since).
	Removed []uint64 `json:"removed,omitempty"`
	// RaftID: join's, the raft id the joiner was given; ClusterUUID the cluster's identity, and
	// ClusterID its name, which the joiner keeps in its data directory.
	RaftID      uint64 `json:"raft_id,omitempty"`
	ClusterUUID string `json:"cluster_uuid,omitempty"`
	ClusterID   string `json:"cluster_id,omitempty"`
	// Suspended and Preferred: the operator's controls as applied (list-members, and the
	// controls' answers).
	Suspended bool  `json:"suspended,omitempty"`
	Preferred []int `json:"preferred,omitempty"`
	// Errors: AdminErrors's answer.
	Errors *MemberErrors `json:"errors,omitempty"`
}

// MemberStatus is one member's own view of itself and of the cluster.
type MemberStatus struct {
	ID             int    `json:"id"`
	RaftID         uint64 `json:"raft_id"`
	Role           string `json:"role"`
	Learner        bool   `json:"learner,omitempty"`
	Term           uint64 `json:"term"`
	Leader         int    `json:"leader"` // -1 when unknown
	Commit         uint64 `json:"commit"`
	Applied        uint64 `json:"applied"`
	SnapshotIndex  uint64 `json:"snapshot_index"`
	ClientAddr     string `json:"client_addr"`
	MemberAddr     string `json:"member_addr"`
	Build          string `json:"build"`
	ClusterVersion uint16 `json:"cluster_version"`
	ClusterUUID    string `json:"cluster_uuid,omitempty"`
	Unverified     bool   `json:"unverified,omitempty"`
	// Lag: on the leader, how far each other member's log is behind its last index, by
	// member id ("2": 0); absent elsewhere.
	Lag map[string]uint64 `json:"lag,omitempty"`
	// Unreachable: the members this one cannot reach now.
	Unreachable []int `json:"unreachable,omitempty"`
	// Suspended and Preferred: the operator's controls as applied here.
	Suspended bool  `json:"suspended,omitempty"`
	Preferred []int `json:"preferred,omitempty"`
}

// EncodeAdmin encodes an admin request or response.
func EncodeAdmin(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("wire: encoding %T: %v", v, err)) // plain structs: cannot fail
	}
	return b
}

// DecodeAdminRequest decodes a request's body strictly: unknown fields are refused (an operator's
// typo must not pass for a default), and so is anything after the object.
func DecodeAdminRequest(b []byte) (AdminRequest, error) {
	var req AdminRequest
	if len(b) > MaxAdminBytes {
		return req, fmt.Errorf("admin request of %d bytes (limit %d)", len(b), MaxAdminBytes)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		return AdminRequest{}, fmt.Errorf("admin request: %w", err)
	}
	if d.More() {
		return AdminRequest{}, fmt.Errorf("admin request: data after the request")
	}
	return req, nil
}

// DecodeAdminResponse decodes an answer; fields this build does not know are ignored (a newer
// member may say more).
func DecodeAdminResponse(b []byte) (AdminResponse, error) {
	var resp AdminResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		return AdminResponse{}, fmt.Errorf("admin response: %w", err)
	}
	return resp, nil
}

// MaxTokenBytes bounds a credential (CAuth's token).
const MaxTokenBytes = 4 << 10

// errAdminDenied is Grant.MayAdmin's answer for a principal that may run no admin operation.
var errAdminDenied = fmt.Errorf("the principal may run no admin operation")
