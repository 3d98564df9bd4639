package archive

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

// The IDENTITY file: whose data the directory holds. Its text, then its CRC-32C (u32,
// little-endian):
//
//	tandem-archive <format>\ncluster <name>\nmember <id>\n       (format 1)
//	tandem-archive 2\ncluster <name>\nmember <id>\nuuid <hex>\n (format 2)
//	tandem-archive 3\ncluster <name>\nmember <id>\nuuid <hex>\nraft <id>\n (format 3)
//
// Format 3 adds the member's raft id, for a member that joined a running cluster (its raft id
// was given when it joined: replica's members.go); a founding member's raft id is its member id
// + 1, and its directory keeps format 1 or 2, which older builds read. A joined member's
// directory is written in format 3 from the start (the uuid is then "none" until it is known).
//
// Format 2 adds the cluster's identity (32 lowercase hex digits: the 16 random bytes the
// cluster's log recorded, wire.ClusterUUID), which the member writes once it applied it
// (SetClusterUUID). A directory whose member has not learned it (a new cluster, a cluster below
// cluster version 3, an older build's) keeps format 1; this build reads both. The file is
// replaced whole, through a temporary name (writeFileDurably): it is the old or the new one,
// never torn.
const (
	identityFormat1 uint8 = 1
	identityFormat2 uint8 = 2
	identityFormat3 uint8 = 3

	// IdentityFormatMin is the oldest IDENTITY format this build reads (IdentityFormat the
	// newest, which it writes once the cluster's identity is known).
	IdentityFormatMin = identityFormat1
)

// ClusterUUID is a cluster's identity as IDENTITY holds it (wire.ClusterUUID's bytes: the
// archive does not import the wire package). The zero value is "not known".
type ClusterUUID = [16]byte

// identityText is the IDENTITY file's text; the file holds it and then its CRC-32C.
func identityText(cluster string, member int, uuid ClusterUUID, raftID uint64) string {
	if raftID != 0 {
		u := "none"
		if uuid != (ClusterUUID{}) {
			u = hex.EncodeToString(uuid[:])
		}
		return fmt.Sprintf("tandem-archive %d\ncluster %s\nmember %d\nuuid %s\nraft %d\n", identityFormat3, cluster, member, u, raftID)
	}
	if uuid == (ClusterUUID{}) {
		return fmt.Sprintf("tandem-archive %d\ncluster %s\nmember %d\n", identityFormat1, cluster, member)
	}
	return fmt.Sprintf("tandem-archive %d\ncluster %s\nmember %d\nuuid %s\n", identityFormat2, cluster, member, hex.EncodeToString(uuid[:]))
}

// identityBody is the IDENTITY file's bytes: the text and its checksum.
func identityBody(text string) []byte {
	return binary.LittleEndian.AppendUint32([]byte(text), crc32.Checksum([]byte(text), castagnoli))
}

// parseIdentity reads an IDENTITY text of either format. ok is false if it is not one.
func parseIdentity(text string) (format uint8, cluster string, member int, uuid ClusterUUID, raftID uint64, ok bool) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return 0, "", 0, uuid, 0, false
	}
	if _, err := fmt.Sscanf(lines[0], "tandem-archive %d", &format); err != nil {
		return 0, "", 0, uuid, 0, false
	}
	cluster, okc := strings.CutPrefix(lines[1], "cluster ")
	if _, err := fmt.Sscanf(lines[2], "member %d", &member); err != nil || !okc {
		return 0, "", 0, uuid, 0, false
	}
	switch {
	case format == identityFormat1 && len(lines) == 3:
	case format == identityFormat3 && len(lines) == 5:
		if _, err := fmt.Sscanf(lines[4], "raft %d", &raftID); err != nil || raftID == 0 {
			return 0, "", 0, uuid, 0, false
		}
		if lines[3] != "uuid none" {
			h, _ := strings.CutPrefix(lines[3], "uuid ")
			b, err := hex.DecodeString(h)
			if err != nil || len(b) != len(uuid) {
				return 0, "", 0, uuid, 0, false
			}
			copy(uuid[:], b)
		}
	case format == identityFormat2 && len(lines) == 4:
		h, okU := strings.CutPrefix(lines[3], "uuid ")
		b, err := hex.DecodeString(h)
		if !okU || err != nil || len(b) != len(uuid) {
			return 0, "", 0, uuid, 0, false
		}
		copy(uuid[:], b)
		if uuid == (ClusterUUID{}) {
			return 0, "", 0, uuid, 0, false
		}
	default:
		return format, cluster, member, uuid, 0, false
	}
	// Exact: the text must be what this build would write for what it holds.
	return format, cluster, member, uuid, raftID, identityText(cluster, member, uuid, raftID) == text
}

// checkIdentity refuses a directory whose IDENTITY names another cluster or member, or fails its
// checksum, or is missing beside data; a directory without data gets its IDENTITY written. It
// keeps the cluster's identity the file holds (ClusterUUID).
func (a *Archive) checkIdentity() error {
	id, err := readIdentity(a.fs, a.dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := checkDataWithoutIdentity(a.fs, a.dir); err != nil {
			return err
		}
		a.raftID, a.joinedNow = a.opts.RaftID, a.opts.RaftID != 0
		return writeFileDurably(a.fs, a.dir, "IDENTITY", ".tmp", identityBody(identityText(a.opts.ClusterID, a.opts.MemberID, ClusterUUID{}, a.raftID)))
	}
	if err != nil {
		return err
	}
	if err := id.checkOwner(a.dir, a.opts); err != nil {
		return err
	}
	a.clusterUUID, a.raftID = id.uuid, id.raftID
	return nil
}

