// Package server assembles vmcp: it connects the backends, builds the
// catalogue, wraps mcp-go's Streamable HTTP server in the request path of
// DESIGN.md, serves it with /healthz and /readyz, and shuts everything down
// in reverse order of start.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/vmcp/vmcp/aggregator"
	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/authz"
	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/bodylimit"
	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/discovery"
	"github.com/vmcp/vmcp/optimizer"
	"github.com/vmcp/vmcp/parse"
	"github.com/vmcp/vmcp/ratelimit"
	"github.com/vmcp/vmcp/recovery"
	"github.com/vmcp/vmcp/router"
	"github.com/vmcp/vmcp/sessions"
	"github.com/vmcp/vmcp/telemetry"
)

// Options tunes a Server. The zero value works.
type Options struct {
	// Logger receives every log line. nil: slog.Default().
	Logger *slog.Logger
	// HTTPClient carries requests to HTTP backends. nil: one pooled
	// keep-alive transport shared by all HTTP backends.
	HTTPClient *http.Client
	// Version is reported to MCP clients as the server version. "": "dev".
	Version string
	// Getenv resolves environment references in the config (outgoing auth
	// header values). nil: os.LookupEnv.
	Getenv func(string) (string, bool)
	// TracerProvider records vmcp's spans; the caller owns it. nil: the
	// OTLP exporter of telemetry.otlpEndpoint, or no tracing when unset.
	TracerProvider trace.TracerProvider
}

// Server is a running vmcp. It is an http.Handler serving the MCP endpoint,
// /healthz, /readyz and, with telemetry.prometheus, /metrics.
type Server struct {
	cfg  config.Config
	log  *slog.Logger
	opts Options

	backends *backends.Manager
	relay    *relay
	agg      *aggregator.Aggregator
	sync     *catalogueSync
	sessions *sessionIDs
	policy   *authz.Policy // nil without an authorization section: everyone may use everything
	redis    *redis.Client // nil without a redis block (redis.go)
	tel      *telemetry.Telemetry
	// optimizer is find_tool and call_tool; nil when optimizer.enabled is
	// false.
	optimizer *optimizer.Tools
	mcpHTTP   *mcpserver.StreamableHTTPServer
	mux       *http.ServeMux

	httpSrv  *http.Server
	listener net.Listener
	serveErr chan error
	inflight atomic.Int64 // MCP requests in progress, GET streams excluded
	draining atomic.Bool  // set by Shutdown: /readyz answers 503

	auditLog atomic.Pointer[audit.Writer] // nil: no audit file (yet)

	health *healthChanges // health.go

	closers      []func() error
	shutdownOnce sync.Once
	shutdownErr  error
}

