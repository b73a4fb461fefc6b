package backends

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/internal/sse"
	"github.com/vmcp/vmcp/outauth"
)

// What a backend sends a client outside its calls (resource updates, log
// messages, progress of work it runs on, sampling, elicitation and roots
// requests) comes on the GET stream of the client's backend session. With
// a session store, the replica that holds the client's own GET stream
// holds those: Listen. Whatever it reads goes to the client through the
// Relay, on that same replica, so nothing crosses between replicas.

// listeners are the Listen calls running on this replica, by client
// session: a poke makes one read the store again.
type listeners struct {
	mu sync.Mutex
	by map[string]chan struct{}
}

// How a backend session's GET stream is held.
const (
	// listenRetry is the first pause before the stream is opened again;
	// it doubles up to listenMaxRetry while the backend refuses it (409:
	// another replica still holds it, or a 5xx).
	listenRetry    = 250 * time.Millisecond
	listenMaxRetry = 10 * time.Second
)

// Listen holds, until ctx ends, a GET stream on each of client c's backend
// sessions in the session store, and relays what arrives on them to c. The
// server calls it while c's own GET stream is open on this replica; a
// backend session opened or replaced meanwhile is picked up on Refresh.
// Without a store it does nothing: each backend session's mcp-go client
// listens by itself.
func (m *Manager) Listen(ctx context.Context, c Client) {
	if m.opts.Store == nil || c.Session == "" {
		return
	}
	poke := make(chan struct{}, 1)
	m.listen.mu.Lock()
	if m.listen.by == nil {
		m.listen.by = make(map[string]chan struct{})
	}
	m.listen.by[c.Session] = poke
	m.listen.mu.Unlock()
	lctx, cancel := context.WithCancel(ctx)
	unlink := context.AfterFunc(m.runCtx, cancel)
	if !m.background(func() {
		defer unlink()
		defer cancel()
		defer m.unlisten(c.Session, poke)
		m.listenClient(lctx, c, poke)
	}) {
		unlink()
		cancel()
		m.unlisten(c.Session, poke)
	}
}

func (m *Manager) unlisten(session string, poke chan struct{}) {
	m.listen.mu.Lock()
	if m.listen.by[session] == poke {
		delete(m.listen.by, session)
	}
	m.listen.mu.Unlock()
}

// Refresh tells a Listen of client session on this replica, if any, that
// the store's record of it changed.
func (m *Manager) Refresh(session string) {
	m.listen.mu.Lock()
	poke := m.listen.by[session]
	m.listen.mu.Unlock()
	if poke != nil {
		select {
		case poke <- struct{}{}:
		default:
		}
	}
}

// listenClient keeps one stream per backend session of c in the store,
// reading the store again on each poke.
func (m *Manager) listenClient(ctx context.Context, c Client, poke chan struct{}) {
	type stream struct {
		id   string
		stop context.CancelFunc
	}
	streams := make(map[string]stream)
	defer func() {
		for _, s := range streams {
			s.stop()
		}
	}()
	for {
		st, err := m.opts.Store.Load(ctx, c.Session)
		if err != nil && ctx.Err() == nil {
			m.log.Debug("read the client's backend sessions", "client_session_prefix", prefix(c.Session), "error", err)
		}
		if err == nil {
			for name, s := range streams {
				if d, ok := st.Backends[name]; !ok || d.ID != s.id {
					s.stop()
					delete(streams, name)
				}
			}
			for name, d := range st.Backends {
				b, ok := m.backends[name]
				if _, held := streams[name]; held || !ok || !m.stored(b) {
					continue
				}
				sctx, stop := context.WithCancel(ctx)
				streams[name] = stream{id: d.ID, stop: stop}
				if !m.background(func() { m.listenSession(sctx, c, b, d) }) {
					stop()
				}
			}
		}
		var retry <-chan time.Time
		if err != nil {
			retry = time.After(listenRetry * 4) // the store failed: read it again soon
		}
		select {
		case <-ctx.Done():
			return
		case <-poke:
		case <-retry:
		}
	}
}

// listenSession holds the GET stream of session d with b for client c
// until ctx ends, opening it again (resuming after the last event id)
// when it ends or is refused.
func (m *Manager) listenSession(ctx context.Context, c Client, b *backend, d SessionData) {
	h := b.sessionHeader(d).Clone()
	delete(h, "Content-Type")
	h.Set("Accept", "text/event-stream")
	wait := listenRetry
	var lastID string
	// The stream is opened for the client's GET, with its credential; it
	// is reopened by vmcp itself, with the client's cached credential only.
	caller := outauth.CallerFrom(ctx)
	for {
		if lastID != "" {
			h.Set("Last-Event-ID", lastID)
		}
		hc, err := b.authorizedAs(ctx, h, caller)
		caller.CachedOnly = true
		var resp *http.Response
		if err == nil {
			resp, err = m.roundTrip(ctx, b, http.MethodGet, hc, nil)
		}
		if ctx.Err() != nil {
			if err == nil {
				_ = resp.Body.Close()
			}
			return
		}
		if err == nil {
			mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
			switch {
			case resp.StatusCode == http.StatusOK && mt == "text/event-stream":
				wait = listenRetry
				lastID = m.readStream(ctx, c, b, d, resp.Body, lastID)
			case resp.StatusCode == http.StatusMethodNotAllowed:
				_ = resp.Body.Close()
				b.log.Debug("backend offers no GET stream")
				return
			case resp.StatusCode == http.StatusNotFound:
				// The backend lost the session; the client's next call
				// opens a new one (and Refresh brings it here).
				_ = resp.Body.Close()
				return
			default:
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
				_ = resp.Body.Close()
			}
		}
		if !sleep(ctx, wait) {
			return
		}
		wait = min(wait*2, listenMaxRetry)
	}
}

