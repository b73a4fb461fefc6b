// Package aggregator merges the capabilities of several backends into one
// catalogue under stable post-aggregation names, and keeps the routing table
// that maps each of those names back to (backend, original name).
//
// Tools go through the backend's filter and overrides, then conflict
// resolution (prefix, priority or manual). Prompts follow the same conflict
// strategy (without filters or overrides). Resources and resource templates
// keep their URIs; a duplicate goes to the first backend in config order.
// The package does not speak HTTP and never calls a backend.
package aggregator

import (
	"github.com/mark3labs/mcp-go/mcp"
	"reflect"
)

// Route says where a post-aggregation name lives: the backend and the name
// (or URI) the backend itself uses.
type Route struct {
	Backend string
	Name    string
}

// Capabilities is what one backend offers, under its own names.
type Capabilities struct {
	Tools             []mcp.Tool
	Resources         []mcp.Resource
	ResourceTemplates []mcp.ResourceTemplate
	Prompts           []mcp.Prompt
	// ServerInfo and Instructions are what the backend said of itself in
	// initialize: the context of its tools for the optimizer's search.
	ServerInfo   mcp.Implementation
	Instructions string
}

// Catalogue is one immutable view of everything vmcp offers. Its slices are
// sorted by post-aggregation name (URI for resources) and must not be
// modified by callers.
type Catalogue struct {
	Tools             []mcp.Tool
	Resources         []mcp.Resource
	ResourceTemplates []mcp.ResourceTemplate
	Prompts           []mcp.Prompt

	tools     map[string]Route
	prompts   map[string]Route
	resources map[string]Route
	templates map[string]Route // keyed by URI template
	// backendTools counts each backend's tools in the catalogue.
	backendTools map[string]int
	// servers holds what each backend said of itself.
	servers map[string]Server
	// hidden maps the names hidden backends' tools would have, and no
	// listed tool has, to their backend (Aggregator.Hide).
	hidden map[string]string
}

// Tool returns the route of a post-aggregation tool name.
func (c *Catalogue) Tool(name string) (Route, bool) {
	r, ok := c.tools[name]
	return r, ok
}

// Prompt returns the route of a post-aggregation prompt name.
func (c *Catalogue) Prompt(name string) (Route, bool) {
	r, ok := c.prompts[name]
	return r, ok
}

// Resource returns the route of a resource URI listed by a backend.
func (c *Catalogue) Resource(uri string) (Route, bool) {
	r, ok := c.resources[uri]
	return r, ok
}

// Template returns the route of a resource template, by its URI template.
func (c *Catalogue) Template(uriTemplate string) (Route, bool) {
	r, ok := c.templates[uriTemplate]
	return r, ok
}

// Hidden reports whether name is the post-aggregation name of a tool of a
// backend that Aggregator.Hide took out of the catalogue, and which
// backend; a name the catalogue lists is never hidden.
func (c *Catalogue) Hidden(name string) (backend string, ok bool) {
	backend, ok = c.hidden[name]
	return backend, ok
}

// Server is what a backend said of itself in initialize.
type Server struct {
	Info         mcp.Implementation
	Instructions string
}

// Server returns what backend said of itself in initialize.
func (c *Catalogue) Server(backend string) Server { return c.servers[backend] }

// SameServers reports whether c and o hold what the same backends said of
// themselves.
func (c *Catalogue) SameServers(o *Catalogue) bool { return reflect.DeepEqual(c.servers, o.servers) }

// ToolCount returns how many of backend's tools are in the catalogue.
func (c *Catalogue) ToolCount(backend string) int { return c.backendTools[backend] }

// Route returns where the post-aggregation name of a request of method
// lives: tools/call and prompts/get by name, resources/read by URI, a URI
// that no backend listed matched against the resource templates in order
// (the first matching template with a route wins, and the route's Name is
// the URI itself, which is never renamed). Other methods have no route.
func (c *Catalogue) Route(method, name string) (Route, bool) {
	switch method {
	case "tools/call":
		return c.Tool(name)
	case "prompts/get":
		return c.Prompt(name)
	case "resources/read":
		if r, ok := c.Resource(name); ok {
			return r, true
		}
		for _, t := range c.ResourceTemplates {
			if t.URITemplate == nil || t.URITemplate.Template == nil || !t.URITemplate.Regexp().MatchString(name) {
				continue
			}
			if r, ok := c.Template(t.URITemplate.Raw()); ok {
				return Route{Backend: r.Backend, Name: name}, true
			}
		}
	}
	return Route{}, false
}
