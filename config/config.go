// Package config defines vmcp's YAML schema, loads it (file plus VMCP_
// environment overrides), fills defaults and validates it. Every validation
// error names the key path of the mistake and wraps ErrInvalid.
//
// The package imports no runtime package of vmcp: it only describes what the
// user asked for.
package config

import "time"

// Config is the whole vmcp configuration, as written in vmcp.yaml.
type Config struct {
	// Name identifies this vmcp instance; it is part of rate-limit keys.
	Name string `mapstructure:"name"`
	// Server is where the MCP endpoint listens.
	Server Server `mapstructure:"server"`
	// Backends lists the MCP servers to aggregate, in priority order for
	// duplicate resource URIs.
	Backends []Backend `mapstructure:"backends"`
	// IncomingAuth says how MCP clients authenticate to vmcp.
	IncomingAuth IncomingAuth `mapstructure:"incomingAuth"`
	// OutgoingAuth says how vmcp authenticates to each backend.
	OutgoingAuth OutgoingAuth `mapstructure:"outgoingAuth"`
	// Aggregation controls naming, conflicts, filters and overrides.
	Aggregation Aggregation `mapstructure:"aggregation"`
	// Redis is the store for rate limits; nil means in-memory limits.
	Redis *Redis `mapstructure:"redis"`
	// SessionStorage is the spelling other vMCP servers use for Redis; when
	// its provider is redis it fills Redis.
	SessionStorage *SessionStorage `mapstructure:"sessionStorage"`
	// Sessions says where client sessions live: in this process's memory
	// (one replica) or in Redis, so that any replica serves any request of
	// any session.
	Sessions Sessions `mapstructure:"sessions"`
	// RateLimiting holds the token buckets applied to tools/call.
	RateLimiting RateLimiting `mapstructure:"rateLimiting"`
	// Optimizer replaces the tool list with find_tool and call_tool.
	Optimizer Optimizer `mapstructure:"optimizer"`
	// Audit controls the audit trail.
	Audit Audit `mapstructure:"audit"`
	// Telemetry controls traces and metrics.
	Telemetry Telemetry `mapstructure:"telemetry"`
	// Health controls backend health checks, the health states and the
	// circuit breaker of every backend.
	Health Health `mapstructure:"health"`
	// Authorization decides which caller may use which tool, resource and
	// prompt; nil: everyone may use everything.
	Authorization *Authorization `mapstructure:"authorization"`
}

