package backends

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/config"
)

// ErrNotRelayable is returned by Manager.Post and Manager.Answer for a
// request that cannot go to the backend as bytes on the client's own
// session: the backend is not reached over streamable HTTP (stdio and SSE
// backends are served through their mcp-go client), or the request has no
// client session. The caller serves it through Manager.Session instead.
var ErrNotRelayable = errors.New("backend does not take the request as bytes")

// SessionData is a client's session with one backend as data: what a
// request on that session needs, and nothing live. A request needs no
// mcp-go client object, only this value, the backend's configuration and
// the Manager's HTTP client.
type SessionData struct {
	// Backend is the backend's configured name.
	Backend string `json:"backend"`
	// ID is the backend's Mcp-Session-Id; "" when it issued none.
	ID string `json:"id,omitempty"`
	// ProtocolVersion is the revision negotiated in initialize.
	ProtocolVersion string `json:"protocolVersion"`
	// Capabilities are what the backend declared in initialize.
	Capabilities mcp.ServerCapabilities `json:"capabilities"`
}

// data returns the session of cc as data, once it is open.
func (cc *clientConn) data() (SessionData, bool) {
	if cc.conn == nil {
		return SessionData{}, false
	}
	t, ok := cc.conn.client.GetTransport().(*answeringHTTP)
	if !ok {
		return SessionData{}, false
	}
	d := SessionData{Backend: cc.b.cfg.Name, ID: t.GetSessionId(), ProtocolVersion: protocolVersion,
		Capabilities: cc.conn.client.GetServerCapabilities()}
	if v := t.version.Load(); v != nil {
		d.ProtocolVersion = *v
	}
	return d, true
}

// Relayable reports whether calls to backend name can go to it as bytes
// (Post): it is reached over streamable HTTP.
func (m *Manager) Relayable(name string) bool {
	b, ok := m.backends[name]
	return ok && b.cfg.Transport == config.TransportStreamableHTTP
}

// SessionData returns client c's session with backend name as data,
// opening it as Session does. It fails with ErrNotRelayable for a backend
// not reached over streamable HTTP or a client without an MCP session.
func (m *Manager) SessionData(ctx context.Context, c Client, name string) (SessionData, error) {
	_, cc, err := m.relayable(ctx, c, name)
	if err != nil {
		return SessionData{}, err
	}
	defer cc.active.Add(-1)
	return cc.session, nil
}

// relayable returns backend name and client c's open session with it,
// held (cc.active) for the caller.
func (m *Manager) relayable(ctx context.Context, c Client, name string) (*backend, *clientConn, error) {
	b, ok := m.backends[name]
	if !ok {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownBackend, name)
	}
	if c.Session == "" || b.cfg.Transport != config.TransportStreamableHTTP {
		return nil, nil, ErrNotRelayable
	}
	cc, err := m.clients.get(ctx, c, b)
	if err != nil {
		return nil, nil, err
	}
	if cc.header == nil {
		cc.active.Add(-1)
		return nil, nil, ErrNotRelayable
	}
	return b, cc, nil
}

