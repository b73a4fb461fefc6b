package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/config"
)

// authzBackend serves tools open and secret, prompts open_p and secret_p,
// resources mem://open and mem://secret, counting what reaches it.
func authzBackend(t *testing.T, calls *atomic.Int64) *httptest.Server {
	t.Helper()
	s := mcpserver.NewMCPServer("b", "1", mcpserver.WithToolCapabilities(true), mcpserver.WithPromptCapabilities(true),
		mcpserver.WithResourceCapabilities(true, true), mcpserver.WithCompletions())
	for _, name := range []string{"open", "secret"} {
		s.AddTool(mcp.NewTool(name, mcp.WithString("text")), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			calls.Add(1)
			return mcp.NewToolResultText(req.Params.Name), nil
		})
		s.AddPrompt(mcp.NewPrompt(name+"_p", mcp.WithArgument("a")), func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			calls.Add(1)
			return mcp.NewGetPromptResult(name, []mcp.PromptMessage{mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(name))}), nil
		})
		s.AddResource(mcp.NewResource("mem://"+name, name), func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			calls.Add(1)
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, Text: name}}, nil
		})
	}
	h := mcpserver.NewStreamableHTTPServer(s)
	ts := httptest.NewServer(h)
	t.Cleanup(func() {
		_ = h.Shutdown(context.Background())
		ts.Close()
	})
	return ts
}

// TestDeniedLooksUnknown: what the policy denies is answered exactly as a
// name that does not exist (status and body, the name aside), never
// reaches the backend, and is left out of the caller's lists.
func TestDeniedLooksUnknown(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	b := authzBackend(t, &calls)
	cfg := testConfig(t, config.Backend{Name: "b", Transport: config.TransportStreamableHTTP, URL: b.URL + "/mcp"})
	cfg.Authorization = &config.Authorization{Default: config.EffectAllow, Rules: []config.AuthzRule{
		{Effect: config.EffectDeny, Tools: []string{"*secret"}, Prompts: []string{"*secret*"}, Resources: []string{"mem://secret"}},
	}}
	srv := startServer(t, cfg)
	h := http.Handler(srv)
	rec := postHandler(h, "", benchInitialize)
	sid := rec.Header().Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatalf("no session: %d %s", rec.Code, rec.Body)
	}
	postHandler(h, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)

	for _, c := range []struct{ what, denied, unknown string }{
		{"tools/call", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b_secret","arguments":{}}}`,
			`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b_nope","arguments":{}}}`},
		{"prompts/get", `{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"b_secret_p"}}`,
			`{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"b_nope_p"}}`},
		{"resources/read", `{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"mem://secret"}}`,
			`{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"mem://nopeeee"}}`},
		{"resources/subscribe", `{"jsonrpc":"2.0","id":5,"method":"resources/subscribe","params":{"uri":"mem://secret"}}`,
			`{"jsonrpc":"2.0","id":5,"method":"resources/subscribe","params":{"uri":"mem://nopeeee"}}`},
		{"completion/complete", `{"jsonrpc":"2.0","id":6,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"b_secret_p"},"argument":{"name":"a","value":"x"}}}`,
			`{"jsonrpc":"2.0","id":6,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"b_nope_pp"},"argument":{"name":"a","value":"x"}}}`},
	} {
		d := postHandler(h, sid, c.denied)
		u := postHandler(h, sid, c.unknown)
		// The unknown names have the denied names' lengths' neighbours:
		// compare with the name put back.
		ub := u.Body.String()
		for _, pair := range [][2]string{{"b_nope_pp", "b_secret_p"}, {"b_nope_p", "b_secret_p"}, {"b_nope", "b_secret"}, {"mem://nopeeee", "mem://secret"}} {
			ub = strings.ReplaceAll(ub, pair[0], pair[1])
		}
		if d.Code != u.Code || d.Body.String() != ub {
			t.Errorf("%s denied: %d %s\nunknown: %d %s", c.what, d.Code, d.Body, u.Code, ub)
		}
	}
	// The stateless revision (2026-07-28): its own status and codes.
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"x","version":"1"}}`
	stateless := func(method, name, params string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"`+method+`","params":{`+params+`,`+meta+`}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", method)
		req.Header.Set("Mcp-Name", name)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, c := range []struct{ method, denied, unknown, param string }{
		{"tools/call", "b_secret", "b_nope__", `"name":"%s","arguments":{}`},
		{"prompts/get", "b_secret_p", "b_nope____", `"name":"%s"`},
		{"resources/read", "mem://secret", "mem://nopeeee", `"uri":"%s"`},
	} {
		d := stateless(c.method, c.denied, strings.Replace(c.param, "%s", c.denied, 1))
		u := stateless(c.method, c.unknown, strings.Replace(c.param, "%s", c.unknown, 1))
		ub := strings.ReplaceAll(u.Body.String(), c.unknown, c.denied)
		if d.Code != u.Code || d.Body.String() != ub {
			t.Errorf("stateless %s denied: %d %s\nunknown: %d %s", c.method, d.Code, d.Body, u.Code, ub)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the backend served %d denied requests", n)
	}
	allowed := postHandler(h, sid, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"b_open","arguments":{}}}`)
	if !strings.Contains(allowed.Body.String(), `"open"`) || calls.Load() != 1 {
		t.Errorf("allowed call: %s (backend calls %d)", allowed.Body, calls.Load())
	}

	for _, l := range []struct{ method, field, hidden, shown string }{
		{"tools/list", "tools", "b_secret", "b_open"},
		{"prompts/list", "prompts", "b_secret_p", "b_open_p"},
		{"resources/list", "resources", "mem://secret", "mem://open"},
	} {
		rec := postHandler(h, sid, `{"jsonrpc":"2.0","id":9,"method":"`+l.method+`"}`)
		var res struct {
			Result map[string][]struct {
				Name string `json:"name"`
				URI  string `json:"uri"`
			} `json:"result"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
			t.Fatalf("%s: %v: %s", l.method, err, rec.Body)
		}
		var names []string
		for _, it := range res.Result[l.field] {
			names = append(names, it.Name+it.URI)
		}
		got := strings.Join(names, ",")
		if strings.Contains(got, l.hidden) || !strings.Contains(got, l.shown) {
			t.Errorf("%s = %s, want %s and not %s", l.method, got, l.shown, l.hidden)
		}
	}
}

// TestLongUnknownNameIsCut: a name far longer than any in the catalogue is
// answered as an unknown one with the name cut, not echoed back whole.
func TestLongUnknownNameIsCut(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	b := authzBackend(t, &calls)
	srv := startServer(t, testConfig(t, config.Backend{Name: "b", Transport: config.TransportStreamableHTTP, URL: b.URL + "/mcp"}))
	h := http.Handler(srv)
	rec := postHandler(h, "", benchInitialize)
	sid := rec.Header().Get("Mcp-Session-Id")
	postHandler(h, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	long := strings.Repeat("x", 100_000)
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"` + long + `","arguments":{}}}`,
		`{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"` + long + `"}}`,
		`{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"mem://` + long + `"}}`,
	} {
		rec := postHandler(h, sid, body)
		if rec.Body.Len() > 2048 || !strings.Contains(rec.Body.String(), `"error"`) || !strings.Contains(rec.Body.String(), "not found") {
			t.Errorf("%.40s...: %d bytes: %.200s, want a short not-found error", body, rec.Body.Len(), rec.Body)
		}
	}
}
