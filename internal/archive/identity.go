package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"
	"strings"
)

// identityText is the IDENTITY file's text; the file holds it and then its CRC-32C (u32,
// little-endian).
func identityText(cluster string, member int) string {
	return fmt.Sprintf("tandem-archive %d\ncluster %s\nmember %d\n", formatVersion, cluster, member)
}

// checkIdentity refuses a directory whose IDENTITY names another cluster or member, or fails its
// checksum, or is missing beside data; a directory without data gets its IDENTITY written.
func (a *Archive) checkIdentity() error {
	path := filepath.Join(a.dir, "IDENTITY")
	want := identityText(a.opts.ClusterID, a.opts.MemberID)
	got, err := readFile(a.fs, path)
	if errors.Is(err, fs.ErrNotExist) {
		segs, _ := a.fs.ReadDir(a.logDir())
		snaps, _ := a.fs.ReadDir(a.snapDir())
		if len(segs) > 0 || len(snaps) > 0 {
			return fmt.Errorf("archive: %s holds data but no IDENTITY file: refusing to guess whose it is", a.dir)
		}
		body := []byte(want)
		body = binary.LittleEndian.AppendUint32(body, crc32.Checksum([]byte(want), castagnoli))
		return writeFileDurably(a.fs, a.dir, "IDENTITY", ".tmp", body)
	}
	if err != nil {
		return fmt.Errorf("archive: reading %s: %w", path, err)
	}
	if len(got) < 4 || crc32.Checksum(got[:len(got)-4], castagnoli) != binary.LittleEndian.Uint32(got[len(got)-4:]) {
		return fmt.Errorf("%w: %s fails its checksum", ErrCorrupt, path)
	}
	text := string(got[:len(got)-4])
	if text != want {
		var v, member int
		var cluster string
		_, _ = fmt.Sscanf(strings.ReplaceAll(text, "\n", " "), "tandem-archive %d cluster %s member %d", &v, &cluster, &member)
		return fmt.Errorf("archive: %s belongs to cluster %q member %d (format %d), not cluster %q member %d",
			a.dir, cluster, member, v, a.opts.ClusterID, a.opts.MemberID)
	}
	return nil
}
