package authz

import (
	"fmt"
	"testing"

	"github.com/vmcp/vmcp/config"
)

// benchRules are 20 rules of the shapes a deployment writes: the
// documentation's four, literal, prefix, suffix and general globs, backend
// rules and conditions on the identity, the item and the arguments.
func benchRules() []config.AuthzRule {
	rules := append([]config.AuthzRule(nil), issueRules...)
	rules = append(rules,
		config.AuthzRule{Effect: "allow", Tools: []string{"slack_post_message", "slack_list_channels"}},
		config.AuthzRule{Effect: "deny", Tools: []string{"*_delete", "*_destroy"}, When: `!("admin" in identity.claims.groups)`},
		config.AuthzRule{Effect: "allow", Tools: []string{"k8s_get_*", "k8s_list_*"}, When: `"ops" in identity.claims.groups`},
		config.AuthzRule{Effect: "deny", Tools: []string{"k8s_exec"}},
		config.AuthzRule{Effect: "allow", Tools: []string{"gitlab_*_read"}},
		config.AuthzRule{Effect: "allow", Backends: []string{"search"}},
		config.AuthzRule{Effect: "deny", Resources: []string{"file:///etc/*", "file:///root/*"}},
		config.AuthzRule{Effect: "allow", Resources: []string{"db://*/schema"}, When: `identity.subject != "anonymous"`},
		config.AuthzRule{Effect: "deny", Tools: []string{"payments_refund"}, When: `request.arguments.amount > 1000`},
		config.AuthzRule{Effect: "allow", Tools: []string{"payments_*"}, When: `"finance" in identity.claims.groups`},
		config.AuthzRule{Effect: "allow", Prompts: []string{"release_?otes"}},
		config.AuthzRule{Effect: "deny", Backends: []string{"legacy"}, When: `request.method != "tools/call"`},
		config.AuthzRule{Effect: "allow", Tools: []string{"notion_*_page?"}, When: `identity.claims.email.endsWith("@example.com")`},
		config.AuthzRule{Effect: "deny", Tools: []string{"*secret*"}},
		config.AuthzRule{Effect: "allow", Tools: []string{"calendar_*"}, When: `backend == "calendar"`},
		config.AuthzRule{Effect: "allow", Tools: []string{"weather"}},
	)
	if len(rules) != 20 {
		panic(len(rules))
	}
	return rules
}

func BenchmarkDecide(b *testing.B) {
	p := mustNew(b, "deny", benchRules()...)
	engineer := oidc("alice", "eng", "finance")
	tests := []struct {
		name string
		req  Request
		want bool
	}{
		{"identity condition", tool("github_create_pull_request", "github", `{"owner":"o","repo":"r","title":"t","head":"h","base":"main"}`), true},
		{"no condition", tool("jira_get_issue", "jira", `{"key":"ABC-1"}`), true},
		{"argument condition", tool("db_drop_table", "db", `{"table":"t","cascade":true}`), false},
		{"argument and identity", tool("payments_refund", "payments", `{"amount":50,"currency":"EUR"}`), true},
		{"default", tool("unknown_tool", "other", `{}`), false},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			if got := p.Decide(engineer, tt.req); got.Allow != tt.want {
				b.Fatalf("Decide = %+v, want allow %v", got, tt.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(engineer, tt.req)
			}
		})
	}
}

// BenchmarkLister builds one caller's view and asks it about 10,000 tools.
func BenchmarkLister(b *testing.B) {
	p := mustNew(b, "deny", benchRules()...)
	prefixes := []string{"github_", "jira_get_", "slack_", "k8s_get_", "gitlab_x_", "payments_", "notion_a_", "calendar_", "misc_", "db_"}
	type item struct{ name, backend string }
	items := make([]item, 10000)
	for i := range items {
		pre := prefixes[i%len(prefixes)]
		items[i] = item{fmt.Sprintf("%stool_%d", pre, i), pre[:len(pre)-1]}
	}
	engineer := oidc("alice", "eng", "finance")
	b.ReportAllocs()
	for b.Loop() {
		l := p.Lister(engineer)
		n := 0
		for _, it := range items {
			if l.Visible(Tool, it.name, it.backend) {
				n++
			}
		}
		if n == 0 {
			b.Fatal("nothing visible")
		}
	}
}