// New validates cfg and assembles a server without connecting or listening
// (see Start). It also refuses what Start would refuse without the network
// (an unset redis.passwordEnv, an audit file that cannot be opened, a rate
// limiter that cannot be built), so a config New accepts fails in Start
// only for what needs the network (listener, Redis, identity provider).
// cfg is taken as given: defaults are expected to be applied, as
// config.Load does.
func New(cfg config.Config, opts Options) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	s := &Server{cfg: cfg, log: opts.Logger, opts: opts, mux: http.NewServeMux(), serveErr: make(chan error, 1)}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.runClosers())
		}
	}()

	if err := s.preflight(); err != nil { // preflight.go
		return nil, err
	}
	if err := s.setupTelemetry(); err != nil {
		return nil, err
	}
	if s.policy, err = authz.New(cfg.Authorization); err != nil {
		return nil, err
	}
	names := make([]string, len(cfg.Backends))
	for i, b := range cfg.Backends {
		names[i] = b.Name
	}
	s.agg = aggregator.New(cfg.Aggregation, names, s.log)
	// Backends report health changes once started (Start), when the
	// catalogue's sync is in place.
	s.health = watchHealth(s.applyHealth)
	s.closers = append(s.closers, s.health.close)
	// The router opens backend sessions through s.backends, built below
	// before anything is served; mcp-go's server needs the router (for
	// completions) and the backends need the relay to mcp-go's clients.
	rt := router.New(s.agg.Catalogue, s.openBackend)
	hooks := &mcpserver.Hooks{} // filled by newRelay below
	mcp := mcpserver.NewMCPServer(cfg.Name, opts.Version,
		mcpserver.WithToolCapabilities(true),
		mcpserver.WithResourceCapabilities(true, true),
		mcpserver.WithPromptCapabilities(true),
		mcpserver.WithCompletions(),
		mcpserver.WithPromptCompletionProvider(rt),
		mcpserver.WithResourceCompletionProvider(rt),
		// What backends ask of clients and send them is relayed.
		mcpserver.WithLogging(),
		mcpserver.WithElicitation(),
		mcpserver.WithRoots(),
		mcpserver.WithHooks(hooks),
		// With authorization, each caller lists what it may use (the
		// tools/list mcp-go serves has a cursor; the endpoint serves the
		// others).
		mcpserver.WithToolFilter(func(ctx context.Context, t []mcp.Tool) []mcp.Tool { return s.sync.filterTools(ctx, t) }),
		mcpserver.WithPromptFilter(func(ctx context.Context, p []mcp.Prompt) []mcp.Prompt { return s.sync.filterPrompts(ctx, p) }),
		mcpserver.WithRecovery(),
	)
	mcp.EnableSampling()
	clients := newClientRelay(mcp, s.log) // clientrelay.go
	if s.redis, err = s.redisClient(); err != nil {
		return nil, err
	}
	s.sessions = newSessionIDs()
	var store backends.SessionStore
	if cfg.Sessions.Store == config.SessionStoreRedis {
		rs := sessions.NewRedis(s.redis, cfg.Name, cfg.Sessions.TTL.D())
		s.sessions.store = newSessionStore(rs, s.log) // store.go
		store = backendStore{rs: rs}
	}
	s.backends, err = backends.New(cfg.Backends, cfg.OutgoingAuth, backends.Options{
		HTTPClient:    opts.HTTPClient,
		WrapTransport: s.backendTransport(),
		Logger:        s.log,
		OnChange:      s.backendChanged,
		Getenv:        opts.Getenv,
		Meter:         s.tel.MeterProvider().Meter("github.com/vmcp/vmcp/outauth"),
		// health: see health.go
		PingInterval:      cfg.Health.Interval.D(),
		PingTimeout:       cfg.Health.Timeout.D(),
		DegradedAfter:     cfg.Health.DegradedAfter,
		UnhealthyAfter:    cfg.Health.UnhealthyAfter,
		Breaker:           breakerConfig(cfg.Health.Breaker),
		OnHealthChange:    s.health.changed,
		Relay:             clients,
		MaxClientSessions: cfg.Server.MaxBackendSessions,
		Store:             store,
	})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.backends.Close)
	// Before the backends close: what they relay meanwhile is dropped.
	s.closers = append(s.closers, clients.out.close)
	s.relay = newRelay(clients, s.backends, rt, hooks, mcp, s.log) // relay.go
	s.sync = &catalogueSync{agg: s.agg, mcp: mcp, router: rt, callTool: clients.flushed(rt.CallTool), log: s.log}
	s.sync.policy = s.policy
	if cfg.Optimizer.Enabled {
		o, err := s.newOptimizer() // optimizer.go
		if err != nil {
			return nil, err
		}
		s.sync.installOptimizer(o)
		s.optimizer = o
	}
	if store != nil {
		s.sessions.endBackends, s.sessions.changed = s.backends.EndClient, s.backends.Refresh
		s.sessions.onEnd = s.backends.CloseClient
		clients.known = s.sessions.capsOf
	}
	s.mcpHTTP = mcpserver.NewStreamableHTTPServer(mcp,
		mcpserver.WithEndpointPath(cfg.Server.Path),
		mcpserver.WithHTTPContextFunc(func(ctx context.Context, _ *http.Request) context.Context {
			if cs := mcpserver.ClientSessionFromContext(ctx); cs != nil {
				clients.declare(cs) // a session opened on another replica
			}
			return ctx
		}),
		mcpserver.WithSessionIdManager(s.sessions),
		mcpserver.WithStreamableHTTPLogger(s.log),
	)
	s.closers = append(s.closers, func() error { return s.mcpHTTP.Shutdown(context.Background()) })

	return s, nil
}

