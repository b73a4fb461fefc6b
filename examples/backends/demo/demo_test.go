package main

import (
	"encoding/json"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// connect starts an in-process client on a demo server built from cfg.
func connect(t *testing.T, cfg config) *client.Client {
	t.Helper()
	srv, err := newServer(cfg)
	if err != nil {
		t.Fatalf("newServer: %v", err)
	}
	c, err := client.NewInProcessClient(srv)
	if err != nil {
		t.Fatalf("NewInProcessClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	var init mcp.InitializeRequest
	init.Params.ClientInfo = mcp.Implementation{Name: "demo-test", Version: "0"}
	if _, err := c.Initialize(t.Context(), init); err != nil {
		t.Fatalf("Initialize: %v", err)
	}
	return c
}

// toolNames lists the names of the tools the server offers.
func toolNames(t *testing.T, c *client.Client) []string {
	t.Helper()
	res, err := c.ListTools(t.Context(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("ListTools: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	return names
}

// call calls a tool and returns its result and its first text content.
func call(t *testing.T, c *client.Client, name string, args map[string]any) (*mcp.CallToolResult, string) {
	t.Helper()
	var req mcp.CallToolRequest
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(t.Context(), req)
	if err != nil {
		t.Fatalf("CallTool %s: %v", name, err)
	}
	if len(res.Content) == 0 {
		t.Fatalf("CallTool %s: no content", name)
	}
	text, ok := mcp.AsTextContent(res.Content[0])
	if !ok {
		t.Fatalf("CallTool %s: content is %T, not text", name, res.Content[0])
	}
	return res, text.Text
}

// waitFor waits a few seconds for a signal on ch.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestFlavorsListTools(t *testing.T) {
	common := []string{"echo", "add", "fail", "sleep", "whoami", "add_tool", "remove_tool", "search"}
	for _, tc := range []struct {
		flavor        string
		want, notWant []string
	}{
		{flavorWeather, []string{"forecast"}, []string{"create_note"}},
		{flavorNotes, []string{"create_note"}, []string{"forecast"}},
	} {
		t.Run(tc.flavor, func(t *testing.T) {
			names := toolNames(t, connect(t, config{name: tc.flavor, flavor: tc.flavor}))
			for _, n := range append(common, tc.want...) {
				if !slices.Contains(names, n) {
					t.Errorf("tool %q missing from %v", n, names)
				}
			}
			for _, n := range tc.notWant {
				if slices.Contains(names, n) {
					t.Errorf("tool %q should not be in %v", n, names)
				}
			}
		})
	}
}

func TestAddAndFail(t *testing.T) {
	c := connect(t, config{name: "weather", flavor: flavorWeather})

	res, text := call(t, c, "add", map[string]any{"a": 2, "b": 3.5})
	if res.IsError || text != "5.5" {
		t.Errorf("add: isError=%v text=%q, want 5.5", res.IsError, text)
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != `{"sum":5.5}` {
		t.Errorf("add structuredContent = %s, want {\"sum\":5.5}", raw)
	}

	res, text = call(t, c, "fail", nil)
	if !res.IsError || text != "demo failure from weather" {
		t.Errorf("fail: isError=%v text=%q", res.IsError, text)
	}
}

func TestSearchDiffersByFlavor(t *testing.T) {
	_, weather := call(t, connect(t, config{name: "w", flavor: flavorWeather}), "search", map[string]any{"query": "paris"})
	_, notes := call(t, connect(t, config{name: "n", flavor: flavorNotes}), "search", map[string]any{"query": "carol"})
	if weather != "1 weather station on w matching \"paris\":\nLFPG  Paris Charles de Gaulle (Paris, FR)" {
		t.Errorf("weather search = %q", weather)
	}
	if notes != "1 note on n matching \"carol\":\nnote-3  Meeting with Carol: Walk through tool name prefixing in the aggregator; bring the search examples." {
		t.Errorf("notes search = %q", notes)
	}
}

func TestRuntimeAndSyntheticTools(t *testing.T) {
	c := connect(t, config{name: "demo", flavor: flavorWeather, tools: 3})
	names := toolNames(t, c)
	for _, n := range []string{"tool_0000", "tool_0002"} {
		if !slices.Contains(names, n) {
			t.Errorf("synthetic tool %q missing", n)
		}
	}
	if slices.Contains(names, "tool_0003") {
		t.Error("tool_0003 should not exist with --tools 3")
	}

	changed := make(chan struct{}, 4)
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationToolsListChanged) {
			changed <- struct{}{}
		}
	})
	if res, text := call(t, c, "add_tool", map[string]any{"name": "shout"}); res.IsError {
		t.Fatalf("add_tool: %s", text)
	}
	waitFor(t, changed, "notifications/tools/list_changed")
	if _, text := call(t, c, "shout", map[string]any{"text": "hi"}); text != "hi" {
		t.Errorf("shout = %q", text)
	}
	if res, text := call(t, c, "remove_tool", map[string]any{"name": "shout"}); res.IsError {
		t.Fatalf("remove_tool: %s", text)
	}
	waitFor(t, changed, "notifications/tools/list_changed")
	if slices.Contains(toolNames(t, c), "shout") {
		t.Error("shout still listed after remove_tool")
	}
}

func TestResourcesPromptAndCompletion(t *testing.T) {
	c := connect(t, config{name: "weather", flavor: flavorWeather})

	var rr mcp.ReadResourceRequest
	rr.Params.URI = "demo://weather/items/42"
	res, err := c.ReadResource(t.Context(), rr)
	if err != nil {
		t.Fatalf("ReadResource: %v", err)
	}
	if text, ok := mcp.AsTextResourceContents(res.Contents[0]); !ok || text.Text != "item 42 from weather" {
		t.Errorf("item resource = %#v", res.Contents[0])
	}

	var gp mcp.GetPromptRequest
	gp.Params.Name = "greet"
	gp.Params.Arguments = map[string]string{"who": "bob"}
	prompt, err := c.GetPrompt(t.Context(), gp)
	if err != nil {
		t.Fatalf("GetPrompt: %v", err)
	}
	if text, ok := mcp.AsTextContent(prompt.Messages[0].Content); !ok || text.Text != "Hello bob from weather" {
		t.Errorf("greet message = %#v", prompt.Messages[0])
	}

	var cr mcp.CompleteRequest
	cr.Params.Ref = mcp.PromptReference{Type: "ref/prompt", Name: "greet"}
	cr.Params.Argument = mcp.CompleteArgument{Name: "who", Value: "ca"}
	comp, err := c.Complete(t.Context(), cr)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if !slices.Equal(comp.Completion.Values, []string{"carol"}) {
		t.Errorf("completions for \"ca\" = %v", comp.Completion.Values)
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil || cfg != (config{name: "demo", flavor: flavorWeather, transport: transportStdio, addr: "127.0.0.1:0"}) {
		t.Errorf("defaults = %+v, %v", cfg, err)
	}
	for _, args := range [][]string{
		{"--flavor", "music"},
		{"--transport", "websocket"},
		{"--tools", "-1"},
		{"--name", "a/b"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}
