package backends

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/outauth"
)

// ErrTooManySessions is returned when a client needs a new backend session,
// MaxClientSessions are open and every one of them has a call in flight.
var ErrTooManySessions = errors.New("too many backend sessions")

// Client is the MCP client a backend session serves.
type Client struct {
	// Session is the client's MCP session id. "" (a request without a
	// session, as in protocol revision 2026-07-28) uses the backend's
	// shared connection.
	Session string
	// Capabilities are what the client declared in initialize. A per-client
	// backend session declares the same sampling, elicitation and roots
	// capabilities, and answers only those requests.
	Capabilities mcp.ClientCapabilities
}

// Relay carries what a backend sends for a client back to that client. ctx
// is the context of the client's call that caused it when vmcp knows it
// (mcp-go puts the client's session on it), otherwise a context without
// that session; clientSession is the client's MCP session id, "" when
// unknown.
type Relay interface {
	// Sample, Elicit and ListRoots forward a backend's server-to-client
	// request and return the client's answer.
	Sample(ctx context.Context, clientSession string, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error)
	Elicit(ctx context.Context, clientSession string, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error)
	ListRoots(ctx context.Context, clientSession string, req mcp.ListRootsRequest) (*mcp.ListRootsResult, error)
	// Notify forwards a notification (progress, log message, resource
	// updated). It must not block.
	Notify(ctx context.Context, clientSession string, n mcp.JSONRPCNotification)
}

// perClient reports whether a backend gets one session per client session:
// every HTTP transport does; a stdio backend is one process all clients
// share.
func perClient(t config.Transport) bool { return t != config.TransportStdio }

// clientConns holds the per-client backend sessions of every HTTP backend,
// at most max of them; beyond that the least recently used one without a
// call in flight is closed.
type clientConns struct {
	m   *Manager
	max int

	mu       sync.Mutex
	byKey    map[connKey]*clientConn
	byClient map[string]*clientState
	lru      list.List // of *clientConn, most recently used first
}

type connKey struct{ client, backend string }

// clientState is what vmcp keeps for one client across its backends.
type clientState struct {
	conns map[string]*clientConn // by backend
	level mcp.LoggingLevel       // "" until the client sets one
	// subs are the URIs the client subscribed to, by backend: a session
	// that is reopened (after an eviction or a lost connection) subscribes
	// to them again.
	subs map[string]map[string]struct{}
}

// clientConn is one client's session to one backend.
type clientConn struct {
	key  connKey
	b    *backend
	elem *list.Element
	// roots is set when the client declared roots, and so the session.
	roots bool
	// ready is closed once conn or err is set.
	ready chan struct{}
	conn  *conn
	err   error
	// session and header are the open session as data and the headers of
	// a request on it (read only: shared by concurrent requests), set with
	// conn for a streamable-HTTP backend.
	session SessionData
	header  http.Header
	// active counts calls in flight and sessions handed out by get whose
	// first call has not ended (Session.Release); an active session is not
	// evicted.
	active atomic.Int32
	// closed is set by close; connClosed once conn itself is closed.
	closed, connClosed atomic.Bool
	// auth is the session's dynamic credential state.
	auth sessionAuth
}

func newClientConns(m *Manager, max int) *clientConns {
	return &clientConns{m: m, max: max, byKey: make(map[connKey]*clientConn), byClient: make(map[string]*clientState)}
}

