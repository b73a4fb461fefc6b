package test

// The stateless protocol revision (2026-07-28) through vmcp, with the Go
// SDK's conformance everything-server (stateless) as a prefixed backend, so
// that every relayed request is also renamed: mcp-go's client answers an
// input_required result through vmcp and the backend gets its answer,
// progress streams on the call's own response, and the backend's
// -32021 keeps its code and HTTP 400.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// elicitName answers every elicitation with a name.
type elicitName string

func (n elicitName) Elicit(context.Context, mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{
		Action: mcp.ElicitationResponseActionAccept, Content: map[string]any{"name": string(n)},
	}}, nil
}

func TestStatelessRevisionThroughVMCP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the everything-server")
	}
	es := buildEverythingServer(t)
	backend := startEverythingServer(t, es, false)
	v := startVMCP(t, fmt.Sprintf(`
name: modern
server: {host: 127.0.0.1, port: 0, path: /mcp}
backends:
  - {name: ev, transport: streamable-http, url: %q}
`, backend), nil)

	var (
		mu       sync.Mutex
		progress []float64
	)
	tr, err := transport.NewStreamableHTTP(v.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr, client.WithElicitationHandler(elicitName("Ada")))
	t.Cleanup(func() { _ = c.Close() })
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/progress" {
			mu.Lock()
			defer mu.Unlock()
			p, _ := n.Params.AdditionalFields["progress"].(float64)
			progress = append(progress, p)
		}
	})
	ctx := ctxT(t, 30*time.Second)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.ProtocolVersion20260728
	init.Params.ClientInfo = mcp.Implementation{Name: "vmcp-e2e-modern", Version: "1"}
	res, err := c.Initialize(ctx, init)
	if err != nil {
		t.Fatal(err)
	}
	if res.ProtocolVersion != mcp.ProtocolVersion20260728 {
		t.Fatalf("negotiated %q, want the stateless revision", res.ProtocolVersion)
	}

	t.Run("input_required answered by the client", func(t *testing.T) {
		if got := callText(t, c, "ev_test_input_required_result_elicitation", nil); got != "Hello, Ada!" {
			t.Fatalf("result = %q, want the backend's greeting for the name the client gave", got)
		}
	})

	t.Run("progress on the call's response", func(t *testing.T) {
		req := mcp.CallToolRequest{}
		req.Params.Name = "ev_test_tool_with_progress"
		req.Params.Meta = &mcp.Meta{ProgressToken: "tok-1"}
		r, err := c.CallTool(ctxT(t, 10*time.Second), req)
		if err != nil {
			t.Fatal(err)
		}
		if got := resultText(r); got != "tok-1" {
			t.Fatalf("result = %q, want the progress token echoed", got)
		}
		mu.Lock()
		defer mu.Unlock()
		if fmt.Sprint(progress) != "[0 50 100]" {
			t.Fatalf("progress = %v, want 0, 50, 100 before the result", progress)
		}
	})

	t.Run("missing client capability keeps its code and status", func(t *testing.T) {
		body := `{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"ev_test_missing_capability","arguments":{},` +
			`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
		req, err := http.NewRequestWithContext(ctxT(t, 10*time.Second), http.MethodPost, v.URL, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, val := range map[string]string{
			"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
			"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "ev_test_missing_capability",
		} {
			req.Header.Set(k, val)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var msg struct {
			ID    int `json:"id"`
			Error struct {
				Code int `json:"code"`
				Data struct {
					RequiredCapabilities map[string]any `json:"requiredCapabilities"`
				} `json:"data"`
			} `json:"error"`
		}
		if err := json.Unmarshal(raw, &msg); err != nil || resp.StatusCode != http.StatusBadRequest || msg.ID != 41 ||
			msg.Error.Code != -32021 || msg.Error.Data.RequiredCapabilities["sampling"] == nil {
			t.Fatalf("answer = %d %s, want 400 with -32021 naming sampling for id 41", resp.StatusCode, raw)
		}
	})
}
