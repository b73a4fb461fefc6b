package backends_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/config"
)

// childEnv switches the test binary into one of the helper processes the
// stdio tests start: "stdio" serves testServer on stdin/stdout, "sleep"
// idles as a grandchild, "fail" writes to stderr and exits 3.
const childEnv = "VMCP_BACKENDS_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "stdio":
		if err := server.ServeStdio(testServer("stdio")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "sleep":
		time.Sleep(time.Hour)
		os.Exit(0)
	case "stubborn":
		// Serves until stdin closes, then lingers until a signal ends it,
		// as some servers do.
		_ = server.ServeStdio(testServer("stubborn"))
		time.Sleep(time.Hour)
		os.Exit(0)
	case "fail":
		fmt.Fprintln(os.Stderr, "demo backend: missing API key")
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// rawInputSchema uses keywords mcp-go's ToolInputSchema has no field for
// ($schema, top-level oneOf) and a key order a map round trip would change.
const rawInputSchema = `{"type":"object","oneOf":[{"required":["a"]},{"required":["b"]}],"properties":{"b":{"type":"integer"},"a":{"type":"string"}},"$schema":"https://json-schema.org/draft/2020-12/schema"}`

// rawOutputSchema likewise has $defs and anyOf.
const rawOutputSchema = `{"type":"object","anyOf":[{"$ref":"#/$defs/ok"}],"$defs":{"ok":{"type":"object"}}}`

// testTools are the tools of testServer, in no particular order.
var testTools = []string{"echo", "fail", "raw", "add_tool", "meta", "env", "cwd", "pgid", "spawn", "sample", "progress"}

// completer completes every prompt argument with "<backend>:<prompt>:<value>".
type completer string

func (c completer) CompletePromptArgument(_ context.Context, prompt string, arg mcp.CompleteArgument, _ mcp.CompleteContext) (*mcp.Completion, error) {
	return &mcp.Completion{Values: []string{string(c) + ":" + prompt + ":" + arg.Value}}, nil
}

// testServer is every test backend: in process behind streamable HTTP or
// SSE, or in a stdio child. It pages its lists two at a time, so every
// list needs cursors.
func testServer(name string) *server.MCPServer {
	s := server.NewMCPServer(name, "1",
		server.WithToolCapabilities(true),
		server.WithResourceCapabilities(false, true),
		server.WithPromptCapabilities(true),
		server.WithPaginationLimit(2),
		server.WithCompletions(),
		server.WithPromptCompletionProvider(completer(name)),
	)
	text := func(s string) (*mcp.CallToolResult, error) { return mcp.NewToolResultText(s), nil }
	s.AddTool(mcp.NewTool("echo", mcp.WithString("text")), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return text(name + ": " + req.GetString("text", ""))
	})
	s.AddTool(mcp.NewTool("fail"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultError("it failed"), nil
	})
	raw := mcp.NewToolWithRawSchema("raw", "raw schemas", json.RawMessage(rawInputSchema))
	raw.RawOutputSchema = json.RawMessage(rawOutputSchema)
	s.AddTool(raw, func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) { return text("raw") })
	s.AddTool(mcp.NewTool("add_tool", mcp.WithString("name")), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		added := req.GetString("name", "added")
		s.AddTool(mcp.NewTool(added), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) { return text(added) })
		return text("added " + added)
	})
	s.AddTool(mcp.NewTool("env", mcp.WithString("name")), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return text(os.Getenv(req.GetString("name", "")))
	})
	// meta returns the _meta of the call as the backend received it.
	s.AddTool(mcp.NewTool("meta"), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		b, err := json.Marshal(req.Params.Meta)
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		return text(string(b))
	})
	s.AddTool(mcp.NewTool("cwd"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		wd, err := os.Getwd()
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		return text(wd)
	})
	s.AddTool(mcp.NewTool("pgid"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return text(strconv.Itoa(syscall.Getpgrp()))
	})
	// spawn starts a grandchild that inherits stderr, as the servers npx
	// and uvx start do, and leaves it running. Only the stdio test calls it.
	s.AddTool(mcp.NewTool("spawn"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		exe, err := os.Executable()
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), childEnv+"=sleep")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		return text(strconv.Itoa(cmd.Process.Pid))
	})
	// sample asks the client's model and returns its answer as JSON.
	s.AddTool(mcp.NewTool("sample"), func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		req := mcp.CreateMessageRequest{}
		req.Messages = []mcp.SamplingMessage{{Role: mcp.RoleUser, Content: mcp.NewTextContent("hi")}}
		req.MaxTokens = 10
		res, err := s.RequestSampling(ctx, req)
		if err != nil {
			return mcp.NewToolResultError("sampling: " + err.Error()), nil
		}
		b, _ := json.Marshal(res.Content)
		return text(string(b))
	})
	// progress sends n progress notifications for the call's token, then
	// holds the call for holdMs or until it is cancelled.
	s.AddTool(mcp.NewTool("progress", mcp.WithNumber("n"), mcp.WithNumber("holdMs")), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if req.Params.Meta != nil && req.Params.Meta.ProgressToken != nil {
			n := req.GetInt("n", 1)
			for i := 1; i <= n; i++ {
				_ = s.SendNotificationToClient(ctx, "notifications/progress", map[string]any{
					"progressToken": req.Params.Meta.ProgressToken, "progress": i, "total": n,
				})
			}
		}
		select {
		case <-time.After(time.Duration(req.GetInt("holdMs", 0)) * time.Millisecond):
			return text("done")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	for i := range 3 {
		uri := fmt.Sprintf("test://%s/doc%d", name, i)
		s.AddResource(mcp.NewResource(uri, fmt.Sprintf("doc%d", i)), func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, Text: name}}, nil
		})
		s.AddPrompt(mcp.NewPrompt(fmt.Sprintf("prompt%d", i)), func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return mcp.NewGetPromptResult(name, nil), nil
		})
		s.AddResourceTemplate(mcp.NewResourceTemplate(fmt.Sprintf("test://%s/t%d/{id}", name, i), fmt.Sprintf("t%d", i)),
			func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) { return nil, nil })
	}
	return s
}

