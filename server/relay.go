package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/jsonrpc"
	"github.com/vmcp/vmcp/parse"
	"github.com/vmcp/vmcp/router"
)

// relay carries what a client asks of its backend sessions outside a call
// (logging/setLevel, resource subscriptions, roots changes, its end) to
// them, through mcp-go's hooks and before mcp-go answers. What backends send
// to clients goes the other way, through clientRelay.
type relay struct {
	clients  *clientRelay
	backends *backends.Manager
	router   *router.Router
	log      *slog.Logger
}

// newRelay returns the relay and registers its hooks in hooks and its
// notification handler with mcp.
func newRelay(clients *clientRelay, m *backends.Manager, rt *router.Router, hooks *mcpserver.Hooks, mcp *mcpserver.MCPServer, log *slog.Logger) *relay {
	r := &relay{clients: clients, backends: m, router: rt, log: log}
	r.register(hooks)
	mcp.AddNotificationHandler(rootsListChanged, r.rootsChanged)
	return r
}

// prefix shortens a session id for logs.
func prefix(id string) string { return id[:min(len(id), 20)] }

// flushed wraps a tools/call handler so that the notifications relayed to
// the client during the call are written to it before the call's response.
// mcp-go's Streamable HTTP server moves a session's notifications to the
// response stream in a goroutine that drops one it has taken off the queue
// when the response is already being written; a backend's last log message
// or progress, relayed just before its answer, would otherwise be lost now
// and then. The wait (at most flushWait) is the call's; calls that relayed
// nothing pay one map lookup.
func (r *clientRelay) flushed(next mcpserver.ToolHandlerFunc) mcpserver.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		start := time.Now().UnixNano()
		res, err := next(ctx, req)
		if s := mcpserver.ClientSessionFromContext(ctx); s != nil {
			r.out.flush(s, start)
		}
		return res, err
	}
}

var _ backends.Relay = (*clientRelay)(nil)

// errNoClient answers a backend's request that has no client to go to.
var errNoClient = errors.New("no client session to relay the request to")

// register adds the mcp-go hooks the relay needs to h.
func (r *relay) register(h *mcpserver.Hooks) {
	h.AddOnRegisterSession(func(_ context.Context, s mcpserver.ClientSession) {
		r.clients.declare(s)
		r.clients.sessions.Store(s.SessionID(), s)
	})
	h.AddOnUnregisterSession(func(_ context.Context, s mcpserver.ClientSession) {
		r.clients.sessions.Delete(s.SessionID())
		r.clients.out.ended(s.SessionID())
		if r.clients.known == nil {
			// DELETE, idle expiry or shutdown: the client's backend
			// sessions end. With a session store, mcp-go registers a
			// session another replica opened only while its GET stream is
			// here: the session table ends them (sessionIDs.onEnd).
			r.backends.CloseClient(s.SessionID())
		}
	})
	h.AddAfterSetLevel(func(ctx context.Context, _ any, req *mcp.SetLevelRequest, _ *mcp.EmptyResult) {
		if c := r.clients.clientOf(ctx); c.Session != "" {
			r.backends.SetLevel(ctx, c.Session, req.Params.Level)
		}
	})
	// Normally forwardSubscription has forwarded these already; the hooks
	// cover what it leaves to mcp-go (a batch, for one).
	h.AddAfterSubscribe(func(ctx context.Context, _ any, req *mcp.SubscribeRequest, _ *mcp.EmptyResult) {
		if ctx.Value(forwardedKey{}) == nil {
			r.subscription(ctx, req.Params.URI, (*backends.Session).Subscribe)
		}
	})
	h.AddAfterUnsubscribe(func(ctx context.Context, _ any, req *mcp.UnsubscribeRequest, _ *mcp.EmptyResult) {
		if ctx.Value(forwardedKey{}) == nil {
			r.subscription(ctx, req.Params.URI, (*backends.Session).Unsubscribe)
		}
	})
}

// rootsListChanged is the client's notification that its roots changed.
const rootsListChanged = mcp.MethodNotificationRootsListChanged

// rootsTimeout bounds forwarding a client's roots/list_changed.
const rootsTimeout = 10 * time.Second

// rootsChanged forwards a client's notifications/roots/list_changed to its
// backend sessions (and the shared stdio connections), without holding up
// the client's POST.
func (r *relay) rootsChanged(ctx context.Context, _ mcp.JSONRPCNotification) {
	c := r.clients.clientOf(ctx)
	if c.Session == "" {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rootsTimeout)
		defer cancel()
		r.backends.RootsChanged(ctx, c.Session)
	}()
}

