package config

import (
	"reflect"
	"testing"
	"time"
)

func TestParseFillsDefaults(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, oneBackend+"  - {name: s, transport: stdio, command: x}\n"+withOIDC, nil)
	want := &Config{
		Name: "vmcp",
		Server: Server{Host: "127.0.0.1", Port: 4483, Path: "/mcp",
			MaxBodyBytes: 1 << 20, DrainGrace: Duration(5 * time.Second), ShutdownTimeout: Duration(15 * time.Second),
			MaxBackendSessions: 1024, IdleTimeout: Duration(2 * time.Minute), MaxConnections: defaultMaxConnections(),
			MaxSessions: 10000, MaxSessionsPerIdentity: 100},
		Backends: []Backend{
			{Name: "a", Transport: TransportStreamableHTTP, URL: "http://127.0.0.1:8081/mcp",
				ConnectTimeout: Duration(10 * time.Second), RequestTimeout: Duration(time.Minute)},
			{Name: "s", Transport: TransportStdio, Command: "x",
				ConnectTimeout: Duration(time.Minute), RequestTimeout: Duration(time.Minute)},
		},
		IncomingAuth: IncomingAuth{Type: AuthOIDC, OIDC: &OIDC{
			Issuer: "https://idp.example.com", Audience: "vmcp",
			Resource: "http://127.0.0.1:4483/mcp", ClockSkew: Duration(30 * time.Second),
		}},
		Aggregation: Aggregation{ConflictResolution: ConflictPrefix,
			ConflictResolutionConfig: ConflictResolutionConfig{PrefixFormat: "{backend}_"}},
		Sessions:     Sessions{Store: SessionStoreMemory, TTL: Duration(30 * time.Minute)},
		RateLimiting: RateLimiting{CheckTimeout: Duration(50 * time.Millisecond), OnStoreFailure: StoreFailureLocal},
		Optimizer:    Optimizer{MaxToolsToReturn: 8},
		Audit:        Audit{Output: "stdout"},
		Telemetry:    Telemetry{ServiceName: "vmcp"},
		Health:       defaultHealth(),
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse =\n%#v\nwant\n%#v", cfg, want)
	}
	if cfg := mustParse(t, oneBackend, nil); cfg.IncomingAuth.Type != AuthAnonymous {
		t.Errorf("incomingAuth.type = %q, want anonymous", cfg.IncomingAuth.Type)
	}
}

func TestApplyDefaultsKeepsValues(t *testing.T) {
	t.Parallel()
	cfg := Config{
		Name: "n",
		Server: Server{Host: "::1", Port: 8080, Path: "/x", MaxBodyBytes: 5, DrainGrace: 13, ShutdownTimeout: 1, MaxBackendSessions: 7,
			IdleTimeout: 9, MaxConnections: 10, MaxSessions: 11, MaxSessionsPerIdentity: 12},
		Backends:     []Backend{{Transport: TransportStdio, ConnectTimeout: 2, RequestTimeout: 3}},
		IncomingAuth: IncomingAuth{Type: AuthOIDC, OIDC: &OIDC{ClockSkew: 4}},
		Aggregation: Aggregation{ConflictResolution: ConflictManual,
			ConflictResolutionConfig: ConflictResolutionConfig{PrefixFormat: "{backend}."}},
		Sessions:     Sessions{Store: SessionStoreRedis, TTL: 5},
		RateLimiting: RateLimiting{CheckTimeout: 6, OnStoreFailure: StoreFailureDeny},
		Optimizer:    Optimizer{MaxToolsToReturn: 7},
		Audit:        Audit{Output: "stderr"},
		Telemetry:    Telemetry{ServiceName: "t"},
		Health: Health{Interval: 1, Timeout: 1, DegradedAfter: 2, UnhealthyAfter: 2,
			Breaker: Breaker{Enabled: new(bool), FailureThreshold: 9, OpenFor: 8}},
	}
	want := cfg
	want.IncomingAuth.OIDC = &OIDC{ClockSkew: 4, Resource: "http://[::1]:8080/x"}
	want.Backends = []Backend{{Transport: TransportStdio, ConnectTimeout: 2, RequestTimeout: 3}}
	cfg.ApplyDefaults()
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("ApplyDefaults changed set values:\n%#v\nwant\n%#v", cfg, want)
	}

	var zero Config
	zero.ApplyDefaults()
	if zero.Server.Port != 4483 {
		t.Errorf("ApplyDefaults: port = %d, want 4483", zero.Server.Port)
	}
	if zero.Server.DrainGrace != Duration(5*time.Second) {
		t.Errorf("ApplyDefaults: drainGrace = %s, want 5s", zero.Server.DrainGrace)
	}
}

// defaultHealth is the health section ApplyDefaults fills in.
func defaultHealth() Health {
	on := true
	return Health{Interval: Duration(10 * time.Second), Timeout: Duration(5 * time.Second),
		DegradedAfter: 1, UnhealthyAfter: 3,
		Breaker: Breaker{Enabled: &on, FailureThreshold: 5, OpenFor: Duration(30 * time.Second)}}
}

func TestHealthDefaultsFollowSetValues(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, oneBackend+"health: {interval: 200ms, degradedAfter: 4, breaker: {enabled: false}}\n", nil)
	h := cfg.Health
	if h.Interval.D() != 200*time.Millisecond || h.Timeout.D() != 200*time.Millisecond {
		t.Errorf("interval %s timeout %s, want 200ms each (the timeout never exceeds the interval)", h.Interval, h.Timeout)
	}
	if h.DegradedAfter != 4 || h.UnhealthyAfter != 4 {
		t.Errorf("degradedAfter %d unhealthyAfter %d, want 4 and 4", h.DegradedAfter, h.UnhealthyAfter)
	}
	if h.Breaker.On() || h.Breaker.FailureThreshold != 5 {
		t.Errorf("breaker = %+v, want off with the default threshold", h.Breaker)
	}
	env := mustParse(t, oneBackend, map[string]string{"VMCP_HEALTH_UNHEALTHYAFTER": "7", "VMCP_HEALTH_BREAKER_OPENFOR": "1m"})
	if env.Health.UnhealthyAfter != 7 || env.Health.Breaker.OpenFor.D() != time.Minute || !env.Health.Breaker.On() {
		t.Errorf("health from the environment = %+v", env.Health)
	}
}

func TestMaxConnectionsFollowsTheFileLimit(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		limit uint64
		want  int
	}{{1024, 512}, {20000, 10000}, {100, 64}, {1 << 40, 1 << 20}, {^uint64(0), 1 << 20}} {
		if got := halfOfFileLimit(c.limit); got != c.want {
			t.Errorf("halfOfFileLimit(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
	if n := defaultMaxConnections(); n < 64 || n > 1<<20 {
		t.Errorf("defaultMaxConnections() = %d, want within [64, 1<<20]", n)
	}
}
