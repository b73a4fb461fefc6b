package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/server"
)

// fleet is vmcp in front of one demo backend per transport:
// weather (weather flavor, streamable HTTP, a child of the test),
// notes (notes flavor, SSE, a child of the test) and
// local (weather flavor, stdio, started by vmcp).
type fleet struct {
	V       *vmcp
	Weather *demoBackend
	Notes   *demoBackend
	Local   string // --name of the stdio backend
}

// fleetYAML is the config of a fleet; extra is appended at top level.
func fleetYAML(weatherURL, notesURL, localName, extra string) string {
	return fmt.Sprintf(`name: e2e
server: {host: 127.0.0.1, port: 0}
backends:
  - {name: weather, transport: streamable-http, url: %q, requestTimeout: 10s}
  - {name: notes, transport: sse, url: %q, requestTimeout: 10s}
  - name: local
    transport: stdio
    command: %q
    args: [--name, %q, --flavor, weather]
    requestTimeout: 10s
aggregation:
  conflictResolution: prefix
%s`, weatherURL, notesURL, demoBin, localName, extra)
}

func startFleet(t *testing.T, extra string, env map[string]string) *fleet {
	t.Helper()
	f := &fleet{
		Weather: startDemo(t, "weather", "weather", "streamable-http", ""),
		Notes:   startDemo(t, "notes", "notes", "sse", ""),
		Local:   uniqueName("local"),
	}
	f.V = startVMCP(t, fleetYAML(f.Weather.URL, f.Notes.URL, f.Local, extra), env)
	return f
}

