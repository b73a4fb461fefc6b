package backends

import (
	"slices"

	"github.com/vmcp/vmcp/config"
)

// withDefaults returns cfgs and opts with what they leave zero filled from
// config's defaults (config.Defaults, config.Backend.ApplyDefaults): the
// values config.Load gives. So a Manager built in code behaves like one
// built from a loaded config, and backends writes no default of its own.
// cfgs is copied, not changed.
func withDefaults(cfgs []config.Backend, opts Options) ([]config.Backend, Options) {
	cfgs = slices.Clone(cfgs)
	for i := range cfgs {
		cfgs[i].ApplyDefaults()
	}
	d := config.Defaults()
	h := d.Health
	if opts.PingInterval == 0 {
		opts.PingInterval = h.Interval.D()
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = h.Timeout.D()
	}
	if opts.DegradedAfter <= 0 {
		opts.DegradedAfter = h.DegradedAfter
	}
	if opts.UnhealthyAfter <= 0 {
		// As config does: never before degraded.
		opts.UnhealthyAfter = max(h.UnhealthyAfter, opts.DegradedAfter)
	}
	switch {
	case opts.Breaker == BreakerConfig{}:
		opts.Breaker = BreakerConfig{FailureThreshold: h.Breaker.FailureThreshold, OpenFor: h.Breaker.OpenFor.D()}
	case opts.Breaker.FailureThreshold > 0 && opts.Breaker.OpenFor <= 0:
		opts.Breaker.OpenFor = h.Breaker.OpenFor.D()
	}
	if opts.MaxClientSessions <= 0 {
		opts.MaxClientSessions = d.Server.MaxBackendSessions
	}
	return cfgs, opts
}
