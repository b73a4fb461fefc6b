package parse_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/vmcp/vmcp/parse"
)

// FuzzDuplicateKey builds a message from three comma-separated key lists
// (the envelope's keys, then params' keys, then params._meta's keys; params
// and _meta come last at their level) and checks DuplicateKey against a
// reference: the first key, in document order, that repeats one before it
// at its level after JSON decoding; and against encoding/json, which keeps
// one value per key, so a level has a duplicate exactly when its decoded
// map is smaller than its key list (empty keys aside). Arbitrary bytes in raw must not make it
// panic, and it answers the same twice.
func FuzzDuplicateKey(f *testing.F) {
	for _, s := range []struct{ env, params, meta string }{
		{"jsonrpc,id,method", "name,arguments", "progressToken"},
		{"jsonrpc,id,method,method", "name", ""},
		{"jsonrpc,id,params", "name", ""},
		{"jsonrpc,id", "name,name", ""},
		{"jsonrpc,id", "name,_meta", "k"},
		{"jsonrpc,id", "name", "io.modelcontextprotocol/protocolVersion,io.modelcontextprotocol/protocolVersion"},
		{"a,\u00e9,e\u0301", "", ""},
		{"\xff,\xfe", "", ""},
		{"", "", ""},
		{"x,X", "\\u0061,a", "\"q\",\"q\""},
	} {
		f.Add(s.env, s.params, s.meta, []byte(nil))
	}
	f.Add("", "", "", []byte(`{"a":1,"a":2}`))
	f.Add("", "", "", []byte(`{"params":{"_meta":{"k":1,"k":2}}}`))
	f.Add("", "", "", []byte(`{"params":{"_meta":{"k":1,"k":`))
	f.Fuzz(func(t *testing.T, env, params, meta string, raw []byte) {
		if raw != nil {
			if a, b := parse.DuplicateKey(raw), parse.DuplicateKey(raw); a != b {
				t.Fatalf("DuplicateKey(%q) is %q, then %q", raw, a, b)
			}
		}
		ekeys, pkeys, mkeys := splitKeys(env), splitKeys(params), splitKeys(meta)
		var body bytes.Buffer
		body.WriteString("{")
		for _, k := range ekeys {
			body.Write(jsonString(k))
			body.WriteString(":1,")
		}
		body.WriteString(`"params":{`)
		for _, k := range pkeys {
			body.Write(jsonString(k))
			body.WriteString(`:"v",`)
		}
		body.WriteString(`"_meta":{`)
		for i, k := range mkeys {
			if i > 0 {
				body.WriteString(",")
			}
			body.Write(jsonString(k))
			body.WriteString(":true")
		}
		body.WriteString("}}}")
		if !json.Valid(body.Bytes()) {
			t.Fatalf("test bug: built invalid JSON %q", body.Bytes())
		}

		got := parse.DuplicateKey(body.Bytes())

		// A repeated empty key cannot be reported ("" means none); it
		// carries nothing vmcp reads, so the reference ignores empty keys.
		levels := [][]string{
			append(nonEmpty(decoded(ekeys)), "params"),
			append(nonEmpty(decoded(pkeys)), "_meta"),
			nonEmpty(decoded(mkeys)),
		}
		want := ""
		for _, keys := range levels {
			if want = firstRepeat(keys); want != "" {
				break
			}
		}
		if got != want {
			t.Fatalf("DuplicateKey(%s) = %q, want %q", body.Bytes(), got, want)
		}
		// encoding/json's view: one value per key at each level.
		// The last "params" and "_meta" are the objects, as built.
		var em, pm, mm map[string]json.RawMessage
		if json.Unmarshal(body.Bytes(), &em) != nil || json.Unmarshal(em["params"], &pm) != nil || json.Unmarshal(pm["_meta"], &mm) != nil {
			t.Fatalf("encoding/json cannot read %s", body.Bytes())
		}
		sizes := []int{len(em), len(pm), len(mm)}
		for i, m := range []map[string]json.RawMessage{em, pm, mm} {
			if _, ok := m[""]; ok {
				sizes[i]--
			}
		}
		dup := false
		for i, keys := range levels {
			if sizes[i] != len(keys) {
				dup = true
				break
			}
		}
		if (got != "") != dup {
			t.Fatalf("DuplicateKey(%s) = %q, but encoding/json finds a duplicate: %v", body.Bytes(), got, dup)
		}
	})
}

// splitKeys splits a comma-separated key list; "" has no keys.
func splitKeys(s string) []string {
	if s == "" {
		return nil
	}
	keys := strings.Split(s, ",")
	return keys[:min(len(keys), 16)]
}

// jsonString encodes s as a JSON string.
func jsonString(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

// decoded returns keys as a JSON decoder sees them once encoded: invalid
// UTF-8 becomes U+FFFD.
func decoded(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		_ = json.Unmarshal(jsonString(k), &out[i])
	}
	return out
}

// nonEmpty returns keys without the empty ones.
func nonEmpty(keys []string) []string {
	var out []string
	for _, k := range keys {
		if k != "" {
			out = append(out, k)
		}
	}
	return out
}

// firstRepeat returns the first key that repeats an earlier one, or "".
func firstRepeat(keys []string) string {
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] {
			return k
		}
		seen[k] = true
	}
	return ""
}
