package main

import (
	"flag"
	"os"
	"strings"
)

// Every flag of tandem node can be given in the environment as TANDEM_ and its name in capitals,
// dashes as underscores (--election-ticks: TANDEM_ELECTION_TICKS); the command line wins. A value
// that does not parse is an error that names the variable — before, TANDEM_TICK=abc was ignored
// in silence, and the member ran with the default an operator thought they had changed.

// envName is the environment variable of flag name.
func envName(name string) string {
	return "TANDEM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// flagsFromEnv sets every flag of fs whose variable is set in the environment; the command line,
// parsed after, overrides. It returns a usage error's exit code and true if a value is invalid.
func flagsFromEnv(fs *flag.FlagSet, verb string) (int, bool) {
	code, failed := 0, false
	fs.VisitAll(func(f *flag.Flag) {
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok || failed {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			code, failed = usageError(os.Stderr, verb, "%s=%q (from the environment): invalid value for --%s: %v",
				envName(f.Name), v, f.Name, err), true
		}
	})
	return code, failed
}
