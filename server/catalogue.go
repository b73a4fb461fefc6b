package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/aggregator"
	"github.com/vmcp/vmcp/authz"
	"github.com/vmcp/vmcp/optimizer"
	"github.com/vmcp/vmcp/router"
)

// catalogueSync installs the aggregator's current catalogue into the mcp-go
// server. Installing a changed list makes mcp-go send the matching
// list_changed notification to every connected client; an unchanged list is
// not reinstalled, so clients are not told to refetch for nothing. With the
// optimizer on, the tool list is find_tool and call_tool, installed once,
// and a changed catalogue re-indexes the optimizer instead.
type catalogueSync struct {
	agg    *aggregator.Aggregator
	mcp    *mcpserver.MCPServer
	router *router.Router
	// callTool handles tools/call of catalogue tools: the router's, as the
	// relay wraps it.
	callTool  mcpserver.ToolHandlerFunc
	optimizer *optimizer.Tools // nil when the optimizer is off
	policy    *authz.Policy    // nil: every caller sees everything
	log       *slog.Logger

	mu        sync.Mutex
	installed atomic.Pointer[aggregator.Catalogue]
	toolList  atomic.Pointer[toolList]
}

// toolList is the JSON of the installed tool list, encoded on first use.
// tools/list of a large catalogue is answered from it: encoding 10,000 tool
// definitions per request would cost far more than the request itself.
type toolList struct {
	tools []mcp.Tool
	once  sync.Once
	json  []byte
	err   error
	// byKey holds the list as each outcome set of the authorization
	// policy sees it, encoded on first use (callerToolList); keys counts
	// them.
	byKey sync.Map
	keys  atomic.Int64
	// each holds every tool's JSON, encoded once on first use, from which
	// a caller's list is joined.
	eachOnce sync.Once
	each     [][]byte
	eachErr  error
}

// encodedEach returns the JSON of every tool, in order.
func (l *toolList) encodedEach() ([][]byte, error) {
	l.eachOnce.Do(func() {
		l.each = make([][]byte, len(l.tools))
		for i := range l.tools {
			if l.each[i], l.eachErr = json.Marshal(l.tools[i]); l.eachErr != nil {
				return
			}
		}
	})
	return l.each, l.eachErr
}

// encoded returns the installed tools as a JSON array.
func (l *toolList) encoded() ([]byte, error) {
	l.once.Do(func() { l.json, l.err = json.Marshal(l.tools) })
	return l.json, l.err
}

// Sync installs the current catalogue unless it already is installed.
func (s *catalogueSync) Sync() {
	if s.installed.Load() == s.agg.Catalogue() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.agg.Catalogue()
	prev := s.installed.Load()
	if prev == c {
		return
	}
	if prev == nil {
		prev = &aggregator.Catalogue{}
	}
	if !reflect.DeepEqual(prev.Tools, c.Tools) || (s.optimizer != nil && !prev.SameServers(c)) {
		if s.optimizer != nil {
			s.optimizer.Update(c.Tools, toolServers(c))
			// find_tool's description names what the catalogue covers:
			// clients are told (list_changed) when it changes.
			if st := s.optimizer.ServerTools(); !sameDefinitions(s.toolList.Load(), st) {
				s.toolList.Store(&toolList{tools: s.installTools(st)})
			}
		} else {
			s.toolList.Store(&toolList{tools: s.installTools(s.routed(c.Tools))})
		}
	}
	if !reflect.DeepEqual(prev.Resources, c.Resources) {
		rs := make([]mcpserver.ServerResource, len(c.Resources))
		for i, r := range c.Resources {
			rs[i] = mcpserver.ServerResource{Resource: r, Handler: s.readResource("")}
		}
		s.mcp.SetResources(rs...)
	}
	if !sameJSON(prev.ResourceTemplates, c.ResourceTemplates) {
		ts := make([]mcpserver.ServerResourceTemplate, len(c.ResourceTemplates))
		for i, t := range c.ResourceTemplates {
			ts[i] = mcpserver.ServerResourceTemplate{Template: t, Handler: mcpserver.ResourceTemplateHandlerFunc(s.readResource(t.URITemplate.Raw()))}
		}
		s.mcp.SetResourceTemplates(ts...)
	}
	if !reflect.DeepEqual(prev.Prompts, c.Prompts) {
		ps := make([]mcpserver.ServerPrompt, len(c.Prompts))
		for i, p := range c.Prompts {
			ps[i] = mcpserver.ServerPrompt{Prompt: p, Handler: s.router.GetPrompt}
		}
		s.mcp.SetPrompts(ps...)
	}
	s.installed.Store(c)
}

