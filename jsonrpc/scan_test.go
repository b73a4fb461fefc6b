package jsonrpc_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/vmcp/vmcp/jsonrpc"
)

func TestSkipValueAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`0`, `-0`, `1.5e-3`, `-12E+2`, `01`, `1.`, `-`, `1e`, `.5`, `+1`,
		`"a"`, `"a\"b"`, `"\\"`, `"\u00e9"`, `"\u00g9"`, `"\x"`, "\"a\tb\"", `"unterminated`, `"a\\\"`,
		`"` + strings.Repeat("long text with \\\"quotes\\\" and é ", 40) + `"`,
		`true`, `false`, `null`, `nul`, `tru`,
		`[]`, `[1,2]`, `[1,]`, `[,1]`, `[1 2]`, `{}`, `{"a":1}`, `{"a":1,}`, `{"a"1}`, `{a:1}`, `{"a":[{"b":null}]}`,
		`{"a":1}}`, ` [ 1 , { "x" : "y" } ] `,
	} {
		end, err := jsonrpc.SkipValue([]byte(in), 0)
		ok := err == nil && jsonrpc.SkipSpace([]byte(in), end) == len(in)
		if ok != json.Valid([]byte(in)) {
			t.Errorf("SkipValue(%q): ok %v (end %d, err %v), json.Valid %v", in, ok, end, err, !ok)
		}
	}
}

func TestScanEnvelope(t *testing.T) {
	t.Parallel()
	msg := []byte(`{"result":{"content":[{"type":"text","text":"x\"id\":2"}]},"jsonrpc":"2.0","id":7}`)
	e, err := jsonrpc.ScanEnvelope(msg)
	if err != nil {
		t.Fatal(err)
	}
	if string(e.ID) != `7` || string(e.JSONRPC) != `"2.0"` || e.Method != nil || e.Error != nil ||
		string(e.Result) != `{"content":[{"type":"text","text":"x\"id\":2"}]}` {
		t.Errorf("ScanEnvelope = %+v", e)
	}
	if got := jsonrpc.Splice(msg, e.ID, []byte(`"c-1"`)); string(got) != `{"result":{"content":[{"type":"text","text":"x\"id\":2"}]},"jsonrpc":"2.0","id":"c-1"}` {
		t.Errorf("Splice = %s", got)
	}
	for _, bad := range []string{`{"id":1,"id":2}`, `{"method":"a","\u006dethod":"b"}`} {
		if _, err := jsonrpc.ScanEnvelope([]byte(bad)); !errors.Is(err, jsonrpc.ErrDuplicateKey) {
			t.Errorf("ScanEnvelope(%s) = %v, want a duplicate key error", bad, err)
		}
	}
	for _, bad := range []string{`[]`, `{"id":1} {}`, `{"id":1`, ``} {
		if _, err := jsonrpc.ScanEnvelope([]byte(bad)); !errors.Is(err, jsonrpc.ErrSyntax) {
			t.Errorf("ScanEnvelope(%s) = %v, want a syntax error", bad, err)
		}
	}
}

func FuzzSkipValue(f *testing.F) {
	for _, s := range []string{`{"a":[1,2,{"b":"c\\u0041"}]}`, `"\u12"`, `-0.5e+7`, `[[[]]]`, "\"\x01\"", `{"a":}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		end, err := jsonrpc.SkipValue(in, 0)
		ok := err == nil && jsonrpc.SkipSpace(in, end) == len(in)
		if ok != json.Valid(in) {
			t.Fatalf("SkipValue(%q): ok %v (end %d, err %v); json.Valid disagrees", in, ok, end, err)
		}
	})
}
