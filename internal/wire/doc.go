// Package wire holds Tandem's byte formats: the log entries the container applies, the client
// protocol, and the framing and handshake of TCP connections. It imports only the standard
// library. Decoders never panic: anything malformed is an error wrapping ErrMalformed (or
// ErrVersion for an unknown version byte), and every decoder has a fuzz target.
//
// Integers are little-endian and fixed width unless marked uvarint; bytes(N) is a uvarint length
// followed by that many bytes, the length bounded by N. A session id is 16 bytes.
//
// # Frames (every TCP connection, client and member)
//
//	length u32 (of everything after it) | version u8 = 1 | kind u8 | crc u32 | body
//
// crc is the CRC-32C (Castagnoli) of the body. A reader refuses a length above its limit before
// allocating, a bad version, an unknown kind and a bad CRC. Kinds: 1 handshake, 2 raft message
// (protobuf raftpb.Message), 3 snapshot chunk, 4 snapshot acknowledgement (empty), 5 client
// message, 6 handshake reply. The frame's version byte is always 1: the frame layout is frozen,
// what a connection speaks is negotiated on it (below).
//
// # Versions
//
// Every connection speaks one protocol version, negotiated when it opens: the highest version in
// both sides' ranges (Range.Common). This build speaks member protocol MemberProtocol ([1,1]) and
// client protocol ClientProtocol ([1,3]). The messages that negotiate are frozen forever — the
// member handshake and its reply, and the client's open, attach and version refusal read the same
// whatever the versions they negotiate — so that any two builds can always tell each other what
// they speak. Every other message's layout follows the version negotiated on its connection from
// then on: a later build that changes a layout raises its version, and still writes the old layout
// on a connection that negotiated the old version.
//
// Member connections: the dialler sends the handshake with its range and the highest cluster (log)
// version it can apply; the acceptor checks the cluster id and the ids, then answers with a
// handshake reply: accepted at the highest common version, or refused (no common version, with a
// text naming both ranges), and then closes. The dialler sends nothing before the reply; a refused
// dialler retries with its backoff (the peer may be upgraded meanwhile). Each side learns the
// other's cluster version max (the handshake, the reply). Member protocol 1 is the first
// negotiating one: the handshake of builds up to 045a031 (layout 1, no range) is refused
// (ErrLegacyHandshake): moving from such a build needs a whole-cluster restart.
//
// Client connections: the first open or attach carries the client's range (none: a 045a031
// client, [1,1]) and is encoded at the client's lowest version, as is whatever the client sends
// behind it before the answer. A member that does not read the version the open was written in
// refuses it and reads nothing after it, even when the ranges meet: its refusal names its range,
// and the client reconnects writing in the common version; a member reads nothing in a version
// outside its range. The member picks the highest common version and writes
// everything on the connection at it, starting with the attached message, whose version byte tells
// the client; from then on the client writes at that version too. No common version: the member
// answers with a version refusal naming both ranges and closes the connection once it is written.
// A connection whose first message is anything else speaks version 1 (the only version before
// negotiation); a later open or attach whose range leaves out the connection's version closes the
// connection (the client's next connection negotiates anew).
//
// # Member handshake (first frame on a member connection; frozen)
//
//	magic "TNDM" | layout u8 = 2 | cluster id bytes(64) | sender raft id u64 |
//	receiver raft id u64 | protocol min u16 | protocol max u16 | cluster version max u16 |
//	extensions
//
// Layout 1 (builds up to 045a031) ended after the receiver raft id; it is recognised and refused.
//
// # Handshake reply (frame kind 6, the acceptor's answer; frozen)
//
//	status u8 (0 accepted, 1 refused) | chosen version u16 (0 when refused) |
//	acceptor's protocol min u16 | max u16 | cluster version max u16 | text bytes(1024) |
//	extensions
//
// extensions: count u8 (at most 16) | each, tags strictly increasing: tag u8 | value bytes(256).
// A frozen message grows only there: a later build adds a tagged field and a receiver ignores the
// tags it does not know. Tags this build knows:
//
//	1 cluster uuid: [16] (ExtClusterUUID): the sender's cluster identity, sent once it knows
//	  it. An acceptor that knows its own refuses a handshake naming another (a data directory
//	  of another cluster), and a dialler a reply naming another; a side that knows none accepts.
//	2 members digest: [16] (ExtMembersDigest): the first 16 bytes of the SHA-256 of the ids
//	  of the sender's founding members ("0,1,2"), sent by a member founding on an empty
//	  directory and by one that read its recorded membership back. Each side refuses a peer
//	  whose digest differs from its own (transport's identity.go); absent, not checked.
//	3 addresses digest: [16] (ExtAddressesDigest): the same over the whole founding list
//	  ("id,client,member|…" by id); a difference is only logged.
//
// # Snapshot chunk
//
//	version u8 | index u64 | term u64 | offset u64 | total u64 | last u8 | crc u32 | data bytes
//
// crc is the CRC-32C of the whole snapshot, checked by the receiver after the last chunk.
//
// # Log entry (the data of a raft EntryNormal entry)
//
//	version u8 | kind u8 | per kind:
//	  1 batch:           leader timestamp i64 (Unix ns) | item count uvarint |
//	                     items: kind u8 | session [16] | per kind:
//	                       1 open:    nothing more
//	                       2 command: seq u64 | lowest unacknowledged u64 | payload bytes(MaxPayloadBytes)
//	                       3 close:   reason u8 (service.CloseReason)
//	                       4 open for a principal: principal bytes(256), not empty (cluster
//	                                  version 6 on: who opened the session; an anonymous
//	                                  open is still kind 1)
//	  2 cluster version: cluster version u16 (raises the cluster version to it; never lowers it)
//	  3 cluster identity: uuid [16], not zero (cluster version 3 on): the cluster's identity,
//	                     proposed once by a leader of a cluster that holds none; the first one
//	                     applied is the cluster's, a later one changes nothing
//
// What an entry means is fixed by the cluster version in force where it is applied (replicated
// state; container's doc). A new entry kind, item kind or way of applying one belongs to a
// cluster version and is proposed only once the cluster runs it; a member that meets an entry it
// cannot decode, or a cluster version above what it can apply, stops at that entry's index and
// never skips it (the others applied it).
//
// # Client messages (the body of a kind-5 frame)
//
//	version u8 (the client protocol version the message is encoded in) | kind u8 | fields:
//	  13 open, 1 attach:   session | protocol min u16 | protocol max u16 | cluster uuid [16]
//	                       (frozen; the range is absent in a 045a031 client's: [1,1]; the uuid,
//	                       of the cluster the session attached to before, absent until then)
//	  14 version refused:  member's protocol min u16 | max u16 | text bytes(1024) (frozen)
//	  4 keep-alive, 5 close: session
//	  6 attached:          session | largest command payload accepted u32 | response window u32 |
//	                       cluster uuid [16] (zero: not known yet)
//	                       (version 1: session only; version 2: no cluster uuid)
//	  12 keep-alive ack:   session | status u8
//	  2 command:           session | seq u64 | lowest unacknowledged u64 | payload bytes
//	  7 response:          session | seq u64 | status u8 | payload bytes
//	  3 query:             request id u64 | payload bytes
//	  8 query response:    request id u64 | status u8 | payload bytes
//	  9 redirect:          session | seq u64 | request id u64 | status u8 | leader member id i32
//	                       (-1: unknown) | term u64 | leader client address bytes(255)
//	  10 session event:    session | status u8 | reason u8 | text bytes (why, e.g. a refused open)
//	                       (version 1: no text)
//	  11 push:             session | payload bytes
//	  15 admin:            request id u64 | protocol min u16 | protocol max u16 | request bytes(64 KiB)
//	                       (version 4 on; a JSON AdminRequest; negotiates like an open)
//	  16 admin response:   request id u64 | status u8 | response bytes (a JSON AdminResponse)
//
// A frozen kind decodes whatever its version byte (a member refuses a version it does not speak
// with kind 14, whose version byte is the member's highest); any other kind of a version this
// build does not speak is an error wrapping ErrVersion that names the versions it speaks.
//
// Statuses: 0 ok, 1 session expired, 2 evicted (answer already acknowledged), 3 rejected (a limit;
// not applied), 4 not leader, 5 bad request, 6 unavailable (not applied), 7 wrong cluster (in a
// session event: the member is of another cluster than the one the open or attach named; nothing
// on the connection was applied).
//
// The attached message carries the member's limits (from version 2), which the client keeps to: it refuses a
// larger command itself, and keeps no more commands in flight than the window (the numbers from
// its lowest unacknowledged command to its newest). A request frame over the client port's
// limit is not read: the member answers a command (a query) whose head decodes with a
// "rejected" response (query response) naming the limit, skips the body and keeps the
// connection; any other oversized frame, and one over 64 MiB, closes it.
package wire
