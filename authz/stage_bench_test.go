package authz

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/internal/benchpolicy"
	"github.com/vmcp/vmcp/parse"
)

// BenchmarkStage measures the whole authz stage (issue 14 item 6: at most
// 2 µs per call with 20 rules), mostly on allowed calls: the parsed message
// and the identity taken from the context, the backend looked up, the
// policy's 20 rules (benchRules, or the bench harness's) decided, the
// decision counted, next called. The request is built once by the real
// parse stage from a real body, with the identity on its context as the
// auth stage puts it; next does nothing. A denied call's answer is a bare
// 404 here (the server's answers as an unknown name).
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
		Backend: func(_, _, name string) string { return backends[name] },
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
	h := stage(markedDenied(&reached))

	engineer := oidc("alice", "eng", "finance")
	engineer.Claims["email"] = "alice@example.com"
	anonymous := auth.Identity{Issuer: auth.AnonymousIssuer, Subject: auth.AnonymousSubject}
	tests := []struct {
		name string
		id   auth.Identity
		body string
		deny bool
	}{
		// Allowed by rule 1 (no condition) after the deny rules' selectors
		// and conditions: the cheapest allowed call.
		{"no condition", engineer, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"jira_get_issue","arguments":{"key":"ABC-1"}}}`, false},
		// Allowed by rule 0, whose condition reads the identity's claims.
		{"identity condition", engineer, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"github_create_pull_request","arguments":{"owner":"o","repo":"r","title":"t","head":"h","base":"main"}}}`, false},
		// The deny rule's argument condition (amount > 1000) is evaluated,
		// so the arguments are decoded, then rule 13's identity condition
		// allows.
		{"argument condition", engineer, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"payments_refund","arguments":{"amount":50,"currency":"EUR","reason":"duplicate charge","order":"A-1029"}}}`, false},
		// The issue's own argument rule (cascade == true) evaluated and
		// not holding; nothing allows db_drop_table, so this is denied by
		// the default: the stage's cost with a (no-op) answer.
		{"argument condition, denied", engineer, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"db_drop_table","arguments":{"table":"t","cascade":false}}}`, true},
		{"anonymous, no condition", anonymous, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"weather","arguments":{"city":"Oslo"}}}`, false},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			benchStage(b, h, &reached, tt.body, tt.id, tt.deny)
		})
	}

	// The rules of the bench harness's -authz mode (bench/authz.go) and its
	// call: an anonymous tools/call of demo_echo, for which five
	// conditions are evaluated (the arguments, the identity, the name, the
	// method; then the backend and the identity, which allow it).
	harness := Stage(mustNew(b, "deny", harnessRules()...), StageOptions{
		Backend: func(string, string, string) string { return "demo" },
		Decided: func(context.Context, string) { allowed.Add(1) },
	})(markedDenied(&reached))
	b.Run("bench harness rules, anonymous echo", func(b *testing.B) {
		benchStage(b, harness, &reached, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"demo_echo","arguments":{"text":"hello"}}}`, anonymous, false)
	})
}

// benchStage runs h, the stage over a handler that counts calls in
// reached, on the request of body from id, after checking that it is
// denied or allowed as wanted.
func benchStage(b *testing.B, h http.Handler, reached *int, body string, id auth.Identity, deny bool) {
	r := parsedRequest(b, body, id)
	w := httptest.NewRecorder()
	before := *reached
	h.ServeHTTP(w, r)
	if got := *reached - before; deny {
		if got != 0 || w.Code != http.StatusNotFound {
			b.Fatalf("want a denial, got reached %d, status %d", got, w.Code)
		}
	} else if got != 1 {
		b.Fatalf("call not allowed (status %d)", w.Code)
	}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// harnessRules are the 20 rules of the bench harness's -authz mode
// (bench/authz.go), for its call of demo_echo.
func harnessRules() []config.AuthzRule { return benchpolicy.Rules("demo", "echo", "text") }

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

// markedDenied is the handler after the stage: the endpoint answers a
// request the stage marked denied (here with 404); reached counts the
// others.
func markedDenied(reached *int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := parse.FromContext(r.Context()); ok && p.Denied {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		*reached++
	})
}
