package optimizer

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

func TestSchemaText(t *testing.T) {
	tests := []struct {
		name      string
		raw       string
		props     map[string]any // InputSchema.Properties, used when raw is ""
		wantNames []string
		wantText  []string
	}{
		{
			name:      "flat",
			raw:       `{"type":"object","properties":{"city":{"type":"string","description":"City name"}}}`,
			wantNames: []string{"city"},
			wantText:  []string{"City name"},
		},
		{
			name: "nested objects, array items and alternatives",
			raw: `{"type":"object","properties":{
				"filter":{"type":"object","title":"Filter","properties":{"label":{"description":"Issue label"}}},
				"ids":{"type":"array","items":{"type":"object","properties":{"sha":{"description":"Commit hash"}}}},
				"when":{"anyOf":[{"type":"string","description":"ISO date"},{"type":"integer","description":"Unix seconds"}]}}}`,
			wantNames: []string{"filter", "ids", "label", "sha", "when"},
			wantText:  []string{"Commit hash", "Filter", "ISO date", "Issue label", "Unix seconds"},
		},
		{
			name:      "string enums only",
			raw:       `{"type":"object","properties":{"unit":{"enum":["celsius","kelvin",3,true]}}}`,
			wantNames: []string{"unit"},
			wantText:  []string{"celsius", "kelvin"},
		},
		{
			name:      "depth is bounded",
			raw:       `{"properties":{"a":{"properties":{"b":{"properties":{"c":{"properties":{"d":{"properties":{"e":{"description":"too deep"}}}}}}}}}}}`,
			wantNames: []string{"a", "b", "c", "d"},
		},
		{
			name: "malformed raw schema is skipped",
			raw:  `{"properties":`,
		},
		{
			name:      "structured InputSchema",
			props:     map[string]any{"query": map[string]any{"type": "string", "description": "Search text"}},
			wantNames: []string{"query"},
			wantText:  []string{"Search text"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := mcp.Tool{Name: "x"}
			if tt.raw != "" {
				tl.RawInputSchema = json.RawMessage(tt.raw)
			} else {
				tl.InputSchema.Properties = tt.props
			}
			var names, text []string
			schemaText(&tl, func(s string) { names = append(names, s) }, func(s string) { text = append(text, s) })
			slices.Sort(names)
			slices.Sort(text)
			if !slices.Equal(names, tt.wantNames) {
				t.Errorf("names = %q, want %q", names, tt.wantNames)
			}
			if !slices.Equal(text, tt.wantText) {
				t.Errorf("text = %q, want %q", text, tt.wantText)
			}
		})
	}
}

func TestRawSchemaWins(t *testing.T) {
	tl := mcp.Tool{Name: "x", RawInputSchema: json.RawMessage(`{"properties":{"raw_param":{}}}`)}
	tl.InputSchema.Properties = map[string]any{"structured_param": map[string]any{}}
	var names []string
	schemaText(&tl, func(s string) { names = append(names, s) }, func(string) {})
	if strings.Join(names, ",") != "raw_param" {
		t.Errorf("names = %q, want the raw schema's", names)
	}
}
