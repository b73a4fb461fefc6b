package backends

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/config"
)

// Session is a client's session to one backend. Its methods take and return
// the backend's original names; errors name the backend, and a transport
// failure also tells the backend's supervisor to reconnect.
type Session struct {
	backend *backend
	conn    *conn
	// owner is the per-client session this is, nil on a shared connection.
	owner *clientConn
	// client is the MCP session id of the client, "" for none.
	client string
	// held is set while the per-client session is held for the caller
	// (Manager.Session); owner.active counts it.
	held atomic.Bool
	// deadline, when set (Unix ns), ends the first request made with s:
	// Manager.Session sets it one request timeout after it was asked, so
	// the wait for the session and the request share that one bound.
	// Later requests get a request timeout of their own.
	deadline atomic.Int64
}

// Release stops holding a client's own backend session for the caller, so
// that the bound of Options.MaxClientSessions may close it before a request
// is made with s. Every method of s that sends a request releases it by
// itself; Release is for a caller that makes none. It is safe to call more
// than once, and does nothing on a shared connection.
func (s *Session) Release() {
	if s.owner != nil && s.held.CompareAndSwap(true, false) {
		s.owner.active.Add(-1)
	}
}

// Backend returns the name of the backend this session talks to.
func (s *Session) Backend() string { return s.backend.cfg.Name }

// CallTool calls the tool named req.Params.Name on the backend. A tool that
// fails reports it in the result (IsError); err is for protocol and
// transport failures. Nothing of the client's HTTP request is forwarded:
// req.Header is dropped, and so are the client's protocol-level _meta keys.
//
// The request goes to the backend as it is (mcp-go's CallTool would run
// its own multi-round-trip loop over it), under an id of vmcp's, so that a
// call whose ctx ends is cancelled at the backend with
// notifications/cancelled. On a shared connection the client's progress
// token is replaced by one unique on the connection and mapped back.
func (s *Session) CallTool(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	params := req.Params
	return relayRequest(ctx, s, string(mcp.MethodToolsCall), &params, &params.Meta, mcp.ParseCallToolResult)
}

// Subscribe subscribes the client to updates of the resource at uri. On a
// shared connection the backend is subscribed once, for its first
// subscriber; vmcp keeps the subscription and makes it again on the next
// connection. A client's own session remembers it the same way for the
// session that replaces it. A backend that does not offer subscriptions is
// not asked. An error means the client is not subscribed.
func (s *Session) Subscribe(ctx context.Context, uri string) error {
	defer s.Release()
	if !s.canSubscribe() {
		return nil
	}
	if s.owner != nil {
		if err := s.subscribe(ctx, uri); err != nil {
			return err
		}
		s.backend.m.clients.addSub(s.client, s.backend.cfg.Name, uri)
		s.recordSub(ctx, uri, true)
		return nil
	}
	subs := s.backend.subs
	subs.wire.Lock()
	defer subs.wire.Unlock()
	if !subs.add(uri, s.client) {
		return nil
	}
	if err := s.subscribe(ctx, uri); err != nil {
		subs.remove(uri, s.client)
		return err
	}
	return nil
}

// Unsubscribe ends the client's subscription to uri; on a shared
// connection the backend is unsubscribed after the last subscriber.
func (s *Session) Unsubscribe(ctx context.Context, uri string) error {
	defer s.Release()
	if !s.canSubscribe() {
		return nil
	}
	if s.owner != nil {
		s.backend.m.clients.removeSub(s.client, s.backend.cfg.Name, uri)
		s.recordSub(ctx, uri, false)
		return s.unsubscribe(ctx, uri)
	}
	subs := s.backend.subs
	subs.wire.Lock()
	defer subs.wire.Unlock()
	if !subs.remove(uri, s.client) {
		return nil
	}
	return s.unsubscribe(ctx, uri)
}

