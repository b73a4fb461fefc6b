package config

import (
	"errors"
	"testing"
)

// TestParseReportsAllProblems checks that one Parse call reports every
// validation problem, not just the first.
func TestParseReportsAllProblems(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte(`
server: {host: 0.0.0.0, path: mcp}
backends:
  - {name: github, transport: streamable-http, url: http://127.0.0.1:8081/mcp}
  - {name: jira, transport: sse, url: "127.0.0.1:8082/sse"}
  - {name: github, transport: stdio}
outgoingAuth:
  backends:
    gitlab: {type: header_injection, headerName: Authorization, headerValueEnv: TOKEN}
aggregation:
  conflictResolution: merge
rateLimiting:
  perUser: {maxTokens: 0, refillPeriod: 1m}
optimizer: {maxToolsToReturn: 500}
`), nil)
	checkProblems(t, err, []string{
		`server.path: must start with "/"`,
		`backends[1].url: missing scheme`,
		`backends[2].command: required for transport stdio`,
		`backends[2].name: "github" is also the name of backends[0]`,
		`incomingAuth.type: anonymous on non-loopback server.host "0.0.0.0" needs allowAnonymousNetwork: true`,
		`outgoingAuth.backends.gitlab: no backend named "gitlab"`,
		`aggregation.conflictResolution: must be prefix, priority or manual`,
		`rateLimiting.perUser.maxTokens: must be at least 1`,
		`rateLimiting.perUser: needs incomingAuth.type oidc`,
		`optimizer.maxToolsToReturn: must be between 1 and 100`,
	})
}

// TestValidateZeroConfig checks Validate without defaults: every field
// that needs a value is named.
func TestValidateZeroConfig(t *testing.T) {
	t.Parallel()
	var cfg Config
	checkProblems(t, cfg.Validate(), []string{
		"name: required",
		`server.path: must start with "/"`,
		"server.maxBodyBytes: must be positive",
		"server.maxBackendSessions: must be positive",
		"server.idleTimeout: must be positive",
		"server.maxConnections: must be positive",
		"server.maxSessions: must be positive",
		"server.maxSessionsPerIdentity: must be positive",
		"backends: at least one backend is required",
		"incomingAuth.type: required",
		"aggregation.conflictResolution: required",
		`aggregation.conflictResolutionConfig.prefixFormat: must contain "{backend}"`,
		`sessions.store: must be memory or redis, got ""`,
		"sessions.ttl: must be at least 1m, got 0s",
		"rateLimiting.checkTimeout: must be positive",
		`rateLimiting.onStoreFailure: must be local, allow or deny, got ""`,
		"optimizer.maxToolsToReturn: must be between 1 and 100",
		"audit.output: required",
	})
}

func TestValidateAcceptsLoopbackAndOptIn(t *testing.T) {
	t.Parallel()
	for _, extra := range []string{
		"server: {host: localhost}\n",
		"server: {host: \"::1\"}\n",
		"server: {host: 127.0.0.2}\n",
		"server: {host: 0.0.0.0}\nincomingAuth: {allowAnonymousNetwork: true}\n",
		"server: {host: 0.0.0.0}\n" + withOIDC,
		"incomingAuth: {type: oidc, oidc: {issuer: \"http://127.0.0.1:8080/realms/x\", audience: a}}\n",
		"incomingAuth: {type: oidc, oidc: {issuer: \"http://localhost:8080\", audience: a, allowedAlgorithms: [RS256, ES256]}}\n",
	} {
		if _, err := Parse([]byte(oneBackend+extra), nil); err != nil {
			t.Errorf("Parse(%q) = %v, want no error", extra, err)
		}
	}
}

func TestValidateErrorsAreSeparate(t *testing.T) {
	t.Parallel()
	cfg := Config{Name: "n"}
	err := cfg.Validate()
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) < 2 {
		t.Fatalf("Validate = %v, want a join of several problems", err)
	}
	for _, p := range joined.Unwrap() {
		if !errors.Is(p, ErrInvalid) {
			t.Errorf("%q does not wrap ErrInvalid", p)
		}
	}
}

