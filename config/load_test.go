package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// designExample is testdata/full.yaml, the example of DESIGN.md, as it
// loads: every value written plus the defaults.
func designExample() *Config {
	minute := Duration(time.Minute)
	return &Config{
		Name: "engineering",
		Server: Server{Host: "127.0.0.1", Port: 4483, Path: "/mcp",
			MaxBodyBytes: 1 << 20, DrainGrace: Duration(5 * time.Second), ShutdownTimeout: Duration(15 * time.Second), MaxBackendSessions: 1024,
			IdleTimeout: Duration(2 * time.Minute), MaxConnections: defaultMaxConnections(),
			MaxSessions: 10000, MaxSessionsPerIdentity: 100},
		Backends: []Backend{
			{Name: "github", Transport: TransportStreamableHTTP, URL: "http://127.0.0.1:8081/mcp",
				ConnectTimeout: Duration(10 * time.Second), RequestTimeout: minute},
			{Name: "jira", Transport: TransportSSE, URL: "http://127.0.0.1:8082/sse",
				ConnectTimeout: Duration(10 * time.Second), RequestTimeout: minute},
			{Name: "files", Transport: TransportStdio, Command: "npx",
				Args:           []string{"-y", "@modelcontextprotocol/server-filesystem", "/srv"},
				ConnectTimeout: minute, RequestTimeout: minute},
		},
		IncomingAuth: IncomingAuth{Type: AuthOIDC, OIDC: &OIDC{
			Issuer:    "https://idp.example.com",
			Audience:  "https://vmcp.example.com/mcp",
			Resource:  "https://vmcp.example.com/mcp",
			ClockSkew: Duration(30 * time.Second),
		}},
		OutgoingAuth: OutgoingAuth{Backends: map[string]BackendAuth{
			"github": {Type: AuthHeaderInjection, HeaderName: "Authorization", HeaderValueEnv: "GITHUB_TOKEN"},
			"jira": {Type: AuthTokenExchange, TokenURL: "https://idp.example.com/token", ClientID: "vmcp",
				ClientSecretEnv: "VMCP_TE_SECRET", Audience: "jira"},
		}},
		Aggregation: Aggregation{
			ConflictResolution: ConflictPrefix,
			ConflictResolutionConfig: ConflictResolutionConfig{
				PrefixFormat: "{backend}_", PriorityOrder: []string{"github", "jira"}},
			Tools: []BackendTools{{
				Backend: "github",
				Filter:  []string{"create_pr", "list_issues"},
				Overrides: map[string]ToolOverride{
					"create_pr": {Name: "open_pull_request", Description: "Open a pull request"}},
			}},
		},
		Redis:    &Redis{Address: "127.0.0.1:6379", PasswordEnv: "VMCP_REDIS_PASSWORD"},
		Sessions: Sessions{Store: SessionStoreMemory, TTL: Duration(30 * time.Minute)},
		RateLimiting: RateLimiting{
			Shared:  &Bucket{MaxTokens: 1000, RefillPeriod: minute},
			PerUser: &Bucket{MaxTokens: 60, RefillPeriod: minute},
			Tools: []ToolLimit{{Name: "github_create_pr",
				PerUser: &Bucket{MaxTokens: 5, RefillPeriod: minute}}},
			CheckTimeout: Duration(50 * time.Millisecond), OnStoreFailure: StoreFailureLocal,
		},
		Optimizer: Optimizer{MaxToolsToReturn: 8},
		Audit:     Audit{Enabled: true, Output: "stdout"},
		Telemetry: Telemetry{ServiceName: "vmcp", Prometheus: true},
		Health:    defaultHealth(),
	}
}

func TestLoadDesignExample(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data, nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if want := designExample(); !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(testdata/full.yaml) =\n%#v\nwant\n%#v", got, want)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "vmcp.yaml")
	if err := os.WriteFile(path, []byte(oneBackend), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Backends[0].Name != "a" {
		t.Errorf("backend name = %q, want a", cfg.Backends[0].Name)
	}

	_, err = Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("Load(missing) = %v, want a not-exist error that is not ErrInvalid", err)
	}
}

