package authz

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

var jsonSeeds = []string{
	``, ` `, `null`, `true`, `false`, `0`, `-0`, `1.5e3`, `-12.25E-2`, `1e400`, `01`, `1.`, `.5`, `-`, `1e`, `+1`,
	`"a"`, `"a\"b\\c\/d\b\f\n\r\t"`, `"\u00e9\u20AC"`, `"\ud83d\ude00"`, `"\ud800"`, `"\ud800\u0041"`,
	`"\udc00\ud800"`, `"\ud800\ud800\udc00"`, `"\ud800\uzzzz"`, `"\x"`, "\"\x01\"", "\"\xff\xfe\"", `"é"`, `"abc`,
	`{}`, `[]`, `{"a":1,"a":2}`, `{"a":[1,{"b":null}],"c":"d"}`, ` { "a" : [ ] } `, `{"a":1,}`, `[1,]`, `[1 2]`,
	`{"a"}`, `{a:1}`, `[`, `{`, `{"a":1}x`, `nul`, `truex`, `{"cascade":true,"table":"t"}`,
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	for _, s := range jsonSeeds {
		checkDecodeJSON(t, []byte(s))
	}
}

// FuzzDecodeJSON holds decodeJSON to encoding/json.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkDecodeJSON)
}

func checkDecodeJSON(t *testing.T, data []byte) {
	var want any
	wantErr := json.Unmarshal(data, &want)
	got, ok := decodeJSON(data)
	if ok != (wantErr == nil) {
		t.Fatalf("decodeJSON(%q) ok = %v, encoding/json error %v", data, ok, wantErr)
	}
	if ok && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeJSON(%q) = %#v, encoding/json %#v", data, got, want)
	}
}

func TestDecodeJSONDepth(t *testing.T) {
	t.Parallel()
	for _, n := range []int{9999, 10000, 10001} {
		data := []byte(strings.Repeat(`[{"a":`, n/2) + strings.Repeat("[", n%2) + "1" + strings.Repeat("]", n%2) + strings.Repeat("}]", n/2))
		checkDecodeJSON(t, data)
	}
}
