package test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// auditEvents reads the audit file at path: one JSON object per line.
func auditEvents(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var events []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		events = append(events, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return events
}

// auditKeys are the fields an expected event is compared on.
var auditKeys = []string{"method", "name", "via", "backend", "originalName", "outcome"}

// project keeps the auditKeys of each event, so a trail can be compared
// with what is expected exactly, event for event.
func project(events []map[string]any) []map[string]any {
	out := make([]map[string]any, len(events))
	for i, e := range events {
		p := map[string]any{}
		for _, k := range auditKeys {
			if v, ok := e[k]; ok {
				p[k] = v
			}
		}
		out[i] = p
	}
	return out
}

func ev(method, name, backend, original, outcome string) map[string]any {
	e := map[string]any{"method": method, "name": name, "outcome": outcome}
	if backend != "" {
		e["backend"], e["originalName"] = backend, original
	}
	return e
}

func requireTrail(t *testing.T, got []map[string]any, want ...map[string]any) {
	t.Helper()
	if p := project(got); !reflect.DeepEqual(p, want) {
		var b strings.Builder
		for _, e := range got {
			j, _ := json.Marshal(e)
			fmt.Fprintf(&b, "  %s\n", j)
		}
		t.Fatalf("audit trail differs\n got %v\nwant %v\nfile:\n%s", p, want, b.String())
	}
}

// TestAuditTrail drives vmcp with mcp-go's client over all three
// transports and checks that the audit file holds exactly one event per
// tools/call, resources/read and prompts/get, with backend, original name
// and outcome, plus the rate limiter's rejection; lists, initialize and
// notifications are not in it, and arguments are left out.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	f := startFleet(t, fmt.Sprintf(`audit: {enabled: true, output: %q}
rateLimiting:
  tools:
    - {name: weather_echo, shared: {maxTokens: 1, refillPeriod: 1h}}
`, path), nil)
	c := newClient(t, f.V.URL, clientOpts{})
	ctx := ctxT(t, 60*time.Second)

	requireTools(t, toolNames(t, c), "weather_echo", "notes_fail", "local_echo")
	if _, err := c.ListResources(ctx, mcp.ListResourcesRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListPrompts(ctx, mcp.ListPromptsRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := callText(t, c, "weather_echo", map[string]any{"text": "secret-argument"}); got != "secret-argument" {
		t.Fatalf("weather_echo = %q", got)
	}
	if _, err := tryCall(t, c, "weather_echo", map[string]any{"text": "again"}); err == nil || !strings.Contains(err.Error(), "Rate limit exceeded") {
		t.Fatalf("second weather_echo: %v; want the rate-limit error", err)
	}
	if res := callTool(t, c, "notes_fail", nil); !res.IsError {
		t.Fatalf("notes_fail: %+v; want a tool error", res)
	}
	callText(t, c, "local_echo", map[string]any{"text": "x"})
	readme := "demo://" + f.Weather.Name + "/readme"
	item := "demo://" + f.Notes.Name + "/items/42"
	for _, uri := range []string{readme, item} {
		if _, err := c.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: uri}}); err != nil {
			t.Fatalf("resources/read %s: %v", uri, err)
		}
	}
	if _, err := c.GetPrompt(ctx, mcp.GetPromptRequest{Params: mcp.GetPromptParams{Name: "notes_greet", Arguments: map[string]string{"who": "alice"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := tryCall(t, c, "no_such_tool", nil); err == nil {
		t.Fatal("tools/call no_such_tool succeeded")
	}

	// Shutdown writes what is queued and closes the file.
	if err := f.V.Srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	events := auditEvents(t, path)
	requireTrail(t, events,
		ev("tools/call", "weather_echo", "weather", "echo", "success"),
		ev("tools/call", "weather_echo", "", "", "rate_limited"),
		ev("tools/call", "notes_fail", "notes", "fail", "tool_error"),
		ev("tools/call", "local_echo", "local", "echo", "success"),
		ev("resources/read", readme, "weather", readme, "success"),
		ev("resources/read", item, "notes", item, "success"),
		ev("prompts/get", "notes_greet", "notes", "greet", "success"),
		ev("tools/call", "no_such_tool", "", "", "bad_request"),
	)
	for i, e := range events {
		if _, ok := e["arguments"]; ok {
			t.Errorf("event %d has arguments without includeArguments: %v", i, e)
		}
		if e["clientAddr"] == nil || e["time"] == nil {
			t.Errorf("event %d lacks clientAddr or time: %v", i, e)
		}
		if e["outcome"] == "rate_limited" {
			continue // recorded by the rate limiter, before the response
		}
		if e["requestId"] == nil || e["sessionId"] != c.GetSessionId() || e["responseBytes"] == nil || e["durationMs"] == nil {
			t.Errorf("event %d lacks request id, session id %q, size or duration: %v", i, c.GetSessionId(), e)
		}
	}
}

// TestAuditBinaryRotation runs the vmcp binary with the optimizer and
// includeArguments: call_tool is audited under the tool it calls (via
// call_tool) with its arguments, truncated past maxArgumentBytes, and
// find_tool is not audited. After the file is renamed, SIGHUP makes vmcp
// write to a new file at the path; the renamed file keeps the earlier
// events.
func TestAuditBinaryRotation(t *testing.T) {
	t.Parallel()
	weather := startDemo(t, "weather", "weather", "streamable-http", "")
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	cfgPath := filepath.Join(dir, "vmcp.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`name: e2e-audit
server: {host: 127.0.0.1, port: 0, drainGrace: 0s, shutdownTimeout: 5s}
backends:
  - {name: weather, transport: streamable-http, url: %q}
optimizer: {enabled: true}
audit: {enabled: true, output: %q, includeArguments: true, maxArgumentBytes: 24}
`, weather.URL, path))

	bin := startBinaryVMCP(t, cfgPath)

	c := newClient(t, bin.URL, clientOpts{})
	callViaOptimizer := func(text string) {
		t.Helper()
		got := callText(t, c, "call_tool", map[string]any{"tool_name": "weather_echo", "parameters": map[string]any{"text": text}})
		if got != text {
			t.Fatalf("call_tool weather_echo(%q) = %q", text, got)
		}
	}
	callTool(t, c, "find_tool", map[string]any{"tool_description": "echo a text back"})
	callViaOptimizer("short")
	callViaOptimizer(strings.Repeat("long ", 20))
	eventually(t, 10*time.Second, "two events in the audit file", func() error {
		if n := len(auditEvents(t, path)); n != 2 {
			return fmt.Errorf("%d events", n)
		}
		return nil
	})

	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := bin.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the reopen log line", func() error {
		if !strings.Contains(bin.Logs.String(), `msg="audit log reopened"`) {
			return errors.New("not yet")
		}
		return nil
	})
	callViaOptimizer("after")

	if err := bin.stop(t); err != nil {
		t.Fatalf("vmcp serve after SIGTERM: %v", err)
	}

	viaCall := map[string]any{"method": "tools/call", "name": "weather_echo", "via": "call_tool", "backend": "weather", "originalName": "echo", "outcome": "success"}
	old, cur := auditEvents(t, rotated), auditEvents(t, path)
	requireTrail(t, old, viaCall, viaCall)
	requireTrail(t, cur, viaCall)
	if a, ok := old[0]["arguments"].(map[string]any); !ok || a["text"] != "short" || old[0]["argumentsTruncated"] != nil {
		t.Errorf("short call: arguments %v (%T); want them as JSON, not truncated", old[0]["arguments"], old[0]["arguments"])
	}
	if a, ok := old[1]["arguments"].(string); !ok || a != `{"text":"long long long ` || old[1]["argumentsTruncated"] != true {
		t.Errorf("long call: arguments %#v truncated %v; want the first 24 bytes as a string, marked", old[1]["arguments"], old[1]["argumentsTruncated"])
	}
	if a, ok := cur[0]["arguments"].(map[string]any); !ok || a["text"] != "after" {
		t.Errorf("call after rotation: arguments %v", cur[0]["arguments"])
	}
}
