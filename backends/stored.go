package backends

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/internal/sse"
)

// SessionStore is where the backend sessions of every client are recorded
// when several vmcp replicas serve the same clients (sessions.store:
// redis), so that a backend sees one session per client session whichever
// replica relays. With a store, a client's session with a streamable-HTTP
// backend is data only (SessionData): it is opened with a plain
// initialize exchange by the first replica that needs it, recorded, and
// used as it is by every replica; nothing in a replica's memory is needed
// to use it. Without one (nil), each such session is an mcp-go client of
// this process.
type SessionStore interface {
	// Load returns what the store has for client session: its backend
	// sessions, log level and subscriptions. An unknown session is an
	// error.
	Load(ctx context.Context, session string) (ClientState, error)
	// Swap records next as client session's session with backend in
	// place of prev (nil: none recorded) if prev is still the one
	// recorded, and returns the one recorded after (nil: none). next nil
	// forgets prev.
	Swap(ctx context.Context, session, backend string, prev, next *SessionData) (*SessionData, error)
	// LogLevel records the log level client session set, for the backend
	// sessions opened later.
	LogLevel(ctx context.Context, session string, level mcp.LoggingLevel) error
	// Subscribed records (on) or forgets client session's subscription to
	// uri on backend, for a backend session that replaces a lost one.
	Subscribed(ctx context.Context, session, backend, uri string, on bool) error
}

// ClientState is what the store holds of one client for its backends.
type ClientState struct {
	// Backends are the client's backend sessions, by backend name.
	Backends map[string]SessionData
	// LogLevel is the level the client set, "" if none.
	LogLevel mcp.LoggingLevel
	// Subscriptions are the URIs the client subscribed to, by backend.
	Subscriptions map[string][]string
}

// stored reports whether client sessions with b are data in the session
// store.
func (m *Manager) stored(b *backend) bool {
	return m.opts.Store != nil && b.cfg.Transport == config.TransportStreamableHTTP
}

// storedSession returns client c's session with b from the store, opening
// and recording one when there is none: the first replica to record one
// wins, and a replica that lost the race closes its own and uses the
// winner's.
func (m *Manager) storedSession(ctx context.Context, c Client, b *backend) (SessionData, error) {
	st, err := m.opts.Store.Load(ctx, c.Session)
	if err != nil {
		return SessionData{}, fmt.Errorf("backend %q: client session: %w", b.cfg.Name, err)
	}
	if d, ok := st.Backends[b.cfg.Name]; ok {
		return d, nil
	}
	if b.current() == nil {
		// The backend is down: fail fast, the supervisor is on it.
		return SessionData{}, fmt.Errorf("backend %q: %w", b.cfg.Name, ErrUnavailable)
	}
	cctx, cancel := context.WithTimeout(ctx, b.cfg.ConnectTimeout.D())
	defer cancel()
	d, err := m.initialize(cctx, c, b)
	if err != nil {
		return SessionData{}, err
	}
	h := b.sessionHeader(d)
	m.prepare(cctx, b, h, d, st.LogLevel, st.Subscriptions[b.cfg.Name])
	won, err := m.opts.Store.Swap(ctx, c.Session, b.cfg.Name, nil, &d)
	if err != nil || won == nil || won.ID != d.ID {
		m.endStored(ctx, b, h)
		if err != nil {
			return SessionData{}, fmt.Errorf("backend %q: record the session: %w", b.cfg.Name, err)
		}
		if won == nil {
			return SessionData{}, fmt.Errorf("backend %q: the client session ended", b.cfg.Name)
		}
		return *won, nil
	}
	b.log.Debug("opened a backend session for a client", "client_session_prefix", prefix(c.Session))
	return d, nil
}

// forgetStored removes d from the store after the backend answered 404 for
// it, unless another replica has replaced it already.
func (m *Manager) forgetStored(ctx context.Context, session string, d SessionData) {
	if _, err := m.opts.Store.Swap(ctx, session, d.Backend, &d, nil); err != nil {
		m.log.Warn("forget a backend session the backend lost", "backend", d.Backend, "error", err)
	}
}

