package backends

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
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
	params.Meta = outboundMeta(params.Meta)
	if s.conn.calls != nil {
		var end func()
		params.Meta, end = s.conn.calls.start(ctx, s.client, params.Meta)
		defer end()
	}
	return send(ctx, s, func(ctx context.Context) (*mcp.CallToolResult, error) {
		res, err := s.conn.request(ctx, string(mcp.MethodToolsCall), params)
		if err != nil {
			return nil, err
		}
		return mcp.ParseCallToolResult(res)
	})
}

// Subscribe subscribes the client to updates of the resource at uri. On a
// shared connection the backend is subscribed once, for its first
// subscriber. A backend that does not offer subscriptions is not asked.
func (s *Session) Subscribe(ctx context.Context, uri string) error {
	if !s.canSubscribe() || (s.owner == nil && !s.conn.subs.add(uri, s.client)) {
		return nil
	}
	req := mcp.SubscribeRequest{}
	req.Params.URI = uri
	_, err := send(ctx, s, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.conn.client.Subscribe(ctx, req) })
	return err
}

// Unsubscribe ends the client's subscription to uri; on a shared
// connection the backend is unsubscribed after the last subscriber.
func (s *Session) Unsubscribe(ctx context.Context, uri string) error {
	if !s.canSubscribe() || (s.owner == nil && !s.conn.subs.remove(uri, s.client)) {
		return nil
	}
	req := mcp.UnsubscribeRequest{}
	req.Params.URI = uri
	_, err := send(ctx, s, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.conn.client.Unsubscribe(ctx, req) })
	return err
}

func (s *Session) canSubscribe() bool {
	r := s.conn.client.GetServerCapabilities().Resources
	return r != nil && r.Subscribe
}

// ReadResource reads a resource by its URI.
func (s *Session) ReadResource(ctx context.Context, req mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	req.Header = nil
	req.Params.Meta = outboundMeta(req.Params.Meta)
	return send(ctx, s, func(ctx context.Context) (*mcp.ReadResourceResult, error) {
		return s.conn.client.ReadResource(ctx, req)
	})
}

// GetPrompt renders a prompt.
func (s *Session) GetPrompt(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	req.Header = nil
	req.Params.Meta = outboundMeta(req.Params.Meta)
	return send(ctx, s, func(ctx context.Context) (*mcp.GetPromptResult, error) { return s.conn.client.GetPrompt(ctx, req) })
}

// Complete asks for argument completions of a prompt or resource template.
func (s *Session) Complete(ctx context.Context, req mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	req.Header = nil
	return send(ctx, s, func(ctx context.Context) (*mcp.CompleteResult, error) { return s.conn.client.Complete(ctx, req) })
}

// send runs one request to the backend within the request timeout, names
// the backend in its error and reports a transport failure. It asks the
// circuit breaker first, and counts the outcome for the breaker and the
// backend's health: transport failures and timeouts are failures, any
// answer (an isError result, a JSON-RPC error) is a success.
func send[R any](ctx context.Context, s *Session, do func(context.Context) (R, error)) (R, error) {
	done, ok := s.backend.breaker.allow()
	if !ok {
		var zero R
		return zero, &circuitOpenError{backend: s.backend.cfg.Name}
	}
	if s.owner != nil {
		s.owner.active.Add(1)
		defer s.owner.active.Add(-1)
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
}

// Discover lists the backend's tools, resources, resource templates and
// prompts, following list cursors. Kinds the backend does not declare are
// left empty without asking, and so is a list the backend answers with
// "method not found" (some declare resources but have no templates).
func (s *Session) Discover(ctx context.Context) (*Capabilities, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	c := s.conn.client
	caps := c.GetServerCapabilities()
	out := &Capabilities{}
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
	d := s.backend.cfg.RequestTimeout.D()
	if d <= 0 {
		d = 60 * time.Second
	}
	return context.WithTimeout(ctx, d)
}

// wrap names the backend in err and reports transport failures.
func (s *Session) wrap(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if isTransportFailure(ctx, err) {
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
