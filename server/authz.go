package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/vmcp/vmcp/aggregator"
	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/authz"
)

// authzStage builds the authz stage over the server's policy: the backend
// of a name comes from the installed catalogue, a denial is answered as
// an unknown name (answerUnknown), recorded with rec and counted.
func (s *Server) authzStage(rec audit.Recorder) func(http.Handler) http.Handler {
	if s.policy == nil {
		return authz.Stage(nil, authz.StageOptions{})
	}
	decisions, err := s.tel.MeterProvider().Meter("github.com/vmcp/vmcp/authz").Int64Counter("vmcp_authz_decisions_total",
		metric.WithDescription("Authorization decisions on calls, by effect."))
	var decided func(context.Context, string)
	if err == nil {
		allow := metric.WithAttributeSet(attribute.NewSet(attribute.String("effect", "allow")))
		deny := metric.WithAttributeSet(attribute.NewSet(attribute.String("effect", "deny")))
		decided = func(ctx context.Context, effect string) {
			if effect == "allow" {
				decisions.Add(ctx, 1, allow)
			} else {
				decisions.Add(ctx, 1, deny)
			}
		}
	}
	return authz.Stage(s.policy, authz.StageOptions{
		Backend:  s.sync.backendOf,
		Recorder: rec,
		Decided:  decided,
	})
}

// backendOf returns the backend that serves name for a request of
// method (for completion/complete, of ref type refType) in the installed
// catalogue, "" if none.
func (s *catalogueSync) backendOf(method, refType, name string) string {
	c := s.agg.Catalogue()
	switch method {
	case "resources/subscribe", "resources/unsubscribe":
		method = "resources/read"
	case "completion/complete":
		if refType == "ref/prompt" {
			r, _ := c.Prompt(name)
			return r.Backend
		}
		if r, ok := c.Template(name); ok {
			return r.Backend
		}
		method = "resources/read" // a resource URI: the router sends it where the URI lives
	}
	r, _ := c.Route(method, name)
	return r.Backend
}

// lister returns the list view of the caller behind ctx.
func (s *catalogueSync) lister(ctx context.Context) authz.Lister {
	id, _ := auth.IdentityFrom(ctx)
	return s.policy.Lister(id)
}

// visibleTools returns the tools the caller behind ctx may see, by name.
func (s *catalogueSync) visibleTools(ctx context.Context) func(name string) bool {
	return s.toolsVisibleTo(s.lister(ctx))
}

// toolsVisibleTo returns the tools l shows, by name, each decided with
// the backend that serves it in the installed catalogue.
func (s *catalogueSync) toolsVisibleTo(l authz.Lister) func(name string) bool {
	c := s.agg.Catalogue()
	return func(name string) bool {
		r, _ := c.Tool(name)
		return l.Visible(authz.Tool, name, r.Backend)
	}
}

// filterTools is mcp-go's tool filter (the tools/list requests it serves,
// with a cursor): the caller's tools.
func (s *catalogueSync) filterTools(ctx context.Context, tools []mcp.Tool) []mcp.Tool {
	if s.policy == nil || s.optimizer != nil {
		return tools
	}
	visible := s.visibleTools(ctx)
	out := make([]mcp.Tool, 0, len(tools))
	for _, t := range tools {
		if visible(t.Name) {
			out = append(out, t)
		}
	}
	return out
}

// filterPrompts is mcp-go's prompt filter: the caller's prompts.
func (s *catalogueSync) filterPrompts(ctx context.Context, prompts []mcp.Prompt) []mcp.Prompt {
	if s.policy == nil {
		return prompts
	}
	l, c := s.lister(ctx), s.agg.Catalogue()
	out := make([]mcp.Prompt, 0, len(prompts))
	for _, p := range prompts {
		r, _ := c.Prompt(p.Name)
		if l.Visible(authz.Prompt, p.Name, r.Backend) {
			out = append(out, p)
		}
	}
	return out
}

