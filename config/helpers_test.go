package config

import (
	"errors"
	"testing"
)

// oneBackend is the smallest valid configuration.
const oneBackend = `backends:
  - {name: a, transport: streamable-http, url: http://127.0.0.1:8081/mcp}
`

// withOIDC turns on oidc so per-user limits are allowed.
const withOIDC = `incomingAuth: {type: oidc, oidc: {issuer: https://idp.example.com, audience: vmcp}}
`

// envOf returns a getenv that reads only m.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// problemsOf splits an error returned by Parse or Validate into its
// problems, one per line of its message.
func problemsOf(err error) []error {
	if _, single := err.(*fieldError); !single {
		if multi, ok := err.(interface{ Unwrap() []error }); ok {
			return multi.Unwrap()
		}
	}
	return []error{err}
}

// mustParse parses yaml with env and fails the test on error.
func mustParse(t *testing.T, yaml string, env map[string]string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(yaml), envOf(env))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

// checkProblems asserts err holds exactly one problem per prefix, in order,
// each starting with its prefix and wrapping ErrInvalid.
func checkProblems(t *testing.T, err error, prefixes []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %q", prefixes)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
	}
	got := problemsOf(err)
	if len(got) != len(prefixes) {
		t.Fatalf("got %d problems, want %d:\n%v\nwant prefixes %q", len(got), len(prefixes), err, prefixes)
	}
	for i, p := range got {
		if !errors.Is(p, ErrInvalid) {
			t.Errorf("problem %d %q does not wrap ErrInvalid", i, p)
		}
		if msg := p.Error(); len(msg) < len(prefixes[i]) || msg[:len(prefixes[i])] != prefixes[i] {
			t.Errorf("problem %d = %q, want prefix %q", i, msg, prefixes[i])
		}
	}
}
