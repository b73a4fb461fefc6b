package backends

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"go.opentelemetry.io/otel/metric"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/outauth"
)

// ErrUnknownBackend is returned for a backend name that is not configured.
var ErrUnknownBackend = errors.New("unknown backend")

// ErrUnavailable is returned when a backend is configured but not connected.
var ErrUnavailable = errors.New("backend unavailable")

// Options tunes a Manager. The zero value works.
type Options struct {
	// HTTPClient carries every HTTP backend's requests. nil: one client
	// with a pooled keep-alive transport shared by all HTTP backends.
	HTTPClient *http.Client
	// WrapTransport, when set, wraps the transport of the HTTP client
	// (HTTPClient's, or the pooled one; a client with a nil Transport has
	// http.DefaultTransport wrapped), e.g. to add the trace context to each
	// request. The caller's client is not modified. nil: none.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Logger receives connection events. nil: slog.Default().
	Logger *slog.Logger
	// OnChange is called, from the backend's own supervisor goroutine, after
	// the backend connects or reconnects and after it announces that its
	// tools, resources or prompts changed. nil: no calls. It may call the
	// backend (through Manager.Session) but must return when ctx ends. An
	// error (discovery failed) makes the supervisor drop the connection and
	// reconnect with backoff, so discovery is retried.
	OnChange func(ctx context.Context, backend string) error
	// Getenv resolves headerValueEnv and clientSecretEnv of outgoing auth.
	// nil: os.LookupEnv.
	Getenv func(string) (string, bool)
	// Meter records outgoing auth's token requests. nil: none.
	Meter metric.Meter
	// PingInterval is how often a connected backend is checked with an MCP
	// ping. Zero: config's health.interval default. Negative: never.
	PingInterval time.Duration
	// PingTimeout bounds one ping. Zero: config's health.timeout default.
	// A ping that times out counts as a failure but keeps the connection
	// until the backend is unhealthy; one the transport fails drops it at
	// once.
	PingTimeout time.Duration
	// MaxBackoff caps the wait between reconnect attempts. Zero: 30s.
	MaxBackoff time.Duration
	// DegradedAfter and UnhealthyAfter are the numbers of consecutive
	// failures (failed pings, connection attempts and calls; lost
	// connections) that make a backend degraded and unhealthy. Zero:
	// config's health defaults. A success makes it healthy again.
	DegradedAfter, UnhealthyAfter int
	// Breaker is every backend's circuit breaker. Zero: config's
	// health.breaker default (on). A negative FailureThreshold: no breaker.
	Breaker BreakerConfig
	// OnHealthChange is called after a backend's health state changed, from
	// whichever goroutine observed the change (a call or the supervisor),
	// possibly concurrently for one backend; read the state with Status.
	// It must return quickly. nil: no calls.
	OnHealthChange func(backend string)
	// Relay carries what backends send for a client (server-to-client
	// requests, progress, log messages, resource updates) to that client.
	// nil: nothing is relayed, and backend sessions declare no sampling,
	// elicitation or roots capability.
	Relay Relay
	// Store, when set, holds every client's backend sessions for all
	// replicas (see SessionStore); nil keeps them in this process.
	Store SessionStore
	// MaxClientSessions bounds the per-client sessions to HTTP backends,
	// over all backends; beyond it the least recently used one without a
	// call in flight is closed. Zero: config's server.maxBackendSessions
	// default.
	MaxClientSessions int
	// now is the breakers' clock; nil: time.Now. Tests set it.
	now func() time.Time
}