// forwardedKey marks the context of a resources/(un)subscribe that
// forwardSubscription has forwarded: mcp-go's after-hook leaves it alone.
type forwardedKey struct{}

// forwardSubscription forwards a resources/subscribe or /unsubscribe on a
// live session of a session-based revision to the backend that serves its
// URI before mcp-go sees it. The backend's error is the client's answer
// (answered is true); on success mcp-go answers as usual (its session
// records the subscription) with ctx, which tells the after-hook that the
// backend has it. Anything else (a batch, no URI, a URI no backend serves,
// no session) gets ctx nil and goes to mcp-go and the hooks unchanged.
func (r *relay) forwardSubscription(w http.ResponseWriter, req *http.Request, p *parse.Parsed) (ctx context.Context, answered bool) {
	var do func(*backends.Session, context.Context, string) error
	switch p.Method {
	case string(mcp.MethodResourcesSubscribe):
		do = (*backends.Session).Subscribe
	case string(mcp.MethodResourcesUnsubscribe):
		do = (*backends.Session).Unsubscribe
	default:
		return nil, false
	}
	if p.Batch || len(p.ID) == 0 || mcp.IsModernProtocol(p.ProtocolVersion) {
		return nil, false
	}
	if v := req.Header.Get(mcpserver.HeaderKeyProtocolVersion); v != "" && !mcp.IsValidProtocolVersion(v) {
		return nil, false
	}
	c, ok := r.clients.client(req.Header.Get(mcpserver.HeaderKeySessionID))
	if !ok {
		return nil, false
	}
	var body struct {
		Params struct {
			URI string `json:"uri"`
		} `json:"params"`
	}
	if json.Unmarshal(p.Body, &body) != nil || body.Params.URI == "" {
		return nil, false
	}
	uri := body.Params.URI
	name, ok := r.router.ResourceBackend(uri)
	if !ok {
		return nil, false
	}
	s, err := r.backends.Session(req.Context(), c, name)
	if err == nil {
		err = do(s, req.Context(), uri)
	}
	if err != nil {
		r.log.Info("backend refused a resource subscription", "method", p.Method, "backend", name, "uri", uri, "error", err)
		jsonrpc.WriteError(w, http.StatusOK, p.ID, jsonrpc.Error{Code: errorCode(err), Message: err.Error()})
		return nil, true
	}
	return context.WithValue(req.Context(), forwardedKey{}, true), false
}