// TestThreeTransportsWithMCPGoClient lists and calls tools, reads
// resources and renders prompts of backends on all three transports
// through one vmcp endpoint, with mcp-go's client.
func TestThreeTransportsWithMCPGoClient(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "", nil)
	c := newClient(t, f.V.URL, clientOpts{})

	// Prefix conflict resolution: every backend's tools under its prefix,
	// so the two "search" tools of different flavors are both reachable.
	names := toolNames(t, c)
	requireTools(t, names,
		"weather_search", "weather_forecast", "weather_echo", "weather_whoami",
		"notes_search", "notes_create_note", "notes_echo",
		"local_search", "local_forecast", "local_echo")
	for _, n := range names {
		if !strings.HasPrefix(n, "weather_") && !strings.HasPrefix(n, "notes_") && !strings.HasPrefix(n, "local_") {
			t.Errorf("tool %q has no backend prefix", n)
		}
	}
	if contains(names, "search") || contains(names, "echo") {
		t.Errorf("unprefixed tool names leaked into the catalogue: %v", names)
	}

	// Each prefixed tool reaches its own backend, under its original name.
	for _, tc := range []struct{ tool, backend string }{
		{"weather_echo", f.Weather.Name}, {"notes_echo", f.Notes.Name}, {"local_echo", f.Local},
	} {
		if got := callText(t, c, tc.tool, map[string]any{"text": "hello " + tc.backend}); got != "hello "+tc.backend {
			t.Errorf("%s: got %q", tc.tool, got)
		}
		who := callText(t, c, strings.Replace(tc.tool, "echo", "whoami", 1), nil)
		if !strings.Contains(who, `"name":"`+tc.backend+`"`) {
			t.Errorf("%s was served by the wrong backend: whoami says %s, want name %s", tc.tool, who, tc.backend)
		}
	}
	if got := callText(t, c, "notes_add", map[string]any{"a": 2, "b": 40}); got != "42" {
		t.Errorf("notes_add 2+40 = %q, want 42", got)
	}
	if got := callText(t, c, "weather_search", map[string]any{"query": "KSEA"}); !strings.Contains(got, "Seattle") || !strings.Contains(got, f.Weather.Name) {
		t.Errorf("weather_search KSEA: %q, want a Seattle station from %s", got, f.Weather.Name)
	}
	if got := callText(t, c, "notes_search", map[string]any{"query": "zzz-no-such-note"}); !strings.Contains(got, "no notes on "+f.Notes.Name) {
		t.Errorf("notes_search went to the wrong backend: %q", got)
	}

	// Resources keep their URIs; templates route to their backend.
	ctx := ctxT(t, 30*time.Second)
	rl, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
	if err != nil {
		t.Fatalf("resources/list: %v", err)
	}
	var uris []string
	for _, r := range rl.Resources {
		uris = append(uris, r.URI)
	}
	for _, n := range []string{f.Weather.Name, f.Notes.Name, f.Local} {
		if !contains(uris, "demo://"+n+"/readme") {
			t.Errorf("resource demo://%s/readme not listed: %v", n, uris)
		}
	}
	for _, n := range []string{f.Weather.Name, f.Notes.Name, f.Local} {
		rr := mcp.ReadResourceRequest{}
		rr.Params.URI = "demo://" + n + "/readme"
		res, err := c.ReadResource(ctx, rr)
		if err != nil {
			t.Fatalf("resources/read %s: %v", rr.Params.URI, err)
		}
		if len(res.Contents) != 1 {
			t.Fatalf("resources/read %s: %d contents", rr.Params.URI, len(res.Contents))
		}
		tc, ok := res.Contents[0].(mcp.TextResourceContents)
		if !ok || !strings.HasPrefix(tc.Text, "# "+n+"\n") {
			t.Errorf("resources/read %s: got %#v, want the readme of %s", rr.Params.URI, res.Contents[0], n)
		}
	}
	tl, err := c.ListResourceTemplates(ctx, mcp.ListResourceTemplatesRequest{})
	if err != nil {
		t.Fatalf("resources/templates/list: %v", err)
	}
	if len(tl.ResourceTemplates) != 3 {
		t.Errorf("want 3 resource templates (one per backend), got %d", len(tl.ResourceTemplates))
	}
	rr := mcp.ReadResourceRequest{}
	rr.Params.URI = "demo://" + f.Notes.Name + "/items/42"
	res, err := c.ReadResource(ctx, rr)
	if err != nil {
		t.Fatalf("resources/read %s (template): %v", rr.Params.URI, err)
	}
	if tc, ok := res.Contents[0].(mcp.TextResourceContents); !ok || tc.Text != "item 42 from "+f.Notes.Name {
		t.Errorf("templated read: got %#v, want %q", res.Contents[0], "item 42 from "+f.Notes.Name)
	}

	// Prompts: prefixed like tools, rendered by their backend.
	pl, err := c.ListPrompts(ctx, mcp.ListPromptsRequest{})
	if err != nil {
		t.Fatalf("prompts/list: %v", err)
	}
	var prompts []string
	for _, p := range pl.Prompts {
		prompts = append(prompts, p.Name)
	}
	for _, want := range []string{"weather_greet", "notes_greet", "local_greet"} {
		if !contains(prompts, want) {
			t.Errorf("prompt %q not listed: %v", want, prompts)
		}
	}
	gp := mcp.GetPromptRequest{}
	gp.Params.Name = "local_greet"
	gp.Params.Arguments = map[string]string{"who": "alice"}
	pr, err := c.GetPrompt(ctx, gp)
	if err != nil {
		t.Fatalf("prompts/get local_greet: %v", err)
	}
	if len(pr.Messages) != 1 {
		t.Fatalf("prompts/get: %d messages", len(pr.Messages))
	}
	if tc, ok := pr.Messages[0].Content.(mcp.TextContent); !ok || tc.Text != "Hello alice from "+f.Local {
		t.Errorf("prompts/get local_greet: got %#v, want %q", pr.Messages[0].Content, "Hello alice from "+f.Local)
	}

	// Completions of a prompt argument come from the prompt's backend.
	cr := mcp.CompleteRequest{}
	cr.Params.Ref = mcp.PromptReference{Type: "ref/prompt", Name: "notes_greet"}
	cr.Params.Argument = mcp.CompleteArgument{Name: "who", Value: "a"}
	comp, err := c.Complete(ctx, cr)
	if err != nil {
		t.Fatalf("completion/complete: %v", err)
	}
	if strings.Join(comp.Completion.Values, ",") != "alice" {
		t.Errorf("completions of who=a: %v, want [alice]", comp.Completion.Values)
	}
}

