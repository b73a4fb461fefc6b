package test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// foundTools is find_tool's structured result.
type foundTools struct {
	Tools []struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		InputSchema json.RawMessage `json:"inputSchema"`
		Score       float64         `json:"score"`
	} `json:"tools"`
}

// findTool calls find_tool and returns its structured result, checking that
// the text content says the same.
func findTool(t *testing.T, c *client.Client, description, keywords string) foundTools {
	t.Helper()
	args := map[string]any{"tool_description": description}
	if keywords != "" {
		args["tool_keywords"] = keywords
	}
	res := callTool(t, c, "find_tool", args)
	if res.IsError {
		t.Fatalf("find_tool(%q): error result: %s", description, resultText(res))
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	var structured, text foundTools
	if err := json.Unmarshal(raw, &structured); err != nil {
		t.Fatalf("find_tool structured content %s: %v", raw, err)
	}
	if err := json.Unmarshal([]byte(resultText(res)), &text); err != nil {
		t.Fatalf("find_tool text content %q is not the JSON result: %v", resultText(res), err)
	}
	if !reflect.DeepEqual(structured, text) {
		t.Errorf("find_tool: text content %+v differs from structured content %+v", text, structured)
	}
	return structured
}

func (f foundTools) names() []string {
	n := make([]string, len(f.Tools))
	for i, t := range f.Tools {
		n[i] = t.Name
	}
	return n
}

// TestOptimizer runs a client against vmcp with the optimizer on: it sees
// find_tool and call_tool only, finds a tool by describing the task, calls
// it through call_tool and gets the backend's own result; a rate limit on
// the inner tool applies to call_tool (and is audited under the real tool),
// find_tool is never limited, and a tool a backend adds at runtime becomes
// findable.
func TestOptimizer(t *testing.T) {
	t.Parallel()
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	f := startFleet(t, fmt.Sprintf(`optimizer: {enabled: true, maxToolsToReturn: 4}
audit: {enabled: true, output: %q}
rateLimiting:
  shared: {maxTokens: 6, refillPeriod: 1h}
  tools:
    - {name: weather_forecast, shared: {maxTokens: 1, refillPeriod: 1h}}
`, auditFile), nil)
	c := newClient(t, f.V.URL, clientOpts{})

	if got := toolNames(t, c); !slices.Equal(got, []string{"call_tool", "find_tool"}) {
		t.Fatalf("tools/list = %v; want exactly call_tool and find_tool", got)
	}
	// Resources and prompts are unaffected.
	res, err := c.ListResources(ctxT(t, 10*time.Second), mcp.ListResourcesRequest{})
	if err != nil || len(res.Resources) == 0 {
		t.Errorf("resources/list = %v, %v; want the backends' resources", res, err)
	}
	if _, err := c.GetPrompt(ctxT(t, 10*time.Second), mcp.GetPromptRequest{Params: mcp.GetPromptParams{
		Name: "notes_greet", Arguments: map[string]string{"who": "alice"}}}); err != nil {
		t.Errorf("prompts/get notes_greet: %v", err)
	}

	// find_tool is not rate limited: more searches than the shared bucket holds.
	var found foundTools
	for range 8 {
		found = findTool(t, c, "get the weather forecast for a city for the next days", "")
	}
	if len(found.Tools) == 0 || len(found.Tools) > 4 {
		t.Fatalf("find_tool returned %d tools; want 1 to maxToolsToReturn (4): %v", len(found.Tools), found.names())
	}
	if top := found.Tools[0].Name; top != "weather_forecast" && top != "local_forecast" {
		t.Errorf("find_tool top result = %q; want a forecast tool (ranking: %v)", top, found.names())
	}
	for i := 1; i < len(found.Tools); i++ {
		if found.Tools[i].Score > found.Tools[i-1].Score {
			t.Errorf("find_tool scores not descending: %+v", found.Tools)
		}
	}
	var schema struct {
		Properties map[string]any `json:"properties"`
	}
	if err := json.Unmarshal(found.Tools[0].InputSchema, &schema); err != nil || schema.Properties["city"] == nil {
		t.Errorf("find_tool inputSchema of %s = %s; want the backend's schema with a city parameter", found.Tools[0].Name, found.Tools[0].InputSchema)
	}

	// call_tool returns exactly what the backend returns when called directly.
	args := map[string]any{"city": "Vienna", "days": 2}
	via := callTool(t, c, "call_tool", map[string]any{"tool_name": "weather_forecast", "parameters": args})
	direct := callTool(t, newClient(t, f.Weather.URL, clientOpts{}), "forecast", args)
	if via.IsError || !reflect.DeepEqual(via.Content, direct.Content) || !reflect.DeepEqual(via.StructuredContent, direct.StructuredContent) {
		t.Errorf("call_tool weather_forecast = %+v; want the backend's own result %+v", via, direct)
	}

	// The inner tool's limit of 1 rejects the second call_tool.
	_, err = tryCall(t, c, "call_tool", map[string]any{"tool_name": "weather_forecast", "parameters": args})
	if err == nil || !strings.Contains(err.Error(), "Rate limit exceeded") {
		t.Errorf("second call_tool weather_forecast: err = %v; want the rate-limit error", err)
	}
	// Other tools are still callable.
	if got := callText(t, c, "call_tool", map[string]any{"tool_name": "notes_echo", "parameters": map[string]any{"text": "hi"}}); got != "hi" {
		t.Errorf("call_tool notes_echo = %q; want hi", got)
	}

	// An unknown tool is a tool error that suggests the closest names.
	bad := callTool(t, c, "call_tool", map[string]any{"tool_name": "weather_forcast", "parameters": args})
	if !bad.IsError || !strings.Contains(resultText(bad), "weather_forecast") {
		t.Errorf("call_tool weather_forcast = %+v %q; want a tool error suggesting weather_forecast", bad.IsError, resultText(bad))
	}

	// A tool a backend adds at runtime becomes findable and callable.
	callText(t, c, "call_tool", map[string]any{"tool_name": "notes_add_tool", "parameters": map[string]any{"name": "translate_klingon"}})
	eventually(t, 10*time.Second, "notes_translate_klingon findable", func() error {
		if got := findTool(t, c, "translate a phrase into klingon", "").names(); len(got) == 0 || got[0] != "notes_translate_klingon" {
			return fmt.Errorf("find_tool ranking %v", got)
		}
		return nil
	})
	if got := callText(t, c, "call_tool", map[string]any{"tool_name": "notes_translate_klingon", "parameters": map[string]any{"text": "Qapla'"}}); got != "Qapla'" {
		t.Errorf("call_tool notes_translate_klingon = %q", got)
	}

	// The rejection is audited under the real tool, through call_tool.
	eventually(t, 5*time.Second, "audit event of the rejected call_tool", func() error {
		return auditHas(auditFile, map[string]string{"outcome": "rate_limited", "name": "weather_forecast", "via": "call_tool"})
	})
}

// auditHas reports an error unless the audit file has an event with every
// field of want.
func auditHas(path string, want map[string]string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var seen []string
next:
	for sc.Scan() {
		seen = append(seen, sc.Text())
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("audit line %q: %w", sc.Text(), err)
		}
		for k, v := range want {
			if e[k] != v {
				continue next
			}
		}
		return nil
	}
	return errors.New("no such event in " + strings.Join(seen, "\n"))
}

