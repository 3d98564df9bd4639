package wire

// SessionID is a client-generated 128-bit session id (same bytes as service.SessionID; wire
// imports only the standard library).
type SessionID [16]byte

// Seq numbers the commands of one session, from 1. 0 means "none".
type Seq uint64

// ---- Log entries: the data of raft EntryNormal entries, applied by the container. ----

// ItemKind is the kind of one item in a log batch.
type ItemKind uint8

// Log item kinds.
const (
	ItemOpen    ItemKind = 1 // open a session (idempotent)
	ItemCommand ItemKind = 2 // a client command
	ItemClose   ItemKind = 3 // close a session (client request or leader-decided timeout)
	// ItemOpenPrincipal: open a session for a principal (Item.Principal, never ""): the
	// authenticated principal of the connection that opened it (cluster version 6 on; an open
	// with no principal is still an ItemOpen, which every build reads).
	ItemOpenPrincipal ItemKind = 4
)

// MaxPrincipalBytes bounds a principal's name (Grant.Principal) as the log records it: a
// member refuses to open a session for a longer one (it never proposes what a decoder refuses).
const MaxPrincipalBytes = 256

// Item is one element of a log batch.
type Item struct {
	Kind    ItemKind
	Session SessionID
	// Command only.
	Seq           Seq
	LowestUnacked Seq // every command below it was answered to the client
	Payload       []byte
	// Close only: service.CloseReason as a byte.
	Reason uint8
	// ItemOpenPrincipal only: who opened the session (at most MaxPrincipalBytes, not empty).
	Principal string
	// Received is when the leader took the command, on its meter's clock (replica/meter.go):
	// the leader's own, never encoded.
	Received int64
}

// Batch is the content of one raft entry: many client items behind one leader timestamp. A batch
// with no items only advances cluster time (the leader proposes one when a timer is due and the
// log is otherwise idle).
type Batch struct {
	TimestampNanos int64 // the leader's clock when it proposed the batch (Unix nanoseconds)
	Items          []Item
}

// ---- Client protocol: between a client and the client port of a member. ----

// ClientKind is the type of a client-protocol message.
type ClientKind uint8

// Client message kinds. Requests go client → member, the rest member → client.
const (
	CAttach        ClientKind = 1  // request: open or attach to the session (idempotent)
	CCommand       ClientKind = 2  // request: a command
	CQuery         ClientKind = 3  // request: a read-only query (needs no session)
	CKeepAlive     ClientKind = 4  // request: keep the session alive while idle
	CClose         ClientKind = 5  // request: close the session
	CAttached      ClientKind = 6  // reply to CAttach: the session is open and attached here
	CResponse      ClientKind = 7  // reply to CCommand
	CQueryResponse ClientKind = 8  // reply to CQuery
	CRedirect      ClientKind = 9  // reply to anything: this member is not the leader
	CSessionEvent  ClientKind = 10 // push: the session closed (or other session event)
	CPush          ClientKind = 11 // push: Session.Offer from the service
	CKeepAliveAck  ClientKind = 12 // reply to CKeepAlive
	// COpen: request: open the session if it is not open, and attach (a client's first attach).
	// CAttach never opens: a client that lost its session must not get a fresh one under the
	// same id, or commands it left unanswered could be applied twice.
	COpen ClientKind = 13
	// CVersionRefused: reply to COpen or CAttach: the member speaks no client protocol version
	// in the client's range, and closes the connection after it. Its layout is frozen.
	CVersionRefused ClientKind = 14
	// CAdmin (client protocol 4 on): request: an operator's request (wire.AdminRequest, JSON),
	// with the client's protocol range: like an open, it may be a connection's first request.
	// CAdminResponse: its answer (wire.AdminResponse, JSON). A follower answers a request only
	// the leader can serve with a redirect carrying its request id.
	CAdmin         ClientKind = 15
	CAdminResponse ClientKind = 16
	// CAuth (client protocol 5 on): request: the connection's credential, a token (Payload),
	// with the client's protocol range: like an open, it may be a connection's first request,
	// and it is sent before anything that needs the credential. A member that takes it answers
	// nothing (what follows on the connection is served as its principal's); one that does not
	// answers CAuthRefused. A connection authenticated by its TLS client certificate sends none.
	CAuth ClientKind = 17
	// CAuthRefused (client protocol 5 on): reply: the connection is not authenticated
	// (StatusUnauthenticated, and the reason in Payload); the member closes the connection
	// after it and serves nothing that came on it. Final: a client does not retry the credential.
	CAuthRefused ClientKind = 18
)

