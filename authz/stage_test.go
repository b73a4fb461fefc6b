package authz

import (
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