// httpBackend is an in-process backend server.
type httpBackend struct {
	mcp *server.MCPServer
	ts  *httptest.Server
	url string
}

// wrapFunc wraps a backend's HTTP handler, e.g. to record requests.
type wrapFunc func(http.Handler) http.Handler

// startHTTPBackend serves testServer(name) over transport, behind wrap if
// not nil. The server is killed when the test ends.
func startHTTPBackend(t *testing.T, name string, transport config.Transport, wrap wrapFunc) *httpBackend {
	t.Helper()
	b := &httpBackend{mcp: testServer(name)}
	var (
		h      http.Handler
		setURL func(string)
	)
	switch transport {
	case config.TransportStreamableHTTP:
		h = server.NewStreamableHTTPServer(b.mcp)
		setURL = func(u string) { b.url = u + "/mcp" }
	case config.TransportSSE:
		sse := server.NewSSEServer(b.mcp)
		h = sse
		setURL = func(u string) {
			server.WithBaseURL(u)(sse)
			b.url = u + "/sse"
		}
	default:
		t.Fatalf("no HTTP transport %q", transport)
	}
	if wrap != nil {
		h = wrap(h)
	}
	b.ts = httptest.NewServer(h)
	setURL(b.ts.URL)
	t.Cleanup(b.kill)
	return b
}

// kill ends the backend at once: open streams are cut, not drained. The
// listener goes first, so that a client reconnecting meanwhile cannot open
// a stream that Close would wait for.
func (b *httpBackend) kill() {
	_ = b.ts.Listener.Close()
	b.ts.CloseClientConnections()
	b.ts.Close()
}

func (b *httpBackend) config(name string, transport config.Transport) config.Backend {
	return config.Backend{Name: name, Transport: transport, URL: b.url, ConnectTimeout: config.Duration(5 * time.Second)}
}

// stdioConfig is a stdio backend running this test binary as testServer.
func stdioConfig(t *testing.T, name string) config.Backend {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return config.Backend{
		Name:      name,
		Transport: config.TransportStdio,
		Command:   exe,
		// Should the child not see childEnv it runs no tests and exits.
		Args: []string{"-test.run=^$"},
		// A race-enabled child otherwise sleeps a second before exiting.
		Env:            map[string]string{childEnv: "stdio", "GORACE": "atexit_sleep_ms=0"},
		ConnectTimeout: config.Duration(10 * time.Second),
	}
}

// changes records OnChange calls.
type changes struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *changes) OnChange(_ context.Context, backend string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[backend]++
	return nil
}

func (c *changes) count(backend string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[backend]
}

func testLogger() *slog.Logger {
	if os.Getenv("VMCP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testOptions are short timings so that reconnects happen within a test.
func testOptions(ch *changes) backends.Options {
	o := backends.Options{
		Logger:       testLogger(),
		PingInterval: -1,
		MaxBackoff:   200 * time.Millisecond,
	}
	if ch != nil {
		o.OnChange = ch.OnChange
	}
	return o
}

// startManager creates and starts a Manager that is closed when the test
// ends.
func startManager(t *testing.T, cfgs []config.Backend, auth config.OutgoingAuth, opts backends.Options) *backends.Manager {
	t.Helper()
	m, err := backends.New(cfgs, auth, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m.Start(ctx)
	return m
}

func status(m *backends.Manager, name string) backends.Status {
	for _, s := range m.Status() {
		if s.Name == name {
			return s
		}
	}
	return backends.Status{}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func session(t *testing.T, m *backends.Manager, name string) *backends.Session {
	t.Helper()
	s, err := m.Session(context.Background(), backends.Client{}, name)
	if err != nil {
		t.Fatalf("Session(%q): %v", name, err)
	}
	return s
}

// call calls tool with args and returns the text of the result.
func call(t *testing.T, s *backends.Session, tool string, args map[string]any) string {
	t.Helper()
	res, err := callTool(s, tool, args)
	if err != nil {
		t.Fatalf("CallTool(%s): %v", tool, err)
	}
	if res.IsError {
		t.Fatalf("CallTool(%s) failed: %s", tool, resultText(res))
	}
	return resultText(res)
}

func callTool(s *backends.Session, tool string, args map[string]any) (*mcp.CallToolResult, error) {
	var req mcp.CallToolRequest
	req.Params.Name = tool
	req.Params.Arguments = args
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.CallTool(ctx, req)
}

func resultText(res *mcp.CallToolResult) string {
	var b bytes.Buffer
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}
