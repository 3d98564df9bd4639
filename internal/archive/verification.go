package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"
)

// The VERIFICATION file: whether the member may vote yet, kept across restarts.
//
// A member that starts on an empty log may be a founder of a new cluster or a former member whose
// directory was wiped, and must not vote until it is verified (consensus/verify.go). A restart
// before that must not forget it: an empty log is written unverified before anything else, and
// the member records when it is verified, with the term up to which it refuses votes (its vote
// floor). No file means verified with no floor: a directory of an older build, whose member
// took part all along.

// verificationName is the file's name in the data directory.
const verificationName = "VERIFICATION"

// The file's bytes: format u8 = verificationFormat | unverified u8 (0 or 1) | vote floor u64 |
// crc u32 (CRC-32C of the ten bytes before it; little-endian). Written through a temporary name,
// it is the old or the new one, never torn.
const (
	verificationBytes  = 1 + 1 + 8 + 4
	verificationFormat = 1
)

// Verification returns what the VERIFICATION file holds: whether the member is still
// unverified, and its vote floor. Called on the owning goroutine.
func (a *Archive) Verification() (unverified bool, floor uint64) { return a.unverified, a.voteFloor }

// SetVerification records, durably, whether the member is unverified and its vote floor. Called
// on the owning goroutine; it may run beside Sync and the snapshot and spare jobs, which touch
// neither the file nor its temporary name.
func (a *Archive) SetVerification(unverified bool, floor uint64) error {
	if a.unverified == unverified && a.voteFloor == floor {
		return nil
	}
	if err := a.Err(); err != nil {
		return err
	}
	if err := a.writeVerification(unverified, floor); err != nil {
		return a.fail(fmt.Errorf("writing %s: %w", verificationName, err))
	}
	return nil
}

func (a *Archive) writeVerification(unverified bool, floor uint64) error {
	b := []byte{verificationFormat, 0}
	if unverified {
		b[1] = 1
	}
	b = binary.LittleEndian.AppendUint64(b, floor)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	if err := writeFileDurably(a.fs, a.dir, verificationName, ".tmp", b); err != nil {
		return err
	}
	a.unverified, a.voteFloor = unverified, floor
	return nil
}

// loadVerification reads the VERIFICATION file, and on a log that holds nothing (no entry, no
// snapshot: a new directory, or one whose log was wiped) records the member unverified before
// anything else is written. A damaged file is lost synced data.
func (a *Archive) loadVerification() error {
	path := filepath.Join(a.dir, verificationName)
	b, err := readFile(a.fs, path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("archive: reading %s: %w", path, err)
	case len(b) == verificationBytes && crc32.Checksum(b[:10], castagnoli) == binary.LittleEndian.Uint32(b[10:]) &&
		b[0] != verificationFormat:
		return fmt.Errorf("archive: %s is of format %d, this build reads format %d (a newer build wrote it)",
			path, b[0], verificationFormat)
	case len(b) != verificationBytes || crc32.Checksum(b[:10], castagnoli) != binary.LittleEndian.Uint32(b[10:]) || b[1] > 1:
		return a.lost(path, -1, "the file that says whether this member may vote is damaged (%d bytes, checksum fails)", len(b))
	default:
		a.unverified, a.voteFloor = b[1] == 1, binary.LittleEndian.Uint64(b[2:])
	}
	if a.readOnly || a.unverified || a.lastIndex() != 0 || len(a.snaps) != 0 || a.joinedNow {
		// (A member that joined a running cluster just now has a raft id that never voted: it
		// is verified from the start, consensus.Config.Joining. Opened again on an empty log
		// later, it is written unverified like any member: it may have voted since.)
		return nil
	}
	if err := a.writeVerification(true, a.voteFloor); err != nil {
		return fmt.Errorf("archive: writing %s: %w", path, err)
	}
	return nil
}
