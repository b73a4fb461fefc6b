package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/config"
)

// TestShutdownDrainGrace: from the moment Shutdown starts, /readyz is 503
// "draining" while /healthz stays 200; for server.drainGrace a new call is
// still served; then the in-flight call finishes and Shutdown returns.
func TestShutdownDrainGrace(t *testing.T) {
	t.Parallel()
	const grace = 300 * time.Millisecond
	const slow = 800 * time.Millisecond
	started := make(chan struct{})
	s := mcpserver.NewMCPServer("b", "1", mcpserver.WithToolCapabilities(true))
	s.AddTool(mcp.NewTool("wait"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		close(started)
		time.Sleep(slow)
		return mcp.NewToolResultText("done"), nil
	})
	s.AddTool(mcp.NewTool("echo", mcp.WithString("text")), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText(req.GetString("text", "")), nil
	})
	h := mcpserver.NewStreamableHTTPServer(s)
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	cfg := testConfig(t, config.Backend{Name: "b", Transport: config.TransportStreamableHTTP, URL: ts.URL + "/mcp"})
	cfg.Server.DrainGrace = config.Duration(grace)
	srv, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.Addr().String()
	if code, _ := getReady(t, base); code != http.StatusOK {
		t.Fatalf("readyz before Shutdown = %d, want 200", code)
	}
	c, err := client.NewStreamableHttpClient(base+"/mcp", transport.WithContinuousListening())
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
	inFlight := make(chan error, 1)
	go func() {
		req := mcp.CallToolRequest{}
		req.Params.Name = "b_wait"
		res, err := c.CallTool(ctx, req)
		if err == nil && (res.IsError || len(res.Content) == 0 || res.Content[0].(mcp.TextContent).Text != "done") {
			err = errUnexpected(res)
		}
		inFlight <- err
	}()
	<-started

	begin := time.Now()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()

	// Not ready at once: well before the grace is over.
	for {
		code, body := getReady(t, base)
		if code == http.StatusServiceUnavailable {
			if body.Ready || body.Reason != "draining" {
				t.Fatalf("readyz while draining = %+v, want ready false, reason draining", body)
			}
			break
		}
		if time.Since(begin) > grace/2 {
			t.Fatalf("readyz still %d %v after Shutdown began", code, time.Since(begin))
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := http.Get(base + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz during the grace = %v, %v; want 200", resp, err)
	}
	resp.Body.Close()
	// A new call during the grace is served.
	req := mcp.CallToolRequest{}
	req.Params.Name = "b_echo"
	req.Params.Arguments = map[string]any{"text": "still here"}
	res, err := c.CallTool(ctx, req)
	if err != nil || res.IsError || res.Content[0].(mcp.TextContent).Text != "still here" {
		t.Fatalf("call during the grace = %+v, %v; want it served", res, err)
	}
	if d := time.Since(begin); d >= grace {
		t.Fatalf("the call during the grace ended %v after Shutdown began, after the grace (%v)", d, grace)
	}

	if err := <-inFlight; err != nil {
		t.Fatalf("in-flight call = %v, want its result", err)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if d := time.Since(begin); d < grace || d < slow/2 {
		t.Fatalf("Shutdown returned after %v, before the grace and the in-flight call", d)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown = %v, want the first one's nil", err)
	}
}

// TestShutdownContextCutsTheGrace: ctx bounds the grace as it bounds the
// drain; an idle server then shuts down cleanly.
func TestShutdownContextCutsTheGrace(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, config.Backend{Name: "down", Transport: config.TransportStreamableHTTP, URL: "http://127.0.0.1:1/mcp"})
	cfg.Server.DrainGrace = config.Duration(time.Minute)
	srv, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown of an idle server = %v, want nil", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("Shutdown took %v; ctx ended after 100ms", d)
	}
}

type readyBody struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason"`
}

func getReady(t *testing.T, base string) (int, readyBody) {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	var b readyBody
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatalf("readyz body: %v", err)
	}
	return resp.StatusCode, b
}

type unexpectedResult struct{ res *mcp.CallToolResult }

func (u unexpectedResult) Error() string {
	b, _ := json.Marshal(u.res)
	return "unexpected result " + string(b)
}

func errUnexpected(res *mcp.CallToolResult) error { return unexpectedResult{res} }
