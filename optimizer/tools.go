package optimizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/embeddings"
	"github.com/vmcp/vmcp/parse"
	"github.com/vmcp/vmcp/router"
)

// CallFunc calls a catalogue tool by its post-aggregation name: the router's
// CallTool.
type CallFunc func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error)

// Tools serves find_tool and call_tool over the catalogue. The search index
// is built by Update, once per catalogue change, and shared by every
// session.
type Tools struct {
	max  int
	call CallFunc
	// visible, when set, returns what the caller behind ctx may see: the
	// tools find_tool returns and call_tool calls (Restrict).
	visible func(ctx context.Context) func(name string) bool
	// visibilityKey, when set, names the callers who see the same tools
	// (CacheVisibility).
	visibilityKey func(ctx context.Context) string

	mu      sync.Mutex // serialises Update
	indexed atomic.Pointer[indexed]

	// Hybrid search (UseEmbeddings); embed nil: lexical only.
	embed      Embedder
	weight     float64
	onFallback func(reason string)
	log        *slog.Logger
	// life ends with Close; cancelJob ends the current catalogue's
	// embedding; jobs counts the embedding goroutines.
	life      context.Context
	endLife   context.CancelFunc
	cancelJob context.CancelFunc
	jobs      sync.WaitGroup
}

// indexed is one catalogue's tool list, its index and, once embedded, its
// vectors.
type indexed struct {
	tools     []mcp.Tool
	servers   []*Server
	index     *Index
	vectors   atomic.Pointer[Vectors]
	embedded  atomic.Int64 // tools with a vector so far
	embedding atomic.Bool  // a job embeds it now
	// visibility holds, by CacheVisibility key, which tools those callers
	// may see ([]bool); visibilitySets counts the keys stored.
	visibility     sync.Map
	visibilitySets atomic.Int32
}

// NewTools returns the optimizer's tools. find_tool returns at most
// maxToolsToReturn tools; call_tool calls through call.
func NewTools(maxToolsToReturn int, call CallFunc) *Tools {
	t := &Tools{max: maxToolsToReturn, call: call}
	t.life, t.endLife = context.WithCancel(context.Background())
	t.indexed.Store(&indexed{index: NewIndex(nil, nil)})
	return t
}

// HybridOptions turn on the hybrid search (UseEmbeddings).
type HybridOptions struct {
	// Embedder embeds the tools and the queries.
	Embedder Embedder
	// Weight is the vector score's weight, 0 to 1; the lexical score
	// weighs 1 - Weight.
	Weight float64
	// OnFallback, when set, is called when a search that could be hybrid
	// is lexical, with why: "query_error", "timeout", "paused" (after
	// repeated failures), "dimensions".
	OnFallback func(reason string)
	// Logger receives the embedding's progress and failures. nil:
	// slog.Default().
	Logger *slog.Logger
}

// UseEmbeddings makes find_tool rank by a hybrid of the lexical and the
// vector score once a catalogue's tools are embedded. Each Update embeds
// its catalogue in the background (what is cached is not embedded again),
// retrying with capped backoff while the service fails; until then, and
// for any search whose query cannot be embedded in time, find_tool is
// lexical. Call it before the first Update; Close stops the embedding.
func (t *Tools) UseEmbeddings(o HybridOptions) {
	t.embed, t.weight, t.onFallback, t.log = o.Embedder, o.Weight, o.OnFallback, o.Logger
	if t.log == nil {
		t.log = slog.Default()
	}
}

// Close stops the background embedding and waits for it.
func (t *Tools) Close() {
	t.mu.Lock()
	t.endLife()
	t.mu.Unlock()
	t.jobs.Wait()
}

// Progress returns how many tools the current catalogue has and how many
// of them have a vector (0 without embeddings).
func (t *Tools) Progress() (tools, embedded int) {
	ix := t.indexed.Load()
	return len(ix.tools), int(ix.embedded.Load())
}

// Restrict limits what each caller finds and calls to the tools visible
// returns for it (its authorization): find_tool returns only those, and
// call_tool answers any other name as it answers one that does not exist.
// Call it before serving.
func (t *Tools) Restrict(visible func(ctx context.Context) func(name string) bool) {
	t.visible = visible
}