// Manager owns the connections to every configured backend.
type Manager struct {
	backends map[string]*backend
	order    []string
	opts     Options
	log      *slog.Logger

	// runCtx lives until Close; connections and supervisors run on it.
	runCtx context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	// clients holds the per-client sessions to HTTP backends.
	clients *clientConns
	// bg runs short tasks that outlive the request that started them
	// (opening a session several callers wait for, telling a backend a
	// call was cancelled); Close waits for them. closing refuses new ones.
	bg      sync.WaitGroup
	bgMu    sync.Mutex
	closing bool
	// listen holds the Listen calls running, by client session.
	listen listeners
	// ids numbers the requests vmcp makes itself on stored sessions.
	ids atomic.Uint64
	// pool is the transport New made when Options.HTTPClient was nil;
	// Close closes its idle connections. nil when the caller's client is used.
	pool *http.Transport
}

// New prepares one supervised connection per backend; it connects nothing
// until Start. What cfgs and opts leave zero takes config's defaults, as
// config.Load would fill them. It fails when outgoing auth names an
// environment variable that is not set.
func New(cfgs []config.Backend, auth config.OutgoingAuth, opts Options) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var pool *http.Transport
	if opts.HTTPClient == nil {
		pool = newPooledTransport()
		opts.HTTPClient = &http.Client{Transport: pool}
	}
	if opts.WrapTransport != nil {
		hc := *opts.HTTPClient
		base := hc.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		hc.Transport = opts.WrapTransport(base)
		opts.HTTPClient = &hc
	}
	cfgs, opts = withDefaults(cfgs, opts) // defaults.go
	if opts.Store != nil {
		opts.Store = boundedStore{opts.Store}
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	m := &Manager{backends: make(map[string]*backend, len(cfgs)), opts: opts, log: opts.Logger, pool: pool}
	m.runCtx, m.stop = context.WithCancel(context.Background())
	m.clients = newClientConns(m, opts.MaxClientSessions)
	for _, c := range cfgs {
		cred, err := newCredentials(c.Name, auth.Backends[c.Name], outauth.Options{HTTPClient: opts.HTTPClient,
			Getenv: opts.Getenv, Meter: opts.Meter, Logger: opts.Logger.With("backend", c.Name)})
		if err != nil {
			// outauth's errors start with the key they are about.
			return nil, fmt.Errorf("%s.%w", config.OutgoingAuthPath(c.Name), err)
		}
		if auth.Backends[c.Name].Type == config.AuthPassthrough {
			opts.Logger.Warn("outgoing auth passthrough: callers' own tokens are sent to this backend as they came", "backend", c.Name)
		}
		m.backends[c.Name] = newBackend(c, cred, m)
		m.order = append(m.order, c.Name)
	}
	return m, nil
}

// Start connects every backend in parallel and returns when each has either
// connected (and its OnChange call returned) or failed its first attempt, or
// when ctx ends. Backends that failed keep retrying in the background with
// capped backoff until Close.
func (m *Manager) Start(ctx context.Context) {
	runCtx := m.runCtx
	first := make(chan struct{}, len(m.order))
	for _, name := range m.order {
		b := m.backends[name]
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			b.supervise(runCtx, first)
		}()
	}
	for range m.order {
		select {
		case <-first:
		case <-ctx.Done():
			return
		}
	}
}

// Close stops every supervisor and closes every connection, terminating
// stdio children. It returns when all of them are gone.
func (m *Manager) Close() error {
	m.stop()
	m.wg.Wait()
	m.bgMu.Lock()
	m.closing = true
	m.bgMu.Unlock()
	m.bg.Wait()
	m.clients.closeAll()
	// In parallel: each stdio child may take its grace period to exit.
	errs := make([]error, len(m.order))
	var wg sync.WaitGroup
	for i, name := range m.order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.backends[name].close(); err != nil {
				errs[i] = fmt.Errorf("close backend %q: %w", name, err)
			}
		}()
	}
	wg.Wait()
	if m.pool != nil {
		// Keep-alive connections would otherwise hold a reader goroutine
		// each, here and at the backend, until IdleConnTimeout.
		m.pool.CloseIdleConnections()
	}
	return errors.Join(errs...)
}

