package aggregator

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/config"
)

// ErrConflict is wrapped by every unresolved name conflict under manual
// conflict resolution.
var ErrConflict = errors.New("unresolved name conflict")

// candidate is one backend's tool or prompt on its way into the catalogue.
type candidate struct {
	name  string // post-aggregation name, once resolved
	route Route
	rank  int
	index int // position in the combined list, which is in config order
}

// Build merges caps (by backend name; backends absent from caps contribute
// nothing) into a catalogue. order is the config order of backends. Under
// manual resolution it returns the catalogue together with an error naming
// every conflict left unsettled; otherwise conflicts are resolved and
// logged.
func Build(cfg config.Aggregation, order []string, caps map[string]*Capabilities, log *slog.Logger) (*Catalogue, error) {
	r := newResolver(cfg, order)
	c := &Catalogue{
		tools:        make(map[string]Route),
		prompts:      make(map[string]Route),
		resources:    make(map[string]Route),
		templates:    make(map[string]Route),
		backendTools: make(map[string]int),
		servers:      make(map[string]Server, len(caps)),
	}

	nTools, nPrompts := 0, 0
	for _, bc := range caps {
		nTools += len(bc.Tools)
		nPrompts += len(bc.Prompts)
	}
	toolCands := make([]candidate, 0, nTools)
	tools := make([]mcp.Tool, 0, nTools) // indexed by candidate.index
	promptCands := make([]candidate, 0, nPrompts)
	prompts := make([]mcp.Prompt, 0, nPrompts)
	for _, b := range order {
		bc := caps[b]
		if bc == nil {
			continue
		}
		c.servers[b] = Server{Info: bc.ServerInfo, Instructions: bc.Instructions}
		sel := r.selection[b]
		for _, t := range bc.Tools {
			if sel != nil && !sel.allows(t.Name) {
				continue
			}
			orig := t.Name
			if o, ok := sel.override(orig); ok {
				if o.Name != "" {
					t.Name = o.Name
				}
				if o.Description != "" {
					t.Description = o.Description
				}
			}
			toolCands = append(toolCands, candidate{name: t.Name, route: Route{Backend: b, Name: orig}, rank: r.rank(b), index: len(tools)})
			tools = append(tools, t)
		}
		for _, p := range bc.Prompts {
			promptCands = append(promptCands, candidate{name: p.Name, route: Route{Backend: b, Name: p.Name}, rank: r.rank(b), index: len(prompts)})
			prompts = append(prompts, p)
		}
		for _, res := range bc.Resources {
			if prev, dup := c.resources[res.URI]; dup {
				log.Warn("duplicate resource URI; keeping the first backend", "uri", res.URI, "kept", prev.Backend, "dropped", b)
				continue
			}
			c.resources[res.URI] = Route{Backend: b, Name: res.URI}
			c.Resources = append(c.Resources, res)
		}
		for _, tpl := range bc.ResourceTemplates {
			key := uriTemplate(tpl)
			if prev, dup := c.templates[key]; dup {
				log.Warn("duplicate resource template; keeping the first backend", "uriTemplate", key, "kept", prev.Backend, "dropped", b)
				continue
			}
			c.templates[key] = Route{Backend: b, Name: key}
			c.ResourceTemplates = append(c.ResourceTemplates, tpl)
		}
	}

	var errs []error
	keptTools, err := r.resolve("tool", toolCands, log)
	if err != nil {
		errs = append(errs, err)
	}
	c.Tools = make([]mcp.Tool, 0, len(keptTools))
	for _, k := range keptTools {
		t := tools[k.index]
		t.Name = k.name
		c.Tools = append(c.Tools, t)
		c.tools[k.name] = k.route
		c.backendTools[k.route.Backend]++
	}
	// Prompts have no overrides, so manual conflicts are settled by config
	// order with a warning rather than failing start-up.
	keptPrompts, _ := r.resolve("prompt", promptCands, log)
	c.Prompts = make([]mcp.Prompt, 0, len(keptPrompts))
	for _, k := range keptPrompts {
		p := prompts[k.index]
		p.Name = k.name
		c.Prompts = append(c.Prompts, p)
		c.prompts[k.name] = k.route
	}
	slices.SortFunc(c.Tools, func(a, b mcp.Tool) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(c.Prompts, func(a, b mcp.Prompt) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(c.Resources, func(a, b mcp.Resource) int { return strings.Compare(a.URI, b.URI) })
	slices.SortFunc(c.ResourceTemplates, func(a, b mcp.ResourceTemplate) int {
		return strings.Compare(uriTemplate(a), uriTemplate(b))
	})
	return c, errors.Join(errs...)
}

func uriTemplate(t mcp.ResourceTemplate) string {
	if t.URITemplate == nil || t.URITemplate.Template == nil {
		return ""
	}
	return t.URITemplate.Raw()
}

// conflictError describes a name offered by several backends.
func conflictError(kind, name string, backends []string) error {
	return fmt.Errorf("%w: %s %q is offered by backends %s; rename it with aggregation.tools[].overrides",
		ErrConflict, kind, name, strings.Join(backends, ", "))
}
