package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/internal/benchpolicy"
)

// authzBenchBackends are the backends of the tools/list benchmark with an
// authorization policy: 10 of 1,000 tools each, 10,000 in all.
var authzBenchBackends = []string{"github", "jira", "slack", "k8s", "gitlab", "payments", "notion", "calendar", "db", "search"}

// authzBenchVerbs start the tool names of every backend, in turn: tool i
// of backend b is b_<verb>_item<i>, verb authzBenchVerbs[i%10].
var authzBenchVerbs = []string{"get", "list", "create", "update", "delete", "search", "read", "exec", "drop", "secret"}

// authzBenchRules are 20 rules of the shapes a deployment writes (the
// issue's four, adapted to these backends; literal, prefix, suffix and
// general globs; backend rules; conditions on the identity alone, on the
// identity and the item, on the item alone and on the arguments). Under
// anonymous auth the identity conditions are evaluated and come out
// false, or true where they test the subject.
func authzBenchRules() []config.AuthzRule {
	return []config.AuthzRule{
		{Effect: "allow", Tools: []string{"github_*"}, When: `has(identity.claims.groups) && "eng" in identity.claims.groups`},
		{Effect: "allow", Tools: []string{"jira_get_*", "jira_search_*"}},
		{Effect: "deny", Tools: []string{"db_drop_*"}, When: `has(request.arguments.cascade) && request.arguments.cascade == true`},
		{Effect: "allow", Resources: []string{"file:///srv/shared/*"}, Prompts: []string{"*"}, Backends: []string{"search"}},
		{Effect: "allow", Tools: []string{"slack_list_*", "slack_read_*"}},
		{Effect: "deny", Tools: []string{"*_delete_*"}, When: `identity.subject != "root"`},
		{Effect: "allow", Tools: []string{"k8s_get_*", "k8s_list_*"}, When: `has(identity.claims.groups) && "ops" in identity.claims.groups`},
		{Effect: "deny", Tools: []string{"k8s_exec_*"}},
		{Effect: "allow", Tools: []string{"gitlab_*_item?0??"}},
		{Effect: "allow", Backends: []string{"search"}},
		{Effect: "deny", Resources: []string{"file:///etc/*", "file:///root/*"}},
		{Effect: "allow", Resources: []string{"db://*/schema"}, When: `identity.subject != "anonymous"`},
		{Effect: "deny", Tools: []string{"payments_create_*"}, When: `request.arguments.amount > 1000`},
		{Effect: "allow", Tools: []string{"payments_*"}, When: `request.name.startsWith("payments_get_") || "finance" in identity.claims.groups`},
		{Effect: "allow", Prompts: []string{"release_?otes"}},
		{Effect: "deny", Backends: []string{"notion"}, When: `request.method != "tools/call"`},
		{Effect: "allow", Tools: []string{"notion_*"}, When: `backend == "notion"`},
		{Effect: "deny", Tools: []string{"*secret*"}},
		{Effect: "allow", Tools: []string{"calendar_*"}, When: `backend == "calendar" && identity.subject == "anonymous"`},
		{Effect: "allow", Tools: []string{"db_*"}},
	}
}

// authzBenchServer starts vmcp in front of the 10 backends of
// authzBenchBackends (in-process mcp-go servers) with policy as its
// authorization section (nil: none), and opens a client session.
func authzBenchServer(b *testing.B, policy *config.Authorization) (*Server, string) {
	b.Helper()
	var backends []config.Backend
	for _, name := range authzBenchBackends {
		s := mcpserver.NewMCPServer(name, "1", mcpserver.WithToolCapabilities(true))
		for i := range 1000 {
			s.AddTool(mcp.NewTool(fmt.Sprintf("%s_item%04d", authzBenchVerbs[i%len(authzBenchVerbs)], i),
				mcp.WithDescription(fmt.Sprintf("Tool number %d: looks up records in a realistic system and returns them.", i)),
				mcp.WithString("id", mcp.Required(), mcp.Description("record id")),
				mcp.WithNumber("limit", mcp.Description("how many records to return")),
			), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText("ok"), nil
			})
		}
		ts := httptest.NewServer(mcpserver.NewStreamableHTTPServer(s))
		b.Cleanup(ts.Close)
		backends = append(backends, config.Backend{Name: name, Transport: config.TransportStreamableHTTP, URL: ts.URL + "/mcp"})
	}
	cfg := testConfig(b, backends...)
	cfg.Authorization = policy
	return startBenchConfig(b, cfg)
}

