package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseEnvOverrides(t *testing.T) {
	t.Parallel()
	file := "name: file\nserver: {port: 1234}\n" + oneBackend + "rateLimiting: {checkTimeout: {duration: 2s}}\n"
	cfg := mustParse(t, file, map[string]string{
		"VMCP_NAME":                      "prod",
		"VMCP_SERVER_PORT":               "9000",
		"VMCP_SERVER_HOST":               "localhost",
		"VMCP_SERVER_MAXBODYBYTES":       "2048",
		"VMCP_SERVER_SHUTDOWNTIMEOUT":    "3s",
		"VMCP_RATELIMITING_CHECKTIMEOUT": "100ms",
		"VMCP_AUDIT_ENABLED":             "true",
		"VMCP_TELEMETRY_SERVICENAME":     "",       // empty: ignored
		"vmcp_server_path":               "/other", // variables are upper case
	})
	checks := []struct {
		key       string
		got, want any
	}{
		{"name", cfg.Name, "prod"},
		{"server.port", cfg.Server.Port, 9000},
		{"server.host", cfg.Server.Host, "localhost"},
		{"server.maxBodyBytes", cfg.Server.MaxBodyBytes, int64(2048)},
		{"server.shutdownTimeout", cfg.Server.ShutdownTimeout.D(), 3 * time.Second},
		{"server.path", cfg.Server.Path, "/mcp"},
		{"rateLimiting.checkTimeout", cfg.RateLimiting.CheckTimeout.D(), 100 * time.Millisecond},
		{"audit.enabled", cfg.Audit.Enabled, true},
		{"telemetry.serviceName", cfg.Telemetry.ServiceName, "vmcp"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.key, c.got, c.want)
		}
	}
}

func TestParseEnvAddsSection(t *testing.T) {
	t.Parallel()
	env := map[string]string{"VMCP_REDIS_ADDRESS": "127.0.0.1:6379", "VMCP_REDIS_DB": "3"}
	for _, file := range []string{oneBackend, oneBackend + "redis:\n", oneBackend + "redis: {db: 1, tls: true}\n"} {
		cfg := mustParse(t, file, env)
		if cfg.Redis == nil || cfg.Redis.Address != "127.0.0.1:6379" || cfg.Redis.DB != 3 {
			t.Errorf("file %q: redis = %+v, want address and db from the environment", file, cfg.Redis)
		}
	}
	cfg := mustParse(t, oneBackend+"redis: {tls: true}\n", env)
	if !cfg.Redis.TLS {
		t.Errorf("redis.tls = false, want the file's value kept beside the overrides")
	}

	cfg = mustParse(t, oneBackend, map[string]string{
		"VMCP_INCOMINGAUTH_TYPE":                 "oidc",
		"VMCP_INCOMINGAUTH_OIDC_ISSUER":          "https://idp.example.com",
		"VMCP_INCOMINGAUTH_OIDC_AUDIENCE":        "vmcp",
		"VMCP_RATELIMITING_PERUSER_MAXTOKENS":    "10",
		"VMCP_RATELIMITING_PERUSER_REFILLPERIOD": "1m",
	})
	if o := cfg.IncomingAuth.OIDC; o == nil || o.Issuer != "https://idp.example.com" || o.Resource != "http://127.0.0.1:4483/mcp" {
		t.Errorf("oidc = %+v, want issuer from the environment and the default resource", o)
	}
	if b := cfg.RateLimiting.PerUser; b == nil || b.MaxTokens != 10 || b.RefillPeriod.D() != time.Minute {
		t.Errorf("rateLimiting.perUser = %+v, want 10 per 1m", b)
	}
}

func TestParseEnvErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"integer", map[string]string{"VMCP_SERVER_PORT": "abc"},
			[]string{`server.port: invalid integer "abc" from VMCP_SERVER_PORT`}},
		{"boolean", map[string]string{"VMCP_OPTIMIZER_ENABLED": "maybe"},
			[]string{`optimizer.enabled: invalid boolean "maybe" from VMCP_OPTIMIZER_ENABLED`}},
		{"duration", map[string]string{"VMCP_RATELIMITING_CHECKTIMEOUT": "1x"},
			[]string{`rateLimiting.checkTimeout: invalid duration "1x" from VMCP_RATELIMITING_CHECKTIMEOUT`}},
		{"all at once", map[string]string{"VMCP_SERVER_PORT": "x", "VMCP_REDIS_DB": "y"},
			[]string{"server.port: invalid integer", "redis.db: invalid integer"}},
		{"valid type, invalid value", map[string]string{"VMCP_SERVER_PORT": "70000"},
			[]string{"server.port: must be between 0 and 65535"}},
		{"section from env is validated", map[string]string{"VMCP_REDIS_DB": "1"},
			[]string{"redis.address: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(oneBackend), envOf(tt.env))
			checkProblems(t, err, tt.want)
		})
	}
}

// TestParseEnvLists: a list of strings is overridden by a comma-separated
// variable, which replaces the file's list and is validated like it.
func TestParseEnvLists(t *testing.T) {
	t.Parallel()
	file := oneBackend + "server: {allowedHosts: [file.example.com]}\n"
	cfg := mustParse(t, file, map[string]string{
		"VMCP_SERVER_ALLOWEDHOSTS":   " vmcp.example.com, 10.0.0.5:4483,,",
		"VMCP_SERVER_ALLOWEDORIGINS": "https://app.example.com",
	})
	if got := strings.Join(cfg.Server.AllowedHosts, " "); got != "vmcp.example.com 10.0.0.5:4483" {
		t.Errorf("server.allowedHosts = %q, want the variable's two entries", cfg.Server.AllowedHosts)
	}
	if got := strings.Join(cfg.Server.AllowedOrigins, " "); got != "https://app.example.com" {
		t.Errorf("server.allowedOrigins = %q", cfg.Server.AllowedOrigins)
	}
	_, err := Parse([]byte(oneBackend), envOf(map[string]string{"VMCP_SERVER_ALLOWEDHOSTS": "ok.example.com,http://x"}))
	checkProblems(t, err, []string{"server.allowedHosts[1]: must be a host name or host:port, not a URL"})
}

func TestEnvFloat(t *testing.T) {
	t.Parallel()
	env := map[string]string{"VMCP_OPTIMIZER_HYBRIDWEIGHT": "0.3"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, err := Parse([]byte("backends: [{name: a, transport: streamable-http, url: http://127.0.0.1:1/mcp}]\n"), getenv)
	if err != nil || cfg.Optimizer.Weight() != 0.3 {
		t.Fatalf("hybridWeight from the environment: %v, %v", cfg.Optimizer.Weight(), err)
	}
	env["VMCP_OPTIMIZER_HYBRIDWEIGHT"] = "lots"
	if _, err := Parse([]byte("backends: [{name: a, transport: streamable-http, url: http://127.0.0.1:1/mcp}]\n"), getenv); err == nil ||
		!strings.Contains(err.Error(), `optimizer.hybridWeight: invalid number "lots" from VMCP_OPTIMIZER_HYBRIDWEIGHT`) {
		t.Errorf("bad number: %v", err)
	}
}