// TestOptimizerWithTypeScriptClient: the official TypeScript SDK lists the
// two tools, validates find_tool's structured content against its output
// schema, and calls a tool through call_tool.
func TestOptimizerWithTypeScriptClient(t *testing.T) {
	t.Parallel()
	needNode(t)
	f := startFleet(t, "optimizer: {enabled: true}\n", nil)
	r := runNode(t, f.V.URL, []map[string]any{
		{"op": "listTools"},
		{"op": "callTool", "name": "find_tool", "arguments": map[string]any{"tool_description": "create a note with a title and a body"}},
		{"op": "callTool", "name": "call_tool", "arguments": map[string]any{"tool_name": "notes_echo", "parameters": map[string]any{"text": "hi from ts"}}},
	}, nil, nil)
	for i := range r.Results {
		if e := r.stepError(i); e != nil {
			t.Fatalf("client.mjs step %d: %+v", i, *e)
		}
	}
	var list struct {
		Tools []struct {
			Name         string          `json:"name"`
			OutputSchema json.RawMessage `json:"outputSchema"`
		} `json:"tools"`
	}
	mustUnmarshal(t, r.Results[0], &list)
	if len(list.Tools) != 2 || list.Tools[0].Name != "call_tool" || list.Tools[1].Name != "find_tool" || len(list.Tools[1].OutputSchema) == 0 {
		t.Errorf("listTools via TypeScript = %s; want call_tool and find_tool (with an output schema)", r.Results[0])
	}
	var found struct {
		IsError           bool       `json:"isError"`
		StructuredContent foundTools `json:"structuredContent"`
	}
	mustUnmarshal(t, r.Results[1], &found)
	if found.IsError || len(found.StructuredContent.Tools) == 0 || found.StructuredContent.Tools[0].Name != "notes_create_note" {
		t.Errorf("find_tool via TypeScript = %s; want notes_create_note first", r.Results[1])
	}
	if !strings.Contains(string(r.Results[2]), `"text":"hi from ts"`) {
		t.Errorf("call_tool notes_echo via TypeScript = %s", r.Results[2])
	}
}
