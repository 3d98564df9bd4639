package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"gopkg.in/yaml.v3"
)

// A config file is YAML (.yaml, .yml) or TOML (.toml), chosen by its extension: guessing the
// format from the content would read a TOML file with a typo as YAML and report nonsense. Its
// top level is keys and values, the keys the flags' names; both formats are read into the same
// entries, typed as written (a quoted "5" is a string, 5 a number), so that the checks and the
// errors are the same for both. An empty file is an empty configuration, as an empty command
// line is.

// valueKind is the kind of a value as the file wrote it.
type valueKind int

const (
	kindString valueKind = iota
	kindNumber
	kindBool
	kindNull
	kindList
	kindMap
	kindOther // a TOML date or time
)

// String names the kind for an error ("… is a map").
func (k valueKind) String() string {
	return [...]string{"a string", "a number", "true or false", "no value", "a list", "a map", "a date or time"}[k]
}

// fileEntry is one key of a config file and its value.
type fileEntry struct {
	key  string
	line int // the key's line, 0 if the format's parser does not say (TOML)
	kind valueKind
	// text is a scalar as written (a string: its value).
	text  string
	items []fileEntry // kindList: the items (no key)
}

// configFormats are the known extensions, for the error that names them.
const configFormats = ".yaml, .yml (YAML) or .toml (TOML)"

// readConfigFile reads the entries of the config file at path, in the file's order.
func readConfigFile(path string) ([]fileEntry, error) {
	ext := strings.ToLower(filepath.Ext(path))
	if ext != ".yaml" && ext != ".yml" && ext != ".toml" {
		return nil, fmt.Errorf("unknown format %q: the extension says which, %s", ext, configFormats)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if ext == ".toml" {
		return tomlEntries(data)
	}
	return yamlEntries(data)
}

// yamlEntries reads a YAML config file's entries.
func yamlEntries(data []byte) ([]fileEntry, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err == io.EOF {
		return nil, nil // empty
	} else if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	// A second document (after ---) would be ignored in silence: the settings an operator wrote
	// there would not be in force.
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		line := 0
		if err == nil {
			line = next.Line
		}
		return nil, fmt.Errorf("line %d: a second YAML document (after ---): a config file is one document", line)
	}
	if doc.Kind == 0 { // comments only
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want keys and values (flag names as keys), got %s", root.Line, yamlEntry(root).kind)
	}
	seen := map[string]int{}
	var es []fileEntry
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: a key must be a flag's name", k.Line)
		}
		if line, ok := seen[k.Value]; ok {
			return nil, fmt.Errorf("line %d: key %s again (first on line %d)", k.Line, k.Value, line)
		}
		seen[k.Value] = k.Line
		e := yamlEntry(v)
		e.key, e.line = k.Value, k.Line
		es = append(es, e)
	}
	return es, nil
}

// yamlEntry is YAML node n as an entry's value.
func yamlEntry(n *yaml.Node) fileEntry {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.SequenceNode:
		e := fileEntry{kind: kindList}
		for _, c := range n.Content {
			e.items = append(e.items, yamlEntry(c))
		}
		return e
	case yaml.MappingNode:
		return fileEntry{kind: kindMap}
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int", "!!float":
			return fileEntry{kind: kindNumber, text: n.Value}
		case "!!bool":
			return fileEntry{kind: kindBool, text: n.Value}
		case "!!null":
			return fileEntry{kind: kindNull}
		}
		return fileEntry{kind: kindString, text: n.Value}
	}
	return fileEntry{kind: kindOther}
}

// tomlEntries reads a TOML config file's entries. (The TOML parser gives no key's line, only a
// syntax error's.)
func tomlEntries(data []byte) ([]fileEntry, error) {
	var m map[string]any
	md, err := toml.Decode(string(data), &m)
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "toml: "))
	}
	var es []fileEntry
	for _, k := range md.Keys() {
		if len(k) != 1 {
			// A dotted key (node.tick = "1s") or a key of a [table]: not a flag's, and were it
			// skipped, the setting would not be in force (the table itself is not always a key:
			// a dotted key has none).
			return nil, fmt.Errorf("key %q is inside a table: the keys are the flags' names, at the top level", k.String())
		}
		e := tomlEntry(m[k[0]])
		e.key = k[0]
		es = append(es, e)
	}
	return es, nil
}

// tomlEntry is TOML value v as an entry's value.
func tomlEntry(v any) fileEntry {
	switch v := v.(type) {
	case string:
		return fileEntry{kind: kindString, text: v}
	case int64:
		return fileEntry{kind: kindNumber, text: strconv.FormatInt(v, 10)}
	case float64:
		return fileEntry{kind: kindNumber, text: strconv.FormatFloat(v, 'g', -1, 64)}
	case bool:
		return fileEntry{kind: kindBool, text: strconv.FormatBool(v)}
	case []any:
		e := fileEntry{kind: kindList}
		for _, it := range v {
			e.items = append(e.items, tomlEntry(it))
		}
		return e
	case []map[string]any, map[string]any:
		return fileEntry{kind: kindMap}
	}
	return fileEntry{kind: kindOther} // a date or a time

}