// get returns the open session of client c to backend b, opening it on
// first use. Concurrent first uses share one open. The session is returned
// with one reference in active, taken under p.mu so that oldestIdle cannot
// pick it before the caller's request starts; the caller drops it
// (Session.Release).
func (p *clientConns) get(ctx context.Context, c Client, b *backend) (*clientConn, error) {
	if err := b.authorize(ctx, c); err != nil {
		return nil, err
	}
	k := connKey{c.Session, b.cfg.Name}
	p.mu.Lock()
	cc, ok := p.byKey[k]
	if ok {
		p.lru.MoveToFront(cc.elem)
		cc.active.Add(1)
		p.mu.Unlock()
		return p.wait(ctx, cc)
	}
	var evicted *clientConn
	if len(p.byKey) >= p.max {
		if evicted = p.oldestIdle(); evicted == nil {
			p.mu.Unlock()
			return nil, fmt.Errorf("backend %q: %w (server.maxBackendSessions is %d)", b.cfg.Name, ErrTooManySessions, p.max)
		}
		p.removeLocked(evicted)
	}
	cc = &clientConn{key: k, b: b, ready: make(chan struct{}), roots: c.Capabilities.Roots != nil}
	cc.active.Store(1) // held for the caller, as above
	cc.elem = p.lru.PushFront(cc)
	p.byKey[k] = cc
	st := p.byClient[c.Session]
	if st == nil {
		st = &clientState{conns: make(map[string]*clientConn, 1)}
		p.byClient[c.Session] = st
	}
	st.conns[b.cfg.Name] = cc
	p.mu.Unlock()

	if evicted != nil {
		b.log.Info("closing the least recently used backend session", "client_session_prefix", prefix(evicted.key.client), "evicted_backend", evicted.key.backend, "max", p.max)
		evicted.close()
	}
	// Shared by every caller waiting for it, on a goroutine of its own so
	// that each caller waits only as long as its own ctx allows (a call's
	// requestTimeout): not cancelled by this caller's request, bounded by
	// the connect timeout instead.
	// It ends with the Manager too, so Close does not wait out a hung open.
	openCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	unlink := context.AfterFunc(p.m.runCtx, stop)
	if !p.m.background(func() {
		defer stop()
		defer unlink()
		p.dial(openCtx, c, b, cc)
	}) {
		unlink()
		stop()
		cc.err = fmt.Errorf("backend %q: %w", b.cfg.Name, ErrUnavailable)
		p.remove(cc)
		close(cc.ready)
	}
	return p.wait(ctx, cc)
}

// dial opens cc for client c and closes cc.ready when cc.conn or cc.err
// is set.
func (p *clientConns) dial(ctx context.Context, c Client, b *backend, cc *clientConn) {
	if p.m.stored(b) {
		d, err := p.m.storedSession(ctx, c, b)
		if err != nil {
			cc.err = err
			p.remove(cc)
		} else {
			cc.session, cc.header = d, b.sessionHeader(d)
		}
		close(cc.ready)
		return
	}
	conn, err := b.dialClient(ctx, c, cc)
	if err != nil {
		cc.err = err
		p.remove(cc)
		close(cc.ready)
		return
	}
	cc.conn = conn
	if d, ok := cc.data(); ok {
		cc.session, cc.header = d, b.sessionHeader(d)
	}
	close(cc.ready)
	if cc.closed.Load() {
		// Closed while opening (the client ended, or the connection was
		// lost at once): close() may have left the connection to us.
		cc.closeConn()
	}
}

// wait returns cc once it is open; cc holds one reference in active for
// the caller, which is dropped when wait fails.
func (p *clientConns) wait(ctx context.Context, cc *clientConn) (*clientConn, error) {
	select {
	case <-cc.ready:
	case <-ctx.Done():
		cc.active.Add(-1)
		return nil, ctx.Err()
	}
	if cc.err != nil {
		cc.active.Add(-1)
		return nil, cc.err
	}
	return cc, nil
}

// existing returns client c's open session with b as bytes can reach it
// (a streamable-HTTP one), held (active) for the caller, or nil: it opens
// none.
func (p *clientConns) existing(c Client, b *backend) *clientConn {
	p.mu.Lock()
	cc, ok := p.byKey[connKey{c.Session, b.cfg.Name}]
	if ok {
		select {
		case <-cc.ready:
			if cc.err == nil && cc.header != nil {
				cc.active.Add(1)
				p.mu.Unlock()
				return cc
			}
		default:
		}
	}
	p.mu.Unlock()
	return nil
}

// oldestIdle returns the least recently used open session without a call
// in flight, or nil. p.mu is held.
func (p *clientConns) oldestIdle() *clientConn {
	for e := p.lru.Back(); e != nil; e = e.Prev() {
		cc := e.Value.(*clientConn)
		select {
		case <-cc.ready:
		default:
			continue // still opening
		}
		if cc.active.Load() == 0 {
			return cc
		}
	}
	return nil
}

// remove forgets cc if it is still the session for its key.
func (p *clientConns) remove(cc *clientConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byKey[cc.key] != cc {
		return false
	}
	p.removeLocked(cc)
	return true
}

func (p *clientConns) removeLocked(cc *clientConn) {
	delete(p.byKey, cc.key)
	p.lru.Remove(cc.elem)
	if st := p.byClient[cc.key.client]; st != nil && st.conns[cc.key.backend] == cc {
		delete(st.conns, cc.key.backend)
	}
}