// initialize opens a session with b for client c by hand: initialize
// declaring the client's sampling, elicitation and roots capabilities,
// then notifications/initialized.
func (m *Manager) initialize(ctx context.Context, c Client, b *backend) (SessionData, error) {
	caps := mcp.ClientCapabilities{Sampling: c.Capabilities.Sampling, Elicitation: c.Capabilities.Elicitation, Roots: c.Capabilities.Roots}
	if m.opts.Relay == nil {
		caps = mcp.ClientCapabilities{}
	}
	init := initializeRequest()
	init.Params.Capabilities = caps
	body, err := json.Marshal(map[string]any{"jsonrpc": mcp.JSONRPC_VERSION, "id": "vmcp-initialize",
		"method": string(mcp.MethodInitialize), "params": init.Params})
	if err != nil {
		return SessionData{}, fmt.Errorf("backend %q: initialize: %w", b.cfg.Name, err)
	}
	h := make(http.Header, 3+len(b.cred.callsStatic))
	h["Content-Type"] = []string{"application/json"}
	h["Accept"] = []string{"application/json, text/event-stream"}
	for k, v := range b.cred.callsStatic {
		h.Set(k, v)
	}
	resp, err := m.exchange(ctx, ctx, b, h, body)
	if err != nil {
		return SessionData{}, fmt.Errorf("backend %q: initialize: %w", b.cfg.Name, err)
	}
	raw, err := readResult(resp)
	if err != nil {
		return SessionData{}, fmt.Errorf("backend %q: initialize: %w", b.cfg.Name, err)
	}
	var res mcp.InitializeResult
	if err := json.Unmarshal(raw, &res); err != nil || res.ProtocolVersion == "" {
		return SessionData{}, fmt.Errorf("backend %q: initialize: not an initialize result", b.cfg.Name)
	}
	d := SessionData{Backend: b.cfg.Name, ID: resp.Header.Get("Mcp-Session-Id"), ProtocolVersion: res.ProtocolVersion,
		Capabilities: res.Capabilities}
	if err := m.notifyStored(ctx, b, b.sessionHeader(d), string(mcp.MethodNotificationInitialized), nil); err != nil {
		return SessionData{}, fmt.Errorf("backend %q: notifications/initialized: %w", b.cfg.Name, err)
	}
	return d, nil
}

// prepare brings a new session up to the client's state: its log level
// and, for a session that replaces one the backend lost, its
// subscriptions.
func (m *Manager) prepare(ctx context.Context, b *backend, h http.Header, d SessionData, level mcp.LoggingLevel, uris []string) {
	if level != "" && d.Capabilities.Logging != nil {
		if _, err := m.requestStored(ctx, b, h, string(mcp.MethodSetLogLevel), map[string]any{"level": level}); err != nil {
			b.log.Debug("set log level of a new backend session", "error", err)
		}
	}
	if r := d.Capabilities.Resources; r == nil || !r.Subscribe {
		return
	}
	for _, uri := range uris {
		if _, err := m.requestStored(ctx, b, h, string(mcp.MethodResourcesSubscribe), map[string]any{"uri": uri}); err != nil {
			b.log.Warn("subscribe a reopened backend session again", "uri", uri, "error", err)
		}
	}
}

// requestStored sends one request on the session of h and returns its
// result; a JSON-RPC error is returned as mcp-go's client returns it, a
// failed exchange as a *transport.Error. It counts nothing for the
// backend's health: its callers do (Session's send).
func (m *Manager) requestStored(ctx context.Context, b *backend, h http.Header, method string, params any) (json.RawMessage, error) {
	body, err := json.Marshal(map[string]any{"jsonrpc": mcp.JSONRPC_VERSION,
		"id": "vmcp-" + strconv.FormatUint(m.ids.Add(1), 10), "method": method, "params": params})
	if err != nil {
		return nil, err
	}
	resp, err := m.post(ctx, b, h, body)
	if err != nil {
		return nil, transport.NewError(err)
	}
	return readResult(resp)
}