// Server is the listening side of vmcp.
type Server struct {
	Host string `mapstructure:"host"` // default 127.0.0.1
	Port int    `mapstructure:"port"` // default 4483; 0 picks a free port
	Path string `mapstructure:"path"` // default /mcp
	// MaxBodyBytes caps a request body; larger bodies get 413. Default 1 MiB.
	MaxBodyBytes int64 `mapstructure:"maxBodyBytes"`
	// DrainGrace is how long a shutdown keeps serving after /readyz turns
	// 503, before the listener closes, so that a load balancer stops
	// sending new work first. Default 5s; 0 (written explicitly in the file
	// or environment, or set after ApplyDefaults in code) closes the
	// listener at once.
	DrainGrace Duration `mapstructure:"drainGrace"`
	// ShutdownTimeout bounds the drain of in-flight requests that follows
	// DrainGrace. Default 15s.
	ShutdownTimeout Duration `mapstructure:"shutdownTimeout"`
	// AllowedHosts lists the Host header values vmcp answers besides the
	// loopback names (localhost, 127.0.0.0/8, ::1), which are always
	// allowed; anything else gets 403 (DNS-rebinding protection). An entry
	// is a host name or IP, matching any port, or host:port ([v6]:port),
	// matching that port only; "*" allows any Host. Empty (the default): a
	// request that arrives over a loopback connection must use a loopback
	// name, one that arrives on a non-loopback address may use any Host.
	AllowedHosts []string `mapstructure:"allowedHosts"`
	// AllowedOrigins lists the browser origins (scheme://host[:port]) that
	// may call vmcp besides those whose host AllowedHosts allows; "*" allows
	// any. A request with an Origin header that is allowed by neither gets
	// 403. A request without Origin (a non-browser client) is not checked.
	AllowedOrigins []string `mapstructure:"allowedOrigins"`
	// MaxBackendSessions bounds the backend sessions vmcp keeps for its
	// clients (one per client session and HTTP backend it uses); beyond it
	// the least recently used idle one is closed. Default 1024.
	MaxBackendSessions int `mapstructure:"maxBackendSessions"`
	// IdleTimeout closes a keep-alive connection that has carried no
	// request for this long. Default 2m. Requests themselves, long tool
	// calls and GET streams included, have no overall write or read
	// timeout: headers must arrive within 10s and a POST body within 30s.
	IdleTimeout Duration `mapstructure:"idleTimeout"`
	// MaxConnections caps the client connections open at once; each one
	// beyond it is answered 503 with Retry-After and closed. Default: half
	// the process's open-file limit (RLIMIT_NOFILE), the other half left
	// to backend connections, stdio pipes, Redis and files; 4096 where
	// the limit cannot be read.
	MaxConnections int `mapstructure:"maxConnections"`
	// MaxSessions caps the live MCP sessions; an initialize beyond it is
	// refused with 503 and Retry-After. Default 10000.
	MaxSessions int `mapstructure:"maxSessions"`
	// MaxSessionsPerIdentity caps the live sessions of one identity
	// (issuer and subject). At the cap, a new session ends the identity's
	// least recently used one if no request has named it for 10s, or is
	// refused with 429 and Retry-After. Default 100.
	MaxSessionsPerIdentity int `mapstructure:"maxSessionsPerIdentity"`
}

// Transport names how vmcp talks to a backend.
type Transport string

// The backend transports vmcp supports.
const (
	TransportStreamableHTTP Transport = "streamable-http"
	TransportSSE            Transport = "sse"
	TransportStdio          Transport = "stdio"
)

// Backend is one MCP server behind vmcp.
type Backend struct {
	Name      string    `mapstructure:"name"`
	Transport Transport `mapstructure:"transport"`
	// URL is required for streamable-http and sse.
	URL string `mapstructure:"url"`
	// Command, Args, Env and Cwd start a stdio backend.
	Command string            `mapstructure:"command"`
	Args    []string          `mapstructure:"args"`
	Env     map[string]string `mapstructure:"env"`
	Cwd     string            `mapstructure:"cwd"`
	// ConnectTimeout bounds one connection attempt (start, initialize and
	// first discovery). Default 10s for HTTP, 60s for stdio.
	ConnectTimeout Duration `mapstructure:"connectTimeout"`
	// RequestTimeout bounds one call to the backend. Default 60s.
	RequestTimeout Duration `mapstructure:"requestTimeout"`
}

// IncomingAuth configures client authentication.
type IncomingAuth struct {
	// Type is anonymous (default) or oidc.
	Type string `mapstructure:"type"`
	// AllowAnonymousNetwork permits anonymous auth on a non-loopback host.
	AllowAnonymousNetwork bool  `mapstructure:"allowAnonymousNetwork"`
	OIDC                  *OIDC `mapstructure:"oidc"`
}

// Incoming authentication types.
const (
	AuthAnonymous = "anonymous"
	AuthOIDC      = "oidc"
)

// OIDC configures token verification against an OpenID provider.
type OIDC struct {
	Issuer   string `mapstructure:"issuer"`
	Audience string `mapstructure:"audience"`
	// Resource is this server's URL as an OAuth protected resource.
	// Default http://host:port/path from Server; left empty when the port
	// is 0 and only known once listening.
	Resource          string   `mapstructure:"resource"`
	JWKSURL           string   `mapstructure:"jwksUrl"`
	RequiredScopes    []string `mapstructure:"requiredScopes"`
	AllowedAlgorithms []string `mapstructure:"allowedAlgorithms"`
	ClockSkew         Duration `mapstructure:"clockSkew"`
}

