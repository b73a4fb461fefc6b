package config

import (
	"reflect"
	"testing"
)

// issueRules is the authorization example of the documentation.
const issueRules = `authorization:
  default: deny
  rules:
    - {effect: allow, tools: ["github_*"], when: '"eng" in identity.claims.groups'}
    - {effect: allow, tools: ["jira_get_*", "jira_search"]}
    - {effect: deny,  tools: ["db_drop_table"], when: 'has(request.arguments.cascade) && request.arguments.cascade == true'}
    - {effect: allow, resources: ["file:///srv/shared/*"], prompts: ["*"], backends: [docs]}
`

const docsBackend = `  - {name: docs, transport: streamable-http, url: http://127.0.0.1:8082/mcp}
`

func TestAuthorizationParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want *Authorization
	}{
		{"absent", oneBackend, nil},
		{"null", oneBackend + "authorization:\n", nil},
		{"empty section denies by default", oneBackend + "authorization: {}\n", &Authorization{Default: EffectDeny}},
		{"default allow kept", oneBackend + "authorization: {default: allow}\n", &Authorization{Default: EffectAllow}},
		{"issue example", oneBackend + docsBackend + issueRules, &Authorization{Default: EffectDeny, Rules: []AuthzRule{
			{Effect: EffectAllow, Tools: []string{"github_*"}, When: `"eng" in identity.claims.groups`},
			{Effect: EffectAllow, Tools: []string{"jira_get_*", "jira_search"}},
			{Effect: EffectDeny, Tools: []string{"db_drop_table"}, When: "has(request.arguments.cascade) && request.arguments.cascade == true"},
			{Effect: EffectAllow, Resources: []string{"file:///srv/shared/*"}, Prompts: []string{"*"}, Backends: []string{"docs"}},
		}}},
		{"keys in any case", oneBackend + "authorization: {Default: allow, RULES: [{Effect: deny, Backends: [a]}]}\n",
			&Authorization{Default: EffectAllow, Rules: []AuthzRule{{Effect: EffectDeny, Backends: []string{"a"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := mustParse(t, tt.yaml, nil)
			if !reflect.DeepEqual(cfg.Authorization, tt.want) {
				t.Errorf("authorization = %#v, want %#v", cfg.Authorization, tt.want)
			}
		})
	}
}

func TestAuthorizationDefaultsInCode(t *testing.T) {
	t.Parallel()
	var c Config
	c.ApplyDefaults()
	if c.Authorization != nil {
		t.Fatalf("ApplyDefaults made an authorization section: %#v", c.Authorization)
	}
	c.Authorization = &Authorization{}
	c.ApplyDefaults()
	if c.Authorization.Default != EffectDeny {
		t.Errorf("default = %q, want deny", c.Authorization.Default)
	}
}

func TestAuthorizationErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"bad default", "authorization: {default: maybe}\n",
			[]string{`authorization.default: must be allow or deny, got "maybe"`}},
		{"missing effect", "authorization: {rules: [{tools: [x]}]}\n",
			[]string{"authorization.rules[0].effect: required (allow or deny)"}},
		{"bad effect", "authorization: {rules: [{effect: permit}]}\n",
			[]string{`authorization.rules[0].effect: must be allow or deny, got "permit"`}},
		{"unknown backend", "authorization:\n  rules:\n    - {effect: allow}\n    - {effect: deny, backends: [a, x]}\n",
			[]string{`authorization.rules[1].backends[1]: no backend named "x"`}},
		{"empty globs", "authorization: {rules: [{effect: allow, tools: [''], resources: [a, ''], prompts: ['']}]}\n",
			[]string{
				"authorization.rules[0].tools[0]: must not be empty",
				"authorization.rules[0].resources[1]: must not be empty",
				"authorization.rules[0].prompts[0]: must not be empty",
			}},
		{"unknown key", "authorization:\n  rules:\n    - effect: allow\n      whenn: 'true'\n",
			[]string{`authorization.rules[0]: unknown key "whenn" at line 6`}},
		{"unknown section key", "authorization: {defualt: allow}\n",
			[]string{`authorization: unknown key "defualt" at line 3`}},
		{"rules not a list", "authorization: {rules: {effect: allow}}\n",
			[]string{"authorization.rules: expected a list, got a mapping"}},
		{"globs not a list", "authorization: {rules: [{effect: allow, tools: x}]}\n",
			[]string{"authorization.rules[0].tools: expected a list, got a single value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(oneBackend+tt.yaml), nil)
			checkProblems(t, err, tt.want)
		})
	}
}
