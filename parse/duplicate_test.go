package parse_test

import (
	"testing"

	"github.com/vmcp/vmcp/parse"
)

func TestDuplicateKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, want string
	}{
		{"none", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2},"_meta":{"k":1}}}`, ""},
		{"envelope", `{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"prompts/get","params":{}}`, "method"},
		{"params twice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}`, "params"},
		{"name in params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}`, "name"},
		{"meta key", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}`, "io.modelcontextprotocol/protocolVersion"},
		{"params not an object", `{"jsonrpc":"2.0","id":1,"method":"ping","params":[1,1]}`, ""},
		{"not an object", `[1,2]`, ""},
	}
	for _, tt := range tests {
		if got := parse.DuplicateKey([]byte(tt.body)); got != tt.want {
			t.Errorf("%s: DuplicateKey = %q, want %q", tt.name, got, tt.want)
		}
	}
}
