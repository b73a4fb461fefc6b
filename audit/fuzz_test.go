package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vmcp/vmcp/config"
)

// FuzzArgumentTruncation sends a tools/call whose arguments hold the
// fuzzer's text through the stage with audit.maxArgumentBytes max (0: the
// default) and checks the recorded arguments: at most the bound, a prefix
// of what was sent, marked truncated exactly when they were cut, cut at a
// character boundary and by less than one character; and the trail line
// stays valid JSON carrying the mark. Plain go test runs the seeds;
// docs/architecture.md ("Fuzzing") says how to run it longer.
func FuzzArgumentTruncation(f *testing.F) {
	for _, s := range []struct {
		text string
		max  uint16
	}{
		{"Wien", 0},
		{"Wien", 15},
		{"Wien", 10},
		{"Wöö", 11},
		{"Wöö", 12},
		{strings.Repeat("a", 5000), 0},
		{"日本語のテキスト", 13},
		{"😀😀😀", 12},
		{"\xff\xfe", 9},
		{"", 1},
	} {
		f.Add(s.text, s.max)
	}
	f.Fuzz(func(t *testing.T, text string, max uint16) {
		args, _ := json.Marshal(map[string]string{"text": text})
		limit := int(max)
		if limit == 0 {
			limit = defaultMaxArgumentBytes
		}
		p := toolCall("t")
		p.Arguments = args
		trail, _, _ := serve(t, config.Audit{Enabled: true, IncludeArguments: true, MaxArgumentBytes: int(max)}, Options{}, p, reply(200, jsonType, `{"result":{}}`, 0))
		if len(trail) != 1 {
			t.Fatalf("%d events, want 1", len(trail))
		}
		e := trail[0]
		got := e.Arguments
		switch {
		case len(got) > limit:
			t.Fatalf("recorded %d bytes of arguments, over the bound %d", len(got), limit)
		case !strings.HasPrefix(string(args), got):
			t.Fatalf("recorded %q, not a prefix of %q", got, args)
		case e.ArgumentsTruncated != (len(args) > limit):
			t.Fatalf("%d bytes of arguments, bound %d: truncated = %v", len(args), limit, e.ArgumentsTruncated)
		case !utf8.ValidString(got):
			t.Fatalf("recorded %q: cut inside a character", got)
		case e.ArgumentsTruncated && len(got) <= limit-utf8.UTFMax:
			t.Fatalf("recorded %d bytes for a bound of %d: cut more than one character", len(got), limit)
		}

		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(toLine(e)); err != nil {
			t.Fatalf("encode the trail line: %v", err)
		}
		var l struct {
			Arguments          json.RawMessage `json:"arguments"`
			ArgumentsTruncated bool            `json:"argumentsTruncated"`
		}
		if err := json.Unmarshal(buf.Bytes(), &l); err != nil {
			t.Fatalf("trail line %q is not JSON: %v", buf.Bytes(), err)
		}
		if l.ArgumentsTruncated != e.ArgumentsTruncated {
			t.Fatalf("trail line %s: argumentsTruncated = %v, want %v", buf.Bytes(), l.ArgumentsTruncated, e.ArgumentsTruncated)
		}
		var back string
		if e.ArgumentsTruncated && (json.Unmarshal(l.Arguments, &back) != nil || back != got) {
			t.Fatalf("trail line %s: truncated arguments are not the string %q", buf.Bytes(), got)
		}
		if !e.ArgumentsTruncated && !bytes.Equal(l.Arguments, args) {
			t.Fatalf("trail line %s: arguments %s, want %s", buf.Bytes(), l.Arguments, args)
		}
	})
}
