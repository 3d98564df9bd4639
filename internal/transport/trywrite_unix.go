//go:build unix

package transport

import "syscall"

// tryWrite makes one non-blocking write of b to the connection and returns how many bytes the
// socket took (0 when it is full, or on any error: the writer goroutine then writes the rest and
// meets the error itself). The descriptor is non-blocking (the runtime's netpoller owns it), and
// returning true from the callback stops the runtime from waiting for it to become writable.
func tryWrite(rc syscall.RawConn, b []byte) int {
	n := 0
	_ = rc.Write(func(fd uintptr) bool {
		if w, err := syscall.Write(int(fd), b); err == nil && w > 0 {
			n = w
		}
		return true
	})
	return n
}
