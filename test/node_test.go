package test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// TestTypeScriptSDKClient drives vmcp (all three backend transports) with
// the official TypeScript SDK client through test/js/client.mjs.
func TestTypeScriptSDKClient(t *testing.T) {
	t.Parallel()
	needNode(t)
	f := startFleet(t, "", nil)

	ops := []map[string]any{
		{"op": "listTools"}, // 0
		{"op": "callTool", "name": "weather_echo", "arguments": map[string]any{"text": "from node"}},                                                    // 1
		{"op": "callTool", "name": "notes_add", "arguments": map[string]any{"a": 1.5, "b": 2}},                                                          // 2
		{"op": "callTool", "name": "local_fail"},                                                                                                        // 3
		{"op": "callTool", "name": "no_such_tool"},                                                                                                      // 4
		{"op": "readResource", "uri": "demo://" + f.Notes.Name + "/readme"},                                                                             // 5
		{"op": "readResource", "uri": "demo://" + f.Weather.Name + "/items/7"},                                                                          // 6
		{"op": "getPrompt", "name": "weather_greet", "arguments": map[string]any{"who": "bob"}},                                                         // 7
		{"op": "complete", "ref": map[string]any{"type": "ref/prompt", "name": "local_greet"}, "argument": map[string]any{"name": "who", "value": "c"}}, // 8
		{"op": "callTool", "name": "weather_whoami"},                                                                                                    // 9
		{"op": "callTool", "name": "local_add_tool", "arguments": map[string]any{"name": "from_node"}},                                                  // 10
		{"op": "waitToolsListChanged", "timeoutMs": 10000},                                                                                              // 11
		{"op": "listTools"}, // 12
		{"op": "callTool", "name": "local_from_node", "arguments": map[string]any{"text": "new tool works"}}, // 13
		{"op": "listPrompts"}, // 14
	}
	r := runNode(t, f.V.URL, ops, map[string]string{"Authorization": "Bearer node-client-token"}, nil)
	for i, op := range ops {
		if e := r.stepError(i); e != nil && i != 4 {
			t.Errorf("step %d %v: error %+v", i, op["op"], *e)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	var tools struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	mustUnmarshal(t, r.Results[0], &tools)
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	requireTools(t, names, "weather_search", "notes_search", "local_search", "notes_create_note", "weather_forecast")

	var call struct {
		Content []struct {
			Type, Text string
		} `json:"content"`
		StructuredContent map[string]any `json:"structuredContent"`
		IsError           bool           `json:"isError"`
	}
	text := func(i int) string {
		t.Helper()
		call.Content, call.StructuredContent, call.IsError = nil, nil, false
		mustUnmarshal(t, r.Results[i], &call)
		var parts []string
		for _, c := range call.Content {
			parts = append(parts, c.Text)
		}
		return strings.Join(parts, "\n")
	}
	if got := text(1); got != "from node" || call.IsError {
		t.Errorf("weather_echo: %q isError=%v", got, call.IsError)
	}
	if got := text(2); got != "3.5" || call.StructuredContent["sum"] != 3.5 {
		t.Errorf("notes_add: text %q structured %v, want 3.5 both ways", got, call.StructuredContent)
	}
	if got := text(3); !call.IsError || got != "demo failure from "+f.Local {
		t.Errorf("local_fail: %q isError=%v, want a tool error result", got, call.IsError)
	}
	if e := r.stepError(4); e == nil || e.Code != -32602 || !strings.Contains(e.Message, "no_such_tool") {
		t.Errorf("unknown tool: %s, want JSON-RPC error -32602 naming no_such_tool", r.Results[4])
	}

	var read struct {
		Contents []struct {
			URI, Text string
		} `json:"contents"`
	}
	mustUnmarshal(t, r.Results[5], &read)
	if len(read.Contents) != 1 || !strings.HasPrefix(read.Contents[0].Text, "# "+f.Notes.Name+"\n") {
		t.Errorf("readResource notes readme: %s", r.Results[5])
	}
	mustUnmarshal(t, r.Results[6], &read)
	if len(read.Contents) != 1 || read.Contents[0].Text != "item 7 from "+f.Weather.Name {
		t.Errorf("readResource weather item 7: %s", r.Results[6])
	}

	var prompt struct {
		Messages []struct {
			Role    string                `json:"role"`
			Content struct{ Text string } `json:"content"`
		} `json:"messages"`
	}
	mustUnmarshal(t, r.Results[7], &prompt)
	if len(prompt.Messages) != 1 || prompt.Messages[0].Content.Text != "Hello bob from "+f.Weather.Name {
		t.Errorf("getPrompt weather_greet: %s", r.Results[7])
	}
	var comp struct {
		Completion struct{ Values []string } `json:"completion"`
	}
	mustUnmarshal(t, r.Results[8], &comp)
	if strings.Join(comp.Completion.Values, ",") != "carol" {
		t.Errorf("complete local_greet who=c: %s", r.Results[8])
	}

	// The TypeScript client's Authorization header stays at vmcp.
	var who struct {
		StructuredContent struct {
			Name, DemoToken, Authorization string
		} `json:"structuredContent"`
	}
	mustUnmarshal(t, r.Results[9], &who)
	if who.StructuredContent.Name != f.Weather.Name || who.StructuredContent.Authorization != "" {
		t.Errorf("weather_whoami: %s; the client's Authorization must not reach the backend", r.Results[9])
	}

	var waited struct {
		Received bool `json:"received"`
	}
	mustUnmarshal(t, r.Results[11], &waited)
	if !waited.Received {
		t.Errorf("no notifications/tools/list_changed within 10s after local_add_tool")
	}
	mustUnmarshal(t, r.Results[12], &tools)
	names = names[:0]
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	requireTools(t, names, "local_from_node")
	if got := text(13); got != "new tool works" {
		t.Errorf("local_from_node: %q", got)
	}
	var prompts struct {
		Prompts []struct{ Name string } `json:"prompts"`
	}
	mustUnmarshal(t, r.Results[14], &prompts)
	if len(prompts.Prompts) != 3 {
		t.Errorf("listPrompts: %s, want weather_greet, notes_greet and local_greet", r.Results[14])
	}
	if r.Session.ID == "" {
		t.Errorf("no MCP session id was assigned")
	}
}

// TestServerEverything puts the published @modelcontextprotocol/server-everything
// (over stdio) behind vmcp next to a demo backend, and uses it with both
// mcp-go's client and the TypeScript SDK's.
func TestServerEverything(t *testing.T) {
	t.Parallel()
	needNode(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	local := uniqueName("local")
	v := startVMCP(t, fmt.Sprintf(`name: e2e
server: {host: 127.0.0.1, port: 0}
backends:
  - {name: everything, transport: stdio, command: %q, args: [%q, stdio]}
  - {name: local, transport: stdio, command: %q, args: [--name, %q, --flavor, notes]}
`, node, everythingJS, demoBin, local), nil)

	c := newClient(t, v.URL, clientOpts{})
	var names []string
	// server-everything announces tools/list_changed right after initialize;
	// vmcp rediscovers, so wait for the catalogue to settle.
	eventually(t, 15*time.Second, "server-everything's tools are listed", func() error {
		names = toolNames(t, c)
		if !contains(names, "everything_echo") || !contains(names, "local_echo") {
			return fmt.Errorf("tools: %v", names)
		}
		return nil
	})
	n := 0
	for _, name := range names {
		if strings.HasPrefix(name, "everything_") {
			n++
		}
	}
	// The pinned server-everything (test/js/package-lock.json) offers 16
	// tools to a client with sampling, roots and elicitation, which vmcp's
	// shared stdio connection declares (it relays those requests to the
	// calling client); 13 to a client without.
	if n != 16 {
		t.Errorf("%d server-everything tools listed, want its 16: %v", n, names)
	}
	if got := callText(t, c, "everything_echo", map[string]any{"message": "hi from go"}); got != "Echo: hi from go" {
		t.Errorf("everything_echo: %q", got)
	}
	if got := callText(t, c, "local_echo", map[string]any{"text": "demo still here"}); got != "demo still here" {
		t.Errorf("local_echo: %q", got)
	}

	ctx := ctxT(t, 20*time.Second)
	rl, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
	if err != nil {
		t.Fatalf("resources/list: %v", err)
	}
	var everythingURI string
	for _, r := range rl.Resources {
		if !strings.HasPrefix(r.URI, "demo://"+local+"/") && everythingURI == "" {
			everythingURI = r.URI
		}
	}
	if everythingURI == "" {
		t.Fatalf("no server-everything resource listed: %+v", rl.Resources)
	}
	rr := mcp.ReadResourceRequest{}
	rr.Params.URI = everythingURI
	res, err := c.ReadResource(ctx, rr)
	if err != nil {
		t.Fatalf("resources/read %s: %v", everythingURI, err)
	}
	if len(res.Contents) == 0 {
		t.Fatalf("resources/read %s: no contents", everythingURI)
	}
	if tc, ok := res.Contents[0].(mcp.TextResourceContents); !ok || tc.URI != everythingURI || tc.Text == "" {
		t.Errorf("resources/read %s: %#v", everythingURI, res.Contents[0])
	}

	gp := mcp.GetPromptRequest{}
	gp.Params.Name = "everything_args-prompt"
	gp.Params.Arguments = map[string]string{"city": "Lisbon"}
	pr, err := c.GetPrompt(ctx, gp)
	if err != nil {
		t.Fatalf("prompts/get everything_args-prompt: %v", err)
	}
	if len(pr.Messages) != 1 {
		t.Fatalf("prompts/get: %d messages", len(pr.Messages))
	}
	if tc, ok := pr.Messages[0].Content.(mcp.TextContent); !ok || tc.Text != "What's weather in Lisbon?" {
		t.Errorf("prompts/get everything_args-prompt: %#v", pr.Messages[0].Content)
	}

	r := runNode(t, v.URL, []map[string]any{
		{"op": "callTool", "name": "everything_echo", "arguments": map[string]any{"message": "hi from ts"}},
		{"op": "callTool", "name": "everything_get-sum", "arguments": map[string]any{"a": 20, "b": 22}},
		{"op": "getPrompt", "name": "everything_simple-prompt"},
		{"op": "readResource", "uri": everythingURI},
	}, nil, nil)
	for i := range r.Results {
		if e := r.stepError(i); e != nil {
			t.Errorf("client.mjs step %d: %+v", i, *e)
		}
	}
	if !strings.Contains(string(r.Results[0]), "Echo: hi from ts") {
		t.Errorf("everything_echo via TypeScript: %s", r.Results[0])
	}
	if !strings.Contains(string(r.Results[1]), "42") {
		t.Errorf("everything_get-sum 20+22 via TypeScript: %s", r.Results[1])
	}
	if !strings.Contains(string(r.Results[2]), "This is a simple prompt without arguments.") {
		t.Errorf("everything_simple-prompt via TypeScript: %s", r.Results[2])
	}
	if !strings.Contains(string(r.Results[3]), everythingURI) {
		t.Errorf("readResource %s via TypeScript: %s", everythingURI, r.Results[3])
	}
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}