// Status of a reply.
type Status uint8

// Reply statuses.
const (
	StatusOK             Status = 0
	StatusSessionExpired Status = 1 // the session is not open (expired or closed): not applied
	StatusEvicted        Status = 2 // seq fell out of the response window: outcome was already acknowledged
	StatusRejected       Status = 3 // a limit was hit (window full, byte budget): not applied
	StatusNotLeader      Status = 4 // used inside Response when no redirect target is known: not applied
	StatusBadRequest     Status = 5 // malformed request: not applied
	StatusUnavailable    Status = 6 // the member cannot serve now (no quorum, shutting down): not applied
	// StatusWrongCluster (client protocol 3 on, in a session event): the member belongs to another
	// cluster than the one the client's open or attach named; nothing on the connection applied.
	StatusWrongCluster Status = 7
	// StatusDenied (client protocol 5 on): the connection's principal may not do this (the
	// member's authorization said no): not applied. Final. A connection of an earlier version
	// is told StatusRejected instead, with the same text.
	StatusDenied Status = 8
	// StatusUnauthenticated (client protocol 5 on, in CAuthRefused): the credential was refused,
	// or the member needs one and the connection has none.
	StatusUnauthenticated Status = 9
)

// Grant is what a member's client port decided about a connection when it authenticated it:
// the principal, and what it may do. It is not on the wire: the port sets it on every request it
// hands over (ClientMsg.Grant), and replaces it when credentials are reloaded. A nil Grant is a
// port without authentication: an anonymous principal that may do anything.
type Grant struct {
	// Principal is who the connection is ("" anonymous): a token's name, or a client
	// certificate's common name. It is recorded in the log when a session opens, so every
	// member's service sees the same one.
	Principal string
	// Commands and Queries: whether it may send commands (and open sessions for them) and run
	// queries; CommandsWhy and QueriesWhy, why not (the authorization's words), when it may not.
	Commands, Queries       bool
	CommandsWhy, QueriesWhy string
	// Admin decides an admin operation (wire.Admin*): nil to allow it, or why not.
	Admin func(op string) error
}

// MayAdmin reports why g may not run admin operation op (nil: it may).
func (g *Grant) MayAdmin(op string) error {
	if g == nil {
		return nil
	}
	if g.Admin == nil {
		return errAdminDenied
	}
	return g.Admin(op)
}

// ClientMsg is one message of the client protocol. Which fields are meaningful depends on Kind;
// the codec documents each layout in doc.go.
type ClientMsg struct {
	// Version is the client protocol version the message is encoded in (its version byte), set
	// by DecodeClientMsg. 0 in a message not decoded from bytes (one the simulator hands over):
	// it says nothing about the connection's version.
	Version uint16
	Kind    ClientKind
	Session SessionID
	// CCommand, CResponse.
	Seq           Seq
	LowestUnacked Seq
	// CQuery, CQueryResponse, CAdmin, CAdminResponse: a client-chosen correlation id.
	RequestID uint64
	Status    Status
	Payload   []byte // command, query, reply or push bytes; error text when Status != OK
	// CRedirect.
	LeaderID   int    // member id (not raft id), -1 when unknown
	Term       uint64 // the term the hint is from; clients ignore hints older than the newest seen
	LeaderAddr string // the leader's advertised client address, "" when unknown
	// CSessionEvent: service.CloseReason as a byte (the reason's text, if any, is in Payload).
	Reason uint8
	// CAttached: the member's limits, which a client keeps to. CommandBytesMax is the largest
	// command or query payload it accepts; WindowMax its response window: the span of command
	// numbers a session may have in flight, from its lowest unacknowledged number to its newest.
	CommandBytesMax int
	WindowMax       int
	// CAttached (version 3 on): the cluster's identity (ClusterUUID), zero while the member does
	// not know it yet (a new cluster before its identity entry, or below cluster version 3).
	ClusterUUID ClusterUUID
	// Protocol: in COpen and CAttach the client protocol versions the client speaks (a zero
	// Range is encoded as none, which a member reads as [1,1], what a 045a031 client sends); in
	// CVersionRefused the versions the member speaks (and Payload the refusal's text).
	Protocol Range

	// OversizedBytes is not on the wire: the client port sets it on a request whose frame was
	// over its limit. The port read only the head of the body (the kind and the numbers: no
	// payload) and skipped the rest; this is the body's length, for the refusal.
	OversizedBytes int
	// Grant is not on the wire either: the client port sets it on every request from an
	// authenticated connection (nil: no authentication).
	Grant *Grant
}
