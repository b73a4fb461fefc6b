package authz_test

import (
	"fmt"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/authz"
	"github.com/vmcp/vmcp/config"
)

func Example() {
	p, err := authz.New(&config.Authorization{
		Default: "deny",
		Rules: []config.AuthzRule{
			{Effect: "allow", Tools: []string{"github_*"}, When: `"eng" in identity.claims.groups`},
			{Effect: "deny", Tools: []string{"github_delete_*"}, When: `request.arguments.force == true`},
		},
	})
	if err != nil {
		panic(err)
	}
	alice := auth.Identity{Issuer: "https://idp.example.com", Subject: "alice",
		Claims: map[string]any{"groups": []any{"eng"}}}

	fmt.Println(p.Decide(alice, authz.Request{Method: "tools/call", Kind: authz.Tool,
		Name: "github_delete_repo", Backend: "github", Arguments: []byte(`{"force": true}`)}))
	fmt.Println(p.Decide(alice, authz.Request{Method: "tools/call", Kind: authz.Tool,
		Name: "github_delete_repo", Backend: "github", Arguments: []byte(`{"force": false}`)}))

	// A list cannot know the arguments: the deny rule does not hide the tool.
	l := p.Lister(alice)
	fmt.Println(l.Visible(authz.Tool, "github_delete_repo", "github"), l.Visible(authz.Tool, "jira_search", "jira"))

	// A mistake names its key path.
	_, err = authz.New(&config.Authorization{Rules: []config.AuthzRule{{Effect: "allow", When: `requst.name == "x"`}}})
	fmt.Println(err)
	// Output:
	// {false 1}
	// {true 0}
	// true false
	// authorization.rules[0].when: ERROR: <input>:1:1: undeclared reference to 'requst' (did you mean 'request'?)
}