// callerToolList returns the JSON array of the tools the caller behind
// ctx may see, encoded once per installed list and outcome set (callers
// whose rules come out the same share it).
func (s *catalogueSync) callerToolList(ctx context.Context) ([]byte, error) {
	l := s.toolList.Load()
	if l == nil {
		return []byte("[]"), nil
	}
	if s.policy == nil || s.optimizer != nil {
		return l.encoded() // find_tool and call_tool are for everyone; find_tool filters
	}
	lister := s.lister(ctx)
	key := lister.Key()
	if v, ok := l.byKey.Load(key); ok {
		return v.([]byte), nil
	}
	each, err := l.encodedEach()
	if err != nil {
		return nil, err
	}
	visible := s.toolsVisibleTo(lister)
	b := make([]byte, 0, 64*1024)
	b = append(b, '[')
	for i, t := range l.tools {
		if visible(t.Name) {
			if len(b) > 1 {
				b = append(b, ',')
			}
			b = append(b, each[i]...)
		}
	}
	b = append(b, ']')
	if l.keys.Add(1) <= maxListsPerCatalogue {
		l.byKey.Store(key, b)
	}
	return b, nil
}

// maxListsPerCatalogue bounds the encoded tool lists kept per installed
// list: one per outcome set, and outcome sets that depend on each caller
// (a condition over the identity and the tool) could otherwise grow with
// the callers.
const maxListsPerCatalogue = 1024

// resourceList filters mcp-go's answer to resources/list and
// resources/templates/list down to what the caller may see (mcp-go has no
// resource filter): every other field of mcp-go's answer (the stateless
// revision's cache hints, a cursor) is kept.
func (e *mcpEndpoint) resourceList(w http.ResponseWriter, q *request) bool {
	s := e.tools
	if s.policy == nil || q.p.ID == nil {
		return false
	}
	rec := &captured{h: http.Header{}}
	e.serveMCPGo(rec, q)
	l, c := s.lister(q.r.Context()), s.agg.Catalogue()
	body := rec.body.Bytes()
	if strings.HasPrefix(rec.h.Get("Content-Type"), "text/event-stream") {
		// Notifications went out on the answer's stream: filter the
		// event that holds the list.
		lines := bytes.Split(body, []byte("\n"))
		for i, line := range lines {
			if data, found := bytes.CutPrefix(line, []byte("data: ")); found {
				if f, ok := filterResourceList(data, q.p.Method, l, c); ok {
					lines[i] = append([]byte("data: "), bytes.TrimSuffix(f, []byte("\n"))...)
				}
			}
		}
		body = bytes.Join(lines, []byte("\n"))
	} else if f, ok := filterResourceList(body, q.p.Method, l, c); ok {
		body = f
	} // else an error, not a list: nothing to leak
	for k, v := range rec.h {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	w.WriteHeader(rec.code)
	_, _ = w.Write(body)
	return true
}

// filterResourceList keeps, in the JSON-RPC answer msg to a resources or
// templates list, the items l shows; ok is false when msg holds no list.
func filterResourceList(msg []byte, method string, l authz.Lister, c *aggregator.Catalogue) ([]byte, bool) {
	field := "resources"
	if method == "resources/templates/list" {
		field = "resourceTemplates"
	}
	var env map[string]json.RawMessage
	if json.Unmarshal(msg, &env) != nil || env["result"] == nil {
		return nil, false
	}
	var res map[string]json.RawMessage
	if json.Unmarshal(env["result"], &res) != nil {
		return nil, false
	}
	var items []json.RawMessage
	if json.Unmarshal(res[field], &items) != nil {
		return nil, false
	}
	kept := items[:0]
	for _, it := range items {
		var item struct {
			URI         string `json:"uri"`
			URITemplate string `json:"uriTemplate"`
		}
		if json.Unmarshal(it, &item) != nil {
			continue
		}
		var r aggregator.Route
		name := item.URI
		if field == "resources" {
			r, _ = c.Resource(name)
		} else {
			name = item.URITemplate
			r, _ = c.Template(name)
		}
		if l.Visible(authz.Resource, name, r.Backend) {
			kept = append(kept, it)
		}
	}
	var err error
	if res[field], err = json.Marshal(kept); err != nil {
		return nil, false
	}
	if env["result"], err = json.Marshal(res); err != nil {
		return nil, false
	}
	out, err := json.Marshal(env)
	if err != nil {
		return nil, false
	}
	return append(out, '\n'), true
}

// captured is a response writer that keeps the whole answer.
type captured struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (c *captured) Header() http.Header { return c.h }
func (c *captured) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}
func (c *captured) Write(p []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return c.body.Write(p)
}
