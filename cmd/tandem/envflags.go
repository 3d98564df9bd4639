package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// tandem node's settings come from four sources, one mechanism for all (issue 21):
//
//	the command line  >  the environment (TANDEM_<NAME>)  >  the config file (--config)  >  the default
//
// Every flag has its variable: TANDEM_ and its name in capitals, dashes as underscores
// (--election-ticks: TANDEM_ELECTION_TICKS), and its key in a config file: its name as typed on
// the command line (election-ticks). The exceptions are --print-config, which is an action and not
// a setting (a file or a variable that stops every start would be a trap), and --config, which
// names the file (TANDEM_CONFIG, never a key in the file: one file does not name another).
//
// Each value's origin is recorded, so that an error names where the bad value came from
// (--tick abc, TANDEM_TICK="abc" (from the environment), tandem.yaml:3: tick: "abc") and
// --print-config can say where each setting came from. A value that does not parse is an error
// in whichever source it stands, even when a source of higher precedence overrides it: before,
// TANDEM_TICK=abc was ignored in silence, and the member ran with a setting an operator thought
// they had changed; an error in a source that happens to lose is still one.

// envName is the environment variable of flag name.
func envName(name string) string {
	return "TANDEM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// originKind is the kind of source a setting came from.
type originKind int

const (
	fromDefault originKind = iota
	fromFile
	fromEnv
	fromFlag
)

// origin is where a setting's value came from.
type origin struct {
	kind originKind
	// name is the file's path (fromFile), the variable's name (fromEnv) or the flag as typed,
	// "--tick" (fromFlag); for the member id given as the argument, "the command line".
	name string
}

// String is how --print-config names the origin.
func (o origin) String() string {
	if o.kind == fromDefault {
		return "default"
	}
	return "from " + o.name
}

// settings are the flags of a verb read from every source, with the origin of each.
type settings struct {
	fs *flag.FlagSet
	// origins holds the origin of every flag that is not at its default.
	origins map[string]origin
	// config is the config file's path ("": none) and where that path came from.
	config       string
	configOrigin origin
	// fileID is the member id the config file gives as key id (fileIDLine: its line, 0 if the
	// format does not say); "": none.
	fileID     string
	fileIDLine int
	// warnings are what the verb says before it runs: the unknown TANDEM_ variables.
	warnings []string
}

// set reports whether flag name was given by any source.
func (s *settings) set(name string) bool { return s.origins[name].kind != fromDefault }

// source names flag name for an error about its value: where the value came from.
func (s *settings) source(name string) string {
	switch o := s.origins[name]; o.kind {
	case fromEnv:
		return o.name
	case fromFile:
		return o.name + ": " + name
	}
	return "--" + name
}

// nameVariables ends the help line of each flag of fs that has a variable with its name,
// "[TANDEM_TICK]": made from the flag's name, as the variable is, so the help cannot name a
// variable that is not read, nor leave one out.
func nameVariables(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "print-config" { // the one flag with no variable (--config has TANDEM_CONFIG)
			f.Usage += " [" + envName(f.Name) + "]"
		}
	})
}

// notFromSources are the flags that no environment variable or file key sets (see above).
var notFromSources = map[string]bool{"config": true, "print-config": true}

// loadSettings parses args with fs (the verb's help and command-line errors as parseVerb does),
// then fills in what the command line left unset from the environment (lookup) and the config
// file that --config or TANDEM_CONFIG names. It returns the positional arguments; when the verb
// must return at once (help, or an error printed as a usage error), done is true and code its
// exit code.
func loadSettings(fs *flag.FlagSet, args []string, lookup func(string) (string, bool), environ []string, help verbHelp,
	stdout, stderr io.Writer) (s *settings, pos []string, code int, done bool) {
	nameVariables(fs)
	pos, code, done = parseVerbTo(fs, args, help, stdout, stderr)
	if done {
		return nil, nil, code, true
	}
	s = &settings{fs: fs, origins: map[string]origin{}}
	// The command line wins: its values are put back last, over what the other sources set.
	typed := map[string]string{}
	fs.Visit(func(f *flag.Flag) {
		typed[f.Name] = f.Value.String()
		s.origins[f.Name] = origin{fromFlag, "--" + f.Name}
	})
	if f := fs.Lookup("config"); f != nil {
		if p, ok := typed["config"]; ok {
			s.config, s.configOrigin = p, s.origins["config"]
		} else if p, ok := lookup(envName("config")); ok {
			s.config, s.configOrigin = p, origin{fromEnv, envName("config")}
			s.origins["config"] = s.configOrigin
			_ = f.Value.Set(p) // a string: cannot fail
		}
	}
	verb := fs.Name()
	if s.config != "" {
		entries, err := readConfigFile(s.config)
		if err != nil {
			return nil, nil, usageError(stderr, verb, "config file %s (%s): %v", s.config, s.configOrigin, err), true
		}
		for _, e := range entries {
			if err := s.applyFileEntry(e); err != nil {
				return nil, nil, usageError(stderr, verb, "%v", err), true
			}
		}
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		v, ok := lookup(envName(f.Name))
		if !ok || envErr != nil || notFromSources[f.Name] {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			envErr = fmt.Errorf("%s (from the environment): %s", envName(f.Name), badValue(f, strconv.Quote(v), err))
			return
		}
		if _, ok := typed[f.Name]; !ok {
			s.origins[f.Name] = origin{fromEnv, envName(f.Name)}
		}
	})
	if envErr != nil {
		return nil, nil, usageError(stderr, verb, "%v", envErr), true
	}
	for name, v := range typed {
		if err := fs.Set(name, v); err != nil { // it parsed once: a flag whose String does not round-trip
			return nil, nil, usageError(stderr, verb, "--%s %q: %v", name, v, err), true
		}
	}
	s.warnings = unknownVariables(fs, environ)
	return s, pos, exitOK, false
}

