package archive

import (
	"strings"
	"testing"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

func TestIdentityMismatch(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	a.Close()
	o := opts()
	o.ClusterID = "other"
	_, err := Open(m, dir, o)
	if err == nil || !strings.Contains(err.Error(), `"test"`) || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("opening another cluster's directory: %v", err)
	}
	o = opts()
	o.MemberID = 2
	if _, err := Open(m, dir, o); err == nil || !strings.Contains(err.Error(), "member 0") {
		t.Fatalf("opening another member's directory: %v", err)
	}
}