// TestParseKeepsSpelling checks that user-chosen keys and text values
// reach the Config as written, although viper lower-cases keys.
func TestParseKeepsSpelling(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, `
backends:
  - name: GitHub.v2
    transport: streamable-http
    url: http://127.0.0.1:8081/mcp
  - name: files
    transport: stdio
    command: server
    args: [--port, 8080, 1.10, true, "~"]
    env: {PATH: /bin, Http_Proxy: "", Port: 8080}
outgoingAuth:
  backends:
    GitHub.v2: {type: header_injection, headerName: Authorization, headerValueEnv: GH_TOKEN}
aggregation:
  tools:
    - backend: GitHub.v2
      filter: [Create_PR]
      overrides: {Create_PR: {name: OpenPR}}
`, nil)
	if got, want := cfg.Backends[1].Args, []string{"--port", "8080", "1.10", "true", "~"}; !reflect.DeepEqual(got, want) {
		t.Errorf("args = %q, want %q", got, want)
	}
	if got, want := cfg.Backends[1].Env, map[string]string{"PATH": "/bin", "Http_Proxy": "", "Port": "8080"}; !reflect.DeepEqual(got, want) {
		t.Errorf("env = %q, want %q", got, want)
	}
	if _, ok := cfg.OutgoingAuth.Backends["GitHub.v2"]; !ok {
		t.Errorf("outgoingAuth.backends = %v, want key GitHub.v2", cfg.OutgoingAuth.Backends)
	}
	if got := cfg.Aggregation.Tools[0].Overrides["Create_PR"].Name; got != "OpenPR" {
		t.Errorf("overrides = %v, want Create_PR renamed to OpenPR", cfg.Aggregation.Tools[0].Overrides)
	}
}

func TestParseKeyCaseAndAnchors(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, `
Server: {MaxBodyBytes: 2048}
backends:
  - &base {name: a, transport: stdio, command: x, requestTimeout: 5s}
  - {<<: *base, name: b}
  - name: c
    transport: stdio
    command: x
    env: {<<: &vars {A: "1"}, B: "2"}
`, nil)
	if cfg.Server.MaxBodyBytes != 2048 {
		t.Errorf("maxBodyBytes = %d, want 2048", cfg.Server.MaxBodyBytes)
	}
	b := cfg.Backends[1]
	if b.Name != "b" || b.Command != "x" || b.RequestTimeout.D() != 5*time.Second {
		t.Errorf("merged backend = %+v, want name b, command x, requestTimeout 5s", b)
	}
	if got, want := cfg.Backends[2].Env, map[string]string{"A": "1", "B": "2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("merged env = %v, want %v", got, want)
	}
}

func TestParseWorkloadAlias(t *testing.T) {
	t.Parallel()
	for _, tools := range []string{
		"[{workload: a}]",
		"[{Workload: a}]",
		"[{workload: a, backend: a}]",
		"[{backend: a, workload: a}]",
	} {
		cfg := mustParse(t, oneBackend+"aggregation: {tools: "+tools+"}\n", nil)
		if got := cfg.Aggregation.Tools[0].Backend; got != "a" {
			t.Errorf("tools %s: backend = %q, want a", tools, got)
		}
	}
}

func TestParseSessionStorage(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, oneBackend+
		"sessionStorage: {provider: redis, address: \"redis:6379\", db: 2, passwordEnv: PW}\n", nil)
	want := &Redis{Address: "redis:6379", DB: 2, PasswordEnv: "PW"}
	if !reflect.DeepEqual(cfg.Redis, want) {
		t.Errorf("redis = %+v, want %+v", cfg.Redis, want)
	}

	cfg = mustParse(t, oneBackend+"redis: {address: \"main:6379\"}\n"+
		"sessionStorage: {provider: redis, address: \"other:6379\"}\n", nil)
	if cfg.Redis.Address != "main:6379" {
		t.Errorf("redis.address = %q, want the redis section to win over sessionStorage", cfg.Redis.Address)
	}
}

