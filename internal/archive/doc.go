// Package archive is Tandem's durable raft log and snapshot store (Aeron's Archive, etcd's WAL):
// the consensus.Storage a member runs on, over the vfs file-system seam.
//
// # Directory layout
//
//	<dir>/IDENTITY                        cluster id, member id, format version, and from format 2
//	                                      the cluster's uuid (CRC-protected; identity.go)
//	<dir>/LOCK                            the directory's lock (LockDir): flock(2) held by the one
//	                                      process using the directory; holds its pid in decimal
//	<dir>/log/<seq:016x>.seg              log segments; names sort in log order
//	<dir>/log/next-segment.spare          the next segment, zero-filled ahead of need (never read
//	                                      as log; a recycled segment while its job zeroes it)
//	<dir>/log/newest-segment              format u8 = 1 | seq u64 | crc u32: the newest segment made durable
//	<dir>/snap/<index:016x>-<term:016x>.snap  snapshots; *.tmp files are unfinished and ignored
//	<dir>/errors.log, errors.log.1        not the archive's: the member's recent warnings and
//	                                      errors (package node, errlog.go); the archive ignores them
//
// # Segment format (version 3)
//
// A segment is a sequence of records, then zeros: a segment is either the spare, zero-filled to
// its whole size and synced before it became the segment, or grown in steps of (at least)
// GrowBytes of zeros, synced before any record is written into them, so the tail of the last
// segment is zero-filled and the file is durably at least as long as the last allocated record
// says. A write always leaves room for a synced record after it. Each record:
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
//	             The header is synced before anything else is written to the segment.
//	2 entry      a raft entry (protobuf). Within a segment, entries are contiguous and increasing:
//	             a truncation always starts a new segment, so every segment's header is exact.
//	3 hardstate  a raft HardState (protobuf); the last one wins. Every segment repeats the
//	             current one right after its header, so deleting old segments never loses it.
//	4 synced     offset u64: every byte of the segment before offset was durable when this record
//	             was written. It is the first record of the first write after a sync that made the
//	             segment longer than its last synced record says, and lies at the offset it names
//	             (it rides in that write: no sync of its own, 17 bytes). Also written, and synced,
//	             by Sync right after a hard state that changed the term or the vote, so that a
//	             synced term or vote is always vouched for once Sync returns (a second sync,
//	             in elections only).
//	5 allocated  size u64: the segment's file was durably at least size bytes long (its zeros
//	             synced) when this record was written. The header's write carries the first
//	             one; the first write after each growth carries the next, after its synced
//	             record if any (version 3 on).
//
// A roll (a new segment) syncs the current segment, creates the new one (growing it durably if
// it is not the spare), writes its header and first allocated record, syncs them, syncs the log
// directory, and only then names the new segment in newest-segment (written to a temporary
// name, synced, renamed, directory synced).
//
// Version 1 (older builds) is the same without synced and allocated records and without the
// early sync of the header; version 2 without allocated records, with growth synced only by the
// next sync, and without newest-segment. This build reads all three and writes only version 3:
// the first write after opening a log whose last segment is of an older version starts a new
// segment.
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
// Open reads every segment. A segment is synced before the next one is started, so only the last
// one can hold data that was never synced, and a power loss may have written that data back in
// any order (a page cache writes dirty pages back as it likes): some of it reached the disk,
// some did not, a later part perhaps where an earlier one did not. What never happens in a crash
// is that the disk loses or changes what a sync made durable: a file shorter than it was durably,
// a segment gone whose name was synced, a changed byte in synced records. Recovery tells the two
// apart, and refuses the second as lost synced data (ErrLostSyncedData, which wraps ErrCorrupt;
// the error is a *LostSyncedDataError naming the file, the offset and what was lost): the member
// may have acknowledged what it no longer holds, so it must not start on what is left, and is
// rebuilt from the others. A refused directory is left as it was found (cuts wait until every
// check passed).
//
// At the first record of a segment that is cut short, zero-filled or fails its CRC (a bad record,
// at offset B), or at the end of its records:
//
//   - Version 3: a file shorter than the largest size an allocated record before B names is lost
//     synced data (grow syncs the zeros before the record that names them, and a crash never
//     shortens a file below its synced size). So is a segment without an allocated record whose
//     sequence number is at or below the one newest-segment names (its header and first allocated record were
//     durable before that file named it).
//
// Then, in the last segment:
//
//   - Version 2 and 3: if a valid synced record after B (found by trying every later offset; one
//     that does not lie at the offset it names is not one of ours and does not count) names an
//     offset past B, B lies in synced data: lost synced data. Otherwise nothing from B on was
//     ever synced: it is a torn tail, cut at B, valid records after B included, and the member
//     starts.
//   - A bad header (B = 0) of a segment at or below the one newest-segment names: lost synced
//     data.
//     Otherwise a torn tail if no valid record follows it anywhere after it; lost synced data if
//     one does (a header is synced before anything else is written to its segment).
//   - Version 1 (where synced and allocated records are bad records, as older builds saw them):
//     a torn tail if no valid record follows B anywhere after it; corruption (ErrCorrupt) if one
//     does, as it may be a crash's out-of-order writeback.
//
// In an earlier segment, a bad record, or a valid record after the zeros that end its records,
// is lost synced data (it was synced whole before the next one started). Then, over the whole
// log, lost synced data is also:
//
//   - newest-segment naming a segment after the last one present (the newest was deleted), or a
//     last segment without any record at or below the one newest-segment names;
//     newest-segment itself failing its checksum (it is only ever replaced by a rename);
//   - a log that starts after index 1 with no snapshot (only a snapshot lets it start later);
//   - a hard state whose commit index lies beyond the last entry (and the snapshot): the entries
//     up to it were written, and synced, before the hard state that names them.
//
// The middle of a log is never "repaired", as an acknowledged entry may live there. A cut
// zero-fills the segment from B on, keeping its size (and so do other bytes after the zeros that
// end an earlier segment's records), so no later recovery meets what was cut.
//
// What cannot be told from a torn tail (see docs/RELIABILITY.md):
//
//   - Damage to the records of the last sync of the last segment that are not a term or vote
//     change (entries, a hard state that only moved the commit index), until the next write
//     vouches for them: a synced record can only be written after the sync it vouches for, and
//     Sync writes one (with a second sync) only after a term or vote change. Such damage is cut,
//     as a damaged last record always was. Cutting a commit-only hard state keeps the term and
//     the vote of the one before it.
//   - In segments of versions 1 and 2 (older builds): truncation, and in a directory without
//     newest-segment (older builds), a deleted newest segment.
//   - The newest segment deleted together with newest-segment, or every segment deleted with a
//     snapshot that covers the rest: nothing left on the disk says what was there.
//
// The search for later records costs time linear in the rest of the segment, whatever its bytes
// (see scan.go).
//
// # Failure
//
// After any write or sync error (a full disk, EIO) the archive is failed: every later mutating
// call returns the first error, and a failed sync is never retried (after a writeback error Linux
// may have dropped the dirty pages, and a second fsync would "succeed" without them).
//
// # Concurrency
//
// One goroutine owns the archive and makes every call, with three exceptions that let the
// member's loop go on while the disk works:
//
//   - Sync may run on another goroutine while the owner reads (InitialState, Term, Entries,
//     FirstIndex, LastIndex, Snapshot, Err), records snapshots (PrepareSnapshot, AddSnapshot,
//     CreateSnapshot) or takes and stops the spare's job (TakeSpareJob, StopSpareJob); not while
//     it appends, saves a leader's snapshot, reclaims, asks DurableIndex or closes. Deleting
//     segments is Reclaim's, on the owner's goroutine after a sync.
//   - The write job PrepareSnapshot returns may run on another goroutine beside every call, one
//     such job at a time: it touches only the snapshot directory, under a temporary name of its
//     own. The snapshot counts once AddSnapshot, on the owner's goroutine, recorded it.
//   - SetClusterUUID, on the owner's goroutine, may run beside Sync and both jobs: it replaces
//     only IDENTITY, through IDENTITY.tmp, and syncs the data directory (none of them touch it).
//   - The spare's job TakeSpareJob returns may run on another goroutine beside every call, one
//     at a time: it touches only the spare's file, the sync of the log directory and the spare's
//     state (atomic). The driver calls StopSpareJob and waits for the job before Close.
//
// # Memory
//
// The archive keeps a small index per live entry (term and location) and reads entries from the
// segment files through a cache bounded by Options.CacheBytes; compaction keeps the number of
// live entries bounded (retained snapshots plus LogMarginEntries). Open reads one segment at a
// time, whole; a search for records after a bad one adds, while it runs, a CRC register per 16
// bytes of the rest of the segment (a quarter of its size).
//
// # Files
//
//	archive.go   Options, the Archive type and what its parts rely on, Open and Close, failure
//	lock.go      LockDir: one process per data directory
//	record.go    the record codec: records, the segment header, synced records
//	recover.go   recovery: replaying segments, torn tail or lost synced data, the cut; Verify, Report
//	describe.go  Describe: Open's steps run read-only, for what a directory holds and what Open would do
//	lost.go      ErrLostSyncedData and its error type, the newest-segment file
//	scan.go      the search for a valid record after a bad one, linear in the rest of the segment
//	read.go      the raft.Storage reads (Entries, Term, FirstIndex, ...) and the entry cache
//	append.go    Append, Sync, Reclaim: writing records, rolling and growing segments, compaction
//	spare.go     the spare segment: its job, its states, the renames between spare and segment
//	snapshot.go  the snapshot file: format, SaveSnapshot, PrepareSnapshot, AddSnapshot, retention
//	identity.go  the IDENTITY file
package archive