// drop closes cc after its connection failed; the client's next call opens
// a new one. A session in the store is forgotten there too when the
// backend lost it (ErrSessionLost), unless another replica replaced it.
func (p *clientConns) drop(cc *clientConn, err error) {
	if cc.conn == nil && cc.header != nil && errors.Is(err, ErrSessionLost) {
		p.m.forgetStored(p.m.runCtx, cc.key.client, cc.session)
	}
	if p.remove(cc) {
		cc.b.log.Info("backend session of a client lost; the next call opens a new one", "client_session_prefix", prefix(cc.key.client), "error", err)
		cc.close()
	}
}

// closeClient closes every backend session of one client and forgets it.
func (p *clientConns) closeClient(session string) int {
	p.mu.Lock()
	st := p.byClient[session]
	delete(p.byClient, session)
	var ccs []*clientConn
	if st != nil {
		for _, cc := range st.conns {
			p.removeLocked(cc)
			ccs = append(ccs, cc)
		}
	}
	p.mu.Unlock()
	closeAll(ccs)
	return len(ccs)
}

// closeAll closes every session; Manager.Close calls it.
func (p *clientConns) closeAll() {
	p.mu.Lock()
	ccs := make([]*clientConn, 0, len(p.byKey))
	for _, cc := range p.byKey {
		ccs = append(ccs, cc)
	}
	clear(p.byKey)
	clear(p.byClient)
	p.lru.Init()
	p.mu.Unlock()
	closeAll(ccs)
}

func closeAll(ccs []*clientConn) {
	var wg sync.WaitGroup
	for _, cc := range ccs {
		wg.Go(cc.close)
	}
	wg.Wait()
}

// setLevel records a client's log level for the sessions it opens later and
// returns the ones open now.
func (p *clientConns) setLevel(session string, level mcp.LoggingLevel) []*clientConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.byClient[session]
	if st == nil {
		st = &clientState{conns: make(map[string]*clientConn)}
		p.byClient[session] = st
	}
	st.level = level
	out := make([]*clientConn, 0, len(st.conns))
	for _, cc := range st.conns {
		out = append(out, cc)
	}
	return out
}

// level returns the log level a client set, or "".
func (p *clientConns) level(session string) mcp.LoggingLevel {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.byClient[session]; st != nil {
		return st.level
	}
	return ""
}

// open returns the client's sessions that are open now.
func (p *clientConns) open(session string) []*clientConn {
	p.mu.Lock()
	var out []*clientConn
	if st := p.byClient[session]; st != nil {
		for _, cc := range st.conns {
			out = append(out, cc)
		}
	}
	p.mu.Unlock()
	n := 0
	for _, cc := range out {
		select {
		case <-cc.ready:
			if cc.conn != nil && !cc.closed.Load() {
				out[n] = cc
				n++
			}
		default: // still opening: it starts from the client's current state
		}
	}
	return out[:n]
}

// addSub records that client session subscribed to uri on backend, unless
// the client has ended meanwhile.
func (p *clientConns) addSub(session, backend, uri string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.byClient[session]
	if st == nil {
		return
	}
	if st.subs == nil {
		st.subs = make(map[string]map[string]struct{}, 1)
	}
	if st.subs[backend] == nil {
		st.subs[backend] = make(map[string]struct{}, 1)
	}
	st.subs[backend][uri] = struct{}{}
}

// removeSub forgets a subscription addSub recorded.
func (p *clientConns) removeSub(session, backend, uri string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.byClient[session]; st != nil {
		delete(st.subs[backend], uri)
	}
}

// subsOf returns the URIs client session subscribed to on backend.
func (p *clientConns) subsOf(session, backend string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.byClient[session]
	if st == nil {
		return nil
	}
	out := make([]string, 0, len(st.subs[backend]))
	for uri := range st.subs[backend] {
		out = append(out, uri)
	}
	return out
}

// count returns the number of open per-client sessions of backend name.
func (p *clientConns) count(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k := range p.byKey {
		if k.backend == name {
			n++
		}
	}
	return n
}

// close closes the session. It never waits for one still opening: the
// opener closes that when the open completes. Safe to call more than once.
func (cc *clientConn) close() {
	cc.closed.Store(true)
	select {
	case <-cc.ready:
		cc.closeConn()
	default:
	}
}

func (cc *clientConn) closeConn() {
	if cc.conn == nil || !cc.connClosed.CompareAndSwap(false, true) {
		return
	}
	if err := cc.conn.close(); err != nil {
		cc.b.log.Debug("close backend session of a client", "error", err)
	}
}