// TestErrors checks how failures reach the client: an unknown tool is a
// JSON-RPC error, a tool's own failure is a result with isError.
func TestErrors(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "", nil)
	c := newClient(t, f.V.URL, clientOpts{})

	_, err := tryCall(t, c, "no_such_tool", nil)
	if err == nil {
		t.Fatal("calling an unknown tool succeeded")
	}
	if !errors.Is(err, mcp.ErrInvalidParams) || !strings.Contains(err.Error(), "no_such_tool") {
		t.Errorf("unknown tool: got %v, want an invalid-params JSON-RPC error naming no_such_tool", err)
	}
	// The original name of a prefixed tool is not callable either.
	if _, err := tryCall(t, c, "echo", map[string]any{"text": "x"}); err == nil {
		t.Error("the unprefixed name echo was accepted")
	}

	for _, tc := range []struct{ tool, backend string }{
		{"weather_fail", f.Weather.Name}, {"notes_fail", f.Notes.Name}, {"local_fail", f.Local},
	} {
		res, err := tryCall(t, c, tc.tool, nil)
		if err != nil {
			t.Fatalf("%s: a tool error became a protocol error: %v", tc.tool, err)
		}
		if !res.IsError || resultText(res) != "demo failure from "+tc.backend {
			t.Errorf("%s: got isError=%v %q, want isError and %q", tc.tool, res.IsError, resultText(res), "demo failure from "+tc.backend)
		}
	}

	// Arguments reach the backend as sent: a missing required argument is
	// the backend's tool error.
	res, err := tryCall(t, c, "weather_forecast", map[string]any{"city": ""})
	if err != nil {
		t.Fatalf("weather_forecast: %v", err)
	}
	if !res.IsError || !strings.Contains(resultText(res), "city must not be empty") {
		t.Errorf("weather_forecast city=\"\": got isError=%v %q", res.IsError, resultText(res))
	}
}

// TestToolsListChanged: a backend that changes its tools makes vmcp tell
// its connected clients, and the new tool is callable through vmcp.
func TestToolsListChanged(t *testing.T) {
	t.Parallel()
	f := startFleet(t, "", nil)
	var changed atomic.Int32
	c := newClient(t, f.V.URL, clientOpts{listen: true, onNotification: func(n mcp.JSONRPCNotification) {
		if n.Method == mcp.MethodNotificationToolsListChanged {
			changed.Add(1)
		}
	}})
	before := toolNames(t, c)

	for _, tc := range []struct{ backend, tool string }{
		{"weather", "zap"}, {"notes", "zip"}, {"local", "zop"},
	} {
		n0 := changed.Load()
		if got := callText(t, c, tc.backend+"_add_tool", map[string]any{"name": tc.tool}); !strings.Contains(got, "added tool "+tc.tool) {
			t.Fatalf("%s_add_tool: %q", tc.backend, got)
		}
		eventually(t, 10*time.Second, "notifications/tools/list_changed after "+tc.backend+"_add_tool", func() error {
			if changed.Load() == n0 {
				return errors.New("no notification yet")
			}
			return nil
		})
		newName := tc.backend + "_" + tc.tool
		requireTools(t, toolNames(t, c), newName)
		if got := callText(t, c, newName, map[string]any{"text": "via " + newName}); got != "via "+newName {
			t.Errorf("%s: got %q", newName, got)
		}
	}

	// Removing a tool takes it out of the catalogue again.
	n0 := changed.Load()
	callText(t, c, "notes_remove_tool", map[string]any{"name": "zip"})
	eventually(t, 10*time.Second, "list_changed after notes_remove_tool", func() error {
		if changed.Load() == n0 {
			return errors.New("no notification yet")
		}
		return nil
	})
	after := toolNames(t, c)
	if contains(after, "notes_zip") {
		t.Errorf("notes_zip still listed after remove_tool: %v", after)
	}
	if len(after) != len(before)+2 {
		t.Errorf("tool count: %d before, %d after adding 3 and removing 1", len(before), len(after))
	}
	if _, err := tryCall(t, c, "notes_zip", map[string]any{"text": "x"}); err == nil {
		t.Error("removed tool notes_zip is still callable")
	}
}