// recordSub records a subscription of a session kept as data in the
// session store, for a session that replaces it on any replica.
func (s *Session) recordSub(ctx context.Context, uri string, on bool) {
	if s.conn != nil || s.backend.m.opts.Store == nil {
		return
	}
	if err := s.backend.m.opts.Store.Subscribed(ctx, s.client, s.backend.cfg.Name, uri, on); err != nil {
		s.backend.log.Warn("record a resource subscription", "uri", uri, "error", err)
	}
}

func (s *Session) subscribe(ctx context.Context, uri string) error {
	if s.conn == nil {
		return s.requestStored(ctx, string(mcp.MethodResourcesSubscribe), map[string]any{"uri": uri})
	}
	req := mcp.SubscribeRequest{}
	req.Params.URI = uri
	_, err := send(ctx, s, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.conn.client.Subscribe(ctx, req) })
	return err
}

func (s *Session) unsubscribe(ctx context.Context, uri string) error {
	if s.conn == nil {
		return s.requestStored(ctx, string(mcp.MethodResourcesUnsubscribe), map[string]any{"uri": uri})
	}
	req := mcp.UnsubscribeRequest{}
	req.Params.URI = uri
	_, err := send(ctx, s, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.conn.client.Unsubscribe(ctx, req) })
	return err
}

// requestStored sends a request with no result to keep on a session kept
// as data (conn nil).
func (s *Session) requestStored(ctx context.Context, method string, params any) error {
	_, err := send(ctx, s, func(ctx context.Context) (json.RawMessage, error) {
		return s.backend.m.requestStored(ctx, s.backend, s.owner.header, method, params)
	})
	return err
}

func (s *Session) canSubscribe() bool {
	var caps mcp.ServerCapabilities
	if s.conn != nil {
		caps = s.conn.client.GetServerCapabilities()
	} else {
		caps = s.owner.session.Capabilities // a session kept as data
	}
	r := caps.Resources
	return r != nil && r.Subscribe
}

// resubscribe makes the shared connection's subscriptions again on a new
// connection: the backend (a restarted process, a new HTTP session) has
// forgotten them.
func (b *backend) resubscribe(ctx context.Context) {
	if len(b.subs.uris()) == 0 {
		return
	}
	s, err := b.session()
	if err != nil || !s.canSubscribe() {
		return
	}
	b.subs.wire.Lock()
	defer b.subs.wire.Unlock()
	uris := b.subs.uris()
	for _, uri := range uris {
		if err := s.subscribe(ctx, uri); err != nil {
			b.log.Warn("subscribe again after reconnecting", "uri", uri, "error", err)
		}
	}
	b.log.Info("subscribed again after reconnecting", "subscriptions", len(uris))
}

// unsubscribeTimeout bounds unsubscribing an ended client's last
// subscriptions; the client is gone and nobody waits for the answer.
const unsubscribeTimeout = 5 * time.Second

// dropSubscriber forgets the shared-connection subscriptions of an ended
// client session and unsubscribes the backend from the URIs it was the
// last subscriber of.
func (b *backend) dropSubscriber(session string) {
	if !b.subs.has(session) {
		return
	}
	b.subs.wire.Lock()
	defer b.subs.wire.Unlock()
	last := b.subs.dropSession(session)
	if len(last) == 0 {
		return
	}
	s, err := b.session()
	if err != nil || !s.canSubscribe() {
		return // the next connection starts without them
	}
	ctx, cancel := context.WithTimeout(b.m.runCtx, unsubscribeTimeout)
	defer cancel()
	for _, uri := range last {
		if err := s.unsubscribe(ctx, uri); err != nil {
			b.log.Warn("unsubscribe after the last subscriber ended", "uri", uri, "error", err)
		}
	}
}

// ReadResource reads a resource by its URI. Like CallTool it is sent under
// vmcp's own request id, so that a read whose ctx ends is cancelled at the
// backend, and on a shared connection its progress token is mapped.
func (s *Session) ReadResource(ctx context.Context, req mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	params := req.Params
	return relayRequest(ctx, s, string(mcp.MethodResourcesRead), &params, &params.Meta, mcp.ParseReadResourceResult)
}

