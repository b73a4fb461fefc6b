package backends

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/config"
)

// protocolVersion is the revision vmcp speaks to backends: the newest
// session-based one, which every current server understands and which keeps
// list_changed notifications on the session's stream.
const protocolVersion = "2025-11-25"

// backend is one configured backend and its supervised connection.
type backend struct {
	cfg  config.Backend
	cred credentials
	// url is cfg.URL parsed once, for the requests vmcp builds itself; nil
	// for stdio.
	url *url.URL
	m   *Manager
	log *slog.Logger

	// changed and lost are signalled by transport goroutines (never blocking)
	// and drained by the supervisor, which alone touches the connection.
	changed chan struct{}
	lost    chan lossReport

	health  *health
	breaker *breaker // nil: disabled
	// subs are the clients' resource subscriptions on the shared
	// connection; they outlive a connection, so that the next one
	// subscribes to the same URIs.
	subs *subscriptions

	mu        sync.RWMutex
	conn      *conn
	state     State
	lastErr   string
	since     time.Time
	closeOnce sync.Once
}

func newBackend(c config.Backend, cred credentials, m *Manager) *backend {
	u, _ := url.Parse(c.URL) // validated by config
	if c.URL == "" {
		u = nil
	}
	return &backend{
		cfg:     c,
		cred:    cred,
		url:     u,
		m:       m,
		log:     m.log.With("backend", c.Name),
		changed: make(chan struct{}, 1),
		lost:    make(chan lossReport, 1),
		health:  newHealth(m.opts.DegradedAfter, m.opts.UnhealthyAfter),
		breaker: newBreaker(m.opts.Breaker, m.opts.now),
		subs:    &subscriptions{},
		state:   StateConnecting,
		since:   time.Now(),
	}
}

// supervise connects, reconnects with capped backoff, pings an idle
// connection and forwards change signals until ctx ends. A connection lost
// within MaxBackoff of connecting counts as a failed attempt, so a backend
// that keeps dropping its sessions is not re-initialised in a loop. It
// signals first once, after the first attempt.
func (b *backend) supervise(ctx context.Context, first chan<- struct{}) {
	signalled := false
	signalFirst := func() {
		if !signalled {
			signalled = true
			first <- struct{}{}
		}
	}
	defer signalFirst()

	// At first a lost backend is retried as often as it is checked.
	initial := min(time.Second, b.m.opts.MaxBackoff)
	if b.m.opts.PingInterval > 0 {
		initial = min(initial, b.m.opts.PingInterval)
	}
	backoff := initial
	for ctx.Err() == nil {
		err := b.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.setState(StateUnavailable, err)
			b.observe(err)
			b.log.Warn("backend unavailable; retrying", "error", err, "retry_in", backoff)
			signalFirst()
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, b.m.opts.MaxBackoff)
			continue
		}
		connected := time.Now()
		b.log.Info("backend connected", "transport", b.cfg.Transport)
		b.resubscribe(ctx)
		err = b.notifyChange(ctx)
		if err == nil {
			b.observe(nil)
		}
		signalFirst()
		if err == nil {
			err = b.watch(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		b.setState(StateUnavailable, err)
		b.observe(err)
		b.dropConn()
		if time.Since(connected) >= b.m.opts.MaxBackoff {
			// It was stable: reconnect at once and start the backoff over.
			b.log.Warn("backend connection lost; reconnecting", "error", err)
			backoff = initial
			continue
		}
		// Lost soon after connecting: a backend that keeps doing that is
		// retried with the same backoff as one that cannot be reached.
		b.log.Warn("backend connection lost soon after connecting; retrying", "error", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, b.m.opts.MaxBackoff)
	}
}

// watch waits until the connection is lost or ctx ends, running change
// callbacks and idle pings on the way.
func (b *backend) watch(ctx context.Context) error {
	var tick <-chan time.Time
	if b.m.opts.PingInterval > 0 {
		t := time.NewTicker(b.m.opts.PingInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-b.lost:
			if r.conn != b.current() {
				continue // about a connection already replaced
			}
			if !r.definitive {
				// One failed request (a proxy's 502, a reset) is not a dead
				// backend: drop the connection only if it no longer answers.
				// The request itself was counted by the call.
				if err := b.ping(ctx); err == nil {
					b.observe(nil)
					b.log.Debug("request failed but the backend answers ping; keeping the connection", "error", r.err)
					continue
				}
			}
			return r.err
		case <-b.changed:
			if err := b.notifyChange(ctx); err != nil {
				return err
			}
		case <-tick:
			err := b.ping(ctx)
			if err == nil {
				b.observe(nil)
				continue
			}
			err = fmt.Errorf("ping: %w", err)
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				// Slow is not dead: keep the connection (a stdio child's
				// restart loses its state) until the backend is unhealthy.
				if state := b.observe(err); state != HealthUnhealthy {
					b.log.Warn("backend did not answer ping in time", "timeout", b.m.opts.PingTimeout, "health", state)
					continue
				}
				b.log.Warn("unhealthy backend does not answer ping; reconnecting")
			}
			// The supervisor counts the failure (again) as it drops the connection.
			return err
		}
	}
}

