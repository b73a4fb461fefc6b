package optimizer

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/router"
)

func catalogueTools() []mcp.Tool {
	return []mcp.Tool{
		{Name: "github_create_issue", Description: "Create a new issue in a GitHub repository.",
			RawInputSchema: json.RawMessage(`{"type":"object","properties":{"repo":{"type":"string"},"title":{"type":"string"}}}`)},
		{Name: "github_list_pull_requests", Description: "List the open pull requests of a repository.",
			RawInputSchema: json.RawMessage(`{"type":"object","properties":{"repo":{"type":"string"}}}`)},
		{Name: "weather_forecast", Description: "Daily weather forecast for a city.",
			InputSchema: mcp.ToolInputSchema{Type: "object", Properties: map[string]any{"city": map[string]any{"type": "string"}}}},
	}
}

// call builds a tools/call request of name with args.
func call(name string, args map[string]any) mcp.CallToolRequest {
	var req mcp.CallToolRequest
	req.Params.Name = name
	req.Params.Arguments = args
	return req
}

func TestFindTool(t *testing.T) {
	t.Parallel()
	tools := NewTools(2, nil)
	tools.Update(catalogueTools(), nil)
	find := tools.ServerTools()[0]
	if find.Tool.Name != "find_tool" {
		t.Fatalf("ServerTools()[0] = %s; want find_tool", find.Tool.Name)
	}

	tests := []struct {
		name      string
		args      map[string]any
		wantError string // substring of the tool error, "" for success
		wantFirst string // first result
		wantCount int    // results
	}{
		{"finds by task", map[string]any{"tool_description": "open an issue on github"}, "", "github_create_issue", 2},
		{"keywords count", map[string]any{"tool_description": "what will it be like tomorrow", "tool_keywords": "weather forecast"}, "", "weather_forecast", 1},
		{"no match", map[string]any{"tool_description": "zzzqqq"}, "", "", 0},
		{"missing description", map[string]any{"tool_keywords": "github"}, "tool_description is required", "", 0},
		{"blank description", map[string]any{"tool_description": "  "}, "tool_description is required", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := find.Handler(context.Background(), call("find_tool", tt.args))
			if err != nil {
				t.Fatal(err)
			}
			text := res.Content[0].(mcp.TextContent).Text
			if tt.wantError != "" {
				if !res.IsError || !strings.Contains(text, tt.wantError) {
					t.Errorf("result = %v %q; want a tool error containing %q", res.IsError, text, tt.wantError)
				}
				return
			}
			got, ok := res.StructuredContent.(FindResult)
			if res.IsError || !ok {
				t.Fatalf("result = %+v; want structured FindResult", res)
			}
			if len(got.Tools) > 2 || (tt.wantCount > 0 && len(got.Tools) == 0) || (tt.wantCount == 0 && len(got.Tools) != 0) {
				t.Fatalf("got %d tools %+v; want %d (at most maxToolsToReturn 2)", len(got.Tools), got.Tools, tt.wantCount)
			}
			if tt.wantFirst != "" && got.Tools[0].Name != tt.wantFirst {
				t.Errorf("first = %s; want %s (%+v)", got.Tools[0].Name, tt.wantFirst, got.Tools)
			}
			var fromText FindResult
			if err := json.Unmarshal([]byte(text), &fromText); err != nil || len(fromText.Tools) != len(got.Tools) {
				t.Errorf("text content %q is not the structured result: %v", text, err)
			}
		})
	}
}

// find_tool returns each tool's input schema: the backend's raw bytes, or
// the encoded typed schema.
func TestFindToolReturnsInputSchemas(t *testing.T) {
	t.Parallel()
	tools := NewTools(8, nil)
	tools.Update(catalogueTools(), nil)
	for _, tc := range []struct{ query, tool, schema string }{
		{"create an issue in a github repository", "github_create_issue", `{"type":"object","properties":{"repo":{"type":"string"},"title":{"type":"string"}}}`},
		{"weather forecast for a city", "weather_forecast", `{"properties":{"city":{"type":"string"}},"required":[],"type":"object"}`},
	} {
		res, err := tools.findTool(context.Background(), call("find_tool", map[string]any{"tool_description": tc.query}))
		if err != nil {
			t.Fatal(err)
		}
		got := res.StructuredContent.(FindResult).Tools[0]
		if got.Name != tc.tool || string(got.InputSchema) != tc.schema {
			t.Errorf("find_tool(%q)[0] = %s %s; want %s %s", tc.query, got.Name, got.InputSchema, tc.tool, tc.schema)
		}
	}
}

