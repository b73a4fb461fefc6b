package optimizer

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// tool returns a catalogue entry as vmcp receives it from a backend: the
// schema raw, InputSchema empty.
func tool(name, desc, schema string) mcp.Tool {
	t := mcp.Tool{Name: name, Description: desc}
	if schema != "" {
		t.RawInputSchema = json.RawMessage(schema)
	}
	return t
}

func names(ms []Match) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Tool.Name
	}
	return out
}

func TestSearchRanking(t *testing.T) {
	catalogue := []mcp.Tool{
		// The same words, swapped between name and description; the
		// description-only one comes first so a tie would rank it first.
		tool("move_message", "Archive mail into storage.", ""),
		tool("archive_mail", "Move a message into storage.", ""),
		tool("delete_record", "Remove one row.", ""),
		tool("create_draft", "Compose an email draft to send later; the email is saved, not sent.", ""),
		tool("send_email", "Deliver a message to its recipients.", ""),
		tool("get_forecast", "Weather for the coming days.", `{"type":"object","properties":{
			"location":{"type":"string","description":"City or postal code"},
			"units":{"type":"string","enum":["celsius","fahrenheit"]},
			"options":{"type":"object","properties":{"hourly":{"type":"boolean","description":"Include an hour-by-hour breakdown"}}}}}`),
		tool("search_issues", "Search items in the tracker.", ""),
		tool("search_code", "Search items in the repository.", ""),
		tool("list_files", "List the entries of a directory on the file system.", ""),
		tool("update_configuration", "Change a setting.", ""),
		tool("weather_zh", "查询城市天气预报", ""),
	}
	// The same parameters through the structured InputSchema.
	structured := mcp.Tool{Name: "convert_currency", Description: "Exchange money."}
	structured.InputSchema.Type = "object"
	structured.InputSchema.Properties = map[string]any{
		"amount": map[string]any{"type": "number", "description": "How much, in the source denomination"},
		"target": map[string]any{"type": "string", "description": "ISO code to convert into", "enum": []any{"EUR", "JPY"}},
	}
	catalogue = append(catalogue, structured)
	ix := NewIndex(catalogue, nil)

	tests := []struct {
		name, desc, keywords string
		k                    int
		wantFirst            string   // "" when nothing may match
		wantAll              []string // when set, the exact result names
	}{
		{name: "name match beats description-only mentions", desc: "send an email", k: 3, wantFirst: "send_email"},
		{name: "parameter description makes a tool findable", desc: "by postal region", k: 3, wantFirst: "get_forecast"},
		{name: "nested parameter description", desc: "hour-by-hour breakdown", k: 3, wantFirst: "get_forecast"},
		{name: "enum value", desc: "fahrenheit", k: 3, wantFirst: "get_forecast"},
		{name: "structured InputSchema is indexed", desc: "source denomination", k: 3, wantFirst: "convert_currency"},
		{name: "structured enum", desc: "JPY", k: 3, wantFirst: "convert_currency"},
		{name: "name outweighs description", desc: "archive", k: 3, wantFirst: "archive_mail"},
		{name: "stemming", desc: "deleting records", k: 3, wantFirst: "delete_record"},
		{name: "keywords decide a tie", desc: "search items", keywords: "repository", k: 2, wantFirst: "search_code"},
		{name: "without keywords the tie keeps catalogue order", desc: "search items", k: 2, wantAll: []string{"search_issues", "search_code"}},
		{name: "keywords alone", keywords: "tracker", k: 3, wantAll: []string{"search_issues"}},
		{name: "prefix of a catalogue term", desc: "config", k: 3, wantFirst: "update_configuration"},
		{name: "closed compound", desc: "filesystem", k: 3, wantFirst: "list_files"},
		{name: "CJK bigrams", desc: "北京天气怎么样", k: 3, wantFirst: "weather_zh"},
		{name: "empty query", desc: "", k: 3, wantAll: []string{}},
		{name: "stop words only", desc: "what is it that you do", k: 3, wantAll: []string{}},
		{name: "no match", desc: "quantum chromodynamics", k: 3, wantAll: []string{}},
		{name: "k of zero", desc: "send an email", k: 0, wantAll: []string{}},
		{name: "k respected", desc: "email search weather files", k: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ix.Search(tt.desc, tt.keywords, tt.k)
			if len(got) > max(tt.k, 0) {
				t.Fatalf("%d results for k=%d: %q", len(got), tt.k, names(got))
			}
			for i, m := range got {
				if m.Score <= 0 {
					t.Errorf("result %d (%s) has score %v", i, m.Tool.Name, m.Score)
				}
				if i > 0 && m.Score > got[i-1].Score {
					t.Errorf("results out of order: %q", names(got))
				}
			}
			if tt.wantAll != nil && !slices.Equal(names(got), tt.wantAll) {
				t.Errorf("got %q, want exactly %q", names(got), tt.wantAll)
			}
			if tt.wantFirst != "" && (len(got) == 0 || got[0].Tool.Name != tt.wantFirst) {
				t.Errorf("got %q, want %s first", names(got), tt.wantFirst)
			}
			if tt.name == "k respected" && len(got) != tt.k {
				t.Errorf("got %d results, want %d", len(got), tt.k)
			}
		})
	}
}

func TestSearchWithoutSchemaMissesParameterText(t *testing.T) {
	// The control for "parameter description makes a tool findable": the
	// words are only in the schema.
	p := defaultParams
	p.schema = false
	ix := newIndex([]mcp.Tool{tool("get_forecast", "Weather for the coming days.",
		`{"type":"object","properties":{"location":{"type":"string","description":"City or postal code"}}}`)}, nil, p)
	if got := ix.Search("by postal region", "", 3); len(got) != 0 {
		t.Errorf("got %q without the schema field", names(got))
	}
}

func TestIndexKeepsCatalogue(t *testing.T) {
	catalogue := []mcp.Tool{tool("a_tool", "first thing", ""), tool("b_tool", "second thing", "")}
	before := fmt.Sprint(catalogue)
	ix := NewIndex(catalogue, nil)
	if ix.Len() != 2 {
		t.Errorf("Len = %d, want 2", ix.Len())
	}
	got := ix.Search("second", "", 1)
	if len(got) != 1 || got[0].Tool != &catalogue[1] {
		t.Fatalf("Search did not point into the catalogue: %+v", got)
	}
	if after := fmt.Sprint(catalogue); after != before {
		t.Errorf("catalogue modified:\n%s\n%s", before, after)
	}
	if got := NewIndex(nil, nil).Search("anything", "", 5); got != nil {
		t.Errorf("empty index returned %v", got)
	}
}

func TestSearchConcurrent(t *testing.T) {
	var catalogue []mcp.Tool
	for i := range 200 {
		catalogue = append(catalogue, tool(fmt.Sprintf("tool_%d_%s", i, []string{"read", "write", "list", "delete"}[i%4]),
			fmt.Sprintf("Operate on %s number %d", []string{"files", "users", "issues", "tickets", "orders"}[i%5], i), ""))
	}
	ix := NewIndex(catalogue, nil)
	queries := []string{"read files", "delete users", "list tickets", "write orders", "issues"}
	want := make([][]string, len(queries))
	for i, q := range queries {
		want[i] = names(ix.Search(q, "", 10))
		if len(want[i]) == 0 {
			t.Fatalf("%q found nothing", q)
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for n := range 200 {
				i := (g + n) % len(queries)
				if got := names(ix.Search(queries[i], "", 10)); !slices.Equal(got, want[i]) {
					t.Errorf("concurrent %q = %q, want %q", queries[i], got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}