// readStream relays the events of one GET stream until it ends, and
// returns the last event id seen.
func (m *Manager) readStream(ctx context.Context, c Client, b *backend, d SessionData, body io.ReadCloser, lastID string) string {
	defer body.Close()
	stop := context.AfterFunc(ctx, func() { _ = body.Close() })
	defer stop()
	sc := sse.NewScanner(bufio.NewReaderSize(body, 32<<10), maxResultBytes)
	sc.LastID = lastID
	for {
		data, err := sc.Next()
		if err != nil {
			return sc.LastID
		}
		m.fromBackend(ctx, c, b, d, bytes.Clone(data))
	}
}

// fromBackend relays one message a backend sent on a client's GET stream:
// a notification to the client, a request to the client with its answer
// POSTed back to the backend. Responses and anything else are dropped.
func (m *Manager) fromBackend(ctx context.Context, c Client, b *backend, d SessionData, msg []byte) {
	relay := m.opts.Relay
	if relay == nil {
		return
	}
	var e struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if json.Unmarshal(msg, &e) != nil || e.Method == "" {
		return
	}
	if len(e.ID) == 0 || bytes.Equal(e.ID, []byte("null")) {
		switch e.Method {
		case string(mcp.MethodNotificationProgress), string(mcp.MethodNotificationMessage), mcp.MethodNotificationResourceUpdated:
			var n mcp.JSONRPCNotification
			if json.Unmarshal(msg, &n) == nil {
				relay.Notify(ctx, c.Session, n)
			}
		}
		return
	}
	var req transport.JSONRPCRequest
	if json.Unmarshal(msg, &req) != nil {
		return
	}
	m.background(func() {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout(b.cfg))
		defer cancel()
		resp := m.askClient(rctx, c, req, msg)
		body, err := json.Marshal(resp)
		if err != nil {
			return
		}
		pctx, pcancel := context.WithTimeout(outauth.OnBehalf(m.runCtx, outauth.CallerFrom(ctx)), answerPostTimeout)
		defer pcancel()
		if err := m.notifyRaw(pctx, b, b.sessionHeader(d), body); err != nil {
			b.log.Warn("send the answer to a backend's request", "method", req.Method, "error", err)
		}
	})
}

// askClient puts a backend's request to the client and returns the
// answer to send back, as mcp-go's client would answer it.
func (m *Manager) askClient(ctx context.Context, c Client, req transport.JSONRPCRequest, msg []byte) *transport.JSONRPCResponse {
	relay := m.opts.Relay
	var (
		res any
		err error
	)
	switch req.Method {
	case string(mcp.MethodPing):
		res = struct{}{}
	case string(mcp.MethodSamplingCreateMessage):
		var r mcp.CreateMessageRequest
		if err = json.Unmarshal(msg, &r); err == nil {
			res, err = relay.Sample(ctx, c.Session, r)
		}
	case string(mcp.MethodElicitationCreate):
		var r mcp.ElicitationRequest
		if err = json.Unmarshal(msg, &r); err == nil {
			res, err = relay.Elicit(ctx, c.Session, r)
		}
	case string(mcp.MethodListRoots):
		var r mcp.ListRootsRequest
		if err = json.Unmarshal(msg, &r); err == nil {
			res, err = relay.ListRoots(ctx, c.Session, r)
		}
	default:
		return transport.NewJSONRPCErrorResponse(req.ID, mcp.METHOD_NOT_FOUND, "method not found: "+req.Method, nil)
	}
	if err != nil {
		return errorAnswer(req, err)
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return errorAnswer(req, fmt.Errorf("encode the answer: %w", err))
	}
	return &transport.JSONRPCResponse{JSONRPC: mcp.JSONRPC_VERSION, ID: req.ID, Result: raw}
}

// notifyRaw POSTs body, a message that gets no answer (a notification, a
// response), on the session of h.
func (m *Manager) notifyRaw(ctx context.Context, b *backend, h http.Header, body []byte) error {
	return m.sendOnly(ctx, b, http.MethodPost, h, body)
}

// sendOnly sends one request whose answer carries nothing for vmcp (a
// notification, a response, a DELETE): the answer is read, bounded, and
// dropped; a status of 300 or more is an error.
func (m *Manager) sendOnly(ctx context.Context, b *backend, method string, h http.Header, body []byte) error {
	resp, err := m.roundTrip(ctx, b, method, h, body)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}
