package authz

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/parse"
)

// BenchmarkStage measures the whole authz stage (issue 14 item 6: at most
// 2 µs per call with 20 rules) on allowed calls: the parsed message and the
// identity taken from the context, the backend looked up, the policy's 20
// rules (benchRules) decided, the decision counted, next called. The
// request is built once by the real parse stage from a real body, with the
// identity on its context as the auth stage puts it; next does nothing.
func BenchmarkStage(b *testing.B) {
	p := mustNew(b, "deny", benchRules()...)
	backends := map[string]string{
		"github_create_pull_request": "github",
		"jira_get_issue":             "jira",
		"payments_refund":            "payments",
		"weather":                    "weather",
		"db_drop_table":              "db",
	}
	var allowed, denied atomic.Int64
	stage := Stage(p, StageOptions{
		// The server's is a lookup in the installed catalogue's routes.
		Backend: func(_, name string) string { return backends[name] },
		Deny: func(w http.ResponseWriter, _ *http.Request, _ *parse.Parsed) {
			w.WriteHeader(http.StatusNotFound)
		},
		// The server's adds to an OpenTelemetry counter.
		Decided: func(_ context.Context, effect string) {
			if effect == "allow" {
				allowed.Add(1)
			} else {
				denied.Add(1)
			}
		},
	})
	var reached int
	h := stage(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached++ }))

	engineer := oidc("alice", "eng", "finance")
	engineer.Claims["email"] = "alice@example.com"
	anonymous := auth.Identity{Issuer: auth.AnonymousIssuer, Subject: auth.AnonymousSubject}
	tests := []struct {
		name string
		id   auth.Identity
		body string
		note string
	}{
		// Allowed by rule 1 (no condition) after the deny rules' selectors
		// and conditions: the cheapest allowed call.
		{"no condition", engineer, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"jira_get_issue","arguments":{"key":"ABC-1"}}}`, ""},
		// Allowed by rule 0, whose condition reads the identity's claims.
		{"identity condition", engineer, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"github_create_pull_request","arguments":{"owner":"o","repo":"r","title":"t","head":"h","base":"main"}}}`, ""},
		// The deny rule's argument condition (amount > 1000) is evaluated,
		// so the arguments are decoded, then rule 13's identity condition
		// allows.
		{"argument condition", engineer, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"payments_refund","arguments":{"amount":50,"currency":"EUR","reason":"duplicate charge","order":"A-1029"}}}`, ""},
		// The issue's own argument rule (cascade == true) evaluated and
		// not holding; nothing allows db_drop_table, so this is denied by
		// the default: the stage's cost with a (no-op) answer.
		{"argument condition, denied", engineer, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"db_drop_table","arguments":{"table":"t","cascade":false}}}`, "deny"},
		{"anonymous, no condition", anonymous, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"weather","arguments":{"city":"Oslo"}}}`, ""},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			r := parsedRequest(b, tt.body, tt.id)
			w := httptest.NewRecorder()
			before := reached
			h.ServeHTTP(w, r)
			if got, want := reached-before, 1; tt.note == "deny" {
				if got != 0 || w.Code != http.StatusNotFound {
					b.Fatalf("want a denial, got reached %d, status %d", got, w.Code)
				}
			} else if got != want {
				b.Fatalf("call not allowed (status %d)", w.Code)
			}
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
		})
	}
}

// parsedRequest returns a POST of body as the parse stage passes it on (a
// *parse.Parsed on its context), with id on the context under it.
func parsedRequest(b *testing.B, body string, id auth.Identity) *http.Request {
	b.Helper()
	var out *http.Request
	parser := parse.New(parse.Options{})(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { out = r }))
	req := httptest.NewRequest(http.MethodPost, "/mcp", bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	req = req.WithContext(auth.WithIdentity(req.Context(), id))
	rec := httptest.NewRecorder()
	parser.ServeHTTP(rec, req)
	if out == nil {
		b.Fatalf("parse refused %s: %d %s", body, rec.Code, rec.Body)
	}
	if p, ok := parse.FromContext(out.Context()); !ok || p.Method != "tools/call" || p.ResourceID == "" {
		b.Fatalf("parse: %+v", p)
	}
	return out
}
