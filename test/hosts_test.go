package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAllowedHostsAndOrigins: vmcp on loopback with server.allowedHosts and
// server.allowedOrigins set from the environment serves a real MCP session
// under the listed name, keeps serving loopback names, and refuses (403)
// another Host and a foreign browser Origin.
func TestAllowedHostsAndOrigins(t *testing.T) {
	t.Parallel()
	back := startDemo(t, "weather", "weather", "streamable-http", "")
	v := startVMCP(t, fmt.Sprintf(`
server: {host: 127.0.0.1, port: 0, path: /mcp}
backends:
  - {name: weather, transport: streamable-http, url: %q}
`, back.URL), map[string]string{
		"VMCP_SERVER_ALLOWEDHOSTS":   "vmcp.example.test",
		"VMCP_SERVER_ALLOWEDORIGINS": "https://app.example.test",
	})
	_, port, _ := net.SplitHostPort(v.Srv.Addr().String())

	// mcp-go's client, addressing vmcp by the allowed name (dialled on
	// loopback): a whole session works.
	dialer := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, v.Srv.Addr().String())
	}}
	c := newClient(t, "http://vmcp.example.test:"+port+"/mcp", clientOpts{hc: &http.Client{Transport: tr}})
	t.Cleanup(tr.CloseIdleConnections)
	requireTools(t, toolNames(t, c), "weather_search")

	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	for _, tc := range []struct {
		host, origin string
		want         int
	}{
		{"vmcp.example.test:" + port, "", http.StatusOK},
		{"vmcp.example.test:" + port, "https://app.example.test", http.StatusOK},
		{"vmcp.example.test:" + port, "http://vmcp.example.test:" + port, http.StatusOK},
		{"localhost:" + port, "http://localhost:6274", http.StatusOK},
		{"evil.example.test:" + port, "", http.StatusForbidden},
		{"evil.example.test:" + port, "http://evil.example.test:" + port, http.StatusForbidden},
		{"vmcp.example.test:" + port, "https://evil.example.test", http.StatusForbidden},
		{"localhost:" + port, "https://evil.example.test", http.StatusForbidden},
	} {
		req, err := http.NewRequestWithContext(ctxT(t, 10*time.Second), http.MethodPost, v.URL, strings.NewReader(initialize))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tc.host
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := noKeepAlive.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("initialize with Host %q, Origin %q = %d %s, want %d", tc.host, tc.origin, resp.StatusCode, body, tc.want)
		}
	}
}