// GetPrompt renders a prompt, sent like ReadResource.
func (s *Session) GetPrompt(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	params := req.Params
	return relayRequest(ctx, s, string(mcp.MethodPromptsGet), &params, &params.Meta, mcp.ParseGetPromptResult)
}

// relayRequest sends a client's request with params (whose _meta meta
// points to) through the transport under vmcp's own id, without the
// client's protocol-level _meta, and parses the result.
func relayRequest[R any](ctx context.Context, s *Session, method string, params any, meta **mcp.Meta, parse func(*json.RawMessage) (R, error)) (R, error) {
	*meta = outboundMeta(*meta)
	if s.conn == nil { // a session kept as data
		return send(ctx, s, func(ctx context.Context) (R, error) {
			res, err := s.backend.m.requestStored(ctx, s.backend, s.owner.header, method, params)
			if err != nil {
				var zero R
				return zero, err
			}
			raw := json.RawMessage(res)
			return parse(&raw)
		})
	}
	if s.conn.calls != nil {
		var end func()
		*meta, end = s.conn.calls.start(ctx, s.client, *meta)
		defer end()
	}
	return send(ctx, s, func(ctx context.Context) (R, error) {
		res, err := s.conn.request(ctx, method, params)
		if err != nil {
			var zero R
			return zero, err
		}
		return parse(res)
	})
}

// Complete asks for argument completions of a prompt or resource template.
func (s *Session) Complete(ctx context.Context, req mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	req.Header = nil
	if s.conn == nil { // a session kept as data
		return send(ctx, s, func(ctx context.Context) (*mcp.CompleteResult, error) {
			res, err := s.backend.m.requestStored(ctx, s.backend, s.owner.header, string(mcp.MethodCompletionComplete), req.Params)
			if err != nil {
				return nil, err
			}
			var out mcp.CompleteResult
			if err := json.Unmarshal(res, &out); err != nil {
				return nil, fmt.Errorf("completion/complete: %w", err)
			}
			return &out, nil
		})
	}
	return send(ctx, s, func(ctx context.Context) (*mcp.CompleteResult, error) { return s.conn.client.Complete(ctx, req) })
}

// send runs one request to the backend within the request timeout, names
// the backend in its error and reports a transport failure. It asks the
// circuit breaker first, and counts the outcome for the breaker and the
// backend's health: transport failures and timeouts are failures, any
// answer (an isError result, a JSON-RPC error) is a success.
func send[R any](ctx context.Context, s *Session, do func(context.Context) (R, error)) (R, error) {
	if s.owner != nil {
		// The call holds the session from here; the caller's hold ends.
		s.owner.active.Add(1)
		defer s.owner.active.Add(-1)
		s.Release()
	}
	done, ok := s.backend.breaker.allow()
	if !ok {
		var zero R
		return zero, &circuitOpenError{backend: s.backend.cfg.Name}
	}
	callCtx, cancel := s.withTimeout(ctx)
	defer cancel()
	res, err := do(callCtx)
	observed, failed := callOutcome(ctx, callCtx, err)
	done(observed, failed)
	err = s.wrap(callCtx, err)
	if observed {
		if failed {
			s.backend.observe(err)
		} else {
			s.backend.observe(nil)
		}
	}
	return res, err
}

// outboundMeta returns the _meta to send to the backend for a client's
// request. Keys under io.modelcontextprotocol/ describe the client's own hop
// (its protocol version, identity, capabilities) and would contradict the
// backend connection's; vmcp's client adds its own. The rest (progress
// token, application keys) passes through.
func outboundMeta(m *mcp.Meta) *mcp.Meta {
	if m == nil {
		return nil
	}
	out := &mcp.Meta{ProgressToken: m.ProgressToken}
	for k, v := range m.AdditionalFields {
		if strings.HasPrefix(k, "io.modelcontextprotocol/") {
			continue
		}
		if out.AdditionalFields == nil {
			out.AdditionalFields = make(map[string]any, len(m.AdditionalFields))
		}
		out.AdditionalFields[k] = v
	}
	if out.ProgressToken == nil && out.AdditionalFields == nil {
		return nil
	}
	return out
}

