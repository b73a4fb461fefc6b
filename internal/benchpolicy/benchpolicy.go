// Package benchpolicy is the one 20-rule authorization policy the
// authorization benchmarks measure: the authz stage's (authz), a call
// through the whole chain (server) and the load harness (bench -authz), so
// their figures are of the same rules.
package benchpolicy

import (
	"encoding/json"
	"strings"

	"github.com/vmcp/vmcp/config"
)

// Rules returns the 20 rules for a backend named backend whose tool
// backend_tool, called anonymously with the string argument arg, is the
// call measured: the deny rules 4 (the arguments, decoded), 8 (the
// identity), 9 (the name) and 15 (the method) are evaluated for it and do
// not hold, rule 3's backend matches but it selects resources and prompts
// only, and rule 19 (the backend and the identity) allows it. Rule 7
// denies backend's add_tool and remove_tool.
func Rules(backend, tool, arg string) []config.AuthzRule {
	return []config.AuthzRule{
		{Effect: "allow", Tools: []string{"github_*"}, When: `"eng" in identity.claims.groups`},
		{Effect: "allow", Tools: []string{"jira_get_*", "jira_search"}},
		{Effect: "deny", Tools: []string{"db_drop_table"}, When: `has(request.arguments.cascade) && request.arguments.cascade == true`},
		{Effect: "allow", Resources: []string{"file:///srv/shared/*"}, Prompts: []string{"*"}, Backends: []string{backend}},
		{Effect: "deny", Tools: []string{"*_" + tool}, When: `has(request.arguments.` + arg + `) && size(request.arguments.` + arg + `) > 65536`},
		{Effect: "deny", Tools: []string{"*_delete", "*_destroy"}},
		{Effect: "allow", Tools: []string{"k8s_get_*", "k8s_list_*"}, When: `"ops" in identity.claims.groups`},
		{Effect: "deny", Tools: []string{backend + "_add_tool", backend + "_remove_tool"}},
		{Effect: "deny", Tools: []string{backend + "_*"}, When: `identity.subject == "blocked"`},
		{Effect: "deny", Tools: []string{"*"}, When: `request.name.startsWith("admin_")`},
		{Effect: "deny", Resources: []string{"file:///etc/*", "file:///root/*"}},
		{Effect: "allow", Resources: []string{"db://*/schema"}, When: `identity.subject != "anonymous"`},
		{Effect: "deny", Tools: []string{"payments_refund"}, When: `request.arguments.amount > 1000`},
		{Effect: "allow", Tools: []string{"payments_*"}, When: `"finance" in identity.claims.groups`},
		{Effect: "allow", Prompts: []string{"release_?otes"}},
		{Effect: "deny", Backends: []string{backend}, When: `request.method == "completion/complete"`},
		{Effect: "allow", Tools: []string{"notion_*_page?"}},
		{Effect: "deny", Tools: []string{"*secret*"}},
		{Effect: "allow", Tools: []string{"calendar_*"}},
		{Effect: "allow", Tools: []string{backend + "_*"}, When: `backend == "` + backend + `" && identity.subject == "anonymous"`},
	}
}

// YAML renders rules as vmcp.yaml's authorization section, default deny.
func YAML(rules []config.AuthzRule) string {
	var b strings.Builder
	b.WriteString("authorization:\n  default: deny\n  rules:\n")
	for _, r := range rules {
		parts := []string{"effect: " + r.Effect}
		for _, f := range []struct {
			key  string
			list []string
		}{{"tools", r.Tools}, {"resources", r.Resources}, {"prompts", r.Prompts}, {"backends", r.Backends}} {
			if len(f.list) > 0 {
				q, _ := json.Marshal(f.list) // a JSON array is a YAML flow sequence
				parts = append(parts, f.key+": "+string(q))
			}
		}
		if r.When != "" {
			parts = append(parts, "when: '"+strings.ReplaceAll(r.When, "'", "''")+"'")
		}
		b.WriteString("    - {" + strings.Join(parts, ", ") + "}\n")
	}
	return b.String()
}
