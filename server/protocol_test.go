package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vmcp/vmcp/config"
)

// TestProtocolVersionNegotiation: initialize answers the requested revision
// when vmcp supports it as a session-based revision, and otherwise the
// newest session-based one (mcp-go's negotiation, which also records the
// answer on the session); on a live session, a request whose
// MCP-Protocol-Version header names no supported revision gets 400, on
// every method, including the tools/list vmcp answers itself.
func TestProtocolVersionNegotiation(t *testing.T) {
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

	initialize := func(version string) (sid, negotiated string) {
		t.Helper()
		params := map[string]any{"capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "t", "version": "1"}}
		if version != "" {
			params["protocolVersion"] = version
		}
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
		rec := post(srv, "", string(body))
		var res struct {
			Result struct {
				ProtocolVersion string `json:"protocolVersion"`
			} `json:"result"`
		}
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &res) != nil {
			t.Fatalf("initialize %q = %d %s", version, rec.Code, rec.Body)
		}
		return rec.Header().Get("Mcp-Session-Id"), res.Result.ProtocolVersion
	}
	for _, tc := range []struct{ asked, want string }{
		{"2025-11-25", "2025-11-25"},
		{"2025-06-18", "2025-06-18"},
		{"2025-03-26", "2025-03-26"},
		{"2024-11-05", "2024-11-05"},
		{"2026-07-28", "2025-11-25"}, // has no initialize: the newest session-based revision
		{"1999-01-01", "2025-11-25"}, // unknown
		{"", "2025-03-26"},           // none: the spec's assumption for a client that names none
	} {
		if _, got := initialize(tc.asked); got != tc.want {
			t.Errorf("initialize asking %q answered %q, want %q", tc.asked, got, tc.want)
		}
	}

	sid, _ := initialize("2025-06-18")
	send := func(header, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/mcp", bytes.NewBufferString(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", sid)
		if header != "" {
			req.Header.Set("MCP-Protocol-Version", header)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec
	}
	if rec := send("2025-06-18", `{"jsonrpc":"2.0","method":"notifications/initialized"}`); rec.Code != http.StatusAccepted {
		t.Fatalf("notifications/initialized = %d %s", rec.Code, rec.Body)
	}
	for _, tc := range []struct {
		header, method string
		want           int
	}{
		{"2025-06-18", "tools/list", http.StatusOK},
		{"", "tools/list", http.StatusOK}, // no header: assumed 2025-03-26, allowed
		{"1999-01-01", "tools/list", http.StatusBadRequest},
		{"1999-01-01", "prompts/list", http.StatusBadRequest},
		{"2025-06-18", "ping", http.StatusOK},
		{"bogus", "ping", http.StatusBadRequest},
	} {
		if rec := send(tc.header, `{"jsonrpc":"2.0","id":7,"method":"`+tc.method+`"}`); rec.Code != tc.want {
			t.Errorf("%s with MCP-Protocol-Version %q = %d %s, want %d", tc.method, tc.header, rec.Code, rec.Body, tc.want)
		}
	}
}
