package config

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// backendName is the shape of Backend.Name; it appears in prefixed tool
// names and rate-limit keys.
var backendName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// Validate reports every problem in c at once, joined with errors.Join.
// Each problem starts with its key path, as in "backends[1].url: required
// for transport sse", and wraps ErrInvalid. Validate expects defaults to be
// filled (see ApplyDefaults) and does not change c.
func (c *Config) Validate() error {
	names := map[string]bool{}
	transports := map[string]Transport{}
	for _, b := range c.Backends {
		names[b.Name] = b.Name != ""
		transports[b.Name] = b.Transport
	}
	var p problems
	if c.Name == "" {
		p.addf("name", "required")
	}
	p.add("server", c.Server.validate())
	p.add("backends", validateBackends(c.Backends))
	p.add("incomingAuth", c.IncomingAuth.validate(c.Server.Host))
	p.add("outgoingAuth", c.OutgoingAuth.validate(transports))
	p.add("aggregation", c.Aggregation.validate(names))
	if c.Redis != nil {
		p.add("redis", c.Redis.validate())
	}
	if c.SessionStorage != nil {
		p.add("sessionStorage", c.SessionStorage.validate())
	}
	// sessionStorage with provider redis becomes the redis block after
	// validation (foldSessionStorage).
	haveRedis := c.Redis != nil || c.SessionStorage != nil && c.SessionStorage.Provider == sessionProviderRedis
	p.add("sessions", c.Sessions.validate(haveRedis))
	p.add("rateLimiting", c.RateLimiting.validate(c.IncomingAuth.Type))
	p.add("optimizer", c.Optimizer.validate())
	p.add("audit", c.Audit.validate())
	p.add("health", c.Health.validate())
	if c.Authorization != nil {
		p.add("authorization", c.Authorization.validate(names))
	}
	return p.err()
}

func (s Server) validate() error {
	var p problems
	if s.Port < 0 || s.Port > 65535 {
		p.addf("port", "must be between 0 and 65535, got %d", s.Port)
	}
	if !strings.HasPrefix(s.Path, "/") {
		p.addf("path", `must start with "/", got %q`, s.Path)
	}
	if s.MaxBodyBytes <= 0 {
		p.addf("maxBodyBytes", "must be positive, got %d", s.MaxBodyBytes)
	}
	if s.DrainGrace < 0 {
		p.addf("drainGrace", "must not be negative, got %s", s.DrainGrace)
	}
	if s.ShutdownTimeout < 0 {
		p.addf("shutdownTimeout", "must not be negative, got %s", s.ShutdownTimeout)
	}
	for i, h := range s.AllowedHosts {
		p.add(fmt.Sprintf("allowedHosts[%d]", i), checkAllowedHost(h))
	}
	for i, o := range s.AllowedOrigins {
		p.add(fmt.Sprintf("allowedOrigins[%d]", i), checkAllowedOrigin(o))
	}
	if s.MaxBackendSessions <= 0 {
		p.addf("maxBackendSessions", "must be positive, got %d", s.MaxBackendSessions)
	}
	if s.IdleTimeout <= 0 {
		p.addf("idleTimeout", "must be positive, got %s", s.IdleTimeout)
	}
	if s.MaxConnections <= 0 {
		p.addf("maxConnections", "must be positive, got %d", s.MaxConnections)
	}
	if s.MaxSessions <= 0 {
		p.addf("maxSessions", "must be positive, got %d", s.MaxSessions)
	}
	if s.MaxSessionsPerIdentity <= 0 {
		p.addf("maxSessionsPerIdentity", "must be positive, got %d", s.MaxSessionsPerIdentity)
	}
	return p.err()
}

// hostName is the shape of a DNS name in server.allowedHosts.
var hostName = regexp.MustCompile(`^[a-zA-Z0-9_]([a-zA-Z0-9_.-]*[a-zA-Z0-9_])?$`)