// TestOnlyChangedListsAreAnnounced: when only a backend's tools change,
// clients get tools/list_changed and no resources/list_changed or
// prompts/list_changed, so they do not refetch for nothing.
func TestOnlyChangedListsAreAnnounced(t *testing.T) {
	t.Parallel()
	v := startVMCP(t, fmt.Sprintf(`name: e2e
server: {host: 127.0.0.1, port: 0}
backends:
  - {name: local, transport: stdio, command: %q, args: [--name, %q]}
`, demoBin, uniqueName("local")), nil)
	var mu sync.Mutex
	got := map[string]int{}
	c := newClient(t, v.URL, clientOpts{listen: true, onNotification: func(n mcp.JSONRPCNotification) {
		mu.Lock()
		defer mu.Unlock()
		got[n.Method]++
	}})
	count := func(method mcp.MCPMethod) int {
		mu.Lock()
		defer mu.Unlock()
		return got[string(method)]
	}
	callText(t, c, "local_add_tool", map[string]any{"name": "one_more"})
	eventually(t, 10*time.Second, "tools/list_changed", func() error {
		if count(mcp.MethodNotificationToolsListChanged) == 0 {
			return errors.New("none yet")
		}
		return nil
	})
	// vmcp installs every list of one catalogue change together, so a
	// short wait after the tools notification is enough.
	time.Sleep(300 * time.Millisecond)
	for _, m := range []mcp.MCPMethod{mcp.MethodNotificationResourcesListChanged, mcp.MethodNotificationPromptsListChanged} {
		if n := count(m); n != 0 {
			t.Errorf("got %d × %s although only tools changed", n, m)
		}
	}
}