// dialClient opens the session of client c to b: the client's sampling,
// elicitation and roots capabilities, only the matching handlers, and its
// log level if it set one.
func (b *backend) dialClient(ctx context.Context, c Client, cc *clientConn) (*conn, error) {
	if b.current() == nil {
		// The backend is down: fail fast, the supervisor is on it.
		return nil, fmt.Errorf("backend %q: %w", b.cfg.Name, ErrUnavailable)
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.ConnectTimeout.D())
	defer cancel()

	h := clientHandlers{relay: b.m.opts.Relay, session: c.Session}
	caps := mcp.ClientCapabilities{Sampling: c.Capabilities.Sampling, Elicitation: c.Capabilities.Elicitation, Roots: c.Capabilities.Roots}
	opts := []client.ClientOption{client.WithClientCapabilities(caps)}
	if h.relay != nil {
		if caps.Sampling != nil {
			opts = append(opts, client.WithSamplingHandler(h))
		}
		if caps.Elicitation != nil {
			opts = append(opts, client.WithElicitationHandler(h))
		}
		if caps.Roots != nil {
			opts = append(opts, client.WithRootsHandler(h))
		}
	}
	live, endLive := context.WithCancel(b.m.runCtx)
	var hf func(context.Context) map[string]string
	if b.cred.dynamic() {
		cc.auth.remember(outauth.CallerFrom(ctx))
		hf = headerFunc(b.cred.calls, cc.auth.last, b.logCredentialError)
	}
	conn, err := dial(live, b.cfg, b.cred.callsStatic, hf, b.m.opts.HTTPClient, b.log, opts...)
	if err != nil {
		endLive()
		return nil, fmt.Errorf("backend %q: %w", b.cfg.Name, err)
	}
	conn.endLive = endLive
	conn.client.OnNotification(func(n mcp.JSONRPCNotification) {
		switch n.Method {
		case string(mcp.MethodNotificationProgress), string(mcp.MethodNotificationMessage), mcp.MethodNotificationResourceUpdated:
			if h.relay != nil {
				h.relay.Notify(live, c.Session, n)
			}
		}
	})
	conn.client.OnConnectionLost(func(err error) { b.m.clients.drop(cc, err) })
	if _, err := conn.client.Initialize(cctx, initializeRequest()); err != nil {
		if cerr := conn.close(); cerr != nil {
			b.log.Debug("close after failed initialize", "error", cerr)
		}
		return nil, fmt.Errorf("backend %q: initialize: %w", b.cfg.Name, err)
	}
	// Read after initialize: a setLevel meanwhile skipped this session.
	if level := b.m.clients.level(c.Session); level != "" && conn.client.GetServerCapabilities().Logging != nil {
		req := mcp.SetLevelRequest{}
		req.Params.Level = level
		if err := conn.client.SetLevel(cctx, req); err != nil {
			b.log.Debug("set log level of a new backend session", "error", err)
		}
	}
	// A session reopened after an eviction or a lost connection: the
	// backend forgot the client's subscriptions with the old one.
	if uris := b.m.clients.subsOf(c.Session, b.cfg.Name); len(uris) > 0 {
		if r := conn.client.GetServerCapabilities().Resources; r != nil && r.Subscribe {
			for _, uri := range uris {
				req := mcp.SubscribeRequest{}
				req.Params.URI = uri
				if err := conn.client.Subscribe(cctx, req); err != nil {
					b.log.Warn("subscribe a reopened backend session again", "uri", uri, "error", err)
				}
			}
			b.log.Debug("subscribed a reopened backend session again", "client_session_prefix", prefix(c.Session), "subscriptions", len(uris))
		}
	}
	return conn, nil
}

// clientHandlers answers a backend's requests on a client's session by
// asking that client.
type clientHandlers struct {
	relay   Relay
	session string
}

func (h clientHandlers) CreateMessage(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	return h.relay.Sample(ctx, h.session, req)
}

func (h clientHandlers) Elicit(ctx context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	return h.relay.Elicit(ctx, h.session, req)
}

func (h clientHandlers) ListRoots(ctx context.Context, req mcp.ListRootsRequest) (*mcp.ListRootsResult, error) {
	return h.relay.ListRoots(ctx, h.session, req)
}

var (
	_ client.SamplingHandler    = clientHandlers{}
	_ client.ElicitationHandler = clientHandlers{}
	_ client.RootsHandler       = clientHandlers{}
)

func initializeRequest() mcp.InitializeRequest {
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = protocolVersion
	init.Params.ClientInfo = mcp.Implementation{Name: "vmcp", Version: "1"}
	return init
}

// prefix shortens a session id for logs.
func prefix(id string) string { return id[:min(len(id), 20)] }
