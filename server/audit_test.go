package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/aggregator"
	"github.com/vmcp/vmcp/config"
)

// TestAuditFile: with audit on, a served call and a rate-limit rejection
// are in the audit output, the call with its backend and original name;
// lists are not; ReopenAuditLog after a rename starts a new file.
func TestAuditFile(t *testing.T) {
	t.Parallel()
	a := newBackend(t, "alpha", "search")
	cfg := testConfig(t, config.Backend{Name: "alpha", Transport: config.TransportStreamableHTTP, URL: a.URL + "/mcp"})
	cfg.RateLimiting.Shared = &config.Bucket{MaxTokens: 1, RefillPeriod: config.Duration(time.Hour)}
	dir := t.TempDir()
	path := dir + "/audit.log"
	cfg.Audit = config.Audit{Enabled: true, Output: path}
	srv, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ReopenAuditLog(); err != nil {
		t.Fatalf("ReopenAuditLog before Start = %v; want nil", err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	sid := post(srv, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`).Header().Get("Mcp-Session-Id")
	post(srv, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	call := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"alpha_search","arguments":{"text":"x"}}}`
	if rec := post(srv, sid, call); rec.Code != http.StatusOK {
		t.Fatalf("first call = %d %s", rec.Code, rec.Body)
	}
	waitEvents(t, path, 1)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := srv.ReopenAuditLog(); err != nil {
		t.Fatal(err)
	}
	if rec := post(srv, sid, call); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("second call = %d %s, want 429", rec.Code, rec.Body)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	old, cur := auditEvents(t, path+".1"), auditEvents(t, path)
	if len(old) != 1 || len(cur) != 1 {
		t.Fatalf("rotated file %v, new file %v; want one event each", old, cur)
	}
	e := old[0]
	if e["outcome"] != "success" || e["name"] != "alpha_search" || e["backend"] != "alpha" || e["originalName"] != "search" ||
		e["requestId"] != 3.0 || e["sessionId"] != sid || e["arguments"] != nil || e["responseBytes"] == nil {
		t.Errorf("served call event = %v", e)
	}
	if e := cur[0]; e["outcome"] != "rate_limited" || e["name"] != "alpha_search" || e["method"] != "tools/call" || e["reason"] != "shared" {
		t.Errorf("rejection event = %v", e)
	}
}

func auditEvents(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var events []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		events = append(events, e)
	}
	return events
}

func waitEvents(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(auditEvents(t, path)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: fewer than %d events after 5s", path, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAuditRoute: tools and prompts route by post-aggregation name,
// resources by URI, listed or matching a template.
func TestAuditRoute(t *testing.T) {
	t.Parallel()
	agg := aggregator.New(config.Aggregation{ConflictResolution: config.ConflictPrefix,
		ConflictResolutionConfig: config.ConflictResolutionConfig{PrefixFormat: "{backend}_"}}, []string{"notes"}, quietLogger())
	if _, err := agg.Update("notes", &aggregator.Capabilities{
		Tools:             []mcp.Tool{mcp.NewTool("echo")},
		Prompts:           []mcp.Prompt{mcp.NewPrompt("greet")},
		Resources:         []mcp.Resource{mcp.NewResource("demo://notes/readme", "readme")},
		ResourceTemplates: []mcp.ResourceTemplate{mcp.NewResourceTemplate("demo://notes/items/{id}", "item")},
	}); err != nil {
		t.Fatal(err)
	}
	s := &Server{agg: agg}
	tests := []struct{ method, name, backend, original string }{
		{"tools/call", "notes_echo", "notes", "echo"},
		{"prompts/get", "notes_greet", "notes", "greet"},
		{"resources/read", "demo://notes/readme", "notes", "demo://notes/readme"},
		{"resources/read", "demo://notes/items/42", "notes", "demo://notes/items/42"},
		{"tools/call", "nope", "", ""},
		{"resources/read", "demo://other/x", "", ""},
	}
	for _, tt := range tests {
		b, orig, ok := s.route(tt.method, tt.name)
		if b != tt.backend || (ok && orig != tt.original) || ok != (tt.backend != "") {
			t.Errorf("route(%s, %s) = %q %q %v; want %q %q", tt.method, tt.name, b, orig, ok, tt.backend, tt.original)
		}
	}
}

// BenchmarkToolsCallAuditAndMetrics is BenchmarkToolsCall with the audit
// trail written to a file and Prometheus metrics on; compare the two for the
// cost of both.
func BenchmarkToolsCallAuditAndMetrics(b *testing.B) {
	s := mcpserver.NewMCPServer("big", "1", mcpserver.WithToolCapabilities(true))
	s.AddTool(mcp.NewTool("tool_00001", mcp.WithString("id")), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("ok"), nil
	})
	ts := httptest.NewServer(mcpserver.NewStreamableHTTPServer(s))
	b.Cleanup(ts.Close)
	cfg := testConfig(b, config.Backend{Name: "big", Transport: config.TransportStreamableHTTP, URL: ts.URL + "/mcp"})
	cfg.Audit = config.Audit{Enabled: true, Output: b.TempDir() + "/audit.log"}
	cfg.Telemetry.Prometheus = true
	srv, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	sid := post(srv, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"b","version":"1"}}}`).Header().Get("Mcp-Session-Id")
	post(srv, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	body := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"big_tool_00001","arguments":{"id":"x"}}}`
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if rec := post(srv, sid, body); rec.Code != http.StatusOK {
			b.Fatalf("tools/call = %d %s", rec.Code, rec.Body)
		}
	}
}

// TestMetricsCountEveryRequestOnce: with telemetry on, the audit stage
// hands served requests to the metrics with the trail off and on, each
// request counted once.
func TestMetricsCountEveryRequestOnce(t *testing.T) {
	t.Parallel()
	for _, auditOn := range []bool{false, true} {
		a := newBackend(t, "alpha", "search")
		cfg := testConfig(t, config.Backend{Name: "alpha", Transport: config.TransportStreamableHTTP, URL: a.URL + "/mcp"})
		cfg.Telemetry.Prometheus = true
		if auditOn {
			cfg.Audit = config.Audit{Enabled: true, Output: t.TempDir() + "/audit.log"}
		}
		srv, err := New(cfg, Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		sid := post(srv, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`).Header().Get("Mcp-Session-Id")
		post(srv, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
		post(srv, sid, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"alpha_search","arguments":{}}}`)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		for _, want := range []string{
			`vmcp_requests_total{method="tools/call",outcome="success"} 1`,
			`vmcp_requests_total{method="tools/list",outcome="success"} 1`,
			`vmcp_requests_total{method="initialize",outcome="success"} 1`,
			`vmcp_audit_events_dropped_total 0`,
		} {
			if strings.Contains(want, "dropped") && !auditOn {
				continue
			}
			if !strings.Contains(rec.Body.String(), want) {
				t.Errorf("audit %v: /metrics lacks %s", auditOn, want)
			}
		}
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
