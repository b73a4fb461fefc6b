package authz

import (
	"errors"
	"strings"
	"testing"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

// issueRules are the rules of the documentation's example.
var issueRules = []config.AuthzRule{
	{Effect: "allow", Tools: []string{"github_*"}, When: `"eng" in identity.claims.groups`},
	{Effect: "allow", Tools: []string{"jira_get_*", "jira_search"}},
	{Effect: "deny", Tools: []string{"db_drop_table"}, When: `has(request.arguments.cascade) && request.arguments.cascade == true`},
	{Effect: "allow", Resources: []string{"file:///srv/shared/*"}, Prompts: []string{"*"}, Backends: []string{"docs"}},
}

var (
	eng     = oidc("alice", "eng")
	eng2    = oidc("bob", "eng", "oncall")
	support = oidc("carol", "support")
	anon    = auth.Identity{Issuer: auth.AnonymousIssuer, Subject: auth.AnonymousSubject}
)

// oidc is a token identity whose groups claim lists groups.
func oidc(subject string, groups ...string) auth.Identity {
	gs := make([]any, len(groups))
	for i, g := range groups {
		gs[i] = g
	}
	return auth.Identity{Issuer: "https://idp.example.com", Subject: subject,
		Claims: map[string]any{"sub": subject, "groups": gs}}
}

func mustNew(t testing.TB, def string, rules ...config.AuthzRule) *Policy {
	t.Helper()
	p, err := New(&config.Authorization{Default: def, Rules: rules})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func tool(name, backend, args string) Request {
	r := Request{Method: "tools/call", Kind: Tool, Name: name, Backend: backend}
	if args != "" {
		r.Arguments = []byte(args)
	}
	return r
}

func resource(uri, backend string) Request {
	return Request{Method: "resources/read", Kind: Resource, Name: uri, Backend: backend}
}

func prompt(name, backend string) Request {
	return Request{Method: "prompts/get", Kind: Prompt, Name: name, Backend: backend}
}

type decideCase struct {
	name string
	id   auth.Identity
	req  Request
	want Decision
}

func checkDecide(t *testing.T, p *Policy, tests []decideCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := p.Decide(tt.id, tt.req); got != tt.want {
				t.Errorf("Decide(%s, %+v) = %+v, want %+v", tt.id.Subject, tt.req, got, tt.want)
			}
		})
	}
}

var (
	allowBy = func(i int) Decision { return Decision{Allow: true, Rule: i} }
	denyBy  = func(i int) Decision { return Decision{Allow: false, Rule: i} }
	dflt    = func(allow bool) Decision { return Decision{Allow: allow, Rule: -1} }
)

func TestDecideIssueExample(t *testing.T) {
	t.Parallel()
	// The example, plus an allow for the database tools so that the deny
	// rule has something to win over.
	p := mustNew(t, "deny", append(issueRules[:len(issueRules):len(issueRules)],
		config.AuthzRule{Effect: "allow", Tools: []string{"db_*"}})...)
	checkDecide(t, p, []decideCase{
		{"engineer opens a pull request", eng, tool("github_create_pr", "github", `{"title":"x"}`), allowBy(0)},
		{"second engineer", eng2, tool("github_merge", "github", ""), allowBy(0)},
		{"support has no github", support, tool("github_create_pr", "github", ""), dflt(false)},
		{"anonymous has no github", anon, tool("github_create_pr", "github", ""), dflt(false)},
		{"support reads tickets", support, tool("jira_get_issue", "jira", ""), allowBy(1)},
		{"support searches", support, tool("jira_search", "jira", ""), allowBy(1)},
		{"anonymous reads tickets", anon, tool("jira_get_comments", "jira", ""), allowBy(1)},
		{"nobody closes tickets", eng, tool("jira_close_issue", "jira", ""), dflt(false)},
		{"literal glob is exact", support, tool("jira_search_all", "jira", ""), dflt(false)},
		{"drop with cascade", eng, tool("db_drop_table", "db", `{"table":"t","cascade":true}`), denyBy(2)},
		{"drop without cascade", eng, tool("db_drop_table", "db", `{"table":"t","cascade":false}`), allowBy(4)},
		{"drop with no cascade key", eng, tool("db_drop_table", "db", `{"table":"t"}`), allowBy(4)},
		{"drop with no arguments", eng, tool("db_drop_table", "db", ""), allowBy(4)},
		{"drop with cascade as text", eng, tool("db_drop_table", "db", `{"cascade":"true"}`), allowBy(4)},
		{"shared file", anon, resource("file:///srv/shared/a/b.txt", "docs"), allowBy(3)},
		{"shared file elsewhere", anon, resource("file:///srv/shared/a.txt", "github"), dflt(false)},
		{"private file", eng, resource("file:///srv/private/a.txt", "docs"), dflt(false)},
		{"prompt from docs", support, prompt("summarize", "docs"), allowBy(3)},
		{"prompt from github", support, prompt("summarize", "github"), dflt(false)},
		{"tool from docs is not listed", eng, tool("docs_search", "docs", ""), dflt(false)},
	})
}

