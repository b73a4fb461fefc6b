package authz

import (
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

// refCondition is one of the fuzzed conditions with a plain Go version of
// it; an error means the CEL evaluation fails.
type refCondition struct {
	when string
	eval func(id auth.Identity, r Request) (bool, error)
}

var errRef = errors.New("evaluation fails")

var refConditions = []refCondition{
	{`"eng" in identity.claims.groups`, func(id auth.Identity, _ Request) (bool, error) {
		groups, ok := id.Claims["groups"].([]any)
		if !ok {
			return false, errRef
		}
		return slices.Contains(groups, any("eng")), nil
	}},
	{`identity.subject == "anonymous"`, func(id auth.Identity, _ Request) (bool, error) {
		return id.Subject == auth.AnonymousSubject, nil
	}},
	{`backend == "x"`, func(_ auth.Identity, r Request) (bool, error) {
		return r.Backend == "x", nil
	}},
	{`request.name.startsWith("a")`, func(_ auth.Identity, r Request) (bool, error) {
		return strings.HasPrefix(r.Name, "a"), nil
	}},
	{`request.method == "tools/call" && identity.subject == "bob"`, func(id auth.Identity, r Request) (bool, error) {
		return r.Method == "tools/call" && id.Subject == "bob", nil
	}},
	{`request.name.startsWith("a") || "eng" in identity.claims.groups`, func(id auth.Identity, r Request) (bool, error) {
		if strings.HasPrefix(r.Name, "a") {
			return true, nil
		}
		groups, ok := id.Claims["groups"].([]any)
		if !ok {
			return false, errRef
		}
		return slices.Contains(groups, any("eng")), nil
	}},
	{`request.arguments.flag == true`, func(_ auth.Identity, r Request) (bool, error) {
		args, err := refArguments(r.Arguments)
		if err != nil {
			return false, err
		}
		v, ok := args["flag"]
		if !ok {
			return false, errRef
		}
		return v == true, nil
	}},
}

// refArguments decodes arguments as the reference sees them: none is an
// empty object, anything but an object fails.
func refArguments(raw []byte) (map[string]any, error) {
	if len(raw) == 0 {
		return map[string]any{}, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, errRef
	}
	return m, nil
}

// refGlob is a glob as a regular expression.
func refGlob(glob string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?s)^`)
	for _, r := range glob {
		switch r {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String())
}

// refRule is a rule as the reference reads it.
type refRule struct {
	cfg  config.AuthzRule
	cond *refCondition
}

// refSelects is the rule's selectors written out plainly.
func refSelects(rule config.AuthzRule, r Request) bool {
	if len(rule.Tools)+len(rule.Resources)+len(rule.Prompts) > 0 {
		var globs []string
		switch r.Kind {
		case Tool:
			globs = rule.Tools
		case Resource:
			globs = rule.Resources
		case Prompt:
			globs = rule.Prompts
		}
		matched := false
		for _, g := range globs {
			if refGlob(g).MatchString(r.Name) {
				matched = true
			}
		}
		if !matched {
			return false
		}
	}
	if len(rule.Backends) > 0 && !slices.Contains(rule.Backends, r.Backend) {
		return false
	}
	return true
}

// refDecide decides plainly: collect every rule that applies, then the
// first deny, else the first allow, else the default. forList applies the
// list's reading of conditions on arguments.
func refDecide(rules []refRule, defaultAllow bool, id auth.Identity, r Request, forList bool) Decision {
	var denies, allows []int
	for i, rule := range rules {
		if !refSelects(rule.cfg, r) {
			continue
		}
		deny := rule.cfg.Effect == "deny"
		applies := true
		if rule.cond != nil {
			if forList && strings.Contains(rule.cond.when, "request.arguments") {
				applies = !deny
			} else {
				holds, err := rule.cond.eval(id, r)
				if err != nil {
					applies = deny
				} else {
					applies = holds
				}
			}
		}
		if !applies {
			continue
		}
		if deny {
			denies = append(denies, i)
		} else {
			allows = append(allows, i)
		}
	}
	if len(denies) > 0 {
		return Decision{Allow: false, Rule: denies[0]}
	}
	if len(allows) > 0 {
		return Decision{Allow: true, Rule: allows[0]}
	}
	return Decision{Allow: defaultAllow, Rule: -1}
}

// fuzzInput hands out the fuzzer's bytes as small choices.
type fuzzInput struct{ data []byte }

func (in *fuzzInput) next(n int) int {
	if len(in.data) == 0 {
		return 0
	}
	b := in.data[0]
	in.data = in.data[1:]
	return int(b) % n
}

// name builds a short name or glob from a small alphabet, wildcards
// included when glob is set.
func (in *fuzzInput) name(glob bool) string {
	alphabet := []string{"a", "b", "_", "/", "é", "a", "b"}
	if glob {
		alphabet = append(alphabet, "*", "?", "*")
	}
	var b strings.Builder
	for range in.next(6) {
		b.WriteString(alphabet[in.next(len(alphabet))])
	}
	return b.String()
}

func (in *fuzzInput) globs(max int) []string {
	n := in.next(max + 1)
	var out []string
	for range n {
		g := in.name(true)
		if g == "" {
			g = "*"
		}
		out = append(out, g)
	}
	return out
}

var fuzzIdentities = []auth.Identity{
	anon,
	oidc("alice", "eng"),
	oidc("bob", "ops"),
	{Issuer: "https://idp.example.com", Subject: "carol", Claims: map[string]any{"sub": "carol"}},
}

var fuzzArguments = []string{"", `{}`, `{"flag":true}`, `{"flag":false}`, `{"flag":1}`, `[1]`, `null`, `{"other":true}`}

// FuzzDecide checks Decide and Lister.Visible against the plain reference
// over random rules and requests.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x03\x01\x02ab*\x01\x00\x05\x01\x02\x03\x04\x05\x06\x07\x08\x09"))
	f.Add([]byte("\x05\x00\x01\x03*?\x02\x01\x01\x01\x04\x00\x06\x02\x05\x01\x03\x00\x02\x07"))
	f.Add([]byte("\x08\x01\x00\x00\x00\x01\x06\x01\x02\x03\x00\x00\x01\x02\x05\x05\x05\x05\x05\x04\x03\x02\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzInput{data: data}
		defaultAllow := in.next(2) == 1
		cfg := config.Authorization{Default: "deny"}
		if defaultAllow {
			cfg.Default = "allow"
		}
		var rules []refRule
		for range in.next(9) {
			rc := config.AuthzRule{Effect: []string{"allow", "deny"}[in.next(2)]}
			switch in.next(4) {
			case 1:
				rc.Tools = in.globs(2)
			case 2:
				rc.Resources, rc.Prompts = in.globs(2), in.globs(1)
			case 3:
				rc.Tools, rc.Prompts = in.globs(1), in.globs(1)
			}
			if k := in.next(3); k > 0 {
				rc.Backends = []string{"x", "y"}[:k]
			}
			rule := refRule{}
			if c := in.next(len(refConditions) + 2); c < len(refConditions) {
				rule.cond = &refConditions[c]
				rc.When = rule.cond.when
			}
			rule.cfg = rc
			rules = append(rules, rule)
			cfg.Rules = append(cfg.Rules, rc)
		}
		p, err := New(&cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		for range 1 + in.next(8) {
			id := fuzzIdentities[in.next(len(fuzzIdentities))]
			kind := Kind(in.next(4))
			r := Request{Method: methodOf(kind), Kind: kind, Name: in.name(false),
				Backend: []string{"", "x", "y", "z"}[in.next(4)]}
			if a := fuzzArguments[in.next(len(fuzzArguments))]; a != "" {
				r.Arguments = []byte(a)
			}
			if !utf8.ValidString(r.Name) {
				t.Fatalf("invalid name %q", r.Name)
			}
			if got, want := p.Decide(id, r), refDecide(rules, defaultAllow, id, r, false); got != want {
				t.Fatalf("Decide(%s, %+v) = %+v, reference %+v\nrules %+v", id.Subject, r, got, want, cfg.Rules)
			}
			l := p.Lister(id)
			want := refDecide(rules, defaultAllow, id, Request{Method: r.Method, Kind: kind, Name: r.Name, Backend: r.Backend}, true).Allow
			if got := l.Visible(kind, r.Name, r.Backend); got != want {
				t.Fatalf("Visible(%s, %d, %q, %q) = %v, reference %v\nrules %+v", id.Subject, kind, r.Name, r.Backend, got, want, cfg.Rules)
			}
			// Callers with the same key see the same.
			for _, other := range fuzzIdentities {
				if lo := p.Lister(other); lo.Key() == l.Key() && lo.Visible(kind, r.Name, r.Backend) != want {
					t.Fatalf("%s and %s share key %q but see %q differently", id.Subject, other.Subject, l.Key(), r.Name)
				}
			}
		}
	})
}

// TestGlob compares the compiled globs with the reference on fixed cases.
func TestGlob(t *testing.T) {
	t.Parallel()
	tests := []struct {
		glob, name string
		want       bool
	}{
		{"*", "", true},
		{"*", "a/b", true},
		{"**", "x", true},
		{"", "", true},
		{"", "a", false},
		{"abc", "abc", true},
		{"abc", "abcd", false},
		{"ab*", "ab", true},
		{"ab*", "a", false},
		{"*bc", "bc", true},
		{"*bc", "abd", false},
		{"a*c", "ac", true},
		{"a*c", "abbc", true},
		{"a*a", "a", false},
		{"ab*ba", "aba", false},
		{"a?c", "aéc", true},
		{"a?c", "ac", false},
		{"?", "é", true},
		{"??", "é", false},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXcYb", false},
		{"*a?b*", "xxa/bxx", true},
		{"file:///srv/*/x?.txt", "file:///srv/a/b/x1.txt", true},
		{"*.*", "a.b", true},
		{"[a]", "[a]", true},
		{"[a]", "a", false},
		{`a\*`, `a\bc`, true},
	}
	for _, tt := range tests {
		g := compileGlob(tt.glob)
		if got := g.match(tt.name); got != tt.want {
			t.Errorf("glob %q on %q = %v, want %v", tt.glob, tt.name, got, tt.want)
		}
		if ref := refGlob(tt.glob).MatchString(tt.name); ref != tt.want {
			t.Errorf("reference glob %q on %q = %v, want %v", tt.glob, tt.name, ref, tt.want)
		}
	}
}

// FuzzGlob checks compiled globs against the regular-expression reference.
func FuzzGlob(f *testing.F) {
	f.Add("a*b?c", "axxbyc")
	f.Add("*é*", "aéb")
	f.Add("??*", "é")
	f.Fuzz(func(t *testing.T, glob, name string) {
		if !utf8.ValidString(glob) || !utf8.ValidString(name) {
			t.Skip()
		}
		g := compileGlob(glob)
		if got, want := g.match(name), refGlob(glob).MatchString(name); got != want {
			t.Fatalf("glob %q on %q = %v, reference %v", glob, name, got, want)
		}
	})
}