// OutgoingAuth configures how vmcp authenticates to backends.
type OutgoingAuth struct {
	// Backends maps a backend name to its outgoing auth.
	Backends map[string]BackendAuth `mapstructure:"backends"`
}

// Outgoing auth types. header_injection and client_credentials are the
// backend's service identity: every request to it carries the same
// credential. token_exchange and passthrough are per user: a call carries a
// credential of its caller, and only on that caller's own backend session.
const (
	// AuthHeaderInjection sets one header from an environment variable.
	AuthHeaderInjection = "header_injection"
	// AuthClientCredentials sends vmcp's own OAuth 2.0 access token
	// (client credentials grant), refreshed before it expires.
	AuthClientCredentials = "client_credentials"
	// AuthTokenExchange sends the caller's token exchanged (RFC 8693) for
	// one scoped to the backend, cached per caller until shortly before it
	// expires.
	AuthTokenExchange = "token_exchange"
	// AuthPassthrough sends the caller's own token as it came.
	AuthPassthrough = "passthrough"
	// AuthNone is the value of discovery that sends no credential.
	AuthNone = "none"
)

// Client authentication methods at a token endpoint.
const (
	ClientSecretBasic = "client_secret_basic"
	ClientSecretPost  = "client_secret_post"
	PrivateKeyJWT     = "private_key_jwt"
)

// SubjectTokenTypeAccessToken is RFC 8693's type of an OAuth 2.0 access
// token, the default subjectTokenType.
const SubjectTokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"

// BackendAuth is the outgoing auth of one backend.
type BackendAuth struct {
	// Type is header_injection, client_credentials, token_exchange or
	// passthrough.
	Type string `mapstructure:"type"`
	// HeaderName is the header to set, e.g. Authorization
	// (header_injection).
	HeaderName string `mapstructure:"headerName"`
	// HeaderValueEnv names the environment variable holding the value
	// (header_injection).
	HeaderValueEnv string `mapstructure:"headerValueEnv"`

	// TokenURL is the token endpoint (client_credentials, token_exchange).
	TokenURL string `mapstructure:"tokenURL"`
	// ClientID is vmcp's client at the token endpoint.
	ClientID string `mapstructure:"clientID"`
	// ClientSecretEnv names the environment variable holding the client
	// secret. Either it or PrivateKeyFile is required.
	ClientSecretEnv string `mapstructure:"clientSecretEnv"`
	// PrivateKeyFile is a PEM private key (RSA, P-256 or Ed25519) vmcp
	// signs RFC 7523 client assertions with (private_key_jwt) instead of
	// sending a secret.
	PrivateKeyFile string `mapstructure:"privateKeyFile"`
	// PrivateKeyID is the kid of the assertion's header. Optional.
	PrivateKeyID string `mapstructure:"privateKeyID"`
	// ClientAuthMethod is how the client authenticates: client_secret_basic
	// (the default with a secret), client_secret_post, or private_key_jwt
	// (the default, and the only choice, with a private key).
	ClientAuthMethod string `mapstructure:"clientAuthMethod"`
	// Audience and Resource name the backend to the token endpoint
	// (RFC 8693 audience, RFC 8707 resource); at least one for
	// token_exchange.
	Audience string `mapstructure:"audience"`
	Resource string `mapstructure:"resource"`
	// Scopes are requested for the token.
	Scopes []string `mapstructure:"scopes"`
	// SubjectTokenType is the RFC 8693 type of the caller's token
	// (token_exchange). Empty: SubjectTokenTypeAccessToken.
	SubjectTokenType string `mapstructure:"subjectTokenType"`
	// ActorToken, when true, sends vmcp's own client credentials token as
	// the RFC 8693 actor_token, so the exchanged token names vmcp as the
	// party acting for the caller (token_exchange).
	ActorToken bool `mapstructure:"actorToken"`
	// Discovery is the credential of the backend's shared connection
	// (discovery, health checks) under a per-user type: none (the
	// default), client_credentials (this block's token endpoint and
	// client), or header_injection (this block's headerName and
	// headerValueEnv). Per-user credentials never travel on it. Service
	// identity types use their own credential there and must leave it
	// empty.
	Discovery string `mapstructure:"discovery"`
}