// Capabilities is everything a backend offers, as the backend names it.
type Capabilities struct {
	Tools             []mcp.Tool
	Resources         []mcp.Resource
	ResourceTemplates []mcp.ResourceTemplate
	Prompts           []mcp.Prompt
	// ServerInfo and Instructions are what the backend said of itself in
	// initialize.
	ServerInfo   mcp.Implementation
	Instructions string
}

// Discover lists the backend's tools, resources, resource templates and
// prompts, following list cursors. Kinds the backend does not declare are
// left empty without asking, and so is a list the backend answers with
// "method not found" (some declare resources but have no templates).
func (s *Session) Discover(ctx context.Context) (*Capabilities, error) {
	defer s.Release()
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	c := s.conn.client
	caps := c.GetServerCapabilities()
	out := &Capabilities{ServerInfo: s.conn.serverInfo, Instructions: s.conn.instructions}
	var err error
	if caps.Tools != nil {
		if out.Tools, err = listKind(ctx, s, "tools/list", func(ctx context.Context) ([]mcp.Tool, error) {
			return listTools(ctx, c.GetTransport())
		}); err != nil {
			return nil, err
		}
	}
	if caps.Resources != nil {
		if out.Resources, err = listKind(ctx, s, "resources/list", func(ctx context.Context) ([]mcp.Resource, error) {
			r, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
			if err != nil {
				return nil, err
			}
			return r.Resources, nil
		}); err != nil {
			return nil, err
		}
		if out.ResourceTemplates, err = listKind(ctx, s, "resources/templates/list", func(ctx context.Context) ([]mcp.ResourceTemplate, error) {
			r, err := c.ListResourceTemplates(ctx, mcp.ListResourceTemplatesRequest{})
			if err != nil {
				return nil, err
			}
			return r.ResourceTemplates, nil
		}); err != nil {
			return nil, err
		}
	}
	if caps.Prompts != nil {
		if out.Prompts, err = listKind(ctx, s, "prompts/list", func(ctx context.Context) ([]mcp.Prompt, error) {
			r, err := c.ListPrompts(ctx, mcp.ListPromptsRequest{})
			if err != nil {
				return nil, err
			}
			return r.Prompts, nil
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// listKind runs one list request of Discover; "method not found" is an
// empty list, other errors name the method and the backend.
func listKind[T any](ctx context.Context, s *Session, method string, list func(context.Context) ([]T, error)) ([]T, error) {
	items, err := list(ctx)
	if errors.Is(err, mcp.ErrMethodNotFound) {
		s.backend.log.Info("backend declares the capability but does not implement the method; treating it as empty", "method", method)
		return nil, nil
	}
	if err != nil {
		return nil, s.wrap(ctx, fmt.Errorf("%s: %w", method, err))
	}
	return items, nil
}

func (s *Session) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if d := s.deadline.Swap(0); d != 0 {
		return context.WithDeadline(ctx, time.Unix(0, d))
	}
	return context.WithTimeout(ctx, requestTimeout(s.backend.cfg))
}

// requestTimeout returns the bound of one request to the backend of cfg:
// a call, a stateless relay, or vmcp's answer to the backend's request.
// New fills an unset requestTimeout with config's default.
func requestTimeout(cfg config.Backend) time.Duration {
	return cfg.RequestTimeout.D()
}

// wrap names the backend in err and reports transport failures.
func (s *Session) wrap(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if isTransportFailure(ctx, err) || errors.Is(err, ErrSessionLost) {
		if s.owner != nil {
			// A client's own session: drop it, the next call opens a new
			// one. The shared connection's supervisor watches the backend.
			s.backend.m.clients.drop(s.owner, err)
		} else {
			s.backend.reportLost(lossReport{conn: s.conn, err: err})
		}
	}
	return fmt.Errorf("backend %q: %w", s.backend.cfg.Name, err)
}