// checkAllowedHost accepts "*", a host name or IP, or host:port ([v6]:port).
func checkAllowedHost(h string) error {
	if h == "*" {
		return nil
	}
	if h == "" {
		return invalidf("must not be empty")
	}
	if strings.Contains(h, "/") {
		return invalidf("must be a host name or host:port, not a URL, got %q", h)
	}
	host, port := h, ""
	if hp, pp, err := net.SplitHostPort(h); err == nil {
		host, port = hp, pp
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		host = h[1 : len(h)-1]
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return invalidf("port must be between 1 and 65535, got %q", h)
		}
	}
	if net.ParseIP(host) == nil && !hostName.MatchString(host) {
		return invalidf("must be a host name, an IP address or host:port, got %q", h)
	}
	return nil
}

// checkAllowedOrigin accepts "*" or an http(s) origin: scheme://host[:port].
func checkAllowedOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return invalidf(`must be an origin such as "https://app.example.com" or "http://localhost:6274" (scheme://host[:port], nothing after), got %q`, o)
	}
	return checkAllowedHost(u.Host)
}

func validateBackends(bs []Backend) error {
	var p problems
	if len(bs) == 0 {
		p.addf("", "at least one backend is required")
	}
	first := map[string]int{}
	for i, b := range bs {
		coord := fmt.Sprintf("[%d]", i)
		p.add(coord, b.validate())
		if j, dup := first[b.Name]; dup && b.Name != "" {
			p.addf(coord+".name", "%q is also the name of backends[%d]", b.Name, j)
		} else {
			first[b.Name] = i
		}
	}
	return p.err()
}

func (b Backend) validate() error {
	var p problems
	switch {
	case b.Name == "":
		p.addf("name", "required")
	case !backendName.MatchString(b.Name):
		p.addf("name", "%q must match %s", b.Name, backendName)
	}
	switch b.Transport {
	case TransportStreamableHTTP, TransportSSE:
		if b.URL == "" {
			p.addf("url", "required for transport %s", b.Transport)
		} else if _, err := checkURL(b.URL); err != nil {
			p.add("url", err)
		}
		notAllowed := func(key string, set bool) {
			if set {
				p.addf(key, "not allowed for transport %s", b.Transport)
			}
		}
		notAllowed("command", b.Command != "")
		notAllowed("args", len(b.Args) > 0)
		notAllowed("env", len(b.Env) > 0)
		notAllowed("cwd", b.Cwd != "")
	case TransportStdio:
		if b.Command == "" {
			p.addf("command", "required for transport stdio")
		}
		if b.URL != "" {
			p.addf("url", "not allowed for transport stdio")
		}
	case "":
		p.addf("transport", "required (streamable-http, sse or stdio)")
	default:
		p.addf("transport", "must be streamable-http, sse or stdio, got %q", b.Transport)
	}
	if b.ConnectTimeout < 0 {
		p.addf("connectTimeout", "must not be negative, got %s", b.ConnectTimeout)
	}
	if b.RequestTimeout < 0 {
		p.addf("requestTimeout", "must not be negative, got %s", b.RequestTimeout)
	}
	return p.err()
}

