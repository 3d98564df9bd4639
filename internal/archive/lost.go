package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"

	"github.com/tandem-cluster/tandem/internal/bugs"
)

// ErrLostSyncedData wraps every finding that the disk lost or damaged data the archive had made
// durable (see doc.go, Recovery): no power loss or crash does that, and the member must not start
// on what is left, as it may have acknowledged what it no longer holds. It wraps ErrCorrupt.
var ErrLostSyncedData = fmt.Errorf("%w: lost synced data", ErrCorrupt)

// LostSyncedDataError names what was lost: the file, the offset (or -1) and what lay there.
// errors.Is(err, ErrLostSyncedData) and errors.Is(err, ErrCorrupt) hold for it.
type LostSyncedDataError struct {
	File   string
	Offset int64  // -1 when the loss is not at one offset (a missing file, say)
	Lost   string // what was lost, and the evidence that it had been durable
}

// lostRemedy is what the operator is told to do.
const lostRemedy = "this member's disk lost data it had made durable; do not start it as it is: " +
	"rebuild it in place — move this directory away (or tandem clean ID) and start it joining the others " +
	"(tandem node ID --join HOST:PORT of another member's client address): it rejoins under a new raft id, which " +
	"replaces the old one once caught up, so it can never vote twice; meanwhile the others serve while they are a " +
	"majority (README.md, \"Rebuilding a member\")"

func (e *LostSyncedDataError) Error() string {
	at := e.File
	if e.Offset >= 0 {
		at = fmt.Sprintf("%s offset %d", e.File, e.Offset)
	}
	return fmt.Sprintf("archive: lost synced data: %s: %s; %s", at, e.Lost, lostRemedy)
}

// Unwrap makes errors.Is(err, ErrLostSyncedData) (and so ErrCorrupt) true.
func (e *LostSyncedDataError) Unwrap() error { return ErrLostSyncedData }

// lost is the decision point of every finding of lost synced data: it returns the error that
// refuses the directory, or nil where the planted bug LostAsTorn takes the loss for a torn tail
// (the caller then cuts or ignores it, as before this rule).
func (a *Archive) lost(file string, off int64, format string, args ...any) error {
	e := &LostSyncedDataError{File: file, Offset: off, Lost: fmt.Sprintf(format, args...)}
	if bugs.Active(bugs.LostAsTorn) {
		a.log.Warn("archive: taking lost synced data for a torn tail (planted bug)", "err", e)
		return nil
	}
	return e
}

// newestName is the file in the log directory that names the newest segment the archive created
// (written after that segment's header and name were durable: roll). It exists so that a log
// whose newest segment was deleted is told from one whose last roll a crash undid: the segments
// cannot say it, as the evidence would have to live in the segment that is gone. It is a file of
// its own, not part of IDENTITY (whose contents other parts own), and written through a temporary
// name like IDENTITY: it is either the old or the new one, never torn.
const newestName = "newest-segment"

// newestBytes is the file's size: format u8 = newestFormat | seq u64 | crc u32 (CRC-32C of the
// nine bytes before it; little-endian). Like every file of the archive it carries its format.
const (
	newestBytes  = 1 + 8 + 4
	newestFormat = 1
)

// writeNewest makes seq the newest segment's, durably.
func (a *Archive) writeNewest(seq uint64) error {
	b := binary.LittleEndian.AppendUint64([]byte{newestFormat}, seq)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return writeFileDurably(a.fs, a.logDir(), newestName, ".tmp", b)
}

// readNewest returns the sequence number of the newest segment ever made durable, 0 if the file
// does not exist (a directory of an older build, or one without segments yet). A file that fails
// its checksum is lost synced data: it is replaced only by a rename after a sync.
func (a *Archive) readNewest() (uint64, error) {
	path := filepath.Join(a.logDir(), newestName)
	b, err := readFile(a.fs, path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("archive: reading %s: %w", path, err)
	}
	if len(b) == newestBytes && crc32.Checksum(b[:9], castagnoli) == binary.LittleEndian.Uint32(b[9:]) && b[0] != newestFormat {
		return 0, fmt.Errorf("archive: %s is of format %d, this build reads format %d (a newer build wrote it)", path, b[0], newestFormat)
	}
	if len(b) != newestBytes || crc32.Checksum(b[:9], castagnoli) != binary.LittleEndian.Uint32(b[9:]) {
		return 0, a.lost(path, -1, "the file that names the newest segment is damaged (%d bytes, checksum fails)", len(b))
	}
	return binary.LittleEndian.Uint64(b[1:]), nil
}
