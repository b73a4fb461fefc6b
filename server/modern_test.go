package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/config"
)

// modernBackend is a backend that serves the session-based revision through
// mcp-go (vmcp's discovery uses it) and answers every 2026-07-28 request
// itself, from canned answers per tool, recording what it received.
type modernBackend struct {
	*httptest.Server
	answers map[string]cannedAnswer

	mu   sync.Mutex
	reqs []seenRequest // 2026-07-28 requests other than server/discover

	// release lets the "progress" tool send its result; started and
	// cancelled tell when the "block" tool's request arrived and ended.
	release, started, cancelled chan struct{}
}

type cannedAnswer struct {
	status      int
	contentType string
	body        string
}

type seenRequest struct {
	header http.Header
	body   []byte
}

// modernTools are the tools of newModernBackend, all also served by mcp-go
// so that discovery lists them.
var modernTools = []string{"echo", "ask", "needs_sampling", "unknown_method", "broken", "progress", "block"}

func newModernBackend(t *testing.T) *modernBackend {
	t.Helper()
	b := &modernBackend{
		answers: map[string]cannedAnswer{
			"echo":           {200, "application/json", `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"<echo> & more"}],"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"m","version":"1"}}}}`},
			"ask":            {200, "application/json", `{"jsonrpc":"2.0","id":7,"result":{"resultType":"input_required","inputRequests":{"who":{"method":"elicitation/create","params":{"message":"name?","requestedSchema":{"type":"object","properties":{}}}}},"requestState":"opaque-1"}}`},
			"needs_sampling": {400, "application/json", `{"jsonrpc":"2.0","id":7,"error":{"code":-32021,"message":"missing client capability","data":{"requiredCapabilities":{"sampling":{}}}}}`},
			"unknown_method": {404, "application/json; charset=utf-8", `{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"Method not found"}}`},
			"broken":         {502, "text/html", `<html>bad gateway</html>`},
		},
		release:   make(chan struct{}),
		started:   make(chan struct{}),
		cancelled: make(chan struct{}),
	}
	s := mcpserver.NewMCPServer("m", "1", mcpserver.WithToolCapabilities(true))
	for _, tool := range modernTools {
		s.AddTool(mcp.NewTool(tool), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("legacy path"), nil
		})
	}
	legacy := mcpserver.NewStreamableHTTPServer(s)
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !mcp.IsModernProtocol(r.Header.Get(mcp.HeaderProtocolVersion)) {
			legacy.ServeHTTP(w, r)
			return
		}
		b.serveModern(w, r)
	}))
	t.Cleanup(func() {
		_ = legacy.Shutdown(context.Background())
		b.Close()
	})
	return b
}

func (b *modernBackend) serveModern(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	_ = json.Unmarshal(body, &msg)
	if msg.Method == "server/discover" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(msg.ID)+`,"result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}}}}`)
		return
	}
	b.mu.Lock()
	b.reqs = append(b.reqs, seenRequest{header: r.Header.Clone(), body: body})
	b.mu.Unlock()
	switch msg.Params.Name {
	case "progress":
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"p1\",\"progress\":1}}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n\n")
	case "block":
		close(b.started)
		<-r.Context().Done()
		close(b.cancelled)
	default:
		a := b.answers[msg.Params.Name]
		w.Header().Set("Content-Type", a.contentType)
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}
}

func (b *modernBackend) requests() []seenRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seenRequest(nil), b.reqs...)
}