// checkURL parses an absolute http or https URL.
func checkURL(raw string) (*url.URL, error) {
	if !strings.Contains(raw, "://") {
		return nil, invalidf("missing scheme in %q (want http:// or https://)", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, invalidf("cannot parse %q", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, invalidf("unsupported scheme %q (want http or https)", u.Scheme)
	}
	if u.Host == "" {
		return nil, invalidf("missing host in %q", raw)
	}
	return u, nil
}

// checkSecureURL is checkURL allowing plain http only for loopback hosts.
func checkSecureURL(raw string) error {
	u, err := checkURL(raw)
	if err == nil && u.Scheme == "http" && !IsLoopbackHost(u.Hostname()) {
		return invalidf("must use https (http is allowed only for loopback hosts), got %q", raw)
	}
	return err
}

// IsLoopbackHost reports whether host (a name or an IP, [v6] allowed, no
// port) names only this machine: localhost or a loopback IP.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (a IncomingAuth) validate(serverHost string) error {
	var p problems
	switch a.Type {
	case AuthAnonymous:
		if a.OIDC != nil {
			p.addf("oidc", "given but type is anonymous; set type: oidc to use it")
		}
		if !a.AllowAnonymousNetwork && !IsLoopbackHost(serverHost) {
			p.addf("type", "anonymous on non-loopback server.host %q needs allowAnonymousNetwork: true", serverHost)
		}
	case AuthOIDC:
		if a.OIDC == nil {
			p.addf("oidc", "required for type oidc")
		} else {
			p.add("oidc", a.OIDC.validate())
		}
	case "":
		p.addf("type", "required (anonymous or oidc)")
	default:
		p.addf("type", "must be anonymous or oidc, got %q", a.Type)
	}
	return p.err()
}

func (o OIDC) validate() error {
	var p problems
	if o.Issuer == "" {
		p.addf("issuer", "required")
	} else {
		p.add("issuer", checkSecureURL(o.Issuer))
	}
	if o.Audience == "" {
		p.addf("audience", "required")
	}
	if o.Resource != "" {
		if _, err := checkURL(o.Resource); err != nil {
			p.add("resource", err)
		}
	}
	if o.JWKSURL != "" {
		p.add("jwksUrl", checkSecureURL(o.JWKSURL))
	}
	for i, alg := range o.AllowedAlgorithms {
		if strings.EqualFold(alg, "none") || strings.HasPrefix(strings.ToUpper(alg), "HS") {
			p.addf(fmt.Sprintf("allowedAlgorithms[%d]", i),
				"%q not allowed: tokens must be signed with a public-key algorithm", alg)
		}
	}
	if o.ClockSkew < 0 {
		p.addf("clockSkew", "must not be negative, got %s", o.ClockSkew)
	}
	return p.err()
}

// validate checks each backend's outgoing auth; transports maps every
// configured backend's name to its transport.
func (o OutgoingAuth) validate(transports map[string]Transport) error {
	var p problems
	for _, name := range slices.Sorted(maps.Keys(o.Backends)) {
		coord := joinPath("backends", keyCoord(name))
		transport, ok := transports[name]
		if !ok {
			p.addf(coord, "no backend named %q", name)
		}
		p.add(coord, o.Backends[name].validate(transport))
	}
	return p.err()
}

func (a BackendAuth) validate(transport Transport) error {
	var p problems
	switch a.Type {
	case AuthHeaderInjection, AuthClientCredentials, AuthTokenExchange, AuthPassthrough:
		if transport == TransportStdio && a.Type != AuthHeaderInjection {
			p.addf("type", "%s needs an HTTP backend (streamable-http or sse), not stdio", a.Type)
		}
	case "":
		p.addf("type", "required (header_injection, client_credentials, token_exchange or passthrough)")
		return p.err()
	default:
		p.addf("type", "must be header_injection, client_credentials, token_exchange or passthrough, got %q", a.Type)
		return p.err()
	}
	// What each type reads, including the service identity of a per-user
	// type's shared connection.
	header, endpoint := a.Type == AuthHeaderInjection, a.Type == AuthClientCredentials || a.Type == AuthTokenExchange
	switch a.Discovery {
	case "":
	case AuthNone, AuthClientCredentials, AuthHeaderInjection:
		if !a.PerUser() {
			p.addf("discovery", "only for per-user types (token_exchange, passthrough): %s already uses its own credential there", a.Type)
			break
		}
		header = header || a.Discovery == AuthHeaderInjection
		endpoint = endpoint || a.Discovery == AuthClientCredentials
	default:
		p.addf("discovery", "must be none, client_credentials or header_injection, got %q", a.Discovery)
	}
	if header {
		if a.HeaderName == "" {
			p.addf("headerName", "required")
		}
		if a.HeaderValueEnv == "" {
			p.addf("headerValueEnv", "required")
		}
	} else {
		p.unused("headerName", a.HeaderName, a.Type)
		p.unused("headerValueEnv", a.HeaderValueEnv, a.Type)
	}
	if endpoint {
		a.validateEndpoint(&p)
	} else {
		for _, f := range []struct{ key, value string }{{"tokenURL", a.TokenURL}, {"clientID", a.ClientID},
			{"clientSecretEnv", a.ClientSecretEnv}, {"privateKeyFile", a.PrivateKeyFile}, {"privateKeyID", a.PrivateKeyID},
			{"clientAuthMethod", a.ClientAuthMethod}, {"audience", a.Audience}, {"resource", a.Resource}} {
			p.unused(f.key, f.value, a.Type)
		}
		if len(a.Scopes) > 0 {
			p.addf("scopes", "not used by %s", a.Type)
		}
	}
	if a.Type != AuthTokenExchange {
		p.unused("subjectTokenType", a.SubjectTokenType, a.Type)
		if a.ActorToken {
			p.addf("actorToken", "only for token_exchange")
		}
	} else if a.Audience == "" && a.Resource == "" {
		p.addf("audience", "token_exchange needs audience or resource (what the exchanged token is for)")
	}
	return p.err()
}

// validateEndpoint checks the token endpoint and client of
// client_credentials and token_exchange.
func (a BackendAuth) validateEndpoint(p *problems) {
	if a.TokenURL == "" {
		p.addf("tokenURL", "required")
	} else if err := checkSecureURL(a.TokenURL); err != nil {
		p.add("tokenURL", err)
	}
	if a.ClientID == "" {
		p.addf("clientID", "required")
	}
	switch {
	case a.ClientSecretEnv == "" && a.PrivateKeyFile == "":
		p.addf("clientSecretEnv", "required (or privateKeyFile)")
	case a.ClientSecretEnv != "" && a.PrivateKeyFile != "":
		p.addf("privateKeyFile", "give clientSecretEnv or privateKeyFile, not both")
	}
	switch a.ClientAuthMethod {
	case "":
	case ClientSecretBasic, ClientSecretPost:
		if a.PrivateKeyFile != "" {
			p.addf("clientAuthMethod", "%s needs clientSecretEnv, not privateKeyFile", a.ClientAuthMethod)
		}
	case PrivateKeyJWT:
		if a.PrivateKeyFile == "" {
			p.addf("clientAuthMethod", "private_key_jwt needs privateKeyFile")
		}
	default:
		p.addf("clientAuthMethod", "must be client_secret_basic, client_secret_post or private_key_jwt, got %q", a.ClientAuthMethod)
	}
	if a.PrivateKeyID != "" && a.PrivateKeyFile == "" {
		p.addf("privateKeyID", "needs privateKeyFile")
	}
	for i, s := range a.Scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") {
			p.addf(fmt.Sprintf("scopes[%d]", i), "must be one non-empty scope token, got %q", s)
		}
	}
}