// A TANDEM_ variable that is no flag's is a warning, not an error (the decision, issue 21's
// follow-up): a misspelled one (TANDEM_TIKC) would otherwise be ignored in silence, as an
// unknown file key is not; but the prefix is shared with variables that are not the member's —
// the client's TANDEM_ENDPOINTS, the tests' and tools' (TANDEM_METRICS_OUT, TANDEM_SIM_*,
// TANDEM_MEASURE*, TANDEM_TEST_*, TANDEM_BUG_SEEDS) — and an environment exported for all of
// them, or one a later tool adds to, must not stop a member from starting. The known ones are
// not warned about; any other is, naming the nearest flag's variable.

// otherVariables are the TANDEM_ variables, not flags', that the repository reads; otherPrefixes
// the prefixes of its families of test and tool variables.
var (
	otherVariables = map[string]bool{"TANDEM_ENDPOINTS": true, "TANDEM_METRICS_OUT": true, "TANDEM_BUG_SEEDS": true}
	otherPrefixes  = []string{"TANDEM_SIM_", "TANDEM_MEASURE", "TANDEM_TEST_"}
)

// unknownVariables returns a warning for each variable of environ ("NAME=value" or "NAME") that
// starts with TANDEM_ and that neither a flag of fs nor the repository reads, in environ's order.
func unknownVariables(fs *flag.FlagSet, environ []string) []string {
	var warnings []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "TANDEM_") || otherVariables[name] {
			continue
		}
		known := false
		for _, p := range otherPrefixes {
			known = known || strings.HasPrefix(name, p)
		}
		fs.VisitAll(func(f *flag.Flag) {
			known = known || (envName(f.Name) == name && f.Name != "print-config")
		})
		if known {
			continue
		}
		w := fmt.Sprintf("%s is not a variable of tandem %s, ignored", name, fs.Name())
		if near := closestKey(fs, name); near != "" && near != "id" {
			w = fmt.Sprintf("%s is not a variable of tandem %s, ignored (did you mean %s?)", name, fs.Name(), envName(near))
		}
		warnings = append(warnings, w)
	}
	return warnings
}

// listSeparators are the flags a config file may give as a list: the items are joined with the
// flag's separator (a list of members reads better one to a line than as one long string).
var listSeparators = map[string]string{"members": "|", "join": ",", "preferred-leader": ",", "peer-allowed-names": ","}

