// Package version holds this build's release version, which `tandem version` prints and each
// member's tandem_build_info metric carries. It lives apart from cmd/tandem so that package node
// can read it.
package version

// Version is the release this build belongs to; a release build sets it with
// -ldflags "-X github.com/tandem-cluster/tandem/internal/version.Version=1.2.3". The commit
// comes from the Go toolchain's version-control stamp (go build in a git checkout; go run and go
// test leave it out).
var Version = "0.1.0-dev"
