package bfcl_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/internal/bfcl"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "set.json")
	if err := os.WriteFile(path, []byte(`{"tools":[{"name":"get_weather","description":"d","inputSchema":{"type":"object"},"extra":1}],
		"queries":[{"id":"q1","category":"simple","query":"weather?","expected":["get_weather"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := bfcl.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Tools) != 1 || s.Tools[0].Name != "get_weather" || string(s.Tools[0].RawInputSchema) != `{"type":"object"}` || s.Tools[0].InputSchema.Type != "" {
		t.Errorf("tools = %+v", s.Tools)
	}
	if len(s.Queries) != 1 || s.Queries[0].ID != "q1" || s.Queries[0].Category != "simple" || s.Queries[0].Expected[0] != "get_weather" {
		t.Errorf("queries = %+v", s.Queries)
	}
	if _, err := bfcl.Load(filepath.Join(t.TempDir(), "none.json")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

func TestReplicate(t *testing.T) {
	t.Parallel()
	got := bfcl.Replicate([]mcp.Tool{{Name: "a"}, {Name: "b"}}, 5)
	var names []string
	for _, tl := range got {
		names = append(names, tl.Name)
	}
	if want := []string{"a", "b", "s1_a", "s1_b", "s2_a"}; !slices.Equal(names, want) {
		t.Errorf("Replicate = %v, want %v", names, want)
	}
	if len(bfcl.Replicate(nil, 3)) != 0 {
		t.Error("Replicate of no tools is not empty")
	}
}
