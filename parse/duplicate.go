package parse

import (
	"bytes"
	"encoding/json"
)

// DuplicateKey returns a key that appears twice in the JSON-RPC message
// body, in the envelope, in params or in params._meta, or "" when there is
// none. encoding/json keeps the last of two equal keys, and other parsers
// may keep the first; a message forwarded byte for byte must not mean one
// thing to vmcp (routing, rate limits, audit) and another to the backend.
func DuplicateKey(body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	return duplicateIn(dec, 0)
}

// duplicateIn reads one JSON object from dec and reports a duplicate key
// in it, or in the objects under "params" (depth 0) and "_meta" (depth 1). A value that is not an object, or
// malformed JSON, has no duplicate as far as this check goes: parse has
// already refused malformed bodies.
func duplicateIn(dec *json.Decoder, depth int) string {
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		key, _ := t.(string)
		if seen[key] {
			return key
		}
		seen[key] = true
		var value json.RawMessage
		if dec.Decode(&value) != nil {
			return ""
		}
		if (depth == 0 && key == "params") || (depth == 1 && key == "_meta") {
			if dup := duplicateIn(json.NewDecoder(bytes.NewReader(value)), depth+1); dup != "" {
				return dup
			}
		}
	}
	return ""
}