// background runs fn on a goroutine Close waits for, and reports whether
// it did: once Close has begun, fn is not run. fn must end soon after
// runCtx does.
func (m *Manager) background(fn func()) bool {
	m.bgMu.Lock()
	defer m.bgMu.Unlock()
	if m.closing {
		return false
	}
	m.bg.Go(fn)
	return true
}

// Names returns the configured backend names in config order.
func (m *Manager) Names() []string { return m.order }

// Session returns the session of client c to backend name.
//
// A client with an MCP session gets its own session to each HTTP backend,
// opened on its first use (ctx bounds the wait, the backend's connect
// timeout the open) and kept until CloseClient, until its connection is
// lost, or until the bound of Options.MaxClientSessions evicts it. A
// stdio backend is one process every client shares; so is the connection
// a client without an MCP session (c.Session "") uses, which is also the
// one discovery and health checks use.
//
// A client's own session is not closed at that bound while it is held: from
// Session until the first request made with the returned Session ends, or
// until Release. A caller that may make no request calls Release.
func (m *Manager) Session(ctx context.Context, c Client, name string) (*Session, error) {
	b, ok := m.backends[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownBackend, name)
	}
	// One request timeout covers waiting for the session and the request
	// made with it.
	deadline := time.Now().Add(requestTimeout(b.cfg))
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if c.Session == "" || !perClient(b.cfg.Transport) {
		if outauth.CallerFrom(ctx).Subject != "" {
			// A client's request (discovery and health checks have no
			// caller): it needs its credential, and the shared connection
			// carries no caller's.
			if err := b.authorize(wctx, c); err != nil {
				return nil, err
			}
		}
		s, err := b.session()
		if s != nil {
			s.client = c.Session
			s.deadline.Store(deadline.UnixNano())
		}
		return s, err
	}
	cc, err := m.clients.get(wctx, c, b)
	if err != nil {
		if wctx.Err() != nil && ctx.Err() == nil && !isCredentialError(err) {
			return nil, fmt.Errorf("backend %q: session not opened within requestTimeout: %w", name, ErrUnavailable)
		}
		return nil, err
	}
	s := &Session{backend: b, conn: cc.conn, owner: cc, client: c.Session}
	s.deadline.Store(deadline.UnixNano())
	s.held.Store(true)
	return s, nil
}

// CloseClient closes every backend session of the client with MCP session
// id session and forgets its subscriptions on shared connections,
// unsubscribing a backend from a URI whose last subscriber it was. It
// returns when that is done.
func (m *Manager) CloseClient(session string) {
	if session == "" {
		return
	}
	n := m.clients.closeClient(session)
	for _, name := range m.order {
		m.backends[name].dropSubscriber(session)
	}
	if n > 0 {
		m.log.Debug("closed the backend sessions of a client", "client_session_prefix", prefix(session), "sessions", n)
	}
}

// RootsChanged forwards a client's notifications/roots/list_changed to its
// open backend sessions that declared roots (a session opened later asks
// afresh) and to every shared stdio connection, which may have asked any
// client (the backend's next roots/list is attributed as usual).
func (m *Manager) RootsChanged(ctx context.Context, session string) {
	if session == "" {
		return
	}
	for _, cc := range m.clients.open(session) {
		if !cc.roots {
			continue
		}
		if err := cc.conn.client.RootListChanges(ctx); err != nil {
			cc.b.log.Debug("forward notifications/roots/list_changed", "error", err)
		}
	}
	m.eachStored(ctx, session, func(b *backend, h http.Header, _ SessionData) {
		if err := m.notifyStored(ctx, b, h, string(mcp.MethodNotificationRootsListChanged), nil); err != nil {
			b.log.Debug("forward notifications/roots/list_changed", "error", err)
		}
	})
	if m.opts.Relay == nil {
		return // shared connections declare no roots
	}
	for _, name := range m.order {
		b := m.backends[name]
		if perClient(b.cfg.Transport) {
			continue
		}
		if c := b.current(); c != nil {
			if err := c.client.RootListChanges(ctx); err != nil {
				b.log.Debug("forward notifications/roots/list_changed", "error", err)
			}
		}
	}
}