// listFlags names the flags that take lists (listSeparators): "join, members and preferred-leader".
func listFlags() string {
	names := slices.Sorted(maps.Keys(listSeparators))
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// applyFileEntry sets the flag that config file entry e names.
func (s *settings) applyFileEntry(e fileEntry) error {
	where := s.config
	if e.line > 0 {
		where = fmt.Sprintf("%s:%d", s.config, e.line)
	}
	if e.key == "id" {
		if e.kind != kindNumber && e.kind != kindString {
			return fmt.Errorf("%s: id: want a member id (a non-negative integer), got %s", where, e.kind)
		}
		s.fileID, s.fileIDLine = e.text, e.line
		return nil
	}
	switch e.key {
	case "config":
		return fmt.Errorf("%s: config: a config file cannot name another (give --config or TANDEM_CONFIG only)", where)
	case "print-config":
		return fmt.Errorf("%s: print-config: an action for the command line, not a setting", where)
	}
	f := s.fs.Lookup(e.key)
	if f == nil {
		if near := closestKey(s.fs, e.key); near != "" {
			return fmt.Errorf("%s: unknown key %q (did you mean %s?)", where, e.key, near)
		}
		return fmt.Errorf("%s: unknown key %q: the keys are the flags' names (tandem node --help)", where, e.key)
	}
	text := e.text
	switch e.kind {
	case kindNull:
		return fmt.Errorf(`%s: %s has no value (write "" for an empty one)`, where, e.key)
	case kindMap, kindOther:
		return fmt.Errorf("%s: %s: %s is not a value (a string, a number, true or false)", where, e.key, e.kind)
	case kindList:
		sep := listSeparators[e.key]
		if sep == "" {
			return fmt.Errorf("%s: %s: a list is not a value (only %s take lists)", where, e.key, listFlags())
		}
		items := make([]string, len(e.items))
		for i, it := range e.items {
			if it.kind != kindString && it.kind != kindNumber {
				return fmt.Errorf("%s: %s: item %d is %s, not a string", where, e.key, i+1, it.kind)
			}
			items[i] = it.text
		}
		text = strings.Join(items, sep)
	}
	typ := flagType(f)
	shown := text
	if e.kind == kindString {
		shown = strconv.Quote(text)
	}
	if typ == "duration" && e.kind == kindNumber {
		// 5 is not 5 seconds nor 5 ns: a number without a unit is a mistake (so says time too).
		return fmt.Errorf("%s: %s: %s is not a duration (like 100ms)", where, e.key, shown)
	}
	if err := s.fs.Set(e.key, text); err != nil {
		return fmt.Errorf("%s: %s: %s", where, e.key, badValue(f, shown, err))
	}
	if !s.set(e.key) { // the command line's, when it gave one: its value is put back last
		s.origins[e.key] = origin{fromFile, s.config}
	}
	return nil
}

// badValue says why value (as the source wrote it: shown) is not one of f's, which err, f's
// Set's, says: for the flag package's own types, which say only "parse error" or "value out of
// range", what the flag takes ("abc" is not a duration (like 100ms)); a value of the verb's own
// (--log-format, --log-level) says why itself. The same words for a file's value, a
// variable's and a flag's (flagError), so that a value is refused alike wherever it stands.
func badValue(f *flag.Flag, shown string, err error) string {
	desc, ok := typeDescriptions[flagType(f)]
	if !ok || flagType(f) == "string" {
		return err.Error()
	}
	if err.Error() == "value out of range" {
		return fmt.Sprintf("%s is out of range for %s", shown, desc)
	}
	return fmt.Sprintf("%s is not %s", shown, desc)
}

// typeDescriptions say, for an error, what a flag of each type takes.
var typeDescriptions = map[string]string{
	"duration": "a duration (like 100ms)",
	"int":      "an integer",
	"uint":     "a non-negative integer",
	"uint64":   "a non-negative integer",
	"bool":     "true or false",
	"string":   "a string",
}

// flagType is the type of f's value: duration, int, uint, uint64, bool or string (the flag
// package's own types; another is named by its Go type).
func flagType(f *flag.Flag) string {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return "string"
	}
	switch g.Get().(type) {
	case interface{ Seconds() float64 }:
		return "duration"
	case int:
		return "int"
	case uint:
		return "uint"
	case uint64:
		return "uint64"
	case bool:
		return "bool"
	case string:
		return "string"
	}
	return fmt.Sprintf("%T", g.Get())
}

// closestKey is the key of fs nearest to key, for an unknown key's error: the same but for
// case, underscores, leading dashes or a TANDEM_ prefix (election_ticks, --tick, TANDEM_TICK),
// else the nearest within two edits of a typo; "" if none is near.
func closestKey(fs *flag.FlagSet, key string) string {
	norm := strings.ReplaceAll(strings.ToLower(strings.TrimLeft(key, "-")), "_", "-")
	norm = strings.TrimPrefix(norm, "tandem-")
	if f := fs.Lookup(norm); f != nil && !notFromSources[norm] {
		return norm
	}
	best, bestDist := "", 3
	consider := func(name string) {
		if d := editDistance(norm, name); d < bestDist && d < len(name)/2+1 {
			best, bestDist = name, d
		}
	}
	consider("id")
	fs.VisitAll(func(f *flag.Flag) {
		if !notFromSources[f.Name] {
			consider(f.Name)
		}
	})
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes: keys are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
