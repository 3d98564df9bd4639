//go:build tandem_bugs

package bugs

var active Bug

// Active reports whether bug b is switched on.
func Active(b Bug) bool { return active == b }

// Set switches bug b on ("" for none). Not safe for concurrent use: the simulator is one
// goroutine.
func Set(b Bug) { active = b }