func TestParseDurations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		yaml string
		want time.Duration
	}{
		{"1m", time.Minute},
		{"1h30m", 90 * time.Minute},
		{"250ms", 250 * time.Millisecond},
		{`"2s"`, 2 * time.Second},
		{"{duration: 1m}", time.Minute},
		{"{Duration: 3s}", 3 * time.Second},
		{"{duration: \"4s\"}", 4 * time.Second},
	}
	for _, tt := range tests {
		cfg := mustParse(t, oneBackend+"rateLimiting: {shared: {maxTokens: 1, refillPeriod: "+tt.yaml+"}}\n", nil)
		if got := cfg.RateLimiting.Shared.RefillPeriod.D(); got != tt.want {
			t.Errorf("refillPeriod: %s = %v, want %v", tt.yaml, got, tt.want)
		}
	}
	// A zero duration decodes; refillPeriod then fails validation.
	for _, zero := range []string{"0", "0s", "{duration: 0}"} {
		_, err := Parse([]byte(oneBackend+"rateLimiting: {shared: {maxTokens: 1, refillPeriod: "+zero+"}}\n"), nil)
		checkProblems(t, err, []string{"rateLimiting.shared.refillPeriod: must be positive, got 0s"})
	}
}

func TestDurationText(t *testing.T) {
	t.Parallel()
	var d Duration
	if err := d.UnmarshalText([]byte("90s")); err != nil || d.D() != 90*time.Second {
		t.Errorf("UnmarshalText(90s) = %v, %v", d, err)
	}
	if text, _ := d.MarshalText(); string(text) != "1m30s" {
		t.Errorf("MarshalText = %q, want 1m30s", text)
	}
	err := d.UnmarshalText([]byte("1x"))
	if !errors.Is(err, ErrInvalid) || err.Error() != `invalid duration "1x"` {
		t.Errorf("UnmarshalText(1x) = %v, want invalid duration wrapping ErrInvalid", err)
	}
}

func TestParsePortZero(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "server: {port: 0}\n"+oneBackend+withOIDC, nil)
	if cfg.Server.Port != 0 {
		t.Errorf("port = %d, want the explicit 0 kept", cfg.Server.Port)
	}
	if cfg.IncomingAuth.OIDC.Resource != "" {
		t.Errorf("resource = %q, want empty while the port is unknown", cfg.IncomingAuth.OIDC.Resource)
	}
	cfg = mustParse(t, oneBackend, map[string]string{"VMCP_SERVER_PORT": "0"})
	if cfg.Server.Port != 0 {
		t.Errorf("port = %d, want 0 from VMCP_SERVER_PORT", cfg.Server.Port)
	}
}

// TestParseDrainGrace: unset takes the default; an explicit 0, in the file
// or the environment, is kept (no grace); any other value is taken.
func TestParseDrainGrace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want time.Duration
	}{
		{"unset", oneBackend, nil, 5 * time.Second},
		{"explicit zero", "server: {drainGrace: 0s}\n" + oneBackend, nil, 0},
		{"zero from the environment", oneBackend, map[string]string{"VMCP_SERVER_DRAINGRACE": "0s"}, 0},
		{"set", "server: {drainGrace: 30s}\n" + oneBackend, nil, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := mustParse(t, tt.yaml, tt.env).Server.DrainGrace.D(); got != tt.want {
				t.Errorf("drainGrace = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestLoadOptimizerEmbeddings(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte("backends: [{name: a, transport: streamable-http, url: http://127.0.0.1:1/mcp}]\n"+
		"optimizer: {enabled: true, hybridWeight: 1, embeddings: {url: http://127.0.0.1:11434/v1, model: nomic}}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Optimizer.Embeddings
	if e == nil || e.BatchSize != 64 || e.Timeout != Duration(300*time.Millisecond) || cfg.Optimizer.Weight() != 1 {
		t.Errorf("optimizer = %+v, embeddings %+v", cfg.Optimizer, e)
	}
	cfg, err = Parse([]byte("backends: [{name: a, transport: streamable-http, url: http://127.0.0.1:1/mcp}]\n"), nil)
	if err != nil || cfg.Optimizer.Weight() != DefaultHybridWeight {
		t.Errorf("default weight %v, %v", cfg.Optimizer.Weight(), err)
	}
}