// PerUser reports whether the backend is called with a credential of the
// caller (token_exchange, passthrough).
func (a BackendAuth) PerUser() bool {
	return a.Type == AuthTokenExchange || a.Type == AuthPassthrough
}

// Conflict resolution strategies.
const (
	ConflictPrefix   = "prefix"
	ConflictPriority = "priority"
	ConflictManual   = "manual"
)

// Aggregation controls how backend capabilities are merged.
type Aggregation struct {
	// ConflictResolution is prefix (default), priority or manual.
	ConflictResolution       string                   `mapstructure:"conflictResolution"`
	ConflictResolutionConfig ConflictResolutionConfig `mapstructure:"conflictResolutionConfig"`
	// Tools holds per-backend filters and overrides.
	Tools []BackendTools `mapstructure:"tools"`
}

// ConflictResolutionConfig parameterises the conflict strategies.
type ConflictResolutionConfig struct {
	// PrefixFormat is applied to every tool name under the prefix
	// strategy; {backend} is replaced by the backend name. Default "{backend}_".
	PrefixFormat string `mapstructure:"prefixFormat"`
	// PriorityOrder lists backends, highest priority first; backends not
	// listed rank after the listed ones, in config order.
	PriorityOrder []string `mapstructure:"priorityOrder"`
}

// BackendTools filters and renames one backend's tools.
type BackendTools struct {
	// Backend names the backend; "workload" is accepted as another name.
	Backend string `mapstructure:"backend"`
	// Filter is an allow-list of original tool names; empty allows all.
	Filter []string `mapstructure:"filter"`
	// Overrides maps an original tool name to a new name or description.
	Overrides map[string]ToolOverride `mapstructure:"overrides"`
}

// ToolOverride renames a tool or replaces its description.
type ToolOverride struct {
	Name        string `mapstructure:"name"`
	Description string `mapstructure:"description"`
}

// Redis locates the Redis server used for rate limits.
type Redis struct {
	// Address is host:port, or unix:///path/to/redis.sock for a Redis on
	// the same host (a sidecar), which skips the TCP stack.
	Address     string `mapstructure:"address"`
	Username    string `mapstructure:"username"`
	PasswordEnv string `mapstructure:"passwordEnv"`
	DB          int    `mapstructure:"db"`
	TLS         bool   `mapstructure:"tls"`
}

// UnixSocketScheme prefixes a Redis address that is a Unix socket path.
const UnixSocketScheme = "unix://"

// Session stores.
const (
	SessionStoreMemory = "memory"
	SessionStoreRedis  = "redis"
)

// Sessions configures the session store.
type Sessions struct {
	// Store is memory (default: sessions live in this process, one
	// replica) or redis (the top-level redis block: any replica serves any
	// session).
	Store string `mapstructure:"store"`
	// TTL ends a session no request has named for this long, on every
	// replica. Default 30m.
	TTL Duration `mapstructure:"ttl"`
}

// SessionStorage is the other vMCP servers' spelling of Redis.
type SessionStorage struct {
	Provider    string `mapstructure:"provider"`
	Address     string `mapstructure:"address"`
	DB          int    `mapstructure:"db"`
	PasswordEnv string `mapstructure:"passwordEnv"`
}

// Bucket is one token bucket: a burst of MaxTokens refilled continuously
// over RefillPeriod.
type Bucket struct {
	MaxTokens    int      `mapstructure:"maxTokens"`
	RefillPeriod Duration `mapstructure:"refillPeriod"`
}

