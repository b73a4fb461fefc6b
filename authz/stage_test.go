package authz

import (
	"strings"
	"testing"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

func TestCanonicalURI(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"file:///srv/shared/../hr/pay.csv", "file:///srv/hr/pay.csv"},
		{"file:///srv/%73ecret/k", "file:///srv/secret/k"},
		{"file:///srv/shared/./a", "file:///srv/shared/a"},
		{"file:///srv/shared/a", ""},
	} {
		got, ok := canonicalURI(tt.in)
		if ok != (tt.want != "") || ok && got != tt.want {
			t.Errorf("canonicalURI(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
}

// TestArgumentsKeyInTwoCases: arguments with a key twice in different case
// (a backend matching keys ignoring case may read the other one) cannot
// pass a deny rule that reads the key.
func TestArgumentsKeyInTwoCases(t *testing.T) {
	t.Parallel()
	p, err := New(&config.Authorization{Default: config.EffectAllow, Rules: []config.AuthzRule{
		{Effect: config.EffectDeny, Tools: []string{"db_drop_table"}, When: `has(request.arguments.cascade) && request.arguments.cascade == true`},
	}})
	if err != nil {
		t.Fatal(err)
	}
	id := auth.Identity{Issuer: auth.AnonymousIssuer, Subject: auth.AnonymousSubject}
	for _, tt := range []struct {
		args  string
		allow bool
	}{
		{`{"table":"t","cascade":false}`, true},
		{`{"table":"t","cascade":true}`, false},
		{`{"table":"t","cascade":false,"CASCADE":true}`, false},
	} {
		d := p.Decide(id, Request{Method: "tools/call", Kind: Tool, Name: "db_drop_table", Arguments: []byte(tt.args)})
		if d.Allow != tt.allow {
			t.Errorf("%s: allow = %v, want %v", tt.args, d.Allow, tt.allow)
		}
	}
}

// TestUnknownFieldIsACompileError: a field identity or request does not
// have is refused when the config loads, naming the rule, instead of
// failing every evaluation.
func TestUnknownFieldIsACompileError(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ when, want string }{
		{`"eng" in identity.claim.groups`, `authorization.rules[0].when: identity has no field "claim"`},
		{`has(request.argument.cascade)`, `authorization.rules[0].when: request has no field "argument"`},
	} {
		_, err := New(&config.Authorization{Default: config.EffectDeny, Rules: []config.AuthzRule{{Effect: config.EffectAllow, When: tt.when}}})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.when, err, tt.want)
		}
	}
	if _, err := New(&config.Authorization{Rules: []config.AuthzRule{{Effect: config.EffectAllow,
		When: `"eng" in identity.claims.groups && request.arguments.x == 1 && request.name != "" && identity.subject != ""`}}}); err != nil {
		t.Errorf("known fields refused: %v", err)
	}
}
