// Package transport is a member's TCP: the member port (Transport), which carries raft messages
// and snapshot transfers between members, and the client port (ClientServer), which carries
// client requests and their answers. Everything on both is framed as package wire describes
// (length, version, kind, CRC-32C), and every read and every queue is bounded. It judges no
// message: the member's loop (package node) does, and tells the transport what it refused.
//
// # Member port
//
// The caller's part:
//
//  1. Bind the listener (so "address in use" is reported where the port is known), then New
//     with the Config (cluster id, this member's raft id, the peers' advertised member
//     addresses) and a Handler, and Start.
//  2. From the member's loop only: Send the messages of a Ready once what they depend on is
//     durable — they are marshalled at once, as raft's messages share memory with its log — and
//     Flush after the round's answers to clients went out. Neither blocks.
//  3. Take what the Handler is given. Receive delivers a peer's message and may block until the
//     loop takes it (back-pressure on that peer's connection); Unreachable is also called from
//     Send, so it must not block; SnapshotStatus must reach raft, which sends the peer nothing
//     more until it hears it.
//  4. When the loop refuses a message, DropInbound closes the connections of its claimed sender.
//  5. When the loop applied a membership change, SetPeers replaces the peers (Peers returns them).
//  6. Stop closes the listener and every connection and waits for the goroutines.
//
// Peers: the members this one talks to, by raft id with their advertised member addresses:
// Config.Peers at start, then each set SetPeers gives (raft ids are never reused). A new peer
// gets its outbound connection and its handshakes are accepted; a peer whose address changed has
// its outbound connection closed and redialled at the new one; a removed peer's connections, in
// both directions, are closed, its queue dropped, a snapshot transfer to it abandoned (reported
// failed), and its handshakes refused. Send drops and counts (SendsDropped) a message for an id
// that is not a peer, without telling raft it is unreachable: raft no longer tracks it. SetPeers
// waits for nothing (the removed peers' goroutines end on their own, Stop waits for them), and
// each set it publishes is never changed after, so Send reads it with one atomic load, no lock.
//
// Connections: one outbound connection per peer, dialled with backoff and jitter, plus one per
// snapshot transfer. Each peer has a queue of encoded frames (QueueBytes) that the loop writes
// straight to the socket when it is idle (one non-blocking write); the peer's writer goroutine
// writes what the socket did not take. A message that does not fit its queue is dropped,
// counted (SendsDropped) and its peer reported unreachable; raft retransmits. What was queued
// while a peer could not be reached is dropped when it comes back: raft sends again what
// matters. A reader on each outbound connection notices at once when the peer closes it (after
// IdleTimeout without messages, as between two followers, or because its process ended), and the
// connection is dialled again: Reachable says whether the peer is reachable from that dial's
// outcome and from when the peer was last heard from.
//
// Versions: every connection negotiates its member protocol version when it opens (package wire,
// "Versions"). The dialler sends its handshake (its range, MemberProtocol, and the highest
// cluster version it can apply, ClusterVersionMax) and waits for the acceptor's reply, bounded
// by handshakeTimeout, before it sends anything. The acceptor, once the handshake passed its
// checks, answers: accepted at the highest common version, or refused with a text naming both
// ranges, which both sides log (rate-limited) before the connection is closed; the dialler
// treats a refusal as a failed connection and retries with its backoff, as the peer may be
// upgraded meanwhile. A handshake of a build from before negotiation (045a031 or older) is
// refused with a log line saying that the whole cluster must be restarted on one build. Each
// side reports the other's highest cluster version to Config.PeerClusterVersion, on every
// connection accepted. There is one member protocol version so far: the negotiated one is
// recorded (PeerVersion) and nothing depends on it yet.
//
// Cluster identity (identity.go): once the member knows its cluster's identity (Config.ClusterUUID
// at start, SetClusterUUID when the member applies it), its handshakes and replies carry it, and
// the acceptor refuses a handshake naming another (the reply's text names both), the dialler a
// reply naming another; both sides log it. A side that knows none yet accepts.
//
// Inbound connections are believed only after a handshake (magic, layout, cluster id, sender
// and receiver raft id, a common version). Another cluster, a sender that is not a peer, a message whose sender
// or receiver differs from the handshake's, a frame over MaxFrameBytes, a bad checksum: each
// closes the connection with a logged reason and counts it (Rejected), and nothing from that
// connection reaches raft. Without TLS, whoever reaches the port and knows the cluster id can
// claim to be a member; the consensus core refuses the messages raft would crash on.
//
// TLS (tls.go): with Config.TLS, every member connection, snapshot streams included, is mutual
// TLS 1.3 between member certificates of the peer CA, and the handshake above runs inside it.
// The acceptor runs the TLS handshake in the connection's goroutine under handshakeTimeout; one
// that fails (plaintext, another CA, a client's certificate, a name not allowed) closes that
// connection only, counted (Rejected) and logged with its reason, rate-limited per remote host.
// The dialler logs a TLS failure as a refused handshake and retries with its backoff. Each
// handshake uses the certificates loaded at that moment: a reload reaches new connections.
//
// Snapshots: a MsgSnap travels as its metadata, and the data follows as a stream of checksummed
// chunks on a connection of its own (at most MaxConcurrentSnapshots transfers at once). The
// receiver writes the stream to SnapshotDir, syncs it and checks the whole snapshot's CRC, and
// only then hands the MsgSnap, with its data, to Receive; it acknowledges the transfer after
// that. The sender reports the outcome with SnapshotStatus.
//
// # Client port
//
//  1. Bind the listener, then NewClientServer with the ClientConfig and a ClientHandler, and
//     Start.
//  2. ClientRequests delivers, in order, the requests read from one connection in one go, with
//     the connection's id; ClientGone tells that a connection closed.
//  3. From the member's loop only: Send queues an answer for a connection (it is encoded at
//     once), Flush writes the round's answers, one write per connection where the socket takes
//     it. Neither blocks.
//  4. Stop closes the listener and every connection and waits.
//
// Versions: a connection's client protocol version is fixed by its first request: an open or
// attach carries the client's range, and the version is the highest common one with
// ClientConfig.ClientProtocol; any other first request makes it version 1 (a client that does
// not negotiate). Send encodes everything for the connection in that version, so the loop (and
// the replica) never needs to know it: a version-1 client never receives limits or texts. A
// client with no common version gets a version refusal naming both ranges, written by the
// reader, and the connection is closed once it is written; nothing behind the open is read. A
// later open or attach whose range leaves out the connection's version closes the connection.
//
// A command or query over MaxFrameBytes is not read: its head is handed over, marked with its
// size (wire.ClientMsg.OversizedBytes), so the member can refuse it with its limit, and the rest
// is skipped (up to oversizedSkipBytesMax); any other oversized frame closes the connection. A client that does not read its
// answers is disconnected once MaxQueuedBytes wait for it (it reattaches and retries), so the
// member never waits for a client. A connection silent for IdleTimeout is closed.
//
// # Both ports
//
// At most MaxConns connections are served at once; one over the limit is closed at once, logged
// (rate-limited) and counted (Refused), so a connection flood cannot use up the descriptors the
// log and the snapshots need. A failed accept ("too many open files") is retried after a backoff
// and counted (AcceptFailures): the port never stops accepting while the member runs.
package transport
