package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/mark3labs/mcp-go/mcp"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/vmcp/vmcp/aggregator"
	"github.com/vmcp/vmcp/jsonrpc"
)

// Poster sends raw requests to backends.
type Poster interface {
	// Supports reports whether backend takes requests of revision version
	// as raw posts.
	Supports(ctx context.Context, backend, version string) bool
	// Post sends one JSON-RPC request to a backend Supports reported as
	// taking it, without asking again, and returns its response; the
	// caller closes the body.
	Post(ctx context.Context, backend, version string, body []byte, header http.Header) (*http.Response, error)
}

// ErrNotRelayed is returned by Relay when the backend does not take the
// request as it is; the request is then served through the backend's
// session.
var ErrNotRelayed = errors.New("backend does not take the request raw")

// RawRequest is one JSON-RPC request as the client sent it, with the parts
// Relay may replace located in its body (each a slice of Body, as
// parse.Parsed keeps them).
type RawRequest struct {
	// Method is tools/call, prompts/get, resources/read or
	// completion/complete.
	Method string
	// Name is the post-aggregation tool or prompt name, or the resource
	// URI; for completion/complete the prompt name or template URI of its
	// ref (RefType says which).
	Name string
	// RefType is the ref.type of a completion/complete.
	RefType string
	// Version is the request's protocol revision.
	Version string
	// Body is the JSON-RPC message.
	Body []byte
	// NameJSON is the JSON string Name was read from (params.name, ref.name),
	// replaced by the backend's own name; nil for URIs.
	NameJSON json.RawMessage
	// ID is the request id in Body; with NewID set it is replaced by NewID.
	ID, NewID json.RawMessage
	// CallTool marks the optimizer's call_tool: the request the backend
	// gets is a tools/call of the tool it names, with Arguments (the
	// call_tool's parameters) and the client's Meta.
	CallTool        bool
	Arguments, Meta json.RawMessage
	// Header holds the client's MCP request headers of a stateless request
	// (Mcp-Method, Mcp-Name, Mcp-Param-*, Mcp-Protocol-Version); others are
	// ignored downstream.
	Header http.Header
}

// Relay sends req through p to the backend behind req.Name, with the name
// replaced by the backend's original one (in the body, and in the Mcp-Name
// header of a stateless request) and the id by req.NewID when set; the
// rest of the body (arguments, _meta, input responses, request state) goes
// as the client sent it, byte for byte. It returns the backend's HTTP
// response, whatever its status, and the backend's name; closing the
// response body ends the call's span.
//
// It returns an error wrapping ErrNotFound when the name is not in the
// catalogue, and ErrNotRelayed when the backend does not take the request
// raw (p.Supports); both leave the request to be served another way.
func (r *Router) Relay(ctx context.Context, p Poster, req RawRequest) (*http.Response, string, error) {
	route, ok := r.route(req)
	if !ok {
		return nil, "", fmt.Errorf("%s %q: %w", req.Method, req.Name, ErrNotFound)
	}
	if !p.Supports(ctx, route.Backend, req.Version) {
		return nil, route.Backend, ErrNotRelayed
	}
	body, err := outgoing(req, route.Name)
	if err != nil {
		return nil, route.Backend, err
	}
	header := req.Header
	if route.Name != req.Name && req.NameJSON != nil && len(req.Header) > 0 {
		header = http.Header{}
		for k, vs := range req.Header {
			header[k] = vs
		}
		if v, ok := mcp.EncodeHeaderValue(route.Name); ok {
			header.Set(mcp.HeaderName, v)
		}
	}
	target := semconv.McpResourceURI(req.Name)
	switch {
	case req.Method == string(mcp.MethodToolsCall):
		target = semconv.GenAIToolName(route.Name)
	case req.Method == string(mcp.MethodPromptsGet), req.RefType == refPrompt:
		target = semconv.GenAIPromptName(route.Name)
	}
	ctx, span := startCall(ctx, req.Method, route.Backend, target)
	resp, err := p.Post(ctx, route.Backend, req.Version, body, header)
	if err != nil {
		endCall(span, err, false)
		return nil, route.Backend, err
	}
	resp.Body = &spanOnClose{ReadCloser: resp.Body, span: span}
	return resp, route.Backend, nil
}

const refPrompt = "ref/prompt"

// route finds the backend of req, and the backend's own name for it.
func (r *Router) route(req RawRequest) (aggregator.Route, bool) {
	c := r.catalogue()
	if req.Method != string(mcp.MethodCompletionComplete) {
		return c.Route(req.Method, req.Name)
	}
	switch req.RefType {
	case refPrompt:
		return c.Prompt(req.Name)
	case "ref/resource":
		if route, ok := c.Template(req.Name); ok {
			return aggregator.Route{Backend: route.Backend, Name: req.Name}, true
		}
		if route, ok := c.Resource(req.Name); ok {
			return aggregator.Route{Backend: route.Backend, Name: req.Name}, true
		}
	}
	return aggregator.Route{}, false
}

// outgoing returns the body req is sent to its backend with, for a
// backend that names its target original. Only the id and the name are
// replaced, in place; a body that needs neither is returned as it is.
func outgoing(req RawRequest, original string) ([]byte, error) {
	name, err := json.Marshal(original)
	if err != nil {
		return nil, err
	}
	if req.CallTool {
		id := req.NewID
		if id == nil {
			id = req.ID
		}
		args := req.Arguments
		if len(args) == 0 || string(args) == "null" {
			args = []byte("{}")
		}
		b := make([]byte, 0, 96+len(id)+len(name)+len(args)+len(req.Meta))
		b = append(b, `{"jsonrpc":"2.0","id":`...)
		b = append(b, id...)
		b = append(b, `,"method":"tools/call","params":{"name":`...)
		b = append(b, name...)
		b = append(b, `,"arguments":`...)
		b = append(b, args...)
		if req.Meta != nil {
			b = append(b, `,"_meta":`...)
			b = append(b, req.Meta...)
		}
		return append(b, "}}"...), nil
	}
	type part struct {
		old, new []byte
	}
	var parts []part
	if req.NewID != nil && req.ID != nil {
		parts = append(parts, part{req.ID, req.NewID})
	}
	if req.NameJSON != nil && original != req.Name {
		parts = append(parts, part{req.NameJSON, name})
	}
	if len(parts) == 0 {
		return req.Body, nil
	}
	at := make([]int, len(parts))
	grow := 0
	for i, p := range parts {
		o, ok := jsonrpc.OffsetIn(req.Body, p.old)
		if !ok {
			return nil, errors.New("request id or name is not a slice of its body")
		}
		at[i] = o
		grow += len(p.new) - len(p.old)
	}
	if len(parts) == 2 && at[1] < at[0] {
		parts[0], parts[1] = parts[1], parts[0]
		at[0], at[1] = at[1], at[0]
	}
	b := make([]byte, 0, len(req.Body)+grow)
	prev := 0
	for i, p := range parts {
		b = append(b, req.Body[prev:at[i]]...)
		b = append(b, p.new...)
		prev = at[i] + len(p.old)
	}
	return append(b, req.Body[prev:]...), nil
}

// spanOnClose ends a relayed call's span when the response body is closed.
type spanOnClose struct {
	io.ReadCloser
	span trace.Span
}

func (s *spanOnClose) Close() error {
	err := s.ReadCloser.Close()
	s.span.End()
	return err
}