// TestServerAllowedHostsAndOrigins: server.allowedHosts takes host names,
// IPs and host:port, server.allowedOrigins takes scheme://host[:port]; both
// take "*"; a mistake names its list index.
func TestServerAllowedHostsAndOrigins(t *testing.T) {
	t.Parallel()
	good := `server:
  allowedHosts: ["*", vmcp.example.com, "vmcp.example.com:4483", 10.0.0.5, "::1", "[::1]:4483", "[fe80::1]", my_host.internal]
  allowedOrigins: ["*", "https://app.example.com", "http://localhost:6274", "https://app.example.com/", "http://[::1]:3000"]
`
	cfg := mustParse(t, oneBackend+good, nil)
	if len(cfg.Server.AllowedHosts) != 8 || len(cfg.Server.AllowedOrigins) != 5 {
		t.Fatalf("server = %+v, want 8 hosts and 5 origins", cfg.Server)
	}
	if cfg := mustParse(t, oneBackend, nil); cfg.Server.AllowedHosts != nil || cfg.Server.AllowedOrigins != nil {
		t.Fatalf("defaults: allowedHosts %q, allowedOrigins %q; want both empty (the rules for empty lists apply)", cfg.Server.AllowedHosts, cfg.Server.AllowedOrigins)
	}

	_, err := Parse([]byte(oneBackend+`server:
  allowedHosts: ["", "https://vmcp.example.com", "vmcp.example.com:0", "vmcp.example.com:http", "bad host", "-x.example.com", "a/b"]
  allowedOrigins: [vmcp.example.com, "ftp://x.example.com", "https://x.example.com/path", "https://x.example.com?q", "https://user@x.example.com", "null", "https://x.example.com:99999", ""]
`), nil)
	checkProblems(t, err, []string{
		"server.allowedHosts[0]: must not be empty",
		`server.allowedHosts[1]: must be a host name or host:port, not a URL, got "https://vmcp.example.com"`,
		`server.allowedHosts[2]: port must be between 1 and 65535`,
		`server.allowedHosts[3]: port must be between 1 and 65535`,
		`server.allowedHosts[4]: must be a host name, an IP address or host:port, got "bad host"`,
		`server.allowedHosts[5]: must be a host name`,
		`server.allowedHosts[6]: must be a host name or host:port, not a URL`,
		`server.allowedOrigins[0]: must be an origin such as`,
		`server.allowedOrigins[1]: must be an origin such as`,
		`server.allowedOrigins[2]: must be an origin such as`,
		`server.allowedOrigins[3]: must be an origin such as`,
		`server.allowedOrigins[4]: must be an origin such as`,
		`server.allowedOrigins[5]: must be an origin such as`,
		`server.allowedOrigins[6]: port must be between 1 and 65535`,
		`server.allowedOrigins[7]: must be an origin such as`,
	})
}

// TestInvalid: an error found outside Validate reads like Validate's, path
// first, and wraps both ErrInvalid and its cause; each joined cause is its
// own problem.
func TestInvalid(t *testing.T) {
	t.Parallel()
	cause := errors.New("permission denied")
	tests := []struct {
		name string
		path string
		err  error
		want string
	}{
		{name: "nil", path: "audit.output", err: nil, want: ""},
		{name: "one", path: "audit.output", err: cause, want: "audit.output: permission denied"},
		{name: "joined", path: "rateLimiting", err: errors.Join(cause, errors.New("b")), want: "rateLimiting: permission denied\nrateLimiting: b"},
		{name: "a field error gets a parent", path: "redis", err: invalidf("x"), want: "redis: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Invalid(tt.path, tt.err)
			if tt.err == nil {
				if err != nil {
					t.Fatalf("Invalid(%q, nil) = %v, want nil", tt.path, err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Invalid = %v, want %q", err, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Invalid(...) does not wrap ErrInvalid")
			}
			if tt.err != nil && tt.name != "a field error gets a parent" && !errors.Is(err, cause) {
				t.Errorf("Invalid(...) does not wrap its cause")
			}
		})
	}
}
