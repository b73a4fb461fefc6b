// Package router sends each MCP request for a post-aggregation name to the
// backend that owns it, under the backend's original name. Its methods have
// the shapes of mcp-go's handler functions and completion providers.
package router

import (
	"context"
	"errors"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"

	"github.com/vmcp/vmcp/aggregator"
)

// Backend is one client's session to one backend.
type Backend interface {
	CallTool(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error)
	ReadResource(ctx context.Context, req mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error)
	GetPrompt(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error)
	Complete(ctx context.Context, req mcp.CompleteRequest) (*mcp.CompleteResult, error)
}

// OpenFunc returns the session to backend of the client whose request ctx
// is (mcp-go puts the client's session on it).
type OpenFunc func(ctx context.Context, backend string) (Backend, error)

// ErrNotFound is wrapped when a name is not in the catalogue.
var ErrNotFound = errors.New("not found")

// ErrUnhealthy is wrapped when a tool is not in the catalogue because its
// backend is hidden while it is unhealthy (aggregator.Catalogue.Hidden).
// Its error names the backend, as a call to an unavailable backend does:
// `backend "x" is unavailable (unhealthy)`.
var ErrUnhealthy = errors.New("unavailable (unhealthy)")

// Router routes requests using the catalogue current at each call.
type Router struct {
	catalogue func() *aggregator.Catalogue
	open      OpenFunc
}

// New returns a Router reading the catalogue from catalogue (called on every
// request; it must be cheap and never return nil) and opening backend
// sessions with open.
func New(catalogue func() *aggregator.Catalogue, open OpenFunc) *Router {
	return &Router{catalogue: catalogue, open: open}
}

// CallTool calls the tool behind req.Params.Name. A backend's tool error is
// returned as the result it gave (IsError set); a transport or protocol
// failure is returned as an error naming the backend.
func (r *Router) CallTool(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	c := r.catalogue()
	route, ok := c.Tool(req.Params.Name)
	if !ok {
		return nil, toolNotFound(c, req.Params.Name)
	}
	b, err := r.open(ctx, route.Backend)
	if err != nil {
		return nil, err
	}
	req.Params.Name = route.Name
	ctx, span := startCall(ctx, "tools/call", route.Backend, semconv.GenAIToolName(route.Name))
	res, err := b.CallTool(ctx, req)
	endCall(span, err, err == nil && res != nil && res.IsError)
	return res, err
}

// Unhealthy returns the error CallTool returns for tool when the tool is
// not in the catalogue because its backend is hidden while unhealthy
// (wrapping ErrUnhealthy), and nil otherwise.
func (r *Router) Unhealthy(tool string) error {
	c := r.catalogue()
	if _, ok := c.Tool(tool); ok {
		return nil
	}
	if err := toolNotFound(c, tool); errors.Is(err, ErrUnhealthy) {
		return err
	}
	return nil
}

// toolNotFound is the error for a tool c does not list: its hidden
// backend's, or ErrNotFound.
func toolNotFound(c *aggregator.Catalogue, tool string) error {
	if backend, ok := c.Hidden(tool); ok {
		return fmt.Errorf("backend %q is %w", backend, ErrUnhealthy)
	}
	return fmt.Errorf("tool %q: %w", tool, ErrNotFound)
}

// ReadResource reads the resource at req.Params.URI from the backend that
// listed it or, for templateKey != "", from the backend of that resource
// template.
func (r *Router) ReadResource(ctx context.Context, templateKey string, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	c := r.catalogue()
	route, ok := c.Resource(req.Params.URI)
	if !ok && templateKey != "" {
		route, ok = c.Template(templateKey)
	}
	if !ok {
		return nil, fmt.Errorf("resource %q: %w", req.Params.URI, ErrNotFound)
	}
	b, err := r.open(ctx, route.Backend)
	if err != nil {
		return nil, err
	}
	// For a template mcp-go fills Arguments with the variables it matched
	// in the URI. They are not part of resources/read; the backend gets the
	// URI only.
	req.Params.Arguments = nil
	ctx, span := startCall(ctx, "resources/read", route.Backend, semconv.McpResourceURI(req.Params.URI))
	res, err := b.ReadResource(ctx, req)
	endCall(span, err, false)
	if err != nil {
		return nil, err
	}
	return res.Contents, nil
}

// ResourceBackend returns the backend that serves the resource at uri:
// the one that listed it, or the one whose resource template matches it.
func (r *Router) ResourceBackend(uri string) (string, bool) {
	route, ok := r.catalogue().Route(string(mcp.MethodResourcesRead), uri)
	return route.Backend, ok
}

// GetPrompt renders the prompt behind req.Params.Name.
func (r *Router) GetPrompt(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	route, ok := r.catalogue().Prompt(req.Params.Name)
	if !ok {
		return nil, fmt.Errorf("prompt %q: %w", req.Params.Name, ErrNotFound)
	}
	b, err := r.open(ctx, route.Backend)
	if err != nil {
		return nil, err
	}
	req.Params.Name = route.Name
	ctx, span := startCall(ctx, "prompts/get", route.Backend, semconv.GenAIPromptName(route.Name))
	res, err := b.GetPrompt(ctx, req)
	endCall(span, err, false)
	return res, err
}

// CompletePromptArgument completes an argument of a post-aggregation prompt
// (mcp-go's PromptCompletionProvider).
func (r *Router) CompletePromptArgument(ctx context.Context, prompt string, arg mcp.CompleteArgument, cc mcp.CompleteContext) (*mcp.Completion, error) {
	route, ok := r.catalogue().Prompt(prompt)
	if !ok {
		return nil, fmt.Errorf("prompt %q: %w", prompt, ErrNotFound)
	}
	return r.complete(ctx, route.Backend, mcp.PromptReference{Type: "ref/prompt", Name: route.Name}, arg, cc)
}

// CompleteResourceArgument completes an argument of a resource template
// (mcp-go's ResourceCompletionProvider).
func (r *Router) CompleteResourceArgument(ctx context.Context, uri string, arg mcp.CompleteArgument, cc mcp.CompleteContext) (*mcp.Completion, error) {
	c := r.catalogue()
	route, ok := c.Template(uri)
	if !ok {
		route, ok = c.Resource(uri)
	}
	if !ok {
		return nil, fmt.Errorf("resource template %q: %w", uri, ErrNotFound)
	}
	return r.complete(ctx, route.Backend, mcp.ResourceReference{Type: "ref/resource", URI: uri}, arg, cc)
}

func (r *Router) complete(ctx context.Context, backend string, ref any, arg mcp.CompleteArgument, cc mcp.CompleteContext) (*mcp.Completion, error) {
	b, err := r.open(ctx, backend)
	if err != nil {
		return nil, err
	}
	req := mcp.CompleteRequest{}
	req.Params.Ref = ref
	req.Params.Argument = arg
	req.Params.Context = cc
	res, err := b.Complete(ctx, req)
	if err != nil {
		return nil, err
	}
	return &res.Completion, nil
}
