package aggregator_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/aggregator"
)

// tool returns a tool with a small input schema, so that tests also notice
// when Build loses or shares fields other than the name.
func tool(name string) mcp.Tool {
	return mcp.NewTool(name,
		mcp.WithDescription("original description of "+name),
		mcp.WithString("query", mcp.Required(), mcp.Description("what to look for")),
		mcp.WithNumber("limit", mcp.Description("how many results")),
	)
}

func tools(names ...string) []mcp.Tool {
	out := make([]mcp.Tool, 0, len(names))
	for _, n := range names {
		out = append(out, tool(n))
	}
	return out
}

func prompts(names ...string) []mcp.Prompt {
	out := make([]mcp.Prompt, 0, len(names))
	for _, n := range names {
		out = append(out, mcp.NewPrompt(n, mcp.WithPromptDescription("prompt "+n),
			mcp.WithArgument("topic", mcp.RequiredArgument())))
	}
	return out
}

func resources(uris ...string) []mcp.Resource {
	out := make([]mcp.Resource, 0, len(uris))
	for _, u := range uris {
		out = append(out, mcp.NewResource(u, "resource "+u))
	}
	return out
}

func templates(raws ...string) []mcp.ResourceTemplate {
	out := make([]mcp.ResourceTemplate, 0, len(raws))
	for _, r := range raws {
		out = append(out, mcp.NewResourceTemplate(r, "template "+r))
	}
	return out
}

func rawTemplate(t mcp.ResourceTemplate) string {
	if t.URITemplate == nil || t.URITemplate.Template == nil {
		return ""
	}
	return t.URITemplate.Raw()
}

func toolNames(ts []mcp.Tool) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out
}

func promptNames(ps []mcp.Prompt) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// logCapture is a slog JSON handler writing to a buffer, with helpers to
// read back the records.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func newLogCapture() (*logCapture, *slog.Logger) {
	l := &logCapture{}
	return l, slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// records returns every logged record as decoded JSON.
func (l *logCapture) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, rec)
	}
	return out
}

// warning is what a test expects of one WARN record: the value of the key
// naming the conflicting item (name, uri or uriTemplate), the backend kept
// and the backends dropped.
type warning struct {
	key, value string
	kept       string
	dropped    []string
}

// dropped normalises the "dropped" attribute, which is a list for tools and
// prompts and a single backend for resources.
func droppedOf(v any) []string {
	switch d := v.(type) {
	case string:
		return []string{d}
	case []any:
		out := make([]string, 0, len(d))
		for _, x := range d {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	return nil
}

// assertWarnings checks that every expected warning was logged at WARN
// level, and that no other WARN record was logged.
func (l *logCapture) assertWarnings(t *testing.T, want []warning) {
	t.Helper()
	var got []warning
	for _, rec := range l.records(t) {
		if rec["level"] != "WARN" {
			continue
		}
		w := warning{kept: fmt.Sprint(rec["kept"]), dropped: droppedOf(rec["dropped"])}
		slices.Sort(w.dropped) // the order of dropped backends is not part of the contract
		for _, k := range []string{"name", "uri", "uriTemplate"} {
			if v, ok := rec[k]; ok {
				w.key, w.value = k, fmt.Sprint(v)
			}
		}
		got = append(got, w)
	}
	sortW := func(ws []warning) {
		slices.SortFunc(ws, func(a, b warning) int {
			return strings.Compare(a.key+"\x00"+a.value, b.key+"\x00"+b.value)
		})
	}
	want = slices.Clone(want)
	for i := range want {
		want[i].dropped = slices.Sorted(slices.Values(want[i].dropped))
	}
	sortW(got)
	sortW(want)
	if len(got) != len(want) {
		t.Fatalf("warnings:\n got  %+v\n want %+v\nlog:\n%s", got, want, l.buf.String())
	}
	for i := range want {
		if got[i].key != want[i].key || got[i].value != want[i].value || got[i].kept != want[i].kept ||
			!slices.Equal(got[i].dropped, want[i].dropped) {
			t.Errorf("warning %d:\n got  %+v\n want %+v", i, got[i], want[i])
		}
	}
}

// assertRoutes checks that the catalogue holds exactly the tools and
// prompts of want, each routed as given, and that its slices agree with its
// lookups.
func assertRoutes(t *testing.T, c *aggregator.Catalogue, wantTools, wantPrompts map[string]aggregator.Route) {
	t.Helper()
	if got, want := toolNames(c.Tools), sortedKeys(wantTools); !slices.Equal(got, want) {
		t.Errorf("tools:\n got  %q\n want %q", got, want)
	}
	for name, want := range wantTools {
		got, ok := c.Tool(name)
		if !ok || got != want {
			t.Errorf("Tool(%q) = %+v, %v; want %+v, true", name, got, ok, want)
		}
	}
	if got, want := promptNames(c.Prompts), sortedKeys(wantPrompts); !slices.Equal(got, want) {
		t.Errorf("prompts:\n got  %q\n want %q", got, want)
	}
	for name, want := range wantPrompts {
		got, ok := c.Prompt(name)
		if !ok || got != want {
			t.Errorf("Prompt(%q) = %+v, %v; want %+v, true", name, got, ok, want)
		}
	}
	// ToolCount per backend agrees with the routes.
	perBackend := map[string]int{}
	for _, r := range wantTools {
		perBackend[r.Backend]++
	}
	for b, n := range perBackend {
		if got := c.ToolCount(b); got != n {
			t.Errorf("ToolCount(%q) = %d, want %d", b, got, n)
		}
	}
}
