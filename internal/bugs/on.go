//go:build tandem_bugs

package bugs

var active string

// Active reports whether the named bug is switched on.
func Active(name string) bool { return active == name }

// Set switches one bug on ("" for none). Not safe for concurrent use: the simulator is one
// goroutine.
func Set(name string) { active = name }