func TestDecideSelectors(t *testing.T) {
	t.Parallel()
	p := mustNew(t, "allow",
		config.AuthzRule{Effect: "allow", Tools: []string{"*"}},
		config.AuthzRule{Effect: "deny", Tools: []string{"rm_*", "*_delete", "a?c", "x*y*z"}},
		config.AuthzRule{Effect: "deny", Backends: []string{"legacy"}},
		config.AuthzRule{Effect: "deny", Resources: []string{"secret://*"}, Backends: []string{"vault", "kv"}},
		config.AuthzRule{Effect: "allow", Prompts: []string{"p?"}},
		config.AuthzRule{Effect: "deny"},
	)
	checkDecide(t, p, []decideCase{
		{"deny wins over an earlier allow", eng, tool("rm_rf", "fs", ""), denyBy(1)},
		{"suffix", eng, tool("user_delete", "fs", ""), denyBy(1)},
		{"question mark", eng, tool("abc", "fs", ""), denyBy(1)},
		{"question mark is one character", eng, tool("abbc", "fs", ""), denyBy(5)},
		{"question mark takes a multibyte character", eng, tool("aéc", "fs", ""), denyBy(1)},
		{"general glob", eng, tool("x1/y2/z", "fs", ""), denyBy(1)},
		{"backends only selects every kind: tool", eng, tool("read", "legacy", ""), denyBy(2)},
		{"backends only selects every kind: resource", eng, resource("file:///a", "legacy"), denyBy(2)},
		{"backends only selects every kind: prompt", eng, prompt("p1", "legacy"), denyBy(2)},
		{"resource from listed backend", eng, resource("secret://db/password", "kv"), denyBy(3)},
		{"resource from another backend", eng, resource("secret://db/password", "fs"), denyBy(5)},
		{"empty backend matches no backends list", eng, resource("secret://x", ""), denyBy(5)},
		{"rule without selectors matches everything", eng, prompt("hello", "fs"), denyBy(5)},
		{"the first deny decides", eng, tool("rm_x", "legacy", ""), denyBy(1)},
	})

	p = mustNew(t, "allow",
		config.AuthzRule{Effect: "allow", Prompts: []string{"p?"}},
		config.AuthzRule{Effect: "deny", Tools: []string{"p1"}},
	)
	checkDecide(t, p, []decideCase{
		{"prompt rule, prompt", eng, prompt("p1", "fs"), allowBy(0)},
		{"prompt rule does not select tools", eng, tool("p2", "fs", ""), dflt(true)},
		{"tool rule does not select prompts", eng, prompt("p1", "fs"), allowBy(0)},
		{"tool rule, tool", eng, tool("p1", "fs", ""), denyBy(1)},
		{"unknown kind matches only rules without kinds", eng, Request{Name: "p1"}, dflt(true)},
	})
}