// identity is what an IDENTITY file holds (readIdentity).
type identity struct {
	format  uint8
	cluster string
	member  int
	uuid    ClusterUUID
	raftID  uint64
}

// readIdentity reads dir's IDENTITY file and checks its checksum and format. It returns an error
// satisfying errors.Is(err, fs.ErrNotExist) if there is none. Open (checkIdentity) and Describe
// both read it here, so that they never disagree on what it holds.
func readIdentity(fsys vfs.FS, dir string) (identity, error) {
	path := filepath.Join(dir, "IDENTITY")
	got, err := readFile(fsys, path)
	if errors.Is(err, fs.ErrNotExist) {
		return identity{}, err
	}
	if err != nil {
		return identity{}, fmt.Errorf("archive: reading %s: %w", path, err)
	}
	if len(got) < 4 || crc32.Checksum(got[:len(got)-4], castagnoli) != binary.LittleEndian.Uint32(got[len(got)-4:]) {
		return identity{}, fmt.Errorf("%w: %s fails its checksum", ErrCorrupt, path)
	}
	text := string(got[:len(got)-4])
	format, cluster, member, uuid, raftID, ok := parseIdentity(text)
	if !ok {
		if format > IdentityFormat {
			return identity{}, fmt.Errorf("archive: %s is of format %d, this build reads formats %d to %d (a newer build wrote it)",
				path, format, IdentityFormatMin, IdentityFormat)
		}
		return identity{}, fmt.Errorf("%w: %s is not an IDENTITY file this build reads", ErrCorrupt, path)
	}
	return identity{format: format, cluster: cluster, member: member, uuid: uuid, raftID: raftID}, nil
}

// checkOwner refuses the directory dir, whose IDENTITY holds id, to a member configured with
// opts of another cluster or member (or, with opts.RaftID, another raft id): one member's data
// must never be served as another's.
func (id identity) checkOwner(dir string, opts Options) error {
	if id.cluster != opts.ClusterID || id.member != opts.MemberID {
		return fmt.Errorf("archive: %s belongs to cluster %q member %d (format %d), not cluster %q member %d",
			dir, id.cluster, id.member, id.format, opts.ClusterID, opts.MemberID)
	}
	if opts.RaftID != 0 && id.raftID != opts.RaftID {
		return fmt.Errorf("archive: %s belongs to member %d under raft id %d, not raft id %d", dir, id.member, id.raftID, opts.RaftID)
	}
	return nil
}

// checkDataWithoutIdentity refuses a directory without an IDENTITY file that holds log segments
// or snapshots: whose they are cannot be told.
func checkDataWithoutIdentity(fsys vfs.FS, dir string) error {
	segs, _ := fsys.ReadDir(filepath.Join(dir, "log"))
	snaps, _ := fsys.ReadDir(filepath.Join(dir, "snap"))
	if len(segs) > 0 || len(snaps) > 0 {
		return fmt.Errorf("archive: %s holds data but no IDENTITY file: refusing to guess whose it is", dir)
	}
	return nil
}

// RaftID returns the raft id the IDENTITY file holds: that of a member that joined a running
// cluster; 0 for a founding member (its raft id is its member id + 1).
func (a *Archive) RaftID() uint64 { return a.raftID }

// ClusterUUID returns the cluster's identity the IDENTITY file holds: zero if it holds none (a
// member that has not applied its cluster's identity entry). Called on the owning goroutine.
func (a *Archive) ClusterUUID() ClusterUUID { return a.clusterUUID }

// ErrClusterUUIDDiffers: the cluster's identity the member applied is not the one its IDENTITY
// file holds. The data directory holds another cluster's data than its log says: the member must
// not go on.
var ErrClusterUUIDDiffers = errors.New("archive: the cluster identity differs from the one IDENTITY holds")

// SetClusterUUID records the cluster's identity u (not zero) in the IDENTITY file, durably,
// before it returns; setting the one it holds already writes nothing. Another one than the file
// holds is refused (ErrClusterUUIDDiffers), as a cluster's identity never changes. Called on
// the owning goroutine; it may run beside Sync and the snapshot and spare jobs, which touch
// neither IDENTITY nor its temporary name.
func (a *Archive) SetClusterUUID(u ClusterUUID) error {
	if u == (ClusterUUID{}) {
		return errors.New("archive: SetClusterUUID with the zero identity")
	}
	if a.clusterUUID == u {
		return nil
	}
	if a.clusterUUID != (ClusterUUID{}) {
		return fmt.Errorf("%w: %s holds %x, the member applied %x", ErrClusterUUIDDiffers, filepath.Join(a.dir, "IDENTITY"), a.clusterUUID, u)
	}
	if err := a.Err(); err != nil {
		return err
	}
	body := identityBody(identityText(a.opts.ClusterID, a.opts.MemberID, u, a.raftID))
	if err := writeFileDurably(a.fs, a.dir, "IDENTITY", ".tmp", body); err != nil {
		return a.fail(fmt.Errorf("writing IDENTITY: %w", err))
	}
	a.clusterUUID = u
	return nil
}
