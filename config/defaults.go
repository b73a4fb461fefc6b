package config

import (
	"net"
	"net/url"
	"strconv"
	"time"
)

// Default values filled by ApplyDefaults.
const (
	defaultName               = "vmcp"
	defaultHost               = "127.0.0.1"
	defaultPort               = 4483
	defaultPath               = "/mcp"
	defaultMaxBodyBytes       = 1 << 20
	defaultShutdownTimeout    = Duration(15 * time.Second)
	defaultDrainGrace         = Duration(5 * time.Second)
	defaultMaxBackendSessions = 1024
	defaultIdleTimeout        = Duration(2 * time.Minute)
	defaultMaxSessions        = 10000
	defaultMaxSessionsPerID   = 100
	defaultSessionTTL         = Duration(30 * time.Minute)
	defaultHTTPConnect        = Duration(10 * time.Second)
	defaultStdioConnect       = Duration(60 * time.Second)
	defaultRequestTimeout     = Duration(60 * time.Second)
	defaultPrefixFormat       = "{backend}_"
	defaultMaxToolsToReturn   = 8
	// DefaultHybridWeight is optimizer.hybridWeight when it is not set.
	DefaultHybridWeight     = 0.5
	defaultEmbeddingBatch   = 64
	defaultEmbeddingTimeout = Duration(300 * time.Millisecond)
	defaultAuditOutput      = "stdout"
	defaultCheckTimeout     = Duration(50 * time.Millisecond)
	defaultClockSkew        = Duration(30 * time.Second)
	sessionProviderRedis    = "redis"
	defaultHealthInterval   = Duration(10 * time.Second)
	defaultHealthTimeout    = Duration(5 * time.Second)
	defaultDegradedAfter    = 1
	defaultUnhealthyAfter   = 3
	defaultBreakerFailures  = 5
	defaultBreakerOpenFor   = Duration(30 * time.Second)
)

// ApplyDefaults fills every field that has a default and is unset (zero);
// it never changes a value that is set. Parse calls it before Validate;
// call it for a Config built in code. Server.Port 0 becomes 4483 and
// Server.DrainGrace 0 becomes 5s here, but Parse keeps either written as 0
// in the file or environment.
func (c *Config) ApplyDefaults() { c.applyDefaults(func(string) bool { return false }) }

// applyDefaults is ApplyDefaults; a key for which written reports true
// (server.port, server.drainGrace) keeps its zero value.
func (c *Config) applyDefaults(written func(key string) bool) {
	setDefault(&c.Name, defaultName)

	s := &c.Server
	setDefault(&s.Host, defaultHost)
	if !written("server.port") {
		setDefault(&s.Port, defaultPort)
	}
	setDefault(&s.Path, defaultPath)
	setDefault(&s.MaxBodyBytes, defaultMaxBodyBytes)
	if !written("server.drainGrace") {
		setDefault(&s.DrainGrace, defaultDrainGrace)
	}
	setDefault(&s.ShutdownTimeout, defaultShutdownTimeout)
	setDefault(&s.MaxBackendSessions, defaultMaxBackendSessions)
	setDefault(&s.IdleTimeout, defaultIdleTimeout)
	setDefault(&s.MaxConnections, defaultMaxConnections())
	setDefault(&s.MaxSessions, defaultMaxSessions)
	setDefault(&s.MaxSessionsPerIdentity, defaultMaxSessionsPerID)
	setDefault(&c.Sessions.Store, SessionStoreMemory)
	setDefault(&c.Sessions.TTL, defaultSessionTTL)

	for i := range c.Backends {
		c.Backends[i].ApplyDefaults()
	}

	setDefault(&c.IncomingAuth.Type, AuthAnonymous)
	if o := c.IncomingAuth.OIDC; o != nil {
		setDefault(&o.ClockSkew, defaultClockSkew)
		if o.Resource == "" && s.Port != 0 {
			host := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
			o.Resource = (&url.URL{Scheme: "http", Host: host, Path: s.Path}).String()
		}
	}

	a := &c.Aggregation
	setDefault(&a.ConflictResolution, ConflictPrefix)
	setDefault(&a.ConflictResolutionConfig.PrefixFormat, defaultPrefixFormat)

	setDefault(&c.RateLimiting.CheckTimeout, defaultCheckTimeout)
	setDefault(&c.RateLimiting.OnStoreFailure, StoreFailureLocal)
	setDefault(&c.Optimizer.MaxToolsToReturn, defaultMaxToolsToReturn)
	if e := c.Optimizer.Embeddings; e != nil {
		setDefault(&e.BatchSize, defaultEmbeddingBatch)
		setDefault(&e.Timeout, defaultEmbeddingTimeout)
	}
	setDefault(&c.Audit.Output, defaultAuditOutput)
	setDefault(&c.Telemetry.ServiceName, defaultName)

	h := &c.Health
	setDefault(&h.Interval, defaultHealthInterval)
	setDefault(&h.Timeout, min(defaultHealthTimeout, h.Interval))
	setDefault(&h.DegradedAfter, defaultDegradedAfter)
	setDefault(&h.UnhealthyAfter, max(defaultUnhealthyAfter, h.DegradedAfter))
	if h.Breaker.Enabled == nil {
		on := true
		h.Breaker.Enabled = &on
	}
	setDefault(&h.Breaker.FailureThreshold, defaultBreakerFailures)
	setDefault(&h.Breaker.OpenFor, defaultBreakerOpenFor)

	if z := c.Authorization; z != nil {
		setDefault(&z.Default, EffectDeny)
	}
}

// ApplyDefaults fills b's unset timeouts: connectTimeout (10s, 60s for
// stdio) and requestTimeout (60s). Config.ApplyDefaults calls it for every
// backend.
func (b *Backend) ApplyDefaults() {
	if b.Transport == TransportStdio {
		setDefault(&b.ConnectTimeout, defaultStdioConnect)
	} else {
		setDefault(&b.ConnectTimeout, defaultHTTPConnect)
	}
	setDefault(&b.RequestTimeout, defaultRequestTimeout)
}

// Defaults returns the Config that has every default filled and nothing
// else: the value each key takes when it is unset. A package that takes
// parts of a Config in code (backends.Options) fills its zero fields from
// it, so each default is written once, here.
func Defaults() Config {
	var c Config
	c.ApplyDefaults()
	return c
}

// setDefault sets *p to v when *p is the zero value.
func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// fallbackMaxConnections is server.maxConnections where the open-file
// limit is not known.
const fallbackMaxConnections = 4096

// halfOfFileLimit is half of an open-file limit, between 64 and 1<<20 (a
// limit of "unlimited" reads as the largest integer).
func halfOfFileLimit(limit uint64) int {
	return int(min(max(limit/2, 64), 1<<20))
}