// notifyChange runs OnChange; its error (discovery failed) makes the
// supervisor reconnect, which retries discovery with backoff.
func (b *backend) notifyChange(ctx context.Context) error {
	if b.m.opts.OnChange == nil {
		return nil
	}
	if err := b.m.opts.OnChange(ctx, b.cfg.Name); err != nil {
		return fmt.Errorf("discover: %w", err)
	}
	return nil
}

// ping checks that the backend still answers. Only a transport failure
// counts: a backend that answers ping with a JSON-RPC error is alive.
func (b *backend) ping(ctx context.Context) error {
	c := b.current()
	if c == nil {
		return ErrUnavailable
	}
	pctx, cancel := context.WithTimeout(ctx, b.m.opts.PingTimeout)
	defer cancel()
	err := c.client.Ping(pctx)
	if err != nil && (isTransportFailure(ctx, err) || errors.Is(err, context.DeadlineExceeded)) {
		return err
	}
	return nil
}

// connect opens, initialises and installs a new connection.
func (b *backend) connect(ctx context.Context) error {
	b.setState(StateConnecting, nil)
	cctx, cancel := context.WithTimeout(ctx, b.cfg.ConnectTimeout.D())
	defer cancel()

	// The connection's streams and child live on ctx, as dial requires; the
	// connect timeout ends them only while this attempt is still running.
	live, endLive := context.WithCancel(ctx)
	stopTimeout := context.AfterFunc(cctx, endLive)
	h := sharedHandlers{relay: b.m.opts.Relay, calls: &callTable{}}
	var opts []client.ClientOption
	if h.relay != nil && !perClient(b.cfg.Transport) {
		// Every client shares this process, so it may ask for what any of
		// them can do; the relay refuses what the attributed client cannot.
		opts = append(opts, client.WithSamplingHandler(h), client.WithElicitationHandler(h), client.WithRootsHandler(h))
	}
	c, err := dial(live, b.cfg, b.cred.discoveryStatic, b.discoveryHeaderFunc(), b.m.opts.HTTPClient, b.log, opts...)
	if err != nil {
		endLive()
		return err
	}
	c.endLive = endLive
	c.calls = h.calls
	c.client.OnNotification(func(n mcp.JSONRPCNotification) {
		switch n.Method {
		case mcp.MethodNotificationToolsListChanged,
			mcp.MethodNotificationResourcesListChanged,
			mcp.MethodNotificationPromptsListChanged:
			select {
			case b.changed <- struct{}{}:
			default: // a change is already pending; one rediscovery covers both
			}
		default:
			if h.relay != nil && !h.notify(live, b.subs, n) {
				b.log.Debug("notification on the shared connection not relayed: no client to attribute it to", "method", n.Method)
			}
		}
	})
	c.client.OnConnectionLost(func(err error) { b.reportLost(lossReport{conn: c, err: err, definitive: true}) })

	init, err := c.client.Initialize(cctx, initializeRequest())
	if err != nil {
		// Close first: once a stdio child is reaped its stderr is complete.
		if cerr := c.close(); cerr != nil {
			b.log.Debug("close after failed initialize", "error", cerr)
		}
		return fmt.Errorf("initialize: %w%s", err, c.stderrTail())
	}
	if !stopTimeout() {
		// The timeout fired just as initialize returned and ended the streams.
		if cerr := c.close(); cerr != nil {
			b.log.Debug("close after connect timeout", "error", cerr)
		}
		return fmt.Errorf("initialize: %w", cctx.Err())
	}
	c.serverInfo, c.instructions = init.ServerInfo, init.Instructions
	b.mu.Lock()
	b.conn = c
	b.state = StateConnected
	b.lastErr = ""
	b.since = time.Now()
	b.mu.Unlock()
	return nil
}

// lossReport says that a connection failed at the transport level.
type lossReport struct {
	conn *conn
	err  error
	// definitive is set when the transport itself says the connection is
	// gone; otherwise one request failed and the supervisor checks.
	definitive bool
}