// CacheVisibility lets the hybrid search keep, per catalogue, what each
// set of callers may see: key names the callers whose visibility is the
// same (the authorization policy's outcome set). Without it each search
// decides every tool again.
func (t *Tools) CacheVisibility(key func(ctx context.Context) string) { t.visibilityKey = key }

// maxVisibilitySets bounds the visibility sets kept per catalogue.
const maxVisibilitySets = 1024

// keepFor returns which of ix's tools the caller behind ctx may see, nil
// when it may see all.
func (t *Tools) keepFor(ctx context.Context, ix *indexed) []bool {
	if t.visible == nil {
		return nil
	}
	var key string
	if t.visibilityKey != nil {
		key = t.visibilityKey(ctx)
		if v, ok := ix.visibility.Load(key); ok {
			return v.([]bool)
		}
	}
	visible := t.visible(ctx)
	keep := make([]bool, len(ix.tools))
	for d := range ix.tools {
		keep[d] = visible(ix.tools[d].Name)
	}
	if t.visibilityKey != nil && ix.visibilitySets.Add(1) <= maxVisibilitySets {
		ix.visibility.Store(key, keep)
	}
	return keep
}

// Update indexes tools, the catalogue's tool list, with the server each
// comes from (servers: nil, or one per tool), unless that very list is
// already indexed. The slice is kept, not copied: the catalogue never
// changes it.
func (t *Tools) Update(tools []mcp.Tool, servers []*Server) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur := t.indexed.Load(); cur != nil && sameSlice(cur.tools, tools) {
		return
	}
	ix := &indexed{tools: tools, servers: servers, index: NewIndex(tools, servers)}
	t.indexed.Store(ix)
	if t.embed == nil || t.life.Err() != nil {
		return
	}
	t.startEmbedding(ix)
}

// startEmbedding starts embedding ix in the background, ending the
// previous job (what it embedded is cached). t.mu is held.
func (t *Tools) startEmbedding(ix *indexed) {
	if t.cancelJob != nil {
		t.cancelJob()
	}
	var ctx context.Context
	ctx, t.cancelJob = context.WithCancel(t.life)
	ix.embedding.Store(true)
	t.jobs.Go(func() {
		defer ix.embedding.Store(false)
		t.embedCatalogue(ctx, ix)
	})
}

// Backoff of a catalogue's embedding while the service fails.
const (
	embedRetryMin = time.Second
	embedRetryMax = time.Minute
)