func TestDecideDefault(t *testing.T) {
	t.Parallel()
	r := tool("t", "b", "")
	if got := mustNew(t, "allow").Decide(eng, r); got != dflt(true) {
		t.Errorf("default allow: %+v", got)
	}
	if got := mustNew(t, "deny").Decide(eng, r); got != dflt(false) {
		t.Errorf("default deny: %+v", got)
	}
	if got := mustNew(t, "").Decide(eng, r); got != dflt(false) {
		t.Errorf("empty default: %+v, want deny", got)
	}
	p, err := New(nil)
	if p != nil || err != nil {
		t.Fatalf("New(nil) = %v, %v; want nil, nil", p, err)
	}
	if got := p.Decide(eng, r); got != dflt(true) {
		t.Errorf("nil policy: %+v, want allow", got)
	}
	l := p.Lister(eng)
	if !l.Visible(Tool, "t", "b") || l.Key() != "" {
		t.Errorf("nil policy lister: visible %v key %q", l.Visible(Tool, "t", "b"), l.Key())
	}
	if !(Lister{}).Visible(Prompt, "p", "") {
		t.Errorf("zero Lister hides")
	}
}

func TestDecideConditions(t *testing.T) {
	t.Parallel()
	rule := func(effect, when string) config.AuthzRule {
		return config.AuthzRule{Effect: effect, When: when}
	}
	tests := []struct {
		name   string
		effect string
		when   string
		id     auth.Identity
		req    Request
		holds  bool
	}{
		{"anonymous subject", "allow", `identity.subject == "anonymous"`, anon, tool("t", "b", ""), true},
		{"anonymous issuer", "allow", `identity.issuer == "vmcp:anonymous"`, anon, tool("t", "b", ""), true},
		{"anonymous has no claims", "allow", `size(identity.claims) == 0`, anon, tool("t", "b", ""), true},
		{"token subject", "allow", `identity.subject == "alice"`, eng, tool("t", "b", ""), true},
		{"claim", "allow", `identity.claims.sub == "alice"`, eng, tool("t", "b", ""), true},
		{"has claim", "allow", `has(identity.claims.email)`, eng, tool("t", "b", ""), false},
		{"group in list", "allow", `identity.claims.groups.exists(g, g in ["ops", "oncall"])`, eng2, tool("t", "b", ""), true},
		{"method", "allow", `request.method == "tools/call"`, eng, tool("t", "b", ""), true},
		{"name", "allow", `request.name.startsWith("t")`, eng, tool("t", "b", ""), true},
		{"backend", "allow", `backend == "b"`, eng, tool("t", "b", ""), true},
		{"argument number", "allow", `request.arguments.limit <= 100`, eng, tool("t", "b", `{"limit": 50}`), true},
		{"argument number too big", "allow", `request.arguments.limit <= 100`, eng, tool("t", "b", `{"limit": 500}`), false},
		{"nested argument", "allow", `request.arguments.opts.force`, eng, tool("t", "b", `{"opts": {"force": true}}`), true},
		{"no arguments is an empty map", "allow", `size(request.arguments) == 0`, eng, tool("t", "b", ""), true},
		{"null arguments is an empty map", "allow", `size(request.arguments) == 0`, eng, tool("t", "b", "null"), true},
		{"index form reads arguments", "allow", `request["arguments"]["x"] == 1`, eng, tool("t", "b", `{"x": 1}`), true},

		// Evaluation errors: a deny rule fails closed, an allow rule open.
		{"missing claim, deny", "deny", `identity.claims.groups[0] == "x"`, anon, tool("t", "b", ""), true},
		{"missing claim, allow", "allow", `"eng" in identity.claims.groups`, anon, tool("t", "b", ""), false},
		{"missing argument, deny", "deny", `request.arguments.force`, eng, tool("t", "b", `{}`), true},
		{"missing argument, allow", "allow", `request.arguments.force`, eng, tool("t", "b", `{}`), false},
		{"arguments not an object, deny", "deny", `has(request.arguments.force)`, eng, tool("t", "b", `[1]`), true},
		{"arguments not JSON, allow", "allow", `size(request.arguments) >= 0`, eng, tool("t", "b", `{`), false},
		{"not a bool at run time, deny", "deny", `request.name`, eng, tool("t", "b", ""), true},
		{"not a bool at run time, allow", "allow", `identity.claims.sub`, eng, tool("t", "b", ""), false},
		{"division by zero, deny", "deny", `1 / (size(request.name) - 1) == 1`, eng, tool("t", "b", ""), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			def := "allow"
			if tt.effect == "allow" {
				def = "deny"
			}
			p := mustNew(t, def, rule(tt.effect, tt.when))
			want := dflt(def == "allow")
			if tt.holds {
				want = Decision{Allow: tt.effect == "allow", Rule: 0}
			}
			if got := p.Decide(tt.id, tt.req); got != want {
				t.Errorf("Decide = %+v, want %+v", got, want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  config.Authorization
		want []string
	}{
		{"undeclared reference", config.Authorization{Rules: []config.AuthzRule{
			{Effect: "allow"}, {Effect: "allow"},
			{Effect: "allow", When: `requst.name == "x"`},
		}}, []string{"authorization.rules[2].when: ERROR: <input>:1:1: undeclared reference to 'requst'"}},
		{"not a bool", config.Authorization{Rules: []config.AuthzRule{{Effect: "deny", When: `backend`}}},
			[]string{"authorization.rules[0].when: must be a bool condition, got string"}},
		{"not a bool, number", config.Authorization{Rules: []config.AuthzRule{{Effect: "deny", When: `size(backend) + 1`}}},
			[]string{"authorization.rules[0].when: must be a bool condition, got int"}},
		{"syntax error", config.Authorization{Rules: []config.AuthzRule{{Effect: "deny", When: `identity.subject ==`}}},
			[]string{"authorization.rules[0].when: ERROR: <input>:1:20: Syntax error:"}},
		{"no such function", config.Authorization{Rules: []config.AuthzRule{{Effect: "deny", When: `backend.lower() == "x"`}}},
			[]string{"authorization.rules[0].when: ERROR: <input>:1:14: undeclared reference to 'lower'"}},
		{"several", config.Authorization{Default: "maybe", Rules: []config.AuthzRule{
			{Effect: "permit"},
			{Effect: "deny", When: `a == b`},
		}}, []string{
			`authorization.default: must be allow or deny, got "maybe"`,
			`authorization.rules[0].effect: must be allow or deny, got "permit"`,
			"authorization.rules[1].when: ERROR: <input>:1:1: undeclared reference to 'a'",
			"authorization.rules[1].when: ERROR: <input>:1:6: undeclared reference to 'b'",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := New(&tt.cfg)
			if p != nil || err == nil {
				t.Fatalf("New = %v, %v; want an error", p, err)
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Errorf("error does not wrap config.ErrInvalid: %v", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("error has %d lines, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, line := range lines {
				if !strings.HasPrefix(line, tt.want[i]) {
					t.Errorf("line %d = %q, want prefix %q", i, line, tt.want[i])
				}
			}
		})
	}
}

func TestListerVisible(t *testing.T) {
	t.Parallel()
	p := mustNew(t, "deny", append(issueRules[:len(issueRules):len(issueRules)],
		config.AuthzRule{Effect: "allow", Tools: []string{"db_*"}},
		config.AuthzRule{Effect: "allow", Tools: []string{"deploy"}, When: `request.arguments.dryRun == true`},
		config.AuthzRule{Effect: "allow", Tools: []string{"ops_*"}, When: `request.name.endsWith("_read") || "ops" in identity.claims.groups`},
		config.AuthzRule{Effect: "deny", Prompts: []string{"*"}, When: `backend == "docs" && request.name.startsWith("internal_")`},
	)...)
	type item struct {
		kind          Kind
		name, backend string
	}
	tests := []struct {
		name string
		id   auth.Identity
		item item
		want bool
	}{
		{"engineer sees github", eng, item{Tool, "github_create_pr", "github"}, true},
		{"support does not", support, item{Tool, "github_create_pr", "github"}, false},
		{"everyone sees jira reads", anon, item{Tool, "jira_get_issue", "jira"}, true},
		{"nobody sees jira close", eng, item{Tool, "jira_close", "jira"}, false},
		{"a deny reading arguments does not hide", support, item{Tool, "db_drop_table", "db"}, true},
		{"an allow reading arguments shows", support, item{Tool, "deploy", "ci"}, true},
		{"item condition, by name", support, item{Tool, "ops_logs_read", "ops"}, true},
		{"item condition, neither", support, item{Tool, "ops_restart", "ops"}, false},
		{"template URI glob", anon, item{Resource, "file:///srv/shared/{path}", "docs"}, true},
		{"prompt from docs", anon, item{Prompt, "summarize", "docs"}, true},
		{"item deny with backend", anon, item{Prompt, "internal_notes", "docs"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := p.Lister(tt.id).Visible(tt.item.kind, tt.item.name, tt.item.backend); got != tt.want {
				t.Errorf("Visible = %v, want %v", got, tt.want)
			}
		})
	}
	// An allow rule that reads arguments shows the tool, yet the call is
	// decided on its arguments.
	if d := p.Decide(support, tool("deploy", "ci", `{"dryRun": false}`)); d.Allow {
		t.Errorf("deploy without dryRun: %+v, want denied", d)
	}
	if d := p.Decide(support, tool("deploy", "ci", `{"dryRun": true}`)); !d.Allow {
		t.Errorf("deploy with dryRun: %+v, want allowed", d)
	}
}

// TestListerMatchesDecide: for conditions that do not read the arguments,
// Visible says what Decide says for the call that would use the item.
func TestListerMatchesDecide(t *testing.T) {
	t.Parallel()
	p := mustNew(t, "deny", append(issueRules[:len(issueRules):len(issueRules)],
		config.AuthzRule{Effect: "deny", Tools: []string{"github_*_delete"}, When: `identity.subject != "alice"`},
		config.AuthzRule{Effect: "allow", Backends: []string{"jira"}, When: `request.name.contains("comment") && "support" in identity.claims.groups`},
	)...)
	names := []string{"github_repo_delete", "github_pr", "jira_get_x", "jira_comment", "jira_close", "db_drop_table",
		"file:///srv/shared/x", "file:///srv/other", "summarize"}
	for _, id := range []auth.Identity{eng, eng2, support, anon} {
		l := p.Lister(id)
		for _, kind := range []Kind{Tool, Resource, Prompt} {
			for _, name := range names {
				for _, backend := range []string{"github", "jira", "docs", ""} {
					r := Request{Method: methodOf(kind), Kind: kind, Name: name, Backend: backend}
					if got, want := l.Visible(kind, name, backend), p.Decide(id, r).Allow; got != want && name != "db_drop_table" {
						t.Errorf("%s: Visible(%d, %q, %q) = %v, Decide says %v", id.Subject, kind, name, backend, got, want)
					}
				}
			}
		}
	}
}

func TestListerKey(t *testing.T) {
	t.Parallel()
	p := mustNew(t, "deny", issueRules...)
	if a, b := p.Lister(eng).Key(), p.Lister(eng2).Key(); a != b {
		t.Errorf("two engineers: keys %q and %q differ", a, b)
	}
	if a, b := p.Lister(eng).Key(), p.Lister(support).Key(); a == b {
		t.Errorf("engineer and support share key %q", a)
	}
	if a, b := p.Lister(support).Key(), p.Lister(anon).Key(); a != b {
		t.Errorf("support and anonymous see the same: keys %q and %q differ", a, b)
	}

	// Without identity conditions everyone shares one key.
	p = mustNew(t, "deny", issueRules[1:]...)
	if a, b := p.Lister(eng).Key(), p.Lister(anon).Key(); a != b {
		t.Errorf("no identity conditions: keys %q and %q differ", a, b)
	}

	// A condition on the identity and the item makes the key per caller.
	p = mustNew(t, "deny", config.AuthzRule{Effect: "allow", When: `request.name.startsWith(identity.subject)`})
	if a, b := p.Lister(eng).Key(), p.Lister(eng2).Key(); a == b {
		t.Errorf("identity and item condition: both keys %q", a)
	}
	if a, b := p.Lister(eng).Key(), p.Lister(oidc("alice", "other")).Key(); a != b {
		t.Errorf("same caller: keys %q and %q differ", a, b)
	}
	if !p.Lister(eng).Visible(Tool, "alice_tool", "") || p.Lister(eng2).Visible(Tool, "alice_tool", "") {
		t.Errorf("per-item identity condition not applied")
	}

	// When it reads the claims, they are part of the key.
	p = mustNew(t, "deny", config.AuthzRule{Effect: "allow", When: `request.name.startsWith(identity.claims.sub)`})
	if a, b := p.Lister(eng).Key(), p.Lister(oidc("alice", "other")).Key(); a == b {
		t.Errorf("identity claims and item condition: both keys %q", a)
	}
	if a, b := p.Lister(eng).Key(), p.Lister(oidc("alice", "eng")).Key(); a != b {
		t.Errorf("equal claims: keys %q and %q differ", a, b)
	}

	// A condition that reads the arguments is the same for every caller.
	p = mustNew(t, "deny", config.AuthzRule{Effect: "allow", When: `"eng" in identity.claims.groups && request.arguments.x == 1`})
	if a, b := p.Lister(eng).Key(), p.Lister(anon).Key(); a != b {
		t.Errorf("argument condition: keys %q and %q differ", a, b)
	}
}

func TestDependencies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		when string
		want deps
	}{
		{`true`, 0},
		{`identity.subject == "x"`, readsIdentity},
		{`identity.issuer == "x" && has(identity.subject)`, readsIdentity},
		{`"eng" in identity.claims.groups`, readsIdentity | readsClaims},
		{`identity["subject"] == "x"`, readsIdentity | readsClaims},
		{`backend == "x"`, readsItem},
		{`request.name == "x" && request.method == "tools/call"`, readsItem},
		{`has(request.name)`, readsItem},
		{`request.arguments.x == 1`, readsItem | readsArguments},
		{`request.name == "x" || request["arguments"].x == 1`, readsItem | readsArguments},
		{`size(request) == 3`, readsItem | readsArguments},
		{`[1].exists(i, request.name == identity.subject)`, readsItem | readsIdentity},
		{`request.name == identity.claims.sub`, readsItem | readsIdentity | readsClaims},
	}
	for _, tt := range tests {
		c, err := compileCondition(tt.when)
		if err != nil {
			t.Fatalf("%s: %v", tt.when, err)
		}
		if c.deps != tt.want {
			t.Errorf("deps(%s) = %b, want %b", tt.when, c.deps, tt.want)
		}
	}
}

// TestConcurrent runs decisions and lists from several goroutines, for
// the race detector: activations are pooled and maps shared.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	p := mustNew(t, "deny", append(issueRules[:len(issueRules):len(issueRules)],
		config.AuthzRule{Effect: "allow", Tools: []string{"x_*"}, When: `request.name.endsWith(identity.subject)`})...)
	done := make(chan bool)
	for g := range 8 {
		go func() {
			ok := true
			for i := range 200 {
				id := []auth.Identity{eng, support, anon, eng2}[(g+i)%4]
				d := p.Decide(id, tool("github_x", "github", `{"cascade": true}`))
				ok = ok && d.Allow == (id.Subject == "alice" || id.Subject == "bob")
				l := p.Lister(id)
				ok = ok && l.Visible(Tool, "x_"+id.Subject, "") && !l.Visible(Tool, "x_nobody", "")
			}
			done <- ok
		}()
	}
	for range 8 {
		if !<-done {
			t.Error("a concurrent decision was wrong")
		}
	}
}