// RateLimiting holds every bucket that applies to tools/call.
type RateLimiting struct {
	Shared  *Bucket     `mapstructure:"shared"`
	PerUser *Bucket     `mapstructure:"perUser"`
	Tools   []ToolLimit `mapstructure:"tools"`
	// CheckTimeout bounds one store check; a check that takes longer is a
	// store failure. Default 50ms.
	CheckTimeout Duration `mapstructure:"checkTimeout"`
	// OnStoreFailure decides the calls whose check the store fails, and
	// every call while it keeps failing: local (default) enforces the same
	// buckets in this replica's memory, allow lets calls through, deny
	// refuses them with 503.
	OnStoreFailure string `mapstructure:"onStoreFailure"`
}

// What rateLimiting.onStoreFailure may say.
const (
	StoreFailureLocal = "local"
	StoreFailureAllow = "allow"
	StoreFailureDeny  = "deny"
)

// Configured reports whether any bucket is set: only then is anything
// limited, and a store needed.
func (r RateLimiting) Configured() bool {
	if r.Shared != nil || r.PerUser != nil {
		return true
	}
	for _, t := range r.Tools {
		if t.Shared != nil || t.PerUser != nil {
			return true
		}
	}
	return false
}

// ToolLimit holds the buckets of one post-aggregation tool name.
type ToolLimit struct {
	Name    string  `mapstructure:"name"`
	Shared  *Bucket `mapstructure:"shared"`
	PerUser *Bucket `mapstructure:"perUser"`
}

// Optimizer configures find_tool / call_tool mode.
type Optimizer struct {
	Enabled          bool `mapstructure:"enabled"`
	MaxToolsToReturn int  `mapstructure:"maxToolsToReturn"` // default 8
	// Embeddings, when set, adds vector search through an OpenAI-compatible
	// embedding service to the lexical search (hybrid ranking).
	Embeddings *Embeddings `mapstructure:"embeddings"`
	// HybridWeight is the weight of the vector score in the hybrid ranking,
	// 0 to 1 (0: lexical only); the lexical score weighs 1 - HybridWeight.
	// nil: DefaultHybridWeight (see Weight).
	HybridWeight *float64 `mapstructure:"hybridWeight"`
}

// Weight returns HybridWeight, or its default when it is not set.
func (o Optimizer) Weight() float64 {
	if o.HybridWeight == nil {
		return DefaultHybridWeight
	}
	return *o.HybridWeight
}

// Embeddings configures an OpenAI-compatible embedding service
// (POST {url}/embeddings).
type Embeddings struct {
	// URL is the API's base URL, e.g. https://api.openai.com/v1 or
	// http://ollama:11434/v1; requests go to URL + "/embeddings".
	URL string `mapstructure:"url"`
	// Model is the embedding model's name.
	Model string `mapstructure:"model"`
	// APIKeyEnv names the environment variable holding the API key (sent as
	// a bearer token). Optional.
	APIKeyEnv string `mapstructure:"apiKeyEnv"`
	// Dimensions, when set, is sent as the requested vector size and every
	// vector must have it; 0 takes the model's.
	Dimensions int `mapstructure:"dimensions"`
	// BatchSize is the number of tool texts per request. Default 64.
	BatchSize int `mapstructure:"batchSize"`
	// Timeout bounds the embedding of a find_tool query; past it the search
	// is lexical. Default 300ms. A batch of tool texts gets 60 times as
	// long (at least 30s).
	Timeout Duration `mapstructure:"timeout"`
	// QueryPrefix and DocumentPrefix are put before a query and a tool's
	// text, for models trained with them ("query: ", "passage: ").
	QueryPrefix    string `mapstructure:"queryPrefix"`
	DocumentPrefix string `mapstructure:"documentPrefix"`
}