// errorCode returns the JSON-RPC code of a backend's error as mcp-go's
// client reports it; anything else (the backend unavailable, a transport
// failure) is an internal error.
func errorCode(err error) int {
	for _, c := range []struct {
		err  error
		code int
	}{
		{mcp.ErrInvalidRequest, mcp.INVALID_REQUEST},
		{mcp.ErrMethodNotFound, mcp.METHOD_NOT_FOUND},
		{mcp.ErrInvalidParams, mcp.INVALID_PARAMS},
		{mcp.ErrResourceNotFound, mcp.RESOURCE_NOT_FOUND},
	} {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return mcp.INTERNAL_ERROR
}

// subscription forwards a resources/subscribe or /unsubscribe to the
// client's session of the backend that serves uri. mcp-go has already
// answered the client; a failure is logged.
func (r *relay) subscription(ctx context.Context, uri string, do func(*backends.Session, context.Context, string) error) {
	name, ok := r.router.ResourceBackend(uri)
	if !ok {
		r.log.Info("resource subscription for a URI no backend serves", "uri", uri)
		return
	}
	s, err := r.backends.Session(ctx, r.clients.clientOf(ctx), name)
	if err == nil {
		err = do(s, ctx, uri)
	}
	if err != nil {
		r.log.Warn("forward resource subscription", "backend", name, "uri", uri, "error", err)
	}
}

// client describes the client of MCP session id for the backends, when
// mcp-go knows that session.
func (r *clientRelay) client(id string) (backends.Client, bool) {
	if id == "" {
		return backends.Client{}, false
	}
	if r.known != nil {
		if caps, ok := r.known(id); ok {
			return backends.Client{Session: id, Capabilities: caps}, true
		}
	}
	v, ok := r.sessions.Load(id)
	if !ok {
		return backends.Client{}, false
	}
	return backends.Client{Session: id, Capabilities: declared(v.(mcpserver.ClientSession))}, true
}

// clientOf describes the client behind a request context for the backends:
// its MCP session and declared capabilities. A request of the stateless
// revision (2026-07-28), or one without a session, has no session.
func (r *clientRelay) clientOf(ctx context.Context) backends.Client {
	s := mcpserver.ClientSessionFromContext(ctx)
	if s == nil {
		return backends.Client{}
	}
	if info := mcpserver.RequestProtocolInfoFromContext(ctx); info != nil && info.Modern {
		return backends.Client{}
	}
	if c, ok := r.client(s.SessionID()); ok {
		return c
	}
	return backends.Client{Session: s.SessionID(), Capabilities: declared(s)}
}

// clientCtx returns the context to send a request to client session id
// with: ctx itself when it carries that client's session (the request came
// on the stream of the call that caused it), otherwise ctx with the live
// session of that id.
func (r *clientRelay) clientCtx(ctx context.Context, id string) (context.Context, mcpserver.ClientSession, error) {
	if s := mcpserver.ClientSessionFromContext(ctx); s != nil && (id == "" || s.SessionID() == id) {
		return ctx, s, nil
	}
	if id == "" {
		return nil, nil, errNoClient
	}
	v, ok := r.sessions.Load(id)
	if !ok {
		return nil, nil, fmt.Errorf("%w: session ended", errNoClient)
	}
	s := v.(mcpserver.ClientSession)
	return r.mcp.WithContext(ctx, s), s, nil
}

// declare gives mcp-go's session s the capabilities its client declared in
// an initialize another replica served (a session store): mcp-go asks a
// client for sampling, elicitation or roots only if it declared them, and
// the session mcp-go makes for a GET stream or a POST here has none.
func (r *clientRelay) declare(s mcpserver.ClientSession) {
	if r.known == nil {
		return
	}
	ci, ok := s.(mcpserver.SessionWithClientInfo)
	if !ok || !reflect.ValueOf(ci.GetClientCapabilities()).IsZero() {
		return
	}
	if caps, ok := r.known(s.SessionID()); ok {
		ci.SetClientCapabilities(caps)
	}
}

// declared returns the capabilities the client of s declared.
func declared(s mcpserver.ClientSession) mcp.ClientCapabilities {
	if ci, ok := s.(mcpserver.SessionWithClientInfo); ok {
		return ci.GetClientCapabilities()
	}
	return mcp.ClientCapabilities{}
}

func (r *clientRelay) Sample(ctx context.Context, id string, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	ctx, s, err := r.clientCtx(ctx, id)
	if err != nil {
		return nil, err
	}
	if declared(s).Sampling == nil {
		return nil, errors.New("the client does not support sampling")
	}
	return r.mcp.RequestSampling(ctx, req)
}

func (r *clientRelay) Elicit(ctx context.Context, id string, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	ctx, s, err := r.clientCtx(ctx, id)
	if err != nil {
		return nil, err
	}
	if declared(s).Elicitation == nil {
		return nil, errors.New("the client does not support elicitation")
	}
	return r.mcp.RequestElicitation(ctx, req)
}

func (r *clientRelay) ListRoots(ctx context.Context, id string, req mcp.ListRootsRequest) (*mcp.ListRootsResult, error) {
	ctx, s, err := r.clientCtx(ctx, id)
	if err != nil {
		return nil, err
	}
	if declared(s).Roots == nil {
		return nil, errors.New("the client does not support roots")
	}
	return r.mcp.RequestRoots(ctx, req)
}

// Notify queues n for the client: for the stream of the call that caused
// it when ctx is that call's, otherwise for the client's session. It does
// not wait for n to be written (see outboxes).
func (r *clientRelay) Notify(ctx context.Context, id string, n mcp.JSONRPCNotification) {
	params := n.Params.AdditionalFields
	if n.Params.Meta != nil {
		params = make(map[string]any, len(n.Params.AdditionalFields)+1)
		for k, v := range n.Params.AdditionalFields {
			params[k] = v
		}
		params["_meta"] = n.Params.Meta
	}
	ctx, s, err := r.clientCtx(ctx, id)
	if err != nil {
		r.log.Debug("relay notification", "method", n.Method, "error", err)
		return
	}
	r.out.push(s, notification{session: s, method: n.Method, send: func() error {
		return r.mcp.SendNotificationToClient(ctx, n.Method, params)
	}})
}
