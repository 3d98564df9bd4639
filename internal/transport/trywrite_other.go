//go:build !unix

package transport

import "syscall"

// tryWrite writes nothing where non-blocking writes on the raw descriptor are not available: the
// writer goroutine writes everything.
func tryWrite(syscall.RawConn, []byte) int { return 0 }
