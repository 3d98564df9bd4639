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
// message.
//
// # Member handshake (first frame on a member connection)
//
//	magic "TNDM" | version u8 | cluster id bytes(64) | sender raft id u64 | receiver raft id u64
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
//	  2 cluster version: cluster version u16 (raises the cluster version to it; never lowers it)
//
// What an entry means is fixed by the cluster version in force where it is applied (replicated
// state; container's doc). A new entry kind, item kind or way of applying one belongs to a
// cluster version and is proposed only once the cluster runs it; a member that meets an entry it
// cannot decode, or a cluster version above what it can apply, stops at that entry's index and
// never skips it (the others applied it).
//
// # Client messages (the body of a kind-5 frame)
//
//	version u8 | kind u8 | fields:
//	  13 open, 1 attach, 4 keep-alive, 5 close: session
//	  6 attached:          session | largest command payload accepted u32 | response window u32
//	  12 keep-alive ack:   session | status u8
//	  2 command:           session | seq u64 | lowest unacknowledged u64 | payload bytes
//	  7 response:          session | seq u64 | status u8 | payload bytes
//	  3 query:             request id u64 | payload bytes
//	  8 query response:    request id u64 | status u8 | payload bytes
//	  9 redirect:          session | seq u64 | request id u64 | status u8 | leader member id i32
//	                       (-1: unknown) | term u64 | leader client address bytes(255)
//	  10 session event:    session | status u8 | reason u8 | text bytes (why, e.g. a refused open)
//	  11 push:             session | payload bytes
//
// Statuses: 0 ok, 1 session expired, 2 evicted (answer already acknowledged), 3 rejected (a limit;
// not applied), 4 not leader, 5 bad request, 6 unavailable (not applied).
//
// The attached message carries the member's limits, which the client keeps to: it refuses a
// larger command itself, and keeps no more commands in flight than the window (the numbers from
// its lowest unacknowledged command to its newest). A request frame over the client port's
// limit is not read: the member answers a command (a query) whose head decodes with a
// "rejected" response (query response) naming the limit, skips the body and keeps the
// connection; any other oversized frame, and one over 64 MiB, closes it.
package wire