// unused records a key set for a type that does not read it.
func (p *problems) unused(key, value, typ string) {
	if value != "" {
		p.addf(key, "not used by %s", typ)
	}
}

// validateAddress checks a Redis address: host:port, or unix:// and an
// absolute socket path.
func validateAddress(addr string) error {
	if addr == "" {
		return invalidf("required (host:port)")
	}
	if path, ok := strings.CutPrefix(addr, UnixSocketScheme); ok {
		if !strings.HasPrefix(path, "/") {
			return invalidf("a unix socket address must be unix:// and an absolute path, got %q", addr)
		}
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return invalidf("must be host:port, got %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return invalidf("invalid port in %q", addr)
	}
	return nil
}

func (r Redis) validate() error {
	var p problems
	p.add("address", validateAddress(r.Address))
	if r.DB < 0 {
		p.addf("db", "must not be negative, got %d", r.DB)
	}
	return p.err()
}

func (s SessionStorage) validate() error {
	var p problems
	switch s.Provider {
	case sessionProviderRedis:
		p.add("address", validateAddress(s.Address))
	case "":
		p.addf("provider", "required (redis)")
	default:
		p.addf("provider", "must be redis, got %q", s.Provider)
	}
	if s.DB < 0 {
		p.addf("db", "must not be negative, got %d", s.DB)
	}
	return p.err()
}

func (s Sessions) validate(haveRedis bool) error {
	var p problems
	switch s.Store {
	case SessionStoreMemory:
	case SessionStoreRedis:
		if !haveRedis {
			p.addf("store", "redis needs the top-level redis block (redis.address)")
		}
	default:
		p.addf("store", "must be memory or redis, got %q", s.Store)
	}
	if s.TTL < Duration(time.Minute) {
		p.addf("ttl", "must be at least 1m, got %s", s.TTL)
	}
	return p.err()
}