func TestCallTool(t *testing.T) {
	t.Parallel()
	backendResult := mcp.NewToolResultText("created #7")
	var got mcp.CallToolRequest
	tools := NewTools(8, func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		got = req
		if req.Params.Name == "github_create_issue" {
			return backendResult, nil
		}
		return nil, fmt.Errorf("tool %q: %w", req.Params.Name, router.ErrNotFound)
	})
	tools.Update(catalogueTools(), nil)
	callTool := tools.ServerTools()[1]
	if callTool.Tool.Name != "call_tool" {
		t.Fatalf("ServerTools()[1] = %s; want call_tool", callTool.Tool.Name)
	}

	req := call("call_tool", map[string]any{"tool_name": "github_create_issue", "parameters": map[string]any{"repo": "vmcp", "title": "t"}})
	req.Params.Meta = &mcp.Meta{ProgressToken: "p1"}
	res, err := callTool.Handler(context.Background(), req)
	if err != nil || res != backendResult {
		t.Fatalf("call_tool = %+v, %v; want the backend's result unchanged", res, err)
	}
	if got.Params.Name != "github_create_issue" || !reflect.DeepEqual(got.Params.Arguments, map[string]any{"repo": "vmcp", "title": "t"}) ||
		got.Params.Meta == nil || got.Params.Meta.ProgressToken != "p1" {
		t.Errorf("the router got %+v; want the inner tool, its parameters and the caller's _meta", got.Params)
	}

	tests := []struct {
		name string
		args map[string]any
		want []string // substrings of the tool error
	}{
		{"unknown tool suggests close names", map[string]any{"tool_name": "github_create_isue"}, []string{`unknown tool "github_create_isue"`, "github_create_issue", "find_tool"}},
		{"a suffix of a name", map[string]any{"tool_name": "create_issue"}, []string{"github_create_issue"}},
		{"missing tool_name", map[string]any{"parameters": map[string]any{}}, []string{"tool_name is required"}},
		{"parameters not an object", map[string]any{"tool_name": "github_create_issue", "parameters": "repo=vmcp"}, []string{"parameters must be an object"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := callTool.Handler(context.Background(), call("call_tool", tt.args))
			if err != nil {
				t.Fatal(err)
			}
			text := res.Content[0].(mcp.TextContent).Text
			for _, w := range tt.want {
				if !res.IsError || !strings.Contains(text, w) {
					t.Errorf("result = %v %q; want a tool error containing %q", res.IsError, text, w)
				}
			}
		})
	}
}

// A missing parameters object calls the tool with empty arguments, as a
// tools/call without arguments would.
func TestCallToolWithoutParameters(t *testing.T) {
	t.Parallel()
	var args any
	tools := NewTools(8, func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		args = req.Params.Arguments
		return mcp.NewToolResultText("ok"), nil
	})
	if _, err := tools.callTool(context.Background(), call("call_tool", map[string]any{"tool_name": "weather_forecast"})); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(args, map[string]any{}) {
		t.Errorf("arguments = %#v; want an empty object", args)
	}
}

// Update builds a new index for a new tool list only.
func TestUpdateReindexesChangedListsOnly(t *testing.T) {
	t.Parallel()
	tools := NewTools(8, nil)
	list := catalogueTools()
	tools.Update(list, nil)
	first := tools.indexed.Load()
	tools.Update(list, nil)
	if tools.indexed.Load() != first {
		t.Error("Update rebuilt the index for the list already indexed")
	}
	grown := append(catalogueTools(), mcp.Tool{Name: "notes_translate_klingon", Description: "Translate text into Klingon."})
	tools.Update(grown, nil)
	res, _ := tools.findTool(context.Background(), call("find_tool", map[string]any{"tool_description": "klingon translation"}))
	if got := res.StructuredContent.(FindResult).Tools; len(got) == 0 || got[0].Name != "notes_translate_klingon" {
		t.Errorf("after Update the new tool is not found first: %+v", got)
	}
}

func TestClosestNames(t *testing.T) {
	t.Parallel()
	tools := []mcp.Tool{{Name: "github_create_issue"}, {Name: "github_close_issue"}, {Name: "weather_forecast"}, {Name: "notes_echo"}}
	tests := []struct {
		name string
		want []string
	}{
		{"github_create_isue", []string{"github_create_issue", "github_close_issue"}},
		{"GITHUB_CREATE_ISSUE", []string{"github_create_issue", "github_close_issue"}},
		{"forecast", []string{"weather_forecast"}},
		{"echo", []string{"notes_echo"}},
		{"completely_unrelated_name", nil},
		{strings.Repeat("github_create_issue", 100), nil}, // too long to look for: no suggestion, no cost
	}
	for _, tt := range tests {
		if got := closestNames(tools, tt.name, 2, nil); !reflect.DeepEqual(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
			t.Errorf("closestNames(%q) = %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b  string
		limit int
		want  int
	}{
		{"kitten", "sitting", 5, 3},
		{"", "abc", 5, 3},
		{"same", "same", 1, 0},
		{"abcdefgh", "a", 2, 3}, // beyond the limit: limit+1
		{"héllo", "hello", 2, 1},
	}
	for _, tt := range tests {
		if got := editDistance([]rune(tt.a), []rune(tt.b), tt.limit); got != tt.want {
			t.Errorf("editDistance(%q, %q, %d) = %d; want %d", tt.a, tt.b, tt.limit, got, tt.want)
		}
	}
}