// TestConflictStrategies: priority resolution, filters and overrides, and
// manual resolution refusing to start on an unsettled conflict, end to end
// with two stdio backends that both offer echo and search.
func TestConflictStrategies(t *testing.T) {
	t.Parallel()
	alpha, beta := uniqueName("alpha"), uniqueName("beta")
	backends := fmt.Sprintf(`backends:
  - {name: alpha, transport: stdio, command: %q, args: [--name, %q, --flavor, weather]}
  - {name: beta, transport: stdio, command: %q, args: [--name, %q, --flavor, notes]}
`, demoBin, alpha, demoBin, beta)

	t.Run("priority", func(t *testing.T) {
		t.Parallel()
		v := startVMCP(t, `name: e2e
server: {host: 127.0.0.1, port: 0}
`+backends+`aggregation:
  conflictResolution: priority
  conflictResolutionConfig: {priorityOrder: [beta, alpha]}
  tools:
    - backend: alpha
      filter: [forecast, echo, whoami]
      overrides:
        forecast: {name: city_forecast, description: "Forecast from alpha"}
`, nil)
		c := newClient(t, v.URL, clientOpts{})
		res, err := c.ListTools(ctxT(t, 10*time.Second), mcp.ListToolsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		desc := map[string]string{}
		for _, tl := range res.Tools {
			desc[tl.Name] = tl.Description
		}
		if d, ok := desc["city_forecast"]; !ok || d != "Forecast from alpha" {
			t.Errorf("override: city_forecast listed=%v description=%q", ok, d)
		}
		for _, gone := range []string{"forecast", "alpha_echo", "beta_search"} {
			if _, ok := desc[gone]; ok {
				t.Errorf("tool %q should not be listed", gone)
			}
		}
		// Both offer search, echo and whoami; beta ranks first.
		if got := callText(t, c, "search", map[string]any{"query": "zzz-nothing"}); !strings.Contains(got, "no notes on "+beta) {
			t.Errorf("search went to alpha instead of the higher-priority beta: %q", got)
		}
		if got := callText(t, c, "whoami", nil); !strings.Contains(got, `"name":"`+beta+`"`) {
			t.Errorf("whoami: %q, want beta's", got)
		}
		// alpha's filter dropped add; beta's add is there.
		if got := callText(t, c, "add", map[string]any{"a": 1, "b": 1}); got != "2" {
			t.Errorf("add: %q", got)
		}
		if got := callText(t, c, "city_forecast", map[string]any{"city": "Vienna", "days": 1}); !strings.Contains(got, "Vienna") {
			t.Errorf("city_forecast (renamed forecast of alpha): %q", got)
		}
	})

	t.Run("manual refuses unsettled conflicts", func(t *testing.T) {
		t.Parallel()
		cfg, err := config.Parse([]byte(`name: e2e
server: {host: 127.0.0.1, port: 0}
`+strings.ReplaceAll(strings.ReplaceAll(backends, alpha, alpha+"-m"), beta, beta+"-m")+`aggregation:
  conflictResolution: manual
`), nil)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.New(*cfg, server.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		err = srv.Start(ctxT(t, 30*time.Second))
		shutdownErr := srv.Shutdown(ctxT(t, 30*time.Second))
		if err == nil {
			t.Fatal("Start succeeded although both backends offer echo and search under manual resolution")
		}
		for _, want := range []string{`"echo"`, `"search"`, "alpha", "beta"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Start error does not mention %s: %v", want, err)
			}
		}
		if shutdownErr != nil {
			t.Errorf("Shutdown after failed Start: %v", shutdownErr)
		}
		if left := processesWith(alpha + "-m"); len(left) > 0 {
			killAll(left)
			t.Errorf("stdio children left after a failed Start and Shutdown:%s", describeProcs(left))
		}
	})
}

// TestOutgoingHeaderInjection: header_injection credentials reach HTTP
// backends (streamable HTTP and SSE), and the MCP client's own
// Authorization header is never forwarded.
func TestOutgoingHeaderInjection(t *testing.T) {
	t.Parallel()
	f := startFleet(t, `outgoingAuth:
  backends:
    weather: {type: header_injection, headerName: X-Demo-Token, headerValueEnv: E2E_WEATHER_TOKEN}
    notes: {type: header_injection, headerName: Authorization, headerValueEnv: E2E_NOTES_AUTH}
`, map[string]string{"E2E_WEATHER_TOKEN": "weather-s3cret", "E2E_NOTES_AUTH": "Bearer notes-backend-token"})
	c := newClient(t, f.V.URL, clientOpts{headers: map[string]string{
		"Authorization": "Bearer client-own-token",
	}})

	type who struct {
		Name, DemoToken, Authorization string
	}
	whoami := func(tool string) who {
		t.Helper()
		res := callTool(t, c, tool, nil)
		if res.IsError {
			t.Fatalf("%s: %s", tool, resultText(res))
		}
		var w who
		if err := json.Unmarshal([]byte(resultText(res)), &w); err != nil {
			t.Fatalf("%s: %v: %s", tool, err, resultText(res))
		}
		return w
	}
	if w := whoami("weather_whoami"); w.DemoToken != "weather-s3cret" || w.Authorization != "" {
		t.Errorf("streamable-http backend saw X-Demo-Token=%q Authorization=%q; want the injected token and no Authorization (the client's must not be forwarded)", w.DemoToken, w.Authorization)
	}
	if w := whoami("notes_whoami"); w.Authorization != "Bearer notes-backend-token" || w.DemoToken != "" {
		t.Errorf("sse backend saw Authorization=%q X-Demo-Token=%q; want the injected Authorization, not the client's %q", w.Authorization, w.DemoToken, "Bearer client-own-token")
	}
}

// TestHTTPEndpoints: the HTTP-level answers of vmcp: 413 for oversized
// bodies, a JSON-RPC parse error for malformed JSON, /healthz and /readyz.
func TestHTTPEndpoints(t *testing.T) {
	t.Parallel()
	// A limit below the 256 KiB that Go's HTTP server drains after an early
	// answer, so the client reliably reads the 413 instead of a reset
	// connection. Set through the environment override.
	const limit = 64 << 10
	f := startFleet(t, "", map[string]string{"VMCP_SERVER_MAXBODYBYTES": strconv.Itoa(limit)})

	// A keep-alive client, as MCP clients are: with "Connection: close" Go's
	// server would not drain the unread body and a reset could hide the 413.
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	post := func(t *testing.T, body io.Reader, length int64) (int, http.Header, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctxT(t, 10*time.Second), http.MethodPost, f.V.URL, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	type rpcErr struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	decode := func(t *testing.T, h http.Header, b []byte) rpcErr {
		t.Helper()
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
		var e rpcErr
		if err := json.Unmarshal(b, &e); err != nil || e.Error == nil || e.JSONRPC != "2.0" {
			t.Fatalf("body is not a JSON-RPC error: %v: %s", err, b)
		}
		return e
	}
	// A well-formed tools/call padded past the limit.
	big := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"weather_echo","arguments":{"text":"` +
		strings.Repeat("x", limit+1024) + `"}}}`

	t.Run("oversized body with Content-Length", func(t *testing.T) {
		status, h, b := post(t, strings.NewReader(big), int64(len(big)))
		if status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413; body %.200s", status, b)
		}
		if e := decode(t, h, b); !strings.Contains(e.Error.Message, "too large") {
			t.Errorf("error message %q does not say the body is too large", e.Error.Message)
		}
	})
	t.Run("body at the limit is served", func(t *testing.T) {
		// Initialize, padded with whitespace to exactly the limit.
		init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
		body := init + strings.Repeat(" ", limit-len(init))
		status, _, b := post(t, strings.NewReader(body), int64(len(body)))
		if status != http.StatusOK || !strings.Contains(string(b), `"serverInfo"`) {
			t.Errorf("a body of exactly maxBodyBytes: status %d %.300s", status, b)
		}
	})
	t.Run("oversized chunked body", func(t *testing.T) {
		status, h, b := post(t, io.MultiReader(strings.NewReader(big)), -1)
		if status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413; body %.200s", status, b)
		}
		decode(t, h, b)
	})
	t.Run("malformed JSON", func(t *testing.T) {
		status, h, b := post(t, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list",`), -1)
		if status < 400 || status > 499 {
			t.Errorf("status %d, want a 4xx", status)
		}
		e := decode(t, h, b)
		if e.Error.Code != -32700 {
			t.Errorf("error code %d, want -32700 (parse error): %s", e.Error.Code, b)
		}
		if string(e.ID) != "null" {
			t.Errorf("id %s, want null for an unreadable request", e.ID)
		}
	})
	t.Run("healthz", func(t *testing.T) {
		status, b := httpGet(t, f.V.Base+"/healthz")
		if status != http.StatusOK {
			t.Errorf("/healthz: %d %s", status, b)
		}
	})
	t.Run("readyz", func(t *testing.T) {
		status, r := getReadyz(t, f.V.Base)
		if status != http.StatusOK || !r.Ready {
			t.Errorf("/readyz: status %d ready=%v, want 200 and ready", status, r.Ready)
		}
		want := map[string]string{"weather": "streamable-http", "notes": "sse", "local": "stdio"}
		if len(r.Backends) != len(want) {
			t.Fatalf("/readyz lists %d backends, want %d: %+v", len(r.Backends), len(want), r.Backends)
		}
		for _, b := range r.Backends {
			if want[b.Name] != b.Transport {
				t.Errorf("/readyz backend %q: transport %q, want %q", b.Name, b.Transport, want[b.Name])
			}
			if b.State != "connected" || b.LastError != "" {
				t.Errorf("/readyz backend %q: state %q lastError %q, want connected and no error", b.Name, b.State, b.LastError)
			}
			if b.Tools != demoToolCount {
				t.Errorf("/readyz backend %q: %d tools, want the demo's %d", b.Name, b.Tools, demoToolCount)
			}
		}
	})
}
