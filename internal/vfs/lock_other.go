//go:build !unix

package vfs

import "os"

// flock takes no lock where flock(2) is not available: Tandem targets Linux, and builds
// elsewhere for development only, where two processes on one directory are not detected.
func flock(*os.File) error { return nil }