// notifyStored sends one notification on the session of h.
func (m *Manager) notifyStored(ctx context.Context, b *backend, h http.Header, method string, params any) error {
	msg := map[string]any{"jsonrpc": mcp.JSONRPC_VERSION, "method": method}
	if params != nil {
		msg["params"] = params
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	return m.notifyRaw(ctx, b, h, body)
}

// endStored ends the backend session of h with DELETE, best effort, off
// the caller's goroutine; ctx names the session's client (its values are
// kept, its end is not waited for).
func (m *Manager) endStored(ctx context.Context, b *backend, h http.Header) {
	if h.Get("Mcp-Session-Id") == "" {
		return
	}
	m.background(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
		defer cancel()
		stop := context.AfterFunc(m.runCtx, cancel)
		defer stop()
		if err := m.sendOnly(ctx, b, http.MethodDelete, h, nil); err != nil {
			b.log.Debug("end a backend session", "error", err)
		}
	})
}

// EndClient ends a client's backend sessions, given as the store had them
// when the client session ended (DELETE, expiry, eviction), with DELETE.
// The replica that ended the client session calls it, once. ctx names
// the session's owner: the owner's own request (a per-user backend's
// DELETE carries the owner's credential, exchanged if need be), or
// outauth.OnBehalf the owner (its cached credential only).
func (m *Manager) EndClient(ctx context.Context, sessions []SessionData) {
	for _, d := range sessions {
		if b, ok := m.backends[d.Backend]; ok && m.stored(b) {
			m.endStored(ctx, b, b.sessionHeader(d))
		}
	}
}

// maxResultBytes bounds the answer to a request vmcp makes itself.
const maxResultBytes = 4 << 20

// errNoAnswer is readResult's error for a response without a JSON-RPC
// answer.
var errNoAnswer = errors.New("no JSON-RPC answer")

// readResult reads the answer to one request from resp (JSON, or the first
// response in an event stream) and closes it.
func readResult(resp *http.Response) (json.RawMessage, error) {
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("HTTP %s: %w", resp.Status, ErrSessionLost)
	}
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	var msg []byte
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		sc := sse.NewScanner(bufio.NewReader(resp.Body), maxResultBytes)
		for {
			data, err := sc.Next()
			if err != nil {
				return nil, errNoAnswer
			}
			if isResponse(data) {
				msg = data
				break
			}
		}
	} else {
		var err error
		if msg, err = io.ReadAll(io.LimitReader(resp.Body, maxResultBytes)); err != nil {
			return nil, err
		}
	}
	var r struct {
		Result json.RawMessage          `json:"result"`
		Error  *mcp.JSONRPCErrorDetails `json:"error"`
	}
	if err := json.Unmarshal(msg, &r); err != nil {
		return nil, errNoAnswer
	}
	if r.Error != nil {
		return nil, r.Error.AsError()
	}
	if r.Result == nil {
		return nil, errNoAnswer
	}
	return r.Result, nil
}

// isResponse reports whether msg is a JSON-RPC response (an id and no
// method).
func isResponse(msg []byte) bool {
	var e struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	return json.Unmarshal(msg, &e) == nil && len(e.ID) > 0 && !bytes.Equal(e.ID, []byte("null")) && e.Method == ""
}

// ErrSessionLost is returned for a request on a backend session the
// backend no longer has (404).
var ErrSessionLost = errors.New("the backend has lost the session")

// storeTimeout bounds one round trip to the session store made off a
// request's own deadline.
const storeTimeout = time.Second

// boundedStore bounds every round trip to the session store by
// storeTimeout, whatever the caller's deadline (a call's may be a minute):
// a slow store fails fast.
type boundedStore struct{ s SessionStore }

func (b boundedStore) Load(ctx context.Context, session string) (ClientState, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return b.s.Load(ctx, session)
}

func (b boundedStore) Swap(ctx context.Context, session, backend string, prev, next *SessionData) (*SessionData, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return b.s.Swap(ctx, session, backend, prev, next)
}

func (b boundedStore) LogLevel(ctx context.Context, session string, level mcp.LoggingLevel) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return b.s.LogLevel(ctx, session, level)
}

func (b boundedStore) Subscribed(ctx context.Context, session, backend, uri string, on bool) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return b.s.Subscribed(ctx, session, backend, uri, on)
}