// Post sends body, one JSON-RPC request whose id on the backend is id (as
// JSON), on client c's own session with backend name, as it is: vmcp
// decodes nothing of it and nothing of the answer. It returns the
// backend's response as it arrives, whatever its status, for the caller to
// relay and close.
//
// The request carries the session's Mcp-Session-Id and protocol version,
// the backend's outgoing auth (and, through the Manager's HTTP client, the
// trace context); nothing of the client's own HTTP request. Everything,
// opening the session included, is bounded by the backend's
// requestTimeout, and ends with ctx. When ctx ends before the answer is
// complete, the backend is told with notifications/cancelled for id. A
// backend that answers 404 has forgotten the session: it is opened again
// and the request sent once more.
//
// For the backend's health and circuit breaker a response counts as a
// success, a 5xx response or none at all as a failure; a JSON-RPC error is
// an answer. Errors name the backend; the cause of a failed exchange is
// logged, not returned (it may hold an internal URL).
func (m *Manager) Post(ctx context.Context, c Client, name string, id json.RawMessage, body []byte) (*http.Response, error) {
	b, ok := m.backends[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownBackend, name)
	}
	if c.Session == "" || b.cfg.Transport != config.TransportStreamableHTTP {
		return nil, ErrNotRelayable
	}
	callCtx, cancel := context.WithTimeout(ctx, requestTimeout(b.cfg))
	for attempt := 0; ; attempt++ {
		_, cc, err := m.relayable(callCtx, c, name)
		if err != nil {
			timedOut := errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && !isCredentialError(err)
			cancel()
			if timedOut {
				return nil, fmt.Errorf("backend %q: session not opened within requestTimeout: %w", name, ErrUnavailable)
			}
			return nil, err
		}
		d := cc.session
		h, err := cc.requestHeader(callCtx)
		if err != nil {
			// No credential for this caller: nothing is sent.
			cc.active.Add(-1)
			cancel()
			return nil, err
		}
		resp, err := m.exchange(ctx, callCtx, b, h, body)
		if err != nil {
			if callCtx.Err() != nil {
				// The request may have reached the backend: tell it.
				m.cancelCall(b, h, id, cancelReason(callCtx))
			}
			cc.active.Add(-1)
			cancel()
			return nil, err
		}
		if resp.StatusCode == http.StatusNotFound && d.ID != "" && attempt == 0 && !cc.closed.Load() {
			// The backend lost the session (a restart, its own expiry):
			// open a new one and send the request again, once.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			_ = resp.Body.Close()
			cc.active.Add(-1)
			m.clients.drop(cc, fmt.Errorf("the backend answered 404 for its session: %w", ErrSessionLost))
			continue
		}
		resp.Body = &callBody{ReadCloser: resp.Body, ctx: callCtx, cancel: cancel, done: func() { cc.active.Add(-1) },
			notify: func(reason string) { m.cancelCall(b, h, id, reason) }}
		return resp, nil
	}
}

// Answer sends body, a client's JSON-RPC response to a request the backend
// sent on the client's session (sampling, elicitation, roots), on that
// session. The backend's answer to it (202, nothing to relay) is read and
// closed here.
func (m *Manager) Answer(ctx context.Context, c Client, name string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, answerPostTimeout)
	defer cancel()
	// Only a session that is open can have asked: an answer opens none.
	b, header, release, err := m.openSession(ctx, c, name)
	if err != nil {
		return err
	}
	defer release()
	resp, err := m.exchange(ctx, ctx, b, header, body)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("backend %q: answer refused: HTTP %s", name, resp.Status)
	}
	return nil
}

// Resume reopens, with GET and Last-Event-ID, the event stream of a call on
// client c's session with backend name that the backend ended before its
// answer (as servers may, to be polled), and returns it for the caller to
// relay and close. It is bounded by ctx, the call's.
func (m *Manager) Resume(ctx context.Context, c Client, name, lastEventID string) (*http.Response, error) {
	b, header, release, err := m.openSession(ctx, c, name)
	if err != nil {
		return nil, err
	}
	defer release()
	h := header.Clone()
	delete(h, "Content-Type")
	h.Set("Accept", "text/event-stream")
	h.Set("Last-Event-ID", lastEventID)
	resp, err := m.roundTrip(ctx, b, http.MethodGet, h, nil)
	if err != nil {
		return nil, fmt.Errorf("backend %q: resume the call's stream: %w", name, ErrUnavailable)
	}
	return resp, nil
}

// openSession returns backend name and the headers of client c's session
// with it, held for the caller until release, if that session is open
// (on this replica, or in the session store): it opens none.
func (m *Manager) openSession(ctx context.Context, c Client, name string) (b *backend, header http.Header, release func(), err error) {
	b, ok := m.backends[name]
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w %q", ErrUnknownBackend, name)
	}
	if cc := m.clients.existing(c, b); cc != nil {
		return b, cc.header, func() { cc.active.Add(-1) }, nil
	}
	if m.stored(b) && c.Session != "" {
		// Opened by another replica.
		st, err := m.opts.Store.Load(ctx, c.Session)
		if err == nil {
			if d, ok := st.Backends[name]; ok {
				return b, b.sessionHeader(d), func() {}, nil
			}
		}
	}
	return nil, nil, nil, fmt.Errorf("backend %q: this client has no open session with it", name)
}