// startModernVMCP serves b as backend "m" (tools prefixed "m_") with the
// outgoing auth header X-Api-Key: secret, and returns the MCP endpoint.
func startModernVMCP(t *testing.T, url string, edit ...func(*config.Config)) string {
	t.Helper()
	cfg := testConfig(t, config.Backend{Name: "m", Transport: config.TransportStreamableHTTP, URL: url})
	for _, f := range edit {
		f(&cfg)
	}
	cfg.OutgoingAuth.Backends = map[string]config.BackendAuth{
		"m": {Type: config.AuthHeaderInjection, HeaderName: "X-Api-Key", HeaderValueEnv: "M_KEY"},
	}
	srv, err := New(cfg, Options{Logger: quietLogger(), Getenv: func(k string) (string, bool) { return "secret", k == "M_KEY" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return "http://" + srv.Addr().String() + "/mcp"
}

// modernParams are the params of the test's 2026-07-28 requests but the
// name: everything a stateless request carries per request.
const modernParams = `"arguments":{"q":"<b> & c"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/logLevel":"debug","progressToken":"p1"},"inputResponses":{"who":{"action":"accept","content":{"name":"x"}}},"requestState":"opaque-0"`

// modernRequest builds a 2026-07-28 tools/call of tool with id 7, with the
// headers a client sends and a client credential that must not reach the
// backend.
func modernRequest(ctx context.Context, t *testing.T, url, tool string) *http.Request {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + tool + `",` + modernParams + `}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set(mcp.HeaderProtocolVersion, "2026-07-28")
	req.Header.Set(mcp.HeaderMethod, "tools/call")
	req.Header.Set(mcp.HeaderName, tool)
	req.Header.Set("Authorization", "Bearer client-token")
	return req
}

func TestModernRelayPassesAnswersThrough(t *testing.T) {
	t.Parallel()
	b := newModernBackend(t)
	url := startModernVMCP(t, b.URL)
	for _, tool := range []string{"echo", "ask", "needs_sampling", "unknown_method"} {
		t.Run(tool, func(t *testing.T) {
			resp, err := http.DefaultClient.Do(modernRequest(context.Background(), t, url, "m_"+tool))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := b.answers[tool]
			if resp.StatusCode != want.status || resp.Header.Get("Content-Type") != want.contentType || string(got) != want.body {
				t.Fatalf("answer = %d %q %s\nwant the backend's  %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), got,
					want.status, want.contentType, want.body)
			}
		})
	}

	// What the backend received: the client's request with the original
	// name, vmcp's outgoing auth, and nothing else of the client's hop.
	reqs := b.requests()
	if len(reqs) != 4 {
		t.Fatalf("backend got %d stateless requests, want 4", len(reqs))
	}
	r := reqs[0]
	want := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo",` + modernParams + `}}`
	if !jsonEqual(t, r.body, []byte(want)) {
		t.Errorf("backend got body\n%s\nwant\n%s", r.body, want)
	}
	for k, v := range map[string]string{
		mcp.HeaderProtocolVersion: "2026-07-28", mcp.HeaderMethod: "tools/call", mcp.HeaderName: "echo",
		"X-Api-Key": "secret", "Authorization": "",
	} {
		if got := r.header.Get(k); got != v {
			t.Errorf("backend got header %s = %q, want %q", k, got, v)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return bytes.Equal(xs, ys)
}

// TestModernRelayStreamsNotifications: a notification the backend sends
// before its result reaches the client before the result exists.
func TestModernRelayStreamsNotifications(t *testing.T) {
	t.Parallel()
	b := newModernBackend(t)
	url := startModernVMCP(t, b.URL)
	resp, err := http.DefaultClient.Do(modernRequest(context.Background(), t, url, "m_progress"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("answer = %d %q, want 200 text/event-stream", resp.StatusCode, ct)
	}
	events := bufio.NewReader(resp.Body)
	readEvent := func() string {
		t.Helper()
		var data string
		for {
			line, err := events.ReadString('\n')
			if err != nil {
				t.Fatalf("event stream: %v (so far %q)", err, data)
			}
			if line == "\n" {
				return data
			}
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				data += strings.TrimSuffix(d, "\n")
			}
		}
	}
	if got := readEvent(); !strings.Contains(got, `"notifications/progress"`) || !strings.Contains(got, `"progressToken":"p1"`) {
		t.Fatalf("first event = %s, want the progress notification", got)
	}
	close(b.release)
	if got := readEvent(); got != `{"jsonrpc":"2.0","id":7,"result":{"content":[]}}` {
		t.Fatalf("second event = %s, want the result with the client's id", got)
	}
}

// TestModernRelayCancellation: a client that gives up ends the backend's
// request too.
func TestModernRelayCancellation(t *testing.T) {
	t.Parallel()
	b := newModernBackend(t)
	url := startModernVMCP(t, b.URL)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(modernRequest(ctx, t, url, "m_block"))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-b.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the call did not reach the backend")
	}
	cancel()
	select {
	case <-b.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's request was not aborted when the client gave up")
	}
	<-done
}

// TestModernRelayLeavesToMCPGo: what the relay does not take is answered
// as before, without a stateless request to the backend.
func TestModernRelayLeavesToMCPGo(t *testing.T) {
	t.Parallel()
	b := newModernBackend(t)
	url := startModernVMCP(t, b.URL)
	cases := []struct {
		name   string
		modify func(*http.Request)
		tool   string
		status int
		want   string
	}{
		{"name not in the catalogue", nil, "m_nope", 0, `"error"`},
		{"Mcp-Name disagrees with the body", func(r *http.Request) { r.Header.Set(mcp.HeaderName, "m_ask") }, "m_echo", 400, `-32020`},
		{"session-based revision", func(r *http.Request) { r.Header.Del(mcp.HeaderProtocolVersion) }, "m_echo", 0, ``},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := modernRequest(context.Background(), t, url, tc.tool)
			if tc.modify != nil {
				tc.modify(req)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if (tc.status != 0 && resp.StatusCode != tc.status) || !strings.Contains(string(got), tc.want) {
				t.Fatalf("answer = %d %s, want %d with %s", resp.StatusCode, got, tc.status, tc.want)
			}
		})
	}
	if reqs := b.requests(); len(reqs) != 0 {
		t.Fatalf("backend got %d stateless requests, want none; first: %s", len(reqs), reqs[0].body)
	}
}

// TestModernRelayBackendFailure: a backend answer that is no JSON-RPC
// message becomes a JSON-RPC error naming nothing internal.
func TestModernRelayBackendFailure(t *testing.T) {
	t.Parallel()
	b := newModernBackend(t)
	url := startModernVMCP(t, b.URL)
	resp, err := http.DefaultClient.Do(modernRequest(context.Background(), t, url, "m_broken"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var msg struct {
		ID    int `json:"id"`
		Error struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(got, &msg); err != nil || msg.ID != 7 || msg.Error.Code != -32603 || strings.Contains(string(got), "<html>") {
		t.Fatalf("answer = %d %s, want a JSON-RPC internal error for id 7", resp.StatusCode, got)
	}
}

// TestModernRelayIsAudited: relayed calls are in the audit trail with their
// backend, original name and outcome, streamed ones included.
func TestModernRelayIsAudited(t *testing.T) {
	t.Parallel()
	b := newModernBackend(t)
	close(b.release)
	path := t.TempDir() + "/audit.log"
	url := startModernVMCP(t, b.URL, func(c *config.Config) { c.Audit = config.Audit{Enabled: true, Output: path} })
	for _, tool := range []string{"m_echo", "m_needs_sampling", "m_progress"} {
		resp, err := http.DefaultClient.Do(modernRequest(context.Background(), t, url, tool))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	waitEvents(t, path, 3)
	want := map[string]string{"m_echo": "success", "m_needs_sampling": "bad_request", "m_progress": "success"}
	for _, e := range auditEvents(t, path) {
		name, _ := e["name"].(string)
		if e["outcome"] != want[name] || e["backend"] != "m" || e["originalName"] != strings.TrimPrefix(name, "m_") || e["requestId"] != 7.0 {
			t.Errorf("event %v, want outcome %s", e, want[name])
		}
	}
}

// TestModernRelayRefusesDuplicateKeys: a stateless request goes to the
// backend byte for byte, so a body vmcp and the backend could read
// differently (vmcp keeps the last of two equal keys, other parsers the
// first) is refused and never reaches the backend.
func TestModernRelayRefusesDuplicateKeys(t *testing.T) {
	t.Parallel()
	b := newModernBackend(t)
	url := startModernVMCP(t, b.URL)
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"m_ask","name":"m_echo",` + modernParams + `}}`,
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"m_ask",` + modernParams + `},"params":{"name":"m_echo",` + modernParams + `}}`,
	} {
		req := modernRequest(context.Background(), t, url, "m_echo")
		req.Body = io.NopCloser(strings.NewReader(body))
		req.ContentLength = int64(len(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(got), `appears twice`) || !strings.Contains(string(got), `"id":7`) {
			t.Errorf("duplicate keys: %d %s; want 400 with a JSON-RPC invalid request", resp.StatusCode, got)
		}
	}
	if n := len(b.requests()); n != 0 {
		t.Errorf("the backend got %d requests with duplicate keys", n)
	}
}