// embedCatalogue embeds ix's tools and installs their vectors, retrying
// with capped backoff until it succeeds or ctx ends.
func (t *Tools) embedCatalogue(ctx context.Context, ix *indexed) {
	texts := make([]string, len(ix.tools))
	for i := range ix.tools {
		var s *Server
		if i < len(ix.servers) {
			s = ix.servers[i]
		}
		texts[i] = DocumentText(&ix.tools[i], s)
	}
	wait := embedRetryMin
	for {
		start := time.Now()
		vecs, err := t.embed.Documents(ctx, texts, func(n int) { ix.embedded.Store(int64(n)) })
		if err == nil {
			vs, ok := NewVectors(vecs)
			if ok {
				ix.vectors.Store(vs)
				t.log.Info("optimizer: tools embedded; find_tool is hybrid", "tools", len(texts), "dimensions", vs.dims,
					"duration", time.Since(start).Round(time.Millisecond))
				return
			}
			err = errors.New("the vectors differ in size")
		}
		ix.embedded.Store(0) // none installed
		if ctx.Err() != nil {
			return
		}
		t.log.Warn("optimizer: embedding the tools failed; find_tool stays lexical, retrying", "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, embedRetryMax)
	}
}

func sameSlice(a, b []mcp.Tool) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// ServerTools returns find_tool and call_tool with their handlers, for
// mcp-go's tool list, described for the catalogue indexed last: install
// them again after an Update to tell clients what it covers now.
func (t *Tools) ServerTools() []mcpserver.ServerTool {
	ix := t.indexed.Load()
	defs := Definitions(t.max, Coverage(ix.tools, ix.servers))
	return []mcpserver.ServerTool{
		{Tool: defs[0], Handler: t.findTool},
		{Tool: defs[1], Handler: t.callTool},
	}
}

// Definitions returns the definitions of find_tool and call_tool, in that
// order, as clients list them, for a catalogue whose coverage ("github
// (pull requests and issues); jira (...)") find_tool names. (Not the number
// of tools: a client would be told of every tool added or removed.)
func Definitions(maxToolsToReturn int, coverage string) []mcp.Tool {
	what := "the tools of the servers behind this gateway"
	if coverage != "" {
		what += ": " + coverage
	}
	find := mcp.NewTool(parse.FindToolName,
		mcp.WithDescription(fmt.Sprintf("Find the right tool among %s. These tools are not listed here: whenever a task "+
			"may need one of them (to read or change data, or act in one of those systems), call find_tool first, "+
			"describing the task in plain language. It returns the best %d matches with their exact names, "+
			"descriptions, input schemas and relevance scores; then call the chosen one with call_tool.", what, maxToolsToReturn)),
		mcp.WithString("tool_description", mcp.Required(),
			mcp.Description("What you want to do, in plain language, e.g. \"create a pull request on GitHub\".")),
		mcp.WithString("tool_keywords",
			mcp.Description("Optional space-separated keywords that narrow the search, e.g. \"github pull request\".")),
		mcp.WithReadOnlyHintAnnotation(true),
		mcp.WithIdempotentHintAnnotation(true),
		mcp.WithDestructiveHintAnnotation(false),
		mcp.WithOpenWorldHintAnnotation(false),
	)
	find.RawOutputSchema = json.RawMessage(findToolOutputSchema)

	call := mcp.NewTool(parse.CallToolName,
		mcp.WithDescription("Call a tool that find_tool returned, by the exact name find_tool gave it (do not guess "+
			"or shorten names: search first), with parameters that match its input schema. Returns the tool's own result."),
		mcp.WithString("tool_name", mcp.Required(),
			mcp.Description("The tool's name exactly as find_tool returned it.")),
		mcp.WithObject("parameters",
			mcp.Description("The tool's arguments, an object matching the tool's inputSchema.")),
		mcp.WithDestructiveHintAnnotation(true),
		mcp.WithOpenWorldHintAnnotation(true),
	)
	return []mcp.Tool{find, call}
}

const findToolOutputSchema = `{"type":"object","properties":{"tools":{"type":"array","items":{"type":"object",` +
	`"properties":{"name":{"type":"string"},"description":{"type":"string"},"inputSchema":{"type":"object"},` +
	`"score":{"type":"number"}},"required":["name","inputSchema","score"]}}},"required":["tools"]}`

// FoundTool is one find_tool result.
type FoundTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"inputSchema"`
	Score       float64         `json:"score"`
}

// FindResult is find_tool's structured content.
type FindResult struct {
	Tools []FoundTool `json:"tools"`
}

func (t *Tools) findTool(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	desc, err := req.RequireString("tool_description")
	if err != nil || strings.TrimSpace(desc) == "" {
		return mcp.NewToolResultError("find_tool: tool_description is required: describe what you want to do"), nil
	}
	keywords := req.GetString("tool_keywords", "")
	ix := t.indexed.Load()
	var matches []Match
	if cos := t.queryCosines(ctx, ix, desc, keywords); cos != nil {
		matches = ix.index.hybrid(desc, keywords, cos, t.weight, t.max, t.keepFor(ctx, ix))
	} else if t.visible == nil {
		matches = ix.index.Search(desc, keywords, t.max)
	} else {
		// The whole ranking, cut to the caller's tools.
		visible := t.visible(ctx)
		for _, m := range ix.index.Search(desc, keywords, len(ix.tools)) {
			if visible(m.Tool.Name) {
				matches = append(matches, m)
				if len(matches) == t.max {
					break
				}
			}
		}
	}
	res := FindResult{Tools: make([]FoundTool, len(matches))}
	for i, m := range matches {
		res.Tools[i] = FoundTool{
			Name:        m.Tool.Name,
			Description: m.Tool.Description,
			InputSchema: inputSchema(m.Tool),
			Score:       math.Round(m.Score*1e4) / 1e4,
		}
	}
	text, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("find_tool: encode result: %w", err)
	}
	return mcp.NewToolResultStructured(res, string(text)), nil
}

// queryCosines returns the cosine of the search with every tool of ix, or
// nil when the search is to be lexical: no embeddings, the tools not
// embedded yet, or the query not embedded in time or of another size
// (counted by OnFallback).
func (t *Tools) queryCosines(ctx context.Context, ix *indexed, desc, keywords string) []float32 {
	if t.embed == nil || t.weight <= 0 {
		return nil
	}
	vs := ix.vectors.Load()
	if vs == nil || len(ix.tools) == 0 {
		return nil
	}
	q, err := t.embed.Query(ctx, strings.TrimSpace(desc+" "+keywords))
	switch {
	case err != nil && ctx.Err() != nil:
		return nil // the caller left: nothing to count
	case errors.Is(err, context.DeadlineExceeded):
		t.fallback("timeout")
		return nil
	case errors.Is(err, embeddings.ErrPaused):
		t.fallback("paused")
		return nil
	case errors.Is(err, embeddings.ErrDimensions):
		t.fallback("dimensions")
		return nil
	case err != nil:
		t.fallback("query_error")
		return nil
	case len(q) != vs.dims:
		// The service answers another size now (a new model under the
		// same name): the tools' vectors are stale.
		t.fallback("dimensions")
		t.reembed(ix)
		return nil
	}
	return vs.cosines(q)
}

// reembed embeds ix's tools again, unless ix is no longer the catalogue or
// its embedding is running.
func (t *Tools) reembed(ix *indexed) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.indexed.Load() != ix || ix.embedding.Load() || t.life.Err() != nil {
		return
	}
	t.startEmbedding(ix)
}

func (t *Tools) fallback(reason string) {
	if t.onFallback != nil {
		t.onFallback(reason)
	}
}

// inputSchema returns a tool's input schema as JSON: the backend's own
// bytes when it gave them.
func inputSchema(t *mcp.Tool) json.RawMessage {
	if len(t.RawInputSchema) > 0 {
		return t.RawInputSchema
	}
	b, err := json.Marshal(t.InputSchema)
	if err != nil {
		return json.RawMessage(`{"type":"object"}`)
	}
	return b
}

func (t *Tools) callTool(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	name, err := req.RequireString("tool_name")
	if err != nil || name == "" {
		return mcp.NewToolResultError("call_tool: tool_name is required: the name of a tool find_tool returned"), nil
	}
	args := req.GetArguments()
	params, ok := args["parameters"]
	if !ok || params == nil {
		params = map[string]any{}
	} else if _, isObject := params.(map[string]any); !isObject {
		return mcp.NewToolResultError(fmt.Sprintf("call_tool: parameters must be an object matching the input schema of %s", name)), nil
	}
	if t.visible != nil && !t.visible(ctx)(name) {
		return mcp.NewToolResultError(t.UnknownTool(ctx, name)), nil
	}
	inner := mcp.CallToolRequest{Request: req.Request, Header: req.Header}
	inner.Params.Name = name
	inner.Params.Arguments = params
	inner.Params.Meta = req.Params.Meta
	res, err := t.call(ctx, inner)
	if errors.Is(err, router.ErrNotFound) {
		return mcp.NewToolResultError(t.UnknownTool(ctx, name)), nil
	}
	return res, err
}

// UnknownTool is the error text of a call_tool naming no catalogue tool
// the caller behind ctx may use, with the nearest names it may use.
func (t *Tools) UnknownTool(ctx context.Context, name string) string {
	msg := fmt.Sprintf("call_tool: unknown tool %q", parse.TruncateName(name))
	if len(name) > parse.MaxNameBytes {
		// No catalogue name is near it, and comparing would cost the
		// length of the name for every tool.
		return msg + " Use find_tool to search for tools."
	}
	var keep func(string) bool
	if t.visible != nil {
		keep = t.visible(ctx)
	}
	if near := closestNames(t.indexed.Load().tools, name, 3, keep); len(near) > 0 {
		msg += "; did you mean " + strings.Join(near, ", ") + "?"
	}
	return msg + " Use find_tool to search for tools."
}