// exchange POSTs body with header (a session's) to b under callCtx and counts the
// outcome for b's circuit breaker and health (ctx is the caller's: a
// request it abandoned says nothing about the backend).
//
// A request that cannot have its credential is not sent and, the caller's
// or the identity provider's trouble, counts for nothing.
func (m *Manager) exchange(ctx, callCtx context.Context, b *backend, header http.Header, body []byte) (*http.Response, error) {
	header, err := b.authorized(callCtx, header)
	if err != nil {
		return nil, err
	}
	done, ok := b.breaker.allow()
	if !ok {
		return nil, &circuitOpenError{backend: b.cfg.Name}
	}
	resp, err := m.post(callCtx, b, header, body)
	var failure error
	switch {
	case err != nil:
		failure = err
		if ctx.Err() == nil {
			b.log.Warn("request to the backend failed", "error", err)
		}
	case resp.StatusCode >= 500:
		// An answer, but one that says the call failed (a proxy's 502, a
		// crashed handler).
		failure = fmt.Errorf("backend %q: HTTP %s", b.cfg.Name, resp.Status)
	}
	// No answer is a failure unless the caller gave up first.
	observed := failure == nil || ctx.Err() == nil
	done(observed, failure != nil)
	if observed {
		b.observe(failure)
	}
	if err != nil {
		if callCtx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("backend %q: no answer within requestTimeout: %w", b.cfg.Name, ErrUnavailable)
		}
		return nil, fmt.Errorf("backend %q: %w", b.cfg.Name, ErrUnavailable)
	}
	return resp, nil
}

// sessionHeader returns the headers of a request on session d: its id and
// protocol version, content negotiation, the backend's outgoing auth;
// nothing else.
func (b *backend) sessionHeader(d SessionData) http.Header {
	h := make(http.Header, 4+len(b.cred.callsStatic))
	h["Content-Type"] = []string{"application/json"}
	h["Accept"] = []string{"application/json, text/event-stream"}
	if d.ID != "" {
		h["Mcp-Session-Id"] = []string{d.ID}
	}
	h["Mcp-Protocol-Version"] = []string{d.ProtocolVersion}
	for k, v := range b.cred.callsStatic {
		h.Set(k, v)
	}
	return h
}

// post sends one POST of body with header (shared: not modified) to b,
// through the transport of the Manager's HTTP client: a relayed call
// follows no redirect, and builds no more than it sends.
func (m *Manager) post(ctx context.Context, b *backend, header http.Header, body []byte) (*http.Response, error) {
	return m.roundTrip(ctx, b, http.MethodPost, header, body)
}

// roundTrip sends one request with header (not modified) and body (none
// when nil) to b's URL, through the transport of the Manager's HTTP client.
//
// A request without a credential header gets the dynamic credential of
// the caller of ctx, if b has one; when it cannot be had nothing is sent.
func (m *Manager) roundTrip(ctx context.Context, b *backend, method string, header http.Header, body []byte) (*http.Response, error) {
	header, err := b.authorized(ctx, header)
	if err != nil {
		return nil, err
	}
	req := &http.Request{Method: method, URL: b.url, Host: b.url.Host, Header: header,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	if body != nil {
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		// A request on a keep-alive connection the backend closed meanwhile
		// is sent again on a new one.
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	rt := m.opts.HTTPClient.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	return rt.RoundTrip(req.WithContext(ctx))
}

// cancelCall tells the backend, off the caller's goroutine and within
// cancelTimeout, that the request id on the session of header is
// cancelled.
func (m *Manager) cancelCall(b *backend, header http.Header, id json.RawMessage, reason string) {
	if len(id) == 0 {
		return
	}
	body, err := json.Marshal(map[string]any{"jsonrpc": mcp.JSONRPC_VERSION, "method": string(mcp.MethodNotificationCancelled),
		"params": map[string]any{"requestId": id, "reason": reason}})
	if err != nil {
		return
	}
	m.background(func() {
		ctx, cancel := context.WithTimeout(m.runCtx, cancelTimeout)
		defer cancel()
		if err := m.notifyRaw(ctx, b, header, body); err != nil {
			b.log.Debug("send notifications/cancelled", "error", err)
		}
	})
}

// cancelReason says why ctx ended, for notifications/cancelled.
func cancelReason(ctx context.Context) string {
	if err := context.Cause(ctx); err != nil {
		return err.Error()
	}
	return "cancelled"
}

// callBody is the body of a response Post returned. Closing it ends the
// request and releases the session; when the call's context ended before
// the body was read to its end, the call is cancelled at the backend.
type callBody struct {
	io.ReadCloser
	ctx    context.Context
	cancel context.CancelFunc
	done   func()
	notify func(reason string)
	eof    atomic.Bool
	closed atomic.Bool
}

func (c *callBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if err == io.EOF {
		c.eof.Store(true)
	}
	return n, err
}

func (c *callBody) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if !c.eof.Load() && c.ctx.Err() != nil {
		c.notify(cancelReason(c.ctx))
	}
	err := c.ReadCloser.Close()
	c.cancel()
	c.done()
	return err
}