// sameJSON reports whether a and b encode to the same JSON. Resource
// templates need it: two decodes of one URI template hold compiled state
// that reflect.DeepEqual tells apart.
func sameJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

func (s *catalogueSync) readResource(template string) mcpserver.ResourceHandlerFunc {
	return func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		return s.router.ReadResource(ctx, template, req)
	}
}

// installOptimizer makes find_tool and call_tool the tool list.
func (s *catalogueSync) installOptimizer(o *optimizer.Tools) {
	s.optimizer = o
	s.toolList.Store(&toolList{tools: s.installTools(o.ServerTools())})
}

// routed pairs each catalogue tool with the router's handler.
func (s *catalogueSync) routed(tools []mcp.Tool) []mcpserver.ServerTool {
	st := make([]mcpserver.ServerTool, len(tools))
	for i, t := range tools {
		st[i] = mcpserver.ServerTool{Tool: t, Handler: s.callTool}
	}
	return st
}

// installTools sets the tool list and returns the tools installed. mcp-go
// panics on a tool definition it rejects (for example malformed header
// annotations); one bad tool from a backend must not take the server down,
// so such tools are left out and logged.
func (s *catalogueSync) installTools(st []mcpserver.ServerTool) []mcp.Tool {
	if err := setTools(s.mcp, st); err != nil {
		good := st[:0]
		for _, t := range st {
			if err := setTools(mcpserver.NewMCPServer("probe", "0"), []mcpserver.ServerTool{t}); err != nil {
				s.log.Warn("leaving out a tool mcp-go rejects", "tool", t.Tool.Name, "error", err)
				continue
			}
			good = append(good, t)
		}
		if err := setTools(s.mcp, good); err != nil {
			s.log.Error("install tools", "error", err)
			return nil
		}
		st = good
	}
	tools := make([]mcp.Tool, len(st))
	for i, t := range st {
		tools[i] = t.Tool
	}
	// In mcp-go's order, so the encoded list answers tools/list exactly as
	// mcp-go would (the catalogue is sorted already; the optimizer's two
	// tools are not).
	slices.SortFunc(tools, func(a, b mcp.Tool) int { return strings.Compare(a.Name, b.Name) })
	return tools
}

func setTools(m *mcpserver.MCPServer, tools []mcpserver.ServerTool) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%v", v)
		}
	}()
	m.SetTools(tools...)
	return nil
}

// toolServers returns the server of each of c's tools, for the optimizer's
// index: the backend's name and what it said of itself in initialize.
func toolServers(c *aggregator.Catalogue) []*optimizer.Server {
	byBackend := make(map[string]*optimizer.Server)
	out := make([]*optimizer.Server, len(c.Tools))
	for i, t := range c.Tools {
		r, ok := c.Tool(t.Name)
		if !ok {
			continue
		}
		srv := byBackend[r.Backend]
		if srv == nil {
			info := c.Server(r.Backend)
			srv = &optimizer.Server{Name: r.Backend, Title: info.Info.Title, Description: info.Info.Description,
				Instructions: info.Instructions}
			byBackend[r.Backend] = srv
		}
		out[i] = srv
	}
	return out
}

// sameDefinitions reports whether l lists exactly the definitions of st,
// in any order (an installed list is sorted by name).
func sameDefinitions(l *toolList, st []mcpserver.ServerTool) bool {
	if l == nil || len(l.tools) != len(st) {
		return false
	}
	for _, t := range st {
		i := slices.IndexFunc(l.tools, func(x mcp.Tool) bool { return x.Name == t.Tool.Name })
		if i < 0 || !reflect.DeepEqual(l.tools[i], t.Tool) {
			return false
		}
	}
	return true
}