// SetLevel forwards a client's logging/setLevel to its open backend
// sessions that declare logging, and to those it opens later. Shared
// connections keep their own level: one client must not change another's.
func (m *Manager) SetLevel(ctx context.Context, session string, level mcp.LoggingLevel) {
	if session == "" {
		return
	}
	for _, cc := range m.clients.setLevel(session, level) {
		select {
		case <-cc.ready:
		default:
			continue // still opening: it reads the level when it is done
		}
		if cc.conn == nil || cc.conn.client.GetServerCapabilities().Logging == nil {
			continue
		}
		req := mcp.SetLevelRequest{}
		req.Params.Level = level
		if err := cc.conn.client.SetLevel(ctx, req); err != nil {
			cc.b.log.Warn("forward logging/setLevel", "error", err)
		}
	}
	if m.opts.Store != nil {
		if err := m.opts.Store.LogLevel(ctx, session, level); err != nil {
			m.log.Warn("record the client's log level", "client_session_prefix", prefix(session), "error", err)
		}
	}
	m.eachStored(ctx, session, func(b *backend, h http.Header, d SessionData) {
		if d.Capabilities.Logging == nil {
			return
		}
		if _, err := m.requestStored(ctx, b, h, string(mcp.MethodSetLogLevel), map[string]any{"level": level}); err != nil {
			b.log.Warn("forward logging/setLevel", "error", err)
		}
	})
}

// eachStored calls fn for each of client session's backend sessions in
// the session store, whichever replica opened them; without a store, for
// none.
func (m *Manager) eachStored(ctx context.Context, session string, fn func(b *backend, h http.Header, d SessionData)) {
	if m.opts.Store == nil {
		return
	}
	st, err := m.opts.Store.Load(ctx, session)
	if err != nil {
		m.log.Warn("read the client's backend sessions", "client_session_prefix", prefix(session), "error", err)
		return
	}
	for name, d := range st.Backends {
		if b, ok := m.backends[name]; ok && m.stored(b) {
			fn(b, b.sessionHeader(d), d)
		}
	}
}

// Status reports the state of every backend, in config order.
func (m *Manager) Status() []Status {
	out := make([]Status, 0, len(m.order))
	for _, name := range m.order {
		st := m.backends[name].status()
		st.ClientSessions = m.clients.count(name)
		out = append(out, st)
	}
	return out
}

// Status is a snapshot of one backend's connection and health.
type Status struct {
	Name      string           `json:"name"`
	Transport config.Transport `json:"transport"`
	// State is the connection's state; Since is when it entered it.
	State State `json:"state"`
	// LastError is the last failure seen: of a connection attempt, the
	// connection, a ping or a call.
	LastError string    `json:"lastError,omitempty"`
	Since     time.Time `json:"since"`
	// Health is healthy, degraded or unhealthy; Failures is the number of
	// consecutive failures it is derived from.
	Health   HealthState `json:"health"`
	Failures int         `json:"consecutiveFailures"`
	// Breaker is the circuit breaker's state, "" when it is disabled.
	Breaker BreakerState `json:"breaker,omitempty"`
	// ClientSessions is the number of open per-client sessions.
	ClientSessions int `json:"clientSessions"`
}

// State is where a backend connection is in its life.
type State string

// The states of a backend connection.
const (
	StateConnecting  State = "connecting"
	StateConnected   State = "connected"
	StateUnavailable State = "unavailable"
	StateClosed      State = "closed"
)

func newPooledTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 512
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	// Calls are relayed as bytes: buffers of 32 KiB (not 4 KiB) write a
	// request and read an answer of tens of kilobytes in a few system calls
	// instead of one per 4 KiB.
	t.WriteBufferSize = 32 << 10
	t.ReadBufferSize = 32 << 10
	return t
}