// openBackend opens the session to backend of the client whose request ctx
// is, for the router (calls served through mcp-go).
func (s *Server) openBackend(ctx context.Context, backend string) (router.Backend, error) {
	sess, err := s.backends.Session(ctx, s.relay.clients.clientOf(ctx), backend)
	if err != nil {
		return nil, err
	}
	return sess, nil
}

// buildRoutes assembles the request path and the routes around it. It runs
// in Start, once the listener's address is known (the default OIDC resource
// is built from it) and the identity provider has been reached.
func (s *Server) buildRoutes(ctx context.Context) error {
	rec, err := s.auditRecorder()
	if err != nil {
		return err
	}
	rec, metrics, err := s.withMetrics(rec)
	if err != nil {
		return err
	}
	authStage, err := s.authentication(ctx, rec)
	if err != nil {
		return err
	}
	store, err := s.rateLimitStore(ctx)
	if err != nil {
		return err
	}
	rl, err := ratelimit.New(s.cfg.RateLimiting, ratelimit.Options{
		ServerName: s.cfg.Name,
		Store:      store,
		Recorder:   rec,
		Logger:     s.log,
		Meter:      s.tel.MeterProvider().Meter("github.com/vmcp/vmcp/ratelimit"),
		KnownTool: func(name string) bool {
			_, ok := s.agg.Catalogue().Tool(name)
			return ok
		},
	})
	if err != nil {
		return fmt.Errorf("ratelimit: %w", err)
	}
	au, err := s.auditStage(rec, metrics)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	d := deps{
		recover:   recovery.New(s.log),
		telemetry: telemetry.New(s.tel),
		bodyLimit: bodylimit.New(s.cfg.Server.MaxBodyBytes),
		auth:      authStage,
		parse:     parse.New(parse.Options{Optimizer: s.cfg.Optimizer.Enabled}),
		authz:     s.authzStage(rec),
		rateLimit: rl,
		audit:     au,
		discovery: discovery.New(s.sync),
	}
	endpoint := &mcpEndpoint{mcp: s.mcpHTTP, sessions: s.sessions, tools: s.sync, relay: s.relay, log: s.log, inflight: &s.inflight,
		unknown: s.answerUnknown,
		calls:   &callRelay{router: s.sync.router, backends: s.backends, clients: s.relay.clients, log: s.log}, // calls.go
		modern:  &modernRelay{router: s.sync.router, poster: backends.NewModern(s.backends), log: s.log},       // modern.go
	}
	endpoint.index()
	s.mux.Handle(s.cfg.Server.Path, chain(s.stages(d), endpoint))
	s.mux.HandleFunc("GET /healthz", healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if h := s.tel.MetricsHandler(); h != nil {
		s.mux.Handle("GET /metrics", h)
	}
	return s.observeState()
}

// backendChanged rediscovers one backend and installs the new catalogue.
// It runs on that backend's supervisor goroutine; an error makes the
// supervisor reconnect and try again with backoff, while the catalogue
// keeps the backend's previous capabilities.
func (s *Server) backendChanged(ctx context.Context, name string) error {
	sess, err := s.backends.Session(ctx, backends.Client{}, name)
	if err != nil {
		return err
	}
	caps, err := sess.Discover(ctx)
	if err != nil {
		s.log.Warn("rediscover backend; keeping its previous capabilities", "backend", name, "error", err)
		return err
	}
	cat, err := s.agg.Update(name, (*aggregator.Capabilities)(caps))
	if err != nil {
		s.log.Error("catalogue has unsettled conflicts", "error", err)
	}
	s.log.Info("catalogue updated", "backend", name, "tools", len(cat.Tools), "backend_tools", cat.ToolCount(name),
		"resources", len(cat.Resources), "prompts", len(cat.Prompts))
	s.sync.Sync()
	return nil
}

// Start connects every backend in parallel (each bounded by its connect
// timeout), builds the catalogue and starts serving HTTP on server.host and
// server.port. Backends that are down keep retrying in the background. ctx
// bounds start-up only. Start fails when the listener cannot be opened or
// when manual conflict resolution leaves a conflict unsettled.
func (s *Server) Start(ctx context.Context) error {
	// Listen first (nothing is served until the end): the address is part
	// of the default OIDC resource, and a port in use should fail fast.
	addr := net.JoinHostPort(s.cfg.Server.Host, strconv.Itoa(s.cfg.Server.Port))
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	limited := limitConns(ln, s.cfg.Server.MaxConnections, s.log) // conns.go
	ln = limited
	s.listener = ln
	s.closers = append(s.closers, func() error {
		if s.httpSrv == nil { // never served: the listener is still ours to close
			return ln.Close()
		}
		return nil
	})
	// The session bounds and idle sweep (sessions.go), stopped before mcp-go.
	if err := s.pingRedis(ctx); err != nil {
		return err
	}
	s.closers = append(s.closers, s.sessions.start(s.cfg, s.mcpHTTP, s.log))
	if err := s.buildRoutes(ctx); err != nil {
		return err
	}

	s.backends.Start(ctx)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := s.agg.Conflicts(); err != nil {
		return err
	}
	s.sync.Sync()
	s.warnUnknownLimitedTools()
	// No ReadTimeout or WriteTimeout: they would cut long calls and GET
	// streams; parse bounds the reading of a body.
	s.httpSrv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: s.cfg.Server.IdleTimeout.D(),
		ConnState: limited.connState, // idle keep-alive connections make room at the cap
		ErrorLog:  slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	go func() {
		err := s.httpSrv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveErr <- err
	}()
	s.log.Info("vmcp serving", "url", "http://"+ln.Addr().String()+s.cfg.Server.Path)
	return nil
}

// Addr returns the address the server listens on, or nil before Start.
func (s *Server) Addr() net.Addr {
	if s.listener == nil {
		return nil
	}
	return s.listener.Addr()
}

// ServeHTTP serves the MCP endpoint, /healthz, /readyz and /metrics. A request whose
// Host or Origin is not allowed (server.allowedHosts, server.allowedOrigins; by
// default a loopback connection needs a loopback name) is refused first (DNS
// rebinding: a web page must not drive or read a local vmcp from a browser).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.rejectDNSRebinding(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Shutdown stops a server in the order a load balancer needs. At once,
// /readyz answers 503 with reason "draining" and responses ask clients to
// close their connections. For server.drainGrace the server keeps serving
// every request that still arrives, so the balancer notices before the
// listener closes. Then it stops accepting connections, waits for
// in-flight requests (up to server.shutdownTimeout), ends the clients'
// sessions and streams, and runs the cleanup hooks in reverse order of
// registration: backend connections and stdio children, then the rest.
// ctx bounds the whole: when it ends, the grace and the drain stop short
// and the hooks still run. A server that never served skips the grace.
// Shutdown returns every error joined; calling it again returns the same
// result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Server) shutdown(ctx context.Context) error {
	var errs []error
	if s.httpSrv != nil {
		s.draining.Store(true)
		// Every response from now on closes its connection (and idle ones
		// close now), so a client's next request goes through the balancer
		// again instead of down a kept-alive connection to this replica.
		s.httpSrv.SetKeepAlivesEnabled(false)
		if grace := s.cfg.Server.DrainGrace.D(); grace > 0 {
			s.log.Info("draining: not ready, still serving", "grace", grace)
			graceOver := time.NewTimer(grace)
			select {
			case <-graceOver.C:
			case <-ctx.Done():
				graceOver.Stop()
			}
		}
		drainCtx, cancel := context.WithTimeout(ctx, s.cfg.Server.ShutdownTimeout.D())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- s.httpSrv.Shutdown(drainCtx) }()

		if err := waitIdle(drainCtx, &s.inflight); err != nil {
			errs = append(errs, fmt.Errorf("drain in-flight requests: %w", err))
		}
		// Open GET streams never go idle by themselves: end the sessions.
		s.mcpHTTP.CloseSessions(drainCtx)
		if err := <-done; err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
			_ = s.httpSrv.Close()
		}
		if err := <-s.serveErr; err != nil {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
	}
	errs = append(errs, s.runClosers())
	return errors.Join(errs...)
}

// waitIdle polls n until it is zero or ctx ends.
func waitIdle(ctx context.Context, n *atomic.Int64) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for n.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// runClosers runs the registered closes in reverse order, once.
func (s *Server) runClosers() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	return errors.Join(errs...)
}
