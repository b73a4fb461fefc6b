package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/mark3labs/mcp-go/mcp"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
)

// Poster sends raw requests of a stateless protocol revision to backends.
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

// RawRequest is one JSON-RPC request of a stateless protocol revision as
// the client sent it.
type RawRequest struct {
	// Method is tools/call, prompts/get or resources/read.
	Method string
	// Name is the post-aggregation tool or prompt name, or the resource URI.
	Name string
	// Version is the request's protocol revision.
	Version string
	// Body is the JSON-RPC message.
	Body []byte
	// Params is the params member of Body as sent, a slice of Body (as
	// parse.Parsed.Params is), so that a renamed name replaces it in place.
	Params json.RawMessage
	// Header holds the client's MCP request headers (Mcp-Method, Mcp-Name,
	// Mcp-Param-*, Mcp-Protocol-Version); others are ignored downstream.
	Header http.Header
}

// Relay sends req to the backend behind req.Name through p, with the name
// replaced by the backend's original one in params.name and in the Mcp-Name
// header; the rest of the body (id, arguments, _meta, input responses,
// request state) goes as the client sent it. It returns the backend's HTTP
// response, whatever its status; closing its body ends the call's span.
//
// It returns an error wrapping ErrNotFound when the name is not in the
// catalogue, and ErrNotRelayed when the backend does not take the request
// raw (p.Supports); both leave the request to be served another way.
func (r *Router) Relay(ctx context.Context, p Poster, req RawRequest) (*http.Response, error) {
	route, ok := r.catalogue().Route(req.Method, req.Name)
	if !ok {
		return nil, fmt.Errorf("%s %q: %w", req.Method, req.Name, ErrNotFound)
	}
	if !p.Supports(ctx, route.Backend, req.Version) {
		return nil, ErrNotRelayed
	}
	body, header, err := renamed(req, route.Name)
	if err != nil {
		return nil, err
	}
	target := semconv.McpResourceURI(req.Name)
	switch req.Method {
	case string(mcp.MethodToolsCall):
		target = semconv.GenAIToolName(route.Name)
	case string(mcp.MethodPromptsGet):
		target = semconv.GenAIPromptName(route.Name)
	}
	ctx, span := startCall(ctx, req.Method, route.Backend, target)
	resp, err := p.Post(ctx, route.Backend, req.Version, body, header)
	if err != nil {
		endCall(span, err, false)
		return nil, err
	}
	resp.Body = &spanOnClose{ReadCloser: resp.Body, span: span}
	return resp, nil
}

// renamed returns the body and MCP headers of req for a backend that names
// the tool or prompt original. A body that needs no renaming is returned as
// it is, byte for byte; otherwise only its params are decoded and written
// anew, in their place in the body.
func renamed(req RawRequest, original string) ([]byte, http.Header, error) {
	header := http.Header{}
	for k, vs := range req.Header {
		header[k] = vs
	}
	if original == req.Name || req.Method == string(mcp.MethodResourcesRead) {
		return req.Body, header, nil
	}
	at, ok := offsetIn(req.Body, req.Params)
	if !ok {
		return nil, nil, errors.New("request params are not a slice of its body")
	}
	var params map[string]json.RawMessage
	if err := json.Unmarshal(req.Params, &params); err != nil {
		return nil, nil, fmt.Errorf("decode request params: %w", err)
	}
	name, err := json.Marshal(original)
	if err != nil {
		return nil, nil, err
	}
	params["name"] = name
	encoded, err := marshalRaw(params)
	if err != nil {
		return nil, nil, err
	}
	body := make([]byte, 0, len(req.Body)-len(req.Params)+len(encoded))
	body = append(body, req.Body[:at]...)
	body = append(body, encoded...)
	body = append(body, req.Body[at+len(req.Params):]...)
	if v, ok := mcp.EncodeHeaderValue(original); ok {
		header.Set(mcp.HeaderName, v)
	}
	return body, header, nil
}

// offsetIn returns where sub starts in b when sub is a slice of b's array
// lying within b.
func offsetIn(b, sub []byte) (int, bool) {
	at := cap(b) - cap(sub)
	if len(sub) == 0 || at < 0 || at+len(sub) > len(b) || &b[at] != &sub[0] {
		return 0, false
	}
	return at, true
}

// marshalRaw encodes m without HTML escaping, so the backend gets the
// client's strings as the client wrote them.
func marshalRaw(m map[string]json.RawMessage) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
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
