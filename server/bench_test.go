package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/jsonrpc"
)

// benchServer starts vmcp in front of one in-process backend with n tools
// and returns it with an initialised MCP session id.
func benchServer(b *testing.B, n int) (*Server, string) {
	b.Helper()
	s := mcpserver.NewMCPServer("big", "1", mcpserver.WithToolCapabilities(true))
	for i := range n {
		s.AddTool(mcp.NewTool(fmt.Sprintf("tool_%05d", i),
			mcp.WithDescription(fmt.Sprintf("Tool number %d: looks up records in a realistic system and returns them.", i)),
			mcp.WithString("id", mcp.Required(), mcp.Description("record id")),
			mcp.WithNumber("limit", mcp.Description("how many records to return")),
		), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("ok"), nil
		})
	}
	ts := httptest.NewServer(mcpserver.NewStreamableHTTPServer(s))
	b.Cleanup(ts.Close)
	return startBench(b, "big", ts.URL+"/mcp")
}

// Messages of a benchmark client's session.
const (
	benchInitialize  = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"b","version":"1"}}}`
	benchInitialized = `{"jsonrpc":"2.0","method":"notifications/initialized"}`
)

// startBench starts vmcp in front of the streamable-HTTP backend at url,
// named name, and opens a client session with it.
func startBench(b *testing.B, name, url string) (*Server, string) {
	b.Helper()
	return startBenchConfig(b, testConfig(b, config.Backend{Name: name, Transport: config.TransportStreamableHTTP, URL: url}))
}

// startBenchConfig starts vmcp with cfg and opens a client session with it.
func startBenchConfig(b *testing.B, cfg config.Config) (*Server, string) {
	b.Helper()
	srv, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	rec := post(srv, "", benchInitialize)
	sid := rec.Header().Get("Mcp-Session-Id")
	if sid == "" {
		b.Fatalf("no session: %d %s", rec.Code, rec.Body)
	}
	post(srv, sid, benchInitialized)
	return srv, sid
}

func post(srv *Server, sid, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/mcp", bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec
}

// BenchmarkToolsList10000 measures tools/list of a 10,000-tool catalogue,
// answered by vmcp without touching the backend.
func BenchmarkToolsList10000(b *testing.B) {
	srv, sid := benchServer(b, 10000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := post(srv, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
		if rec.Code != http.StatusOK || rec.Body.Len() < 10000*50 {
			b.Fatalf("tools/list = %d, %d bytes", rec.Code, rec.Body.Len())
		}
	}
}

// BenchmarkToolsCall measures one routed tools/call through the whole chain
// to an in-process backend over loopback HTTP.
func BenchmarkToolsCall(b *testing.B) {
	srv, sid := benchServer(b, 10)
	body := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"big_tool_00001","arguments":{"id":"x"}}}`
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := post(srv, sid, body)
		if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"ok"`)) {
			b.Fatalf("tools/call = %d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkToolsCallRawBackend is BenchmarkToolsCall with a backend that
// costs almost nothing (a fixed answer, written without any SDK), so that
// what it counts is vmcp's own work: the chain, the relay and the HTTP
// round trip to the backend (both ends of it), plus the test's request
// and recorder.
func BenchmarkToolsCallRawBackend(b *testing.B) {
	backend := startRawBackend(b, `[{"name":"t","inputSchema":{"type":"object"}}]`)
	srv, sid := startBench(b, "raw", backend.URL)
	body := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"raw_t","arguments":{"id":"x"}}}`
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := post(srv, sid, body)
		if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"ok"`)) {
			b.Fatalf("tools/call = %d %s", rec.Code, rec.Body)
		}
	}
}

// startRawBackend starts a backend written without any SDK that costs
// almost nothing: it lists tools (a JSON array) and answers every
// tools/call with a fixed "ok" result under the call's id.
func startRawBackend(b *testing.B, tools string) *httptest.Server {
	answer := []byte(`{"jsonrpc":"2.0","id":ID,"result":{"content":[{"type":"text","text":"ok"}]}}`)
	head, tail, _ := bytes.Cut(answer, []byte("ID"))
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case bytes.Contains(body, []byte(`"method":"initialize"`)):
			w.Header().Set("Mcp-Session-Id", "s1")
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"raw","version":"0"}}}`)
		case bytes.Contains(body, []byte(`"method":"tools/list"`)):
			id, _ := jsonrpc.FindID(body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(id)+`,"result":{"tools":`+tools+`}}`)
		case bytes.Contains(body, []byte(`"method":"tools/call"`)):
			id, _ := jsonrpc.FindID(body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(head)
			_, _ = w.Write(id)
			_, _ = w.Write(tail)
		case r.Method == http.MethodGet:
			w.WriteHeader(http.StatusMethodNotAllowed)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	b.Cleanup(backend.Close)
	return backend
}
