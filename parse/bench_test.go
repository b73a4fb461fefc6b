package parse_test

import (
	"strings"
	"testing"

	"github.com/vmcp/vmcp/parse"
)

// benchParse measures Parse of body: the common tools/call path pays one
// decode of the body.
func benchParse(b *testing.B, body []byte) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parse.Parse(body, parse.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseSmall: a tools/call of a session-based revision.
func BenchmarkParseSmall(b *testing.B) {
	benchParse(b, []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github_create_pr","arguments":{"title":"x","draft":true,"body":"some text here"},"_meta":{"progressToken":7}}}`))
}

// BenchmarkParseLarge: a tools/call with 100 kB of arguments.
func BenchmarkParseLarge(b *testing.B) {
	benchParse(b, []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github_create_pr","arguments":{"title":"x","body":"`+strings.Repeat("abcd efgh ", 10000)+`"}}}`))
}
