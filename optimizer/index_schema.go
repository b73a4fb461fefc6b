package optimizer

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/mark3labs/mcp-go/mcp"
)

// maxSchemaDepth is how many levels of nested properties are indexed: the
// first levels name what a tool acts on; deeper ones are record layouts that
// mostly add noise (and a hostile schema could nest without end).
const maxSchemaDepth = 4

// schemaText calls name with every property name of a tool's input schema,
// and text with every property title and description and every string enum
// value, walking nested objects, array items and anyOf/oneOf/allOf
// alternatives. RawInputSchema wins when set, as it does on the wire.
func schemaText(t *mcp.Tool, name, text func(string)) {
	e := schemaEmit{name, text}
	if len(t.RawInputSchema) > 0 {
		var s map[string]any
		if json.Unmarshal(t.RawInputSchema, &s) == nil {
			walkSchema(s, 0, e)
		}
		return
	}
	walkProperties(t.InputSchema.Properties, 0, e)
}

// schemaEmit receives a schema's property names and its other text.
type schemaEmit struct{ name, text func(string) }

// walkSchema emits the text below one schema node (not the node's own
// description: for the root that is the tool's, and for a property its
// caller emits it).
func walkSchema(node map[string]any, depth int, emit schemaEmit) {
	if depth >= maxSchemaDepth {
		return
	}
	if props, ok := node["properties"].(map[string]any); ok {
		walkProperties(props, depth, emit)
	}
	if items, ok := node["items"].(map[string]any); ok {
		walkNode(items, depth+1, emit)
	}
	if extra, ok := node["additionalProperties"].(map[string]any); ok {
		walkNode(extra, depth+1, emit)
	}
	for _, key := range [...]string{"anyOf", "oneOf", "allOf"} {
		if alts, ok := node[key].([]any); ok {
			for _, alt := range alts {
				if m, ok := alt.(map[string]any); ok {
					walkNode(m, depth+1, emit)
				}
			}
		}
	}
}

// walkProperties emits each property's name, then its own text and below.
//
// Properties go in name order: the text they make (the tool's text for
// embedding, keyed by its content) must not change between runs.
func walkProperties(props map[string]any, depth int, emit schemaEmit) {
	for _, name := range slices.Sorted(maps.Keys(props)) {
		p := props[name]
		emit.name(name)
		if m, ok := p.(map[string]any); ok {
			walkNode(m, depth+1, emit)
		}
	}
}

// walkNode emits a property schema's title, description and string enum
// values (which name the choices a tool offers, e.g. "celsius"), then what is
// below it.
func walkNode(node map[string]any, depth int, emit schemaEmit) {
	if depth > maxSchemaDepth {
		return
	}
	for _, key := range [...]string{"title", "description"} {
		if s, ok := node[key].(string); ok {
			emit.text(s)
		}
	}
	if enum, ok := node["enum"].([]any); ok {
		for _, v := range enum {
			if s, ok := v.(string); ok { // numbers and booleans say nothing about the task
				emit.text(s)
			}
		}
	}
	walkSchema(node, depth, emit)
}