// Audit configures the audit trail.
type Audit struct {
	Enabled bool `mapstructure:"enabled"`
	// Output is stdout (default), stderr or a file path.
	Output           string `mapstructure:"output"`
	IncludeArguments bool   `mapstructure:"includeArguments"`
	MaxArgumentBytes int    `mapstructure:"maxArgumentBytes"`
}

// Telemetry configures OpenTelemetry.
type Telemetry struct {
	ServiceName  string `mapstructure:"serviceName"` // default vmcp
	OTLPEndpoint string `mapstructure:"otlpEndpoint"`
	Prometheus   bool   `mapstructure:"prometheus"`
}

// Health controls how vmcp watches its backends. Every failed check or call
// (a transport failure or a timeout; a tool's isError result is an answer)
// adds to a backend's consecutive failures, every success resets them.
type Health struct {
	// Interval is the time between two health checks (an MCP ping) of a
	// connected backend. Default 10s.
	Interval Duration `mapstructure:"interval"`
	// Timeout bounds one health check. Default 5s.
	Timeout Duration `mapstructure:"timeout"`
	// DegradedAfter consecutive failures make a backend degraded. Default 1.
	DegradedAfter int `mapstructure:"degradedAfter"`
	// UnhealthyAfter consecutive failures make a backend unhealthy: its
	// tools, resources and prompts leave the catalogue until it answers
	// again. Default 3.
	UnhealthyAfter int `mapstructure:"unhealthyAfter"`
	// Breaker fails calls to a backend fast after repeated failures.
	Breaker Breaker `mapstructure:"breaker"`
}

// Breaker is the circuit breaker of each backend: after FailureThreshold
// consecutive failed calls it opens and calls fail at once; after OpenFor
// one call is let through as a probe, and its success closes the circuit.
type Breaker struct {
	// Enabled turns the breaker on. Default true.
	Enabled *bool `mapstructure:"enabled"`
	// FailureThreshold is the number of consecutive failed calls that
	// opens the circuit. Default 5.
	FailureThreshold int `mapstructure:"failureThreshold"`
	// OpenFor is how long the circuit stays open before a probe. Default 30s.
	OpenFor Duration `mapstructure:"openFor"`
}

// On reports whether the breaker is enabled (unset means enabled).
func (b Breaker) On() bool { return b.Enabled == nil || *b.Enabled }

// What authorization.default and a rule's effect may say.
const (
	EffectAllow = "allow"
	EffectDeny  = "deny"
)

// Authorization decides which caller may use which tool, resource and
// prompt; nil: everyone may use everything. A matching deny rule wins over
// a matching allow rule; when no rule matches, Default decides.
type Authorization struct {
	Default string      `mapstructure:"default"` // allow | deny (default deny when the section is present)
	Rules   []AuthzRule `mapstructure:"rules"`
}

// AuthzRule is one authorization rule. It applies to a request when its
// selectors match and its condition, if any, holds. A rule that lists none
// of tools, resources, prompts and backends selects every request; one
// that lists some of tools, resources and prompts selects only those kinds,
// by glob; backends, when listed, further requires the serving backend to
// be one of them. In a glob, "*" matches any run of characters (none, and
// "/", included), "?" one character, and everything else itself.
type AuthzRule struct {
	Effect    string   `mapstructure:"effect"`    // allow | deny
	Tools     []string `mapstructure:"tools"`     // globs on post-aggregation tool names
	Resources []string `mapstructure:"resources"` // globs on resource URIs (and resource template URI templates)
	Prompts   []string `mapstructure:"prompts"`   // globs on post-aggregation prompt names
	Backends  []string `mapstructure:"backends"`  // backend names
	// When is an optional CEL condition over identity (issuer, subject,
	// claims), request (method, name, arguments) and backend; the authz
	// package compiles it.
	When string `mapstructure:"when"`
}

// Duration is a time.Duration written as a Go duration string ("1m") or
// as {duration: 1m}.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