// BenchmarkToolsListAuthz10000 measures tools/list of a 10,000-tool
// catalogue (10 backends) through the whole chain with the 20 rules of
// authzBenchRules (issue 14 item 6: at most 20 ms p50 for a cached
// outcome set):
//
//   - cached: the second and later requests of a caller, answered from
//     the list encoded for its outcome set;
//   - uncached: every request the first of its outcome set (the cache is
//     emptied before each): 10,000 decisions and the encoding of the
//     caller's list;
//   - no rules: the same catalogue with no authorization section, for
//     comparison.
//
// Besides ns/op it reports the p50 and p99 of the requests timed one by
// one, and how many tools the caller was shown.
func BenchmarkToolsListAuthz10000(b *testing.B) {
	policy := &config.Authorization{Default: config.EffectDeny, Rules: authzBenchRules()}
	if n := len(policy.Rules); n != 20 {
		b.Fatalf("%d rules, want 20", n)
	}
	const list = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	for _, bc := range []struct {
		name   string
		policy *config.Authorization
		cached bool
	}{
		{"cached", policy, true},
		{"uncached", policy, false},
		{"no rules", nil, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv, sid := authzBenchServer(b, bc.policy)
			rec := post(srv, sid, list)
			shown := countTools(b, rec)
			want := 10000
			if bc.policy != nil {
				want = authzBenchVisible
			}
			if shown != want {
				b.Fatalf("tools/list shows %d tools, want %d", shown, want)
			}
			size := rec.Body.Len()
			forget := func() {}
			if !bc.cached {
				forget = func() {
					l := srv.sync.toolList.Load()
					l.byKey.Clear()
					l.keys.Store(0)
				}
			}
			var times []time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				forget()
				start := time.Now()
				rec := post(srv, sid, list)
				times = append(times, time.Since(start))
				if rec.Code != http.StatusOK || rec.Body.Len() != size {
					b.Fatalf("tools/list = %d, %d bytes, want %d", rec.Code, rec.Body.Len(), size)
				}
			}
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(shown), "tools")
			b.ReportMetric(float64(size), "bytes")
		})
	}
}

// authzBenchVisible is how many of the 10,000 tools authzBenchRules show
// an anonymous caller: github none (rule 0 needs a group claim); jira get
// and search (200); slack list and read (200); k8s none (rule 6); gitlab
// the items whose number is ?0?? (100, less the delete and secret ones:
// 80); search all but delete and secret (800); payments get (100, rule
// 13's name test); notion all but delete and secret (800; rule 15 reads
// the method, tools/call for a tool); calendar all but delete and secret
// (800); db all but delete and secret (800; the drop rule reads the
// arguments, so a list counts it as not denying).
const authzBenchVisible = 200 + 200 + 80 + 800 + 100 + 800 + 800 + 800

// countTools returns the number of tools in a tools/list answer.
func countTools(b *testing.B, rec *httptest.ResponseRecorder) int {
	b.Helper()
	var resp struct {
		Result struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
		} `json:"result"`
	}
	if rec.Code != http.StatusOK {
		b.Fatalf("tools/list = %d %s", rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		b.Fatalf("tools/list: %v", err)
	}
	return len(resp.Result.Tools)
}

// authzCallRules are the 20 rules of the bench harness's -authz mode
// (internal/benchpolicy) for a backend named raw and its tool t: the call
// of raw_t evaluates the conditions of deny rules 4, 8, 9 and 15, none of
// which holds, and rule 19 allows it.
func authzCallRules() []config.AuthzRule { return benchpolicy.Rules("raw", "t", "id") }

// BenchmarkToolsCallAuthz is BenchmarkToolsCallRawBackend (tools/call
// through the whole chain to a backend that answers a fixed message) with
// no authorization section and with the 20 rules of authzCallRules: the
// ratio of the two is what the rules cost vmcp's own work per call,
// without the load harness's noise (the bench harness's -authz mode
// measures the same rules end to end).
func BenchmarkToolsCallAuthz(b *testing.B) {
	backend := startRawBackend(b, `[{"name":"t","inputSchema":{"type":"object"}},{"name":"remove_tool","inputSchema":{"type":"object"}}]`)
	for _, bc := range []struct {
		name   string
		policy *config.Authorization
	}{
		{"none", nil},
		{"rules", &config.Authorization{Default: config.EffectDeny, Rules: authzCallRules()}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := testConfig(b, config.Backend{Name: "raw", Transport: config.TransportStreamableHTTP, URL: backend.URL})
			cfg.Authorization = bc.policy
			srv, sid := startBenchConfig(b, cfg)
			// The policy is in force: rule 7 hides and denies remove_tool.
			denied := post(srv, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"raw_remove_tool","arguments":{}}}`)
			if reached := bytes.Contains(denied.Body.Bytes(), []byte(`"ok"`)); reached != (bc.policy == nil) {
				b.Fatalf("raw_remove_tool reached the backend: %v, want %v (%s)", reached, bc.policy == nil, denied.Body)
			}
			body := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"raw_t","arguments":{"id":"x"}}}`
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rec := post(srv, sid, body)
				if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"ok"`)) {
					b.Fatalf("tools/call = %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
