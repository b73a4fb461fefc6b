package config

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// configType is the schema every document is checked against.
var configType = reflect.TypeOf(Config{})

// fieldAliases maps, per struct, a lower-case alternative key to the
// mapstructure name of the field it stands for.
var fieldAliases = map[reflect.Type]map[string]string{
	reflect.TypeOf(BackendTools{}): {"workload": "backend"},
}

// checkDocument walks the YAML root mapping against the Config schema and
// reports, all at once and each with its line, unknown and duplicate keys,
// values of the wrong shape and bad durations.
//
// It also rewrites the document in place so that viper reads exactly the
// schema: keys take their schema spelling, an alias key becomes its field
// ("workload" becomes "backend"), and scalars in string positions are tagged
// !!str so that "args: [--port, 8080]" stays text.
func checkDocument(root *yaml.Node) error {
	var w walker
	w.value(root, configType, "")
	return join(w.errs...)
}

// walker collects the problems found in one document.
type walker struct{ errs []error }

func (w *walker) failf(path string, n *yaml.Node, format string, args ...any) {
	msg := fmt.Sprintf(format, args...) + fmt.Sprintf(" at line %d", n.Line)
	w.errs = append(w.errs, &fieldError{path: path, msg: msg})
}

// value checks n as a value of type t at path.
func (w *walker) value(n *yaml.Node, t reflect.Type, path string) {
	n = resolve(n)
	if isNull(n) {
		return // null leaves the zero value
	}
	switch {
	case t == durationType:
		w.duration(n, path)
	case t.Kind() == reflect.Pointer:
		w.value(n, t.Elem(), path)
	case t.Kind() == reflect.Struct:
		w.structure(n, t, path)
	case t.Kind() == reflect.Slice:
		if w.expect(n, yaml.SequenceNode, path) {
			for i, item := range n.Content {
				w.value(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
		}
	case t.Kind() == reflect.Map:
		w.mapping(n, t, path)
	case t.Kind() == reflect.String:
		if w.expect(n, yaml.ScalarNode, path) {
			n.Tag = "!!str"
		}
	case t.Kind() == reflect.Bool:
		w.scalar(n, t, "!!bool", "a boolean", path)
	case t.Kind() == reflect.Float64 || t.Kind() == reflect.Float32:
		if w.expect(n, yaml.ScalarNode, path) && n.ShortTag() == "!!int" {
			n.Tag = "!!float" // 1 is a number too
		}
		w.scalar(n, t, "!!float", "a number", path)
	default: // the integer kinds
		w.scalar(n, t, "!!int", "an integer", path)
	}
}

// expect reports whether n has the wanted kind, recording a problem if not.
func (w *walker) expect(n *yaml.Node, kind yaml.Kind, path string) bool {
	if n.Kind == kind {
		return true
	}
	w.failf(path, n, "expected %s, got %s", kindName(kind), kindName(n.Kind))
	return false
}

// scalar checks a bool or integer scalar, including that it fits t.
func (w *walker) scalar(n *yaml.Node, t reflect.Type, tag, want, path string) {
	if !w.expect(n, yaml.ScalarNode, path) {
		return
	}
	if n.ShortTag() != tag || n.Decode(reflect.New(t).Interface()) != nil {
		w.failf(path, n, "expected %s, got %q", want, n.Value)
	}
}

// duration accepts "1m" and {duration: 1m}.
func (w *walker) duration(n *yaml.Node, path string) {
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 &&
		strings.EqualFold(n.Content[0].Value, durationKey) {
		n.Content[0].Value = durationKey
		n = resolve(n.Content[1])
	}
	if n.Kind != yaml.ScalarNode {
		w.failf(path, n, "expected a duration like 1m or {duration: 1m}, got %s", kindName(n.Kind))
		return
	}
	if _, err := parseDuration(n.Value); err != nil {
		w.failf(path, n, "%v", err)
		return
	}
	n.Tag = "!!str"
}

// mapping checks a map with user-chosen keys, such as outgoingAuth.backends.
func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string) {
	if !w.expect(n, yaml.MappingNode, path) {
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if !w.expect(k, yaml.ScalarNode, path) {
			continue
		}
		if k.ShortTag() == "!!merge" {
			for _, m := range mergeSources(v) {
				w.mapping(m, t, path)
			}
			continue
		}
		k.Tag = "!!str"
		if line, dup := seen[k.Value]; dup {
			w.failf(path, k, "duplicate key %q (also at line %d)", k.Value, line)
			continue
		}
		seen[k.Value] = k.Line
		w.value(v, t.Elem(), joinPath(path, keyCoord(k.Value)))
	}
}

// seenKey is a struct key already met in one mapping.
type seenKey struct {
	name  string // as written
	line  int
	value *yaml.Node
}

// structure checks a mapping against the fields of struct type t.
func (w *walker) structure(n *yaml.Node, t reflect.Type, path string) {
	if !w.expect(n, yaml.MappingNode, path) {
		return
	}
	fields := fieldsOf(t)
	seen := map[string]seenKey{}
	kept := n.Content[:0:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			for _, m := range mergeSources(v) {
				w.structure(m, t, path)
			}
			kept = append(kept, k, v)
			continue
		}
		name := strings.ToLower(k.Value)
		field, known := fields[name]
		if alias, ok := fieldAliases[t][name]; ok {
			field, known = fields[alias], true
		}
		if !known {
			w.failf(path, k, "unknown key %q", k.Value)
			continue
		}
		tag := tagName(field)
		if prev, dup := seen[tag]; dup {
			if !strings.EqualFold(prev.name, k.Value) && sameScalar(prev.value, v) {
				continue // alias and field agree; keep one
			}
			if strings.EqualFold(prev.name, k.Value) {
				w.failf(path, k, "duplicate key %q (also at line %d)", k.Value, prev.line)
			} else {
				w.failf(path, k, "%s %q and %s %q differ", prev.name, resolve(prev.value).Value,
					k.Value, resolve(v).Value)
			}
			continue
		}
		seen[tag] = seenKey{name: k.Value, line: k.Line, value: v}
		k.Value = tag
		w.value(v, field.Type, joinPath(path, tag))
		kept = append(kept, k, v)
	}
	n.Content = kept
}

// fieldsOf indexes the fields of struct type t by lower-case key.
func fieldsOf(t reflect.Type) map[string]reflect.StructField {
	fields := make(map[string]reflect.StructField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if name := tagName(f); name != "" && name != "-" {
			fields[strings.ToLower(name)] = f
		}
	}
	return fields
}

// tagName is the key of f in the YAML file.
func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
	return name
}

// mergeSources returns the mappings named by a YAML merge key ("<<").
func mergeSources(v *yaml.Node) []*yaml.Node {
	v = resolve(v)
	if v.Kind != yaml.SequenceNode {
		return []*yaml.Node{v}
	}
	out := make([]*yaml.Node, 0, len(v.Content))
	for _, item := range v.Content {
		out = append(out, resolve(item))
	}
	return out
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func sameScalar(a, b *yaml.Node) bool {
	a, b = resolve(a), resolve(b)
	return a.Kind == yaml.ScalarNode && b.Kind == yaml.ScalarNode && a.Value == b.Value
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	}
	return "an alias"
}
