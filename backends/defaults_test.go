package backends

import (
	"reflect"
	"testing"
	"time"

	"github.com/vmcp/vmcp/config"
)

// TestWithDefaultsIsTheConfigPath: what Options and the backend configs
// leave zero takes exactly what config.Load would give, and what they set
// is kept.
func TestWithDefaultsIsTheConfigPath(t *testing.T) {
	t.Parallel()
	loaded, err := config.Parse([]byte(`
backends:
  - {name: h, transport: streamable-http, url: "http://127.0.0.1:1/mcp"}
  - {name: s, transport: stdio, command: x}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := loaded.Health
	fromConfig := Options{ // as server.New passes them
		PingInterval:      h.Interval.D(),
		PingTimeout:       h.Timeout.D(),
		DegradedAfter:     h.DegradedAfter,
		UnhealthyAfter:    h.UnhealthyAfter,
		Breaker:           BreakerConfig{FailureThreshold: h.Breaker.FailureThreshold, OpenFor: h.Breaker.OpenFor.D()},
		MaxClientSessions: loaded.Server.MaxBackendSessions,
	}
	bare := []config.Backend{
		{Name: "h", Transport: config.TransportStreamableHTTP, URL: "http://127.0.0.1:1/mcp"},
		{Name: "s", Transport: config.TransportStdio, Command: "x"},
	}

	cfgs, opts := withDefaults(bare, Options{})

	if !reflect.DeepEqual(cfgs, loaded.Backends) {
		t.Errorf("backends =\n%+v\nwant what config.Load gives\n%+v", cfgs, loaded.Backends)
	}
	if bare[0].ConnectTimeout != 0 || bare[1].RequestTimeout != 0 {
		t.Errorf("withDefaults changed the caller's backends: %+v", bare)
	}
	if !reflect.DeepEqual(opts, fromConfig) {
		t.Errorf("zero Options became\n%+v\nwant what config.Load gives\n%+v", opts, fromConfig)
	}

	tests := []struct {
		name string
		in   Options
		want func(o Options) bool
	}{
		{"never ping stays never", Options{PingInterval: -1},
			func(o Options) bool { return o.PingInterval == -1 }},
		{"a set interval is kept", Options{PingInterval: time.Second, PingTimeout: 50 * time.Millisecond},
			func(o Options) bool { return o.PingInterval == time.Second && o.PingTimeout == 50*time.Millisecond }},
		{"a disabled breaker stays disabled", Options{Breaker: BreakerConfig{FailureThreshold: -1}},
			func(o Options) bool { return newBreaker(o.Breaker, nil) == nil }},
		{"a breaker without openFor gets config's", Options{Breaker: BreakerConfig{FailureThreshold: 2}},
			func(o Options) bool {
				return o.Breaker == BreakerConfig{FailureThreshold: 2, OpenFor: h.Breaker.OpenFor.D()}
			}},
		{"unhealthy is never before degraded", Options{DegradedAfter: h.UnhealthyAfter + 2},
			func(o Options) bool { return o.UnhealthyAfter == h.UnhealthyAfter+2 }},
		{"set thresholds are kept", Options{DegradedAfter: 2, UnhealthyAfter: 7, MaxClientSessions: 3},
			func(o Options) bool { return o.DegradedAfter == 2 && o.UnhealthyAfter == 7 && o.MaxClientSessions == 3 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, got := withDefaults(nil, tt.in); !tt.want(got) {
				t.Errorf("withDefaults(%+v) = %+v", tt.in, got)
			}
		})
	}
}

// TestZeroOptionsHaveConfigsBreaker: a Manager built with zero Options has
// the circuit breaker config turns on by default.
func TestZeroOptionsHaveConfigsBreaker(t *testing.T) {
	t.Parallel()
	m, err := New([]config.Backend{{Name: "s", Transport: config.TransportStdio, Command: "/bin/true"}}, config.OutgoingAuth{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.Status()[0].Breaker; got != BreakerClosed {
		t.Errorf("breaker = %q, want %q (config's default is on)", got, BreakerClosed)
	}
}