// reportLost hands r to the supervisor, which ignores reports about a
// connection it has already replaced. It never blocks: one pending report
// is enough.
func (b *backend) reportLost(r lossReport) {
	select {
	case b.lost <- r:
	default:
	}
}

func (b *backend) current() *conn {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.conn
}

func (b *backend) session() (*Session, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.conn == nil {
		// The cause (stderr, URLs, a backend's error page) stays in the
		// logs and /readyz; MCP clients get the fact only.
		return nil, fmt.Errorf("backend %q: %w", b.cfg.Name, ErrUnavailable)
	}
	return &Session{backend: b, conn: b.conn}, nil
}

// observe records one outcome for the backend's health (nil: a success),
// keeps a failure as the last error, and tells OnHealthChange about a
// change of state. It returns the state after the outcome.
func (b *backend) observe(err error) HealthState {
	state, changed := b.health.observe(err)
	if err != nil {
		b.mu.Lock()
		b.lastErr = err.Error()
		b.mu.Unlock()
	}
	if changed {
		b.log.Info("backend health changed", "health", state, "error", err)
		if f := b.m.opts.OnHealthChange; f != nil {
			f(b.cfg.Name)
		}
	}
	return state
}

func (b *backend) setState(s State, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.state = s
	b.since = time.Now()
	if err != nil {
		b.lastErr = err.Error()
	}
}

func (b *backend) dropConn() {
	b.mu.Lock()
	c := b.conn
	b.conn = nil
	b.mu.Unlock()
	if c != nil {
		if err := c.close(); err != nil {
			b.log.Debug("close lost connection", "error", err)
		}
	}
}

func (b *backend) close() error {
	var err error
	b.closeOnce.Do(func() {
		b.mu.Lock()
		c := b.conn
		b.conn = nil
		b.state = StateClosed
		b.since = time.Now()
		b.mu.Unlock()
		if c != nil {
			err = c.close()
		}
	})
	return err
}

func (b *backend) status() Status {
	b.mu.RLock()
	defer b.mu.RUnlock()
	st := Status{Name: b.cfg.Name, Transport: b.cfg.Transport, State: b.state, LastError: b.lastErr, Since: b.since}
	st.Health, st.Failures = b.health.snapshot()
	st.Breaker = b.breaker.snapshot()
	return st
}

// isTransportFailure reports whether err means the connection itself
// failed, as opposed to the backend answering with an error.
func isTransportFailure(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var te *transport.Error
	return errors.As(err, &te) || errors.Is(err, transport.ErrSessionTerminated)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// conn is one live client connection and whatever it started.
type conn struct {
	client *client.Client
	// serverInfo and instructions are what the backend said of itself in
	// initialize (the shared connection's).
	serverInfo   mcp.Implementation
	instructions string
	// ids numbers the requests vmcp sends itself, so it can cancel them.
	ids atomic.Uint64
	// calls is set on a shared connection only: the calls in flight.
	calls *callTable
	// kill terminates stdio children that outlive the client's own close
	// (grandchildren of npx, for example). nil for HTTP transports.
	kill func()
	// stderr returns recent stderr output of a stdio child, or "".
	stderr func() string
	// endLive ends the context the connection's streams run on.
	endLive context.CancelFunc
	// cancels are the notifications/cancelled being sent (cancelLater);
	// close waits for them (each is bounded by cancelTimeout, and fails
	// once the client is closed).
	cancels   sync.WaitGroup
	cancelsMu sync.Mutex
	closing   bool
}

// cancelLater runs fn, which tells the backend a request was cancelled, on
// a goroutine close waits for; once close has begun, fn is not run.
func (c *conn) cancelLater(fn func()) {
	c.cancelsMu.Lock()
	defer c.cancelsMu.Unlock()
	if !c.closing {
		c.cancels.Go(fn)
	}
}

func (c *conn) close() error {
	c.cancelsMu.Lock()
	c.closing = true
	c.cancelsMu.Unlock()
	err := c.client.Close()
	c.cancels.Wait()
	if c.kill != nil {
		c.kill()
	}
	if c.endLive != nil {
		c.endLive()
	}
	var exit *exec.ExitError
	if errors.Is(err, transport.ErrChildShutdownTimeout) || errors.Is(err, exec.ErrWaitDelay) || errors.As(err, &exit) {
		// The kill above finished the job, or the child exited with a
		// status or by the signal close sent it: closing succeeded.
		err = nil
	}
	return err
}

func (c *conn) stderrTail() string {
	if c.stderr == nil {
		return ""
	}
	if s := c.stderr(); s != "" {
		return "; stderr: " + s
	}
	return ""
}
