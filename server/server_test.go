package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
	"go.uber.org/goleak"

	"github.com/vmcp/vmcp/config"
)

// newBackend serves an in-process MCP server with the given tools, each
// answering with its own name and backend.
func newBackend(t testing.TB, name string, tools ...string) *httptest.Server {
	t.Helper()
	s := mcpserver.NewMCPServer(name, "1", mcpserver.WithToolCapabilities(true))
	for _, tool := range tools {
		s.AddTool(mcp.NewTool(tool, mcp.WithDescription(tool+" of "+name), mcp.WithString("text")),
			func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText(name + "/" + req.Params.Name + ":" + req.GetString("text", "")), nil
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

func testConfig(t testing.TB, backends ...config.Backend) config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte("name: test\nserver: {port: 0, drainGrace: 0s}\nbackends: [{name: placeholder, transport: stdio, command: x}]\n"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	for i := range backends {
		backends[i].ConnectTimeout = config.Duration(5 * time.Second)
		backends[i].RequestTimeout = config.Duration(5 * time.Second)
	}
	cfg.Backends = backends
	return *cfg
}

// startServer builds and starts a server for cfg, shut down at the end of
// the test.
func startServer(t testing.TB, cfg config.Config) *Server {
	t.Helper()
	srv, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return srv
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func TestServeAggregatesAndShutsDownClean(t *testing.T) {
	defer goleak.VerifyNone(t,
		// httptest servers of the backends are closed by t.Cleanup, after
		// this deferred check; their goroutines are not the server's.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*conn).serve"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
	a := newBackend(t, "alpha", "search", "only_a")
	b := newBackend(t, "beta", "search")
	cfg := testConfig(t,
		config.Backend{Name: "alpha", Transport: config.TransportStreamableHTTP, URL: a.URL + "/mcp"},
		config.Backend{Name: "beta", Transport: config.TransportStreamableHTTP, URL: b.URL + "/mcp"},
	)
	srv, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.Addr().String()

	c, err := client.NewStreamableHttpClient(base + "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	tools, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	if got, want := strings.Join(names, ","), "alpha_only_a,alpha_search,beta_search"; got != want {
		t.Fatalf("tools = %s, want %s", got, want)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = "beta_search"
	req.Params.Arguments = map[string]any{"text": "x"}
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Content[0].(mcp.TextContent).Text; got != "beta/search:x" {
		t.Fatalf("beta_search answered %q, want the beta backend under its original name", got)
	}
	_ = c.Close()

	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready struct {
		Ready    bool `json:"ready"`
		Backends []struct {
			Name  string `json:"name"`
			State string `json:"state"`
			Tools int    `json:"tools"`
		} `json:"backends"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ready); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !ready.Ready || len(ready.Backends) != 2 || ready.Backends[0].Tools != 2 || ready.Backends[1].State != "connected" {
		t.Fatalf("readyz = %d %+v", resp.StatusCode, ready)
	}

	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("server still answers after Shutdown")
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestStartFailsOnUnsettledManualConflict(t *testing.T) {
	t.Parallel()
	a := newBackend(t, "alpha", "search")
	b := newBackend(t, "beta", "search")
	cfg := testConfig(t,
		config.Backend{Name: "alpha", Transport: config.TransportStreamableHTTP, URL: a.URL + "/mcp"},
		config.Backend{Name: "beta", Transport: config.TransportStreamableHTTP, URL: b.URL + "/mcp"},
	)
	cfg.Aggregation.ConflictResolution = config.ConflictManual
	srv, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	err = srv.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), `"search"`) || !strings.Contains(err.Error(), "alpha, beta") {
		t.Fatalf("Start = %v, want an error naming the tool and both backends", err)
	}
}

func TestReadyzIs503WithoutBackends(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, config.Backend{Name: "down", Transport: config.TransportStreamableHTTP, URL: "http://127.0.0.1:1/mcp"})
	srv, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"state": "unavailable"`) || !strings.Contains(rec.Body.String(), `"lastError"`) {
		t.Fatalf("readyz = %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("healthz = %d", rec.Code)
	}
}

// TestToolListFastPathMatchesMCPGo checks that tools/list answered from the
// encoded catalogue is the answer mcp-go itself gives, and that requests the
// fast path must not answer (unknown session) still get mcp-go's 404.
func TestToolListFastPathMatchesMCPGo(t *testing.T) {
	t.Parallel()
	a := newBackend(t, "alpha", "search", "fetch")
	cfg := testConfig(t, config.Backend{Name: "alpha", Transport: config.TransportStreamableHTTP, URL: a.URL + "/mcp"})
	srv, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := post(srv, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	sid := rec.Header().Get("Mcp-Session-Id")
	body := `{"jsonrpc":"2.0","id":"req-7","method":"tools/list"}`

	fast := post(srv, sid, body)
	req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	slow := httptest.NewRecorder()
	srv.mcpHTTP.ServeHTTP(slow, req) // mcp-go directly, no fast path

	var f, s any
	if err := json.Unmarshal(fast.Body.Bytes(), &f); err != nil {
		t.Fatalf("fast path body %q: %v", fast.Body, err)
	}
	if err := json.Unmarshal(slow.Body.Bytes(), &s); err != nil {
		t.Fatalf("mcp-go body %q: %v", slow.Body, err)
	}
	fb, _ := json.Marshal(f)
	sb, _ := json.Marshal(s)
	if fast.Code != slow.Code || string(fb) != string(sb) || !strings.Contains(string(fb), `"alpha_fetch"`) {
		t.Fatalf("fast path answered %d %s\nmcp-go answered %d %s", fast.Code, fb, slow.Code, sb)
	}
	if got := fast.Header().Get("Content-Type"); got != "application/json" {
		t.Fatalf("Content-Type = %q", got)
	}

	if rec := post(srv, "mcp-session-made-up", body); rec.Code != http.StatusNotFound {
		t.Fatalf("tools/list on an unknown session = %d, want 404", rec.Code)
	}
	del := httptest.NewRequest(http.MethodDelete, "/mcp", nil)
	del.Header.Set("Mcp-Session-Id", sid)
	srv.ServeHTTP(httptest.NewRecorder(), del)
	if rec := post(srv, sid, body); rec.Code != http.StatusNotFound {
		t.Fatalf("tools/list after DELETE = %d, want 404", rec.Code)
	}
}

// TestShutdownDrainsInFlightCalls starts Shutdown while a tool call is
// still running on the backend: the call must complete with its result, and
// Shutdown must wait for it.
func TestShutdownDrainsInFlightCalls(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	s := mcpserver.NewMCPServer("slow", "1", mcpserver.WithToolCapabilities(true))
	s.AddTool(mcp.NewTool("wait"), func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		return mcp.NewToolResultText("done"), nil
	})
	h := mcpserver.NewStreamableHTTPServer(s)
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	cfg := testConfig(t, config.Backend{Name: "slow", Transport: config.TransportStreamableHTTP, URL: ts.URL + "/mcp"})
	srv, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The client keeps a GET stream open, as clients that want
	// notifications do; Shutdown must end it without cutting the call.
	c, err := client.NewStreamableHttpClient("http://"+srv.Addr().String()+"/mcp", transport.WithContinuousListening())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = "2025-11-25"
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		res *mcp.CallToolResult
		err error
	}
	got := make(chan outcome, 1)
	go func() {
		req := mcp.CallToolRequest{}
		req.Params.Name = "slow_wait"
		res, err := c.CallTool(ctx, req)
		got <- outcome{res, err}
	}()
	<-started
	begin := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	o := <-got
	if o.err != nil || len(o.res.Content) == 0 || o.res.Content[0].(mcp.TextContent).Text != "done" {
		t.Fatalf("in-flight call during shutdown = %+v, %v; want its result", o.res, o.err)
	}
	if waited := time.Since(begin); waited < 200*time.Millisecond {
		t.Fatalf("Shutdown returned after %v, before the in-flight call could finish", waited)
	}
}

// TestRequestsThatMustNotReachMCPGo covers what the endpoint refuses before
// mcp-go sees it: a browser-rebound Host on a loopback listener (on every
// path, /readyz included) and GET or DELETE with a session vmcp did not
// issue.
func TestRequestsThatMustNotReachMCPGo(t *testing.T) {
	t.Parallel()
	a := newBackend(t, "alpha", "search")
	cfg := testConfig(t, config.Backend{Name: "alpha", Transport: config.TransportStreamableHTTP, URL: a.URL + "/mcp"})
	srv, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.Addr().String()
	live := post(srv, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`).Header().Get("Mcp-Session-Id")

	cases := []struct {
		name, method, path, host, session string
		want                              int
	}{
		{"rebound host on the MCP endpoint", http.MethodPost, "/mcp", "evil.example:80", live, http.StatusForbidden},
		{"rebound host on readyz", http.MethodGet, "/readyz", "evil.example", "", http.StatusForbidden},
		{"GET stream for a made-up session", http.MethodGet, "/mcp", "", "mcp-session-made-up", http.StatusNotFound},
		{"GET stream without a session", http.MethodGet, "/mcp", "", "", http.StatusBadRequest},
		{"DELETE of a made-up session", http.MethodDelete, "/mcp", "", "mcp-session-made-up", http.StatusNotFound},
		{"readyz by its loopback name", http.MethodGet, "/readyz", "localhost", "", http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`))
			if err != nil {
				t.Fatal(err)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if tc.session != "" {
				req.Header.Set("Mcp-Session-Id", tc.session)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s (Host %q) = %d %s, want %d", tc.method, tc.path, tc.host, resp.StatusCode, body, tc.want)
			}
			if tc.want >= 400 && !strings.Contains(string(body), `"jsonrpc":"2.0"`) {
				t.Fatalf("refusal body %q is not a JSON-RPC error", body)
			}
		})
	}
}

// TestNewFailingHalfWayCleansUp: when New fails after it started building
// (outgoing auth names an unset variable), it returns the error and cleans
// up instead of panicking.
func TestNewFailingHalfWayCleansUp(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, config.Backend{Name: "a", Transport: config.TransportStdio, Command: "/bin/true"})
	cfg.OutgoingAuth.Backends = map[string]config.BackendAuth{"a": {Type: config.AuthHeaderInjection, HeaderName: "X-Token", HeaderValueEnv: "VMCP_TEST_UNSET_TOKEN"}}
	srv, err := New(cfg, Options{Logger: quietLogger(), Getenv: func(string) (string, bool) { return "", false }})
	if srv != nil || err == nil || !strings.Contains(err.Error(), "VMCP_TEST_UNSET_TOKEN") {
		t.Fatalf("New = %v, %v; want no server and an error naming the variable", srv, err)
	}
}
