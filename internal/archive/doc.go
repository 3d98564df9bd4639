// Package archive is Tandem's durable raft log and snapshot store (Aeron's Archive, etcd's WAL):
// the consensus.Storage a member runs on, over the vfs file-system seam.
//
// # Directory layout
//
//	<dir>/IDENTITY                        cluster id, member id, format version (CRC-protected)
//	<dir>/log/<seq:016x>.seg              log segments; names sort in log order
//	<dir>/log/next-segment.spare          the next segment, zero-filled ahead of need (never read
//	                                      as log; a recycled segment while its job zeroes it)
//	<dir>/snap/<index:016x>-<term:016x>.snap  snapshots; *.tmp files are unfinished and ignored
//
// # Segment format (version 1)
//
// A segment is a sequence of records, then zeros: a segment is either the spare, zero-filled to
// its whole size before it became the segment, or grown in steps of GrowBytes of zeros, so the
// tail of the last segment is zero-filled. Each record:
//
//	length u32 | type u8 | crc u32 | payload[length]      (little-endian)
//
// where crc is the CRC-32C of type and payload. A length of 0 with type 0 ends the records of the
// segment. Record types:
//
//	1 header     first record of every segment: version u8 | first index u64 | prev term u64 |
//	             reset u8. Entries of the segment start at first index; the entry before it has
//	             prev term. A segment whose first index is at or below the end of the previous one
//	             supersedes the older entries from there on (a raft log truncation); with reset=1
//	             every older entry is void (a snapshot received from the leader replaced the log).
//	2 entry      a raft entry (protobuf). Within a segment, entries are contiguous and increasing:
//	             a truncation always starts a new segment, so every segment's header is exact.
//	3 hardstate  a raft HardState (protobuf); the last one wins. Every segment repeats the
//	             current one right after its header, so deleting old segments never loses it.
//
// # Snapshot format
//
//	magic "TNDS" | version u8 | metadata length u32 | raft SnapshotMetadata (protobuf) |
//	data length u64 | data | crc u32 (CRC-32C of everything before it)
//
// A snapshot is written to a .tmp file, synced, renamed and its directory synced before anything
// that depends on it (the reset segment, the deletion of old segments) is written.
//
// # Recovery
//
// Open reads every segment. In the last segment, a record that is cut short, zero-filled or fails
// its CRC is a torn tail if no valid record follows it anywhere after: the tail is cut and the
// member starts. A bad record anywhere else — in an earlier segment, or followed by a valid
// record — is corruption: Open refuses with the file and offset, and the member must be rebuilt
// from its peers. The middle of a log is never "repaired": an acknowledged entry may live there.
// (A crash that reorders unsynced appends can leave a valid record behind a torn one; Open then
// refuses rather than guess, which is the safe side.)
//
// # Failure
//
// After any write or sync error (a full disk, EIO) the archive is failed: every later mutating
// call returns the first error, and a failed sync is never retried (after a writeback error Linux
// may have dropped the dirty pages, and a second fsync would "succeed" without them).
//
// # Concurrency
//
// One goroutine owns the archive, with two exceptions that let the member's loop go on while the
// disk works: Sync may run on another goroutine while the owner reads (Term, Entries,
// FirstIndex, LastIndex, Snapshot) or records snapshots, and the write job PrepareSnapshot
// returns may run on another goroutine beside everything (it touches only the snapshot
// directory, under a temporary name of its own). Deleting segments is Reclaim's, on the owner's
// goroutine after a sync; a snapshot counts once AddSnapshot, on the owner's goroutine, recorded
// it.
//
// # Memory
//
// The archive keeps a small index per live entry (term and location) and reads entries from the
// segment files through a cache bounded by Options.CacheBytes; compaction keeps the number of
// live entries bounded (retained snapshots plus LogMarginEntries).
package archive
