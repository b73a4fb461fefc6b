package optimizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/mark3labs/mcp-go/mcp"
)

// The fake embedding space of these tests: each axis is a topic, and a
// text points along every topic one of whose words it contains, so that
// "make a slide deck" is close to "Create a new PowerPoint file" although
// they share no word. A text with no topic word points along an axis of its
// own (one for documents, another for queries): such a query is orthogonal
// to every tool, the vectors are indifferent to it.
var fakeTopics = [][]string{
	{"presentation", "powerpoint", "slide", "slides", "deck", "ppt"},
	{"weather", "forecast", "rain", "umbrella"},
	{"email", "mail", "inbox"},
	{"news", "headline", "headlines"},
	{"disk", "folder", "directory"},
}

const (
	fakeTopicCount = 5                  // len(fakeTopics)
	fakeDocOther   = fakeTopicCount     // a document without a topic word
	fakeQueryOther = fakeTopicCount + 1 // a query without one
	fakeDims       = fakeTopicCount + 2
)

func init() {
	if len(fakeTopics) != fakeTopicCount {
		panic("fakeTopicCount is not len(fakeTopics)")
	}
}

// fakeVector is the unit vector of text in the fake space.
func fakeVector(text string, query bool) []float32 {
	v := make([]float32, fakeDims)
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) }) {
		for axis, words := range fakeTopics {
			if slices.Contains(words, w) {
				v[axis]++
			}
		}
	}
	var sum float32
	for _, x := range v {
		sum += x * x
	}
	if sum == 0 {
		if query {
			v[fakeQueryOther] = 1
		} else {
			v[fakeDocOther] = 1
		}
		return v
	}
	n := float32(math.Sqrt(float64(sum)))
	for i := range v {
		v[i] /= n
	}
	return v
}

// fakeQueryDeadline is the fake's own deadline for a query, as
// embeddings.Service has one.
const fakeQueryDeadline = 50 * time.Millisecond

// fakeEmbedder is an Embedder over the fake space that can fail, block,
// be slow or give vectors of the wrong size, and counts its calls.
type fakeEmbedder struct {
	// docFailures: the first docFailures Documents calls fail.
	docFailures int64
	// steps, when set, makes Documents report progress 0, then wait for a
	// value on steps (or its context) before reporting half of the texts,
	// and for another before the rest.
	steps chan struct{}
	// queryErr is returned by every Query; queryDelay makes Query wait
	// that long within fakeQueryDeadline; queryDims, when set, is the size
	// of the query vectors.
	queryErr   error
	queryDelay time.Duration
	queryDims  int

	docCalls   atomic.Int64 // Documents calls started
	running    atomic.Int64 // Documents calls not returned yet
	cancelled  atomic.Int64 // Documents calls ended by their context
	queryCalls atomic.Int64

	mu    sync.Mutex
	texts [][]string // the texts of each Documents call
}

func (f *fakeEmbedder) Documents(ctx context.Context, texts []string, progress func(done int)) ([][]float32, error) {
	n := f.docCalls.Add(1)
	f.running.Add(1)
	defer f.running.Add(-1)
	f.mu.Lock()
	f.texts = append(f.texts, slices.Clone(texts))
	f.mu.Unlock()
	if n <= f.docFailures {
		return nil, errors.New("fake: the service is down")
	}
	progress(0)
	if f.steps != nil {
		for _, done := range []int{len(texts) / 2, len(texts)} {
			select {
			case <-f.steps:
			case <-ctx.Done():
				f.cancelled.Add(1)
				return nil, ctx.Err()
			}
			progress(done)
		}
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		out[i] = fakeVector(t, false)
	}
	progress(len(texts))
	return out, nil
}

func (f *fakeEmbedder) Query(ctx context.Context, text string) ([]float32, error) {
	f.queryCalls.Add(1)
	if f.queryDelay > 0 {
		ctx, cancel := context.WithTimeout(ctx, fakeQueryDeadline)
		defer cancel()
		select {
		case <-time.After(f.queryDelay):
		case <-ctx.Done():
			return nil, fmt.Errorf("fake: no answer in time: %w", ctx.Err())
		}
	}
	if f.queryErr != nil {
		return nil, f.queryErr
	}
	v := fakeVector(text, true)
	if f.queryDims > 0 {
		v = append(v, make([]float32, max(0, f.queryDims-len(v)))...)[:f.queryDims]
	}
	return v, nil
}

// fallbacks records OnFallback's reasons.
type fallbacks struct {
	mu      sync.Mutex
	reasons []string
}

func (r *fallbacks) add(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, reason)
}

func (r *fallbacks) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reasons)
}

// hybridCatalogue is a catalogue of tools of distinct purposes; none
// shares a word with "make a slide deck".
func hybridCatalogue() ([]mcp.Tool, []*Server) {
	schema := func(params ...string) json.RawMessage {
		props := make([]string, len(params))
		for i, p := range params {
			props[i] = fmt.Sprintf("%q:{\"type\":\"string\"}", p)
		}
		return json.RawMessage(`{"type":"object","properties":{` + strings.Join(props, ",") + `}}`)
	}
	tools := []mcp.Tool{
		{Name: "create_presentation", Description: "Create a new PowerPoint file", RawInputSchema: schema("title")},
		{Name: "get_weather", Description: "Get the current weather for a city", RawInputSchema: schema("city")},
		{Name: "send_email", Description: "Send an email message to a recipient", RawInputSchema: schema("to", "subject", "body")},
		{Name: "search_news", Description: "Search the latest news headlines", RawInputSchema: schema("query")},
		{Name: "delete_file", Description: "Delete a file from the disk", RawInputSchema: schema("path")},
		{Name: "translate_text", Description: "Translate text into another language", RawInputSchema: schema("text", "language")},
	}
	return tools, ServersByName([]string{"office", "meteo", "postbox", "press", "storage", "babel"})
}

// hybridTools returns Tools over the fake, closed when t ends.
func hybridTools(t *testing.T, f *fakeEmbedder, weight float64, rec *fallbacks) *Tools {
	t.Helper()
	tools := NewTools(10, nil)
	o := HybridOptions{Embedder: f, Weight: weight, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if rec != nil {
		o.OnFallback = rec.add
	}
	tools.UseEmbeddings(o)
	t.Cleanup(tools.Close)
	return tools
}

// findResult calls find_tool as the caller behind ctx.
func findResult(t *testing.T, ctx context.Context, tools *Tools, desc string) []FoundTool {
	t.Helper()
	res, err := tools.findTool(ctx, call("find_tool", map[string]any{"tool_description": desc}))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := res.StructuredContent.(FindResult)
	if res.IsError || !ok {
		t.Fatalf("find_tool(%q) = %+v; want a structured result", desc, res)
	}
	return got.Tools
}

func foundNames(found []FoundTool) []string {
	out := make([]string, len(found))
	for i, f := range found {
		out[i] = f.Name
	}
	return out
}

// waitFor polls cond every 5ms until it holds, failing t after 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hybridReady reports whether tools' current catalogue has its vectors.
func hybridReady(tools *Tools) bool { return tools.indexed.Load().vectors.Load() != nil }

// Until the background embedding is done find_tool is lexical, and
// Progress counts the tools embedded so far; once done, a request that
// shares no word with a tool finds it by its vector, and a strong
// lexical match still ranks first when the vectors are indifferent.
func TestHybridBackgroundEmbedding(t *testing.T) {
	t.Parallel()
	f := &fakeEmbedder{steps: make(chan struct{})}
	tools := hybridTools(t, f, 0.5, nil)
	if n, m := tools.Progress(); n != 0 || m != 0 {
		t.Errorf("Progress before any catalogue = %d, %d; want 0, 0", n, m)
	}
	cat, servers := hybridCatalogue()
	tools.Update(cat, servers)
	ctx := context.Background()
	n := len(cat)

	if got, m := tools.Progress(); got != n || m != 0 {
		t.Errorf("Progress right after Update = %d, %d; want %d, 0", got, m, n)
	}
	if got := findResult(t, ctx, tools, "make a slide deck"); len(got) != 0 {
		t.Errorf("before the vectors, find_tool(make a slide deck) = %v; want nothing (lexical)", foundNames(got))
	}
	if got := foundNames(findResult(t, ctx, tools, "send an email message")); len(got) == 0 || got[0] != "send_email" {
		t.Errorf("before the vectors, find_tool(send an email message) = %v; want send_email first", got)
	}
	if q := f.queryCalls.Load(); q != 0 {
		t.Errorf("%d queries embedded before the tools had vectors; want none", q)
	}

	f.steps <- struct{}{}
	waitFor(t, "Progress reaches half", func() bool { _, m := tools.Progress(); return m == n/2 })
	if hybridReady(tools) {
		t.Fatal("vectors installed half-way through the embedding")
	}
	if got := findResult(t, ctx, tools, "make a slide deck"); len(got) != 0 {
		t.Errorf("half-way, find_tool(make a slide deck) = %v; want nothing (lexical)", foundNames(got))
	}

	f.steps <- struct{}{}
	waitFor(t, "the vectors are installed", func() bool { return hybridReady(tools) })
	if got, m := tools.Progress(); got != n || m != n {
		t.Errorf("Progress after the embedding = %d, %d; want %d, %d", got, m, n, n)
	}

	got := findResult(t, ctx, tools, "make a slide deck")
	if len(got) == 0 || got[0].Name != "create_presentation" {
		t.Fatalf("hybrid find_tool(make a slide deck) = %v; want create_presentation first", foundNames(got))
	}
	for _, g := range got {
		if g.Score < 0 || g.Score > 1 {
			t.Errorf("score of %s = %v; want within [0, 1]", g.Name, g.Score)
		}
	}
	if f.queryCalls.Load() == 0 {
		t.Error("the hybrid search embedded no query")
	}
	// "translate this text" has no topic word: its vector is orthogonal
	// to every tool's.
	if got := foundNames(findResult(t, ctx, tools, "translate this text")); len(got) == 0 || got[0] != "translate_text" {
		t.Errorf("hybrid find_tool(translate this text) = %v; want the lexical match translate_text first", got)
	}
	// A lexical and a vector match agree.
	if got := foundNames(findResult(t, ctx, tools, "weather forecast for Vienna")); len(got) == 0 || got[0] != "get_weather" {
		t.Errorf("hybrid find_tool(weather forecast for Vienna) = %v; want get_weather first", got)
	}
	if calls := f.docCalls.Load(); calls != 1 {
		t.Errorf("Documents called %d times for one catalogue; want 1", calls)
	}
}

// A search whose query cannot be embedded (error, deadline, vector of
// another size) is the lexical search, and OnFallback hears why; with
// weight 0, or before the tools have vectors, no query is embedded and
// nothing is counted.
func TestHybridFallbacks(t *testing.T) {
	t.Parallel()
	cat, servers := hybridCatalogue()
	lexical := NewTools(10, nil)
	lexical.Update(cat, servers)
	queries := []string{"make a slide deck", "send an email message", "weather forecast", "delete the file"}

	tests := []struct {
		name       string
		fake       *fakeEmbedder
		weight     float64
		notYet     bool   // the tools are not embedded yet
		reason     string // OnFallback's, "" for none
		queries    bool   // queries are embedded
		maxLatency time.Duration
	}{
		{name: "query error", fake: &fakeEmbedder{queryErr: errors.New("HTTP 500")}, weight: 0.5, reason: "query_error", queries: true},
		{name: "deadline exceeded", fake: &fakeEmbedder{queryDelay: 10 * time.Second}, weight: 0.5, reason: "timeout", queries: true,
			maxLatency: fakeQueryDeadline + time.Second},
		{name: "wrapped deadline error", fake: &fakeEmbedder{queryErr: fmt.Errorf("embedding service: %w", context.DeadlineExceeded)},
			weight: 0.5, reason: "timeout", queries: true},
		{name: "longer query vector", fake: &fakeEmbedder{queryDims: fakeDims + 3}, weight: 0.5, reason: "dimensions", queries: true},
		{name: "shorter query vector", fake: &fakeEmbedder{queryDims: 2}, weight: 0.5, reason: "dimensions", queries: true},
		{name: "weight 0", fake: &fakeEmbedder{}, weight: 0},
		{name: "weight 0 with a failing service", fake: &fakeEmbedder{queryErr: errors.New("HTTP 500")}, weight: 0},
		{name: "not embedded yet", fake: &fakeEmbedder{steps: make(chan struct{})}, weight: 0.5, notYet: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &fallbacks{}
			tools := hybridTools(t, tt.fake, tt.weight, rec)
			tools.Update(cat, servers)
			if tt.notYet {
				waitFor(t, "Documents is called", func() bool { return tt.fake.running.Load() == 1 })
			} else {
				waitFor(t, "the vectors are installed", func() bool { return hybridReady(tools) })
			}
			ctx := context.Background()
			for _, q := range queries {
				start := time.Now()
				got := findResult(t, ctx, tools, q)
				if d := time.Since(start); tt.maxLatency > 0 && d > tt.maxLatency {
					t.Errorf("find_tool(%q) took %s; want at most %s", q, d, tt.maxLatency)
				}
				want := findResult(t, ctx, lexical, q)
				if !slices.Equal(foundNames(got), foundNames(want)) {
					t.Errorf("find_tool(%q) = %v; want the lexical result %v", q, foundNames(got), foundNames(want))
				} else {
					for i := range got {
						if got[i].Score != want[i].Score {
							t.Errorf("find_tool(%q): %s scores %v; want its lexical score %v", q, got[i].Name, got[i].Score, want[i].Score)
						}
					}
				}
			}
			var wantReasons []string
			if tt.reason != "" {
				wantReasons = slices.Repeat([]string{tt.reason}, len(queries))
			}
			if got := rec.get(); !slices.Equal(got, wantReasons) {
				t.Errorf("OnFallback reasons = %v; want %v", got, wantReasons)
			}
			if q := tt.fake.queryCalls.Load(); (q > 0) != tt.queries {
				t.Errorf("%d queries embedded; want some: %v", q, tt.queries)
			}
		})
	}
}

// A catalogue whose embedding fails is embedded again after
// embedRetryMin (1s): this test takes about a second.
func TestHybridEmbeddingRetried(t *testing.T) {
	t.Parallel()
	f := &fakeEmbedder{docFailures: 1}
	tools := hybridTools(t, f, 0.5, nil)
	cat, servers := hybridCatalogue()
	start := time.Now()
	tools.Update(cat, servers)
	waitFor(t, "the first Documents call has failed", func() bool { return f.docCalls.Load() == 1 && f.running.Load() == 0 })
	if got := findResult(t, context.Background(), tools, "make a slide deck"); len(got) != 0 {
		t.Errorf("while the embedding fails, find_tool(make a slide deck) = %v; want nothing (lexical)", foundNames(got))
	}
	waitFor(t, "the vectors are installed", func() bool { return hybridReady(tools) })
	if d := time.Since(start); d < embedRetryMin-50*time.Millisecond || d > embedRetryMin+2*time.Second {
		t.Errorf("the vectors were installed %s after Update; want about embedRetryMin (%s) after the failure", d, embedRetryMin)
	}
	if got := foundNames(findResult(t, context.Background(), tools, "make a slide deck")); len(got) == 0 || got[0] != "create_presentation" {
		t.Errorf("after the retry, find_tool(make a slide deck) = %v; want create_presentation first", got)
	}
	if calls := f.docCalls.Load(); calls != 2 {
		t.Errorf("Documents called %d times; want 2 (one failure, one retry)", calls)
	}
	f.mu.Lock()
	if !slices.Equal(f.texts[0], f.texts[1]) {
		t.Errorf("the retry embedded other texts than the first try:\n%q\n%q", f.texts[0], f.texts[1])
	}
	f.mu.Unlock()
}

// A new catalogue cancels the embedding of the previous one, whose vectors
// are never installed.
func TestHybridUpdateCancelsPreviousJob(t *testing.T) {
	t.Parallel()
	f := &fakeEmbedder{steps: make(chan struct{})}
	tools := hybridTools(t, f, 0.5, nil)
	cat, servers := hybridCatalogue()
	tools.Update(cat, servers)
	first := tools.indexed.Load()
	waitFor(t, "the first Documents call runs", func() bool { return f.running.Load() == 1 })

	grown := append(slices.Clone(cat), mcp.Tool{Name: "book_flight", Description: "Book a flight ticket"})
	tools.Update(grown, append(slices.Clone(servers), &Server{Name: "travel"}))
	second := tools.indexed.Load()
	waitFor(t, "the first job is cancelled", func() bool { return f.cancelled.Load() == 1 })
	waitFor(t, "only the second job runs", func() bool { return f.docCalls.Load() == 2 && f.running.Load() == 1 })
	f.steps <- struct{}{}
	f.steps <- struct{}{}
	waitFor(t, "the second catalogue's vectors are installed", func() bool { return second.vectors.Load() != nil })
	if first.vectors.Load() != nil {
		t.Error("the first catalogue got vectors after a new Update")
	}
	if n, m := tools.Progress(); n != len(grown) || m != len(grown) {
		t.Errorf("Progress = %d, %d; want %d, %d", n, m, len(grown), len(grown))
	}
	time.Sleep(50 * time.Millisecond)
	if calls, running := f.docCalls.Load(), f.running.Load(); calls != 2 || running != 0 {
		t.Errorf("Documents calls %d, running %d; want 2 and 0: the cancelled job was retried", calls, running)
	}
}

// Close stops the embedding, whether it is waiting for the service or for
// a retry, and returns once it has stopped; an Update after Close embeds
// nothing.
func TestHybridCloseStopsEmbedding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fake  *fakeEmbedder
		state func(f *fakeEmbedder) bool // the job is where Close should find it
	}{
		{"in a Documents call", &fakeEmbedder{steps: make(chan struct{})},
			func(f *fakeEmbedder) bool { return f.running.Load() == 1 }},
		{"waiting to retry", &fakeEmbedder{docFailures: math.MaxInt64},
			func(f *fakeEmbedder) bool { return f.docCalls.Load() == 1 && f.running.Load() == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := tt.fake
			tools := hybridTools(t, f, 0.5, nil)
			cat, servers := hybridCatalogue()
			tools.Update(cat, servers)
			waitFor(t, "the job is "+tt.name, func() bool { return tt.state(f) })

			closed := make(chan struct{})
			start := time.Now()
			go func() {
				tools.Close()
				close(closed)
			}()
			select {
			case <-closed:
			case <-time.After(2 * time.Second):
				t.Fatal("Close did not return within 2s")
			}
			if d := time.Since(start); d > embedRetryMin/2 {
				t.Errorf("Close took %s; want it to stop the job at once", d)
			}
			if r := f.running.Load(); r != 0 {
				t.Errorf("%d Documents calls still running after Close", r)
			}
			calls := f.docCalls.Load()

			// An Update after Close indexes (lexical search goes on) but
			// embeds nothing.
			tools.Update(append(slices.Clone(cat), mcp.Tool{Name: "book_flight", Description: "Book a flight ticket"}), nil)
			if got := foundNames(findResult(t, context.Background(), tools, "book a flight")); len(got) == 0 || got[0] != "book_flight" {
				t.Errorf("after Close and Update, find_tool(book a flight) = %v; want book_flight first", got)
			}
			tools.Close() // a second Close is harmless
			time.Sleep(embedRetryMin + 200*time.Millisecond)
			if now, r := f.docCalls.Load(), f.running.Load(); now != calls || r != 0 {
				t.Errorf("after Close: Documents calls %d → %d, running %d; want no new call", calls, now, r)
			}
		})
	}
}

type callerKey struct{}

// Restrict holds in hybrid mode: a caller never finds a tool it may not
// see, however close its vector is, nor when the search falls back.
func TestHybridRestrict(t *testing.T) {
	t.Parallel()
	cat, servers := hybridCatalogue()
	hidden := map[string]map[string]bool{
		"all":          {},
		"no-office":    {"create_presentation": true},
		"weather-only": {"create_presentation": true, "send_email": true, "search_news": true, "delete_file": true, "translate_text": true},
	}
	visible := func(ctx context.Context) func(string) bool {
		h := hidden[ctx.Value(callerKey{}).(string)]
		return func(name string) bool { return !h[name] }
	}
	queries := []string{"make a slide deck", "create a new powerpoint file", "weather forecast", "send an email",
		"translate this text", "news about slides and weather"}
	for _, mode := range []struct {
		name  string
		fake  *fakeEmbedder
		cache bool
	}{
		{"hybrid", &fakeEmbedder{}, false},
		{"hybrid, visibility cached", &fakeEmbedder{}, true},
		{"fallback", &fakeEmbedder{queryErr: errors.New("HTTP 500")}, false},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			tools := hybridTools(t, mode.fake, 0.5, nil)
			var decisions atomic.Int64
			tools.Restrict(func(ctx context.Context) func(string) bool {
				v := visible(ctx)
				return func(name string) bool { decisions.Add(1); return v(name) }
			})
			if mode.cache {
				tools.CacheVisibility(func(ctx context.Context) string { return ctx.Value(callerKey{}).(string) })
			}
			tools.Update(cat, servers)
			waitFor(t, "the vectors are installed", func() bool { return hybridReady(tools) })
			for caller, h := range hidden {
				ctx := context.WithValue(context.Background(), callerKey{}, caller)
				for _, q := range queries {
					got := foundNames(findResult(t, ctx, tools, q))
					for _, name := range got {
						if h[name] {
							t.Errorf("%s: caller %s found %s, which it may not see (%v)", mode.name, caller, name, got)
						}
					}
					if caller == "all" && q == "make a slide deck" && mode.name == "hybrid" && (len(got) == 0 || got[0] != "create_presentation") {
						t.Errorf("caller all: find_tool(%q) = %v; want create_presentation first", q, got)
					}
					if caller == "weather-only" && q == "weather forecast" && !slices.Equal(got, []string{"get_weather"}) {
						t.Errorf("caller weather-only: find_tool(%q) = %v; want [get_weather]", q, got)
					}
				}
			}
			if want := int64(len(hidden) * len(cat)); mode.cache && decisions.Load() != want {
				t.Errorf("%d visibility decisions for %d callers × %d tools over %d searches each; want each decided once",
					decisions.Load(), len(hidden), len(cat), len(queries))
			}
		})
	}
}

func TestDocumentText(t *testing.T) {
	t.Parallel()
	// 290 two-byte runes, then more: cut at 300 runes, not bytes.
	instructions := strings.Repeat("é", 290) + " and then some more words that are cut"
	office := &Server{Name: "office-suite", Title: "Office Suite", Description: "Documents and slides.", Instructions: instructions}
	presentation := &mcp.Tool{
		Name: "create_presentation", Title: "New presentation", Description: "Create a new PowerPoint file.",
		RawInputSchema: json.RawMessage(`{"type":"object","properties":{"fileName":{"type":"string","description":"Where to save it"}}}`),
	}
	weather := &mcp.Tool{
		Name: "getWeather", Description: "  Current weather for a city.  ",
		Annotations: mcp.ToolAnnotation{Title: "Weather"},
		InputSchema: mcp.ToolInputSchema{Type: "object", Properties: map[string]any{"city_name": map[string]any{"type": "string"}}},
	}
	long := &mcp.Tool{Name: "long", Description: strings.Repeat("word ", 1000)}

	tests := []struct {
		name   string
		tool   *mcp.Tool
		server *Server
		want   string
	}{
		{"tool and server", presentation, office, "create presentation. New presentation. Create a new PowerPoint file. file name. " +
			"office suite Office Suite Documents and slides. " + strings.Repeat("é", 290) + " and then"},
		{"without a server", presentation, nil, "create presentation. New presentation. Create a new PowerPoint file. file name"},
		{"annotation title, typed schema", weather, &Server{Name: "meteo"},
			"get weather. Weather. Current weather for a city. city name. meteo"},
		{"name only", &mcp.Tool{Name: "ping"}, nil, "ping"},
		{"long text cut to 2000 runes", long, nil, "long. " + strings.TrimSpace(strings.Repeat("word ", 1000))[:2000-len("long. ")]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := DocumentText(tt.tool, tt.server); got != tt.want {
				t.Errorf("DocumentText =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// A tool's text is its content key for the embedding cache (memory and
// Redis, shared by replicas): the same tool must always give the same text,
// whatever the order Go iterates a map in.
func TestDocumentTextIsDeterministic(t *testing.T) {
	t.Parallel()
	tool := &mcp.Tool{Name: "send_email", Description: "Send an email.",
		RawInputSchema: json.RawMessage(`{"type":"object","properties":{"to":{"type":"string"},"subject":{"type":"string"},` +
			`"body":{"type":"string"},"cc":{"type":"string"},"attachments":{"type":"array"}}}`)}
	typed := &mcp.Tool{Name: "get_weather", InputSchema: mcp.ToolInputSchema{Type: "object", Properties: map[string]any{
		"city": map[string]any{}, "days": map[string]any{}, "units": map[string]any{}, "language": map[string]any{}}}}
	for _, tl := range []*mcp.Tool{tool, typed} {
		first := DocumentText(tl, nil)
		seen := map[string]bool{first: true}
		for range 50 {
			seen[DocumentText(tl, nil)] = true
		}
		if len(seen) > 1 {
			texts := slices.Sorted(func(yield func(string) bool) {
				for s := range seen {
					if !yield(s) {
						return
					}
				}
			})
			t.Errorf("BUG: DocumentText(%s) gives %d different texts for one tool (parameter names in map order), "+
				"so its vector is cached under a new key each time:\n%q", tl.Name, len(seen), texts)
		}
	}
}

// fusionFixture is a catalogue of n tools over a small vocabulary (so many
// tools match a query, more than candidatePool), random unit vectors, and
// queries with their vectors.
type fusionFixture struct {
	ix      *Index
	vs      *Vectors
	queries []string
	qvecs   [][]float32
}

func newFusionFixture(t testing.TB, n, dims int) *fusionFixture {
	rng := rand.New(rand.NewPCG(7, 11))
	vocab := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
		"kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango"}
	words := func(k int) string {
		ws := make([]string, k)
		for i := range ws {
			ws[i] = vocab[rng.IntN(len(vocab))]
		}
		return strings.Join(ws, " ")
	}
	tools := make([]mcp.Tool, n)
	vecs := make([][]float32, n)
	for i := range tools {
		tools[i] = mcp.Tool{Name: fmt.Sprintf("tool_%d", i), Description: words(4)}
		vecs[i] = randomUnit(rng, dims)
	}
	// Two identical tools (text and vector), the later name first: their
	// ties must keep catalogue order.
	tools[3] = mcp.Tool{Name: "z_twin", Description: "twin zulu"}
	tools[4] = mcp.Tool{Name: "a_twin", Description: "twin zulu"}
	vecs[4] = slices.Clone(vecs[3])
	vs, ok := NewVectors(vecs)
	if !ok {
		t.Fatal("NewVectors refused vectors of one size")
	}
	f := &fusionFixture{ix: NewIndex(tools, nil), vs: vs}
	for range 40 {
		f.queries = append(f.queries, words(2))
		f.qvecs = append(f.qvecs, randomUnit(rng, dims))
	}
	f.queries = append(f.queries, "twin zulu", "nothing matches this")
	f.qvecs = append(f.qvecs, slices.Clone(vecs[3]), randomUnit(rng, dims))
	return f
}

func randomUnit(rng *rand.Rand, dims int) []float32 {
	v := make([]float32, dims)
	var sum float64
	for i := range v {
		x := rng.NormFloat64()
		v[i] = float32(x)
		sum += x * x
	}
	inv := float32(1 / math.Sqrt(sum))
	for i := range v {
		v[i] *= inv
	}
	return v
}

// The hybrid fusion's properties: at most k results, scores within [0, 1]
// and descending, ties in catalogue order, no tool twice; with w = 1 the
// order is the cosine order (the best cosine of all first), with w = 0 the
// lexical order.
func TestHybridFusionProperties(t *testing.T) {
	t.Parallel()
	f := newFusionFixture(t, 400, 16)
	for qi, q := range f.queries {
		cos := f.vs.cosines(f.qvecs[qi])
		best := 0
		for d := range cos {
			if cos[d] > cos[best] {
				best = d
			}
		}
		for _, w := range []float64{0, 0.25, 0.5, 0.75, 1} {
			for _, k := range []int{1, 3, 8, 50, 1000} {
				got := f.ix.SearchHybrid(q, "", f.qvecs[qi], f.vs, w, k)
				where := fmt.Sprintf("SearchHybrid(%q, w=%v, k=%d)", q, w, k)
				if len(got) > k {
					t.Fatalf("%s: %d results", where, len(got))
				}
				if len(got) == 0 {
					t.Fatalf("%s: no result (the vector ranking has every tool)", where)
				}
				seen := map[uint32]bool{}
				for i, m := range got {
					if m.Score < 0 || m.Score > 1 || math.IsNaN(m.Score) {
						t.Errorf("%s: score %v of %s outside [0, 1]", where, m.Score, m.Tool.Name)
					}
					if seen[m.doc] {
						t.Errorf("%s: %s twice", where, m.Tool.Name)
					}
					seen[m.doc] = true
					if m.Tool != &f.ix.tools[m.doc] {
						t.Errorf("%s: result %d is not its catalogue entry", where, i)
					}
					if i == 0 {
						continue
					}
					prev := got[i-1]
					if m.Score > prev.Score || m.Score == prev.Score && m.doc < prev.doc {
						t.Errorf("%s: %s (%v, #%d) after %s (%v, #%d): not best first, ties in catalogue order",
							where, m.Tool.Name, m.Score, m.doc, prev.Tool.Name, prev.Score, prev.doc)
					}
					if w == 1 && (cos[m.doc] > cos[prev.doc] || cos[m.doc] == cos[prev.doc] && m.doc < prev.doc) {
						t.Errorf("%s: cosine %v of %s after %v of %s: not the cosine order", where, cos[m.doc], m.Tool.Name, cos[prev.doc], prev.Tool.Name)
					}
				}
				if w == 1 && got[0].doc != uint32(best) {
					t.Errorf("%s: first %s (cos %v); want the best cosine of all, %s (cos %v)", where, got[0].Tool.Name, cos[got[0].doc],
						f.ix.tools[best].Name, cos[best])
				}
				if w == 0 && k <= candidatePool {
					lex := f.ix.Search(q, "", k)
					for i, m := range lex {
						if i >= len(got) || got[i].doc != m.doc {
							t.Errorf("%s: %v; want the lexical order %v first", where, matchNames(got), matchNames(lex))
							break
						}
					}
					for _, m := range got[len(lex):] {
						if m.Score != 0 {
							t.Errorf("%s: %s without a lexical match scores %v; want 0", where, m.Tool.Name, m.Score)
						}
					}
				}
				if k == 1000 && len(got) < min(candidatePool, len(f.ix.tools)) {
					t.Errorf("%s: %d results; want every candidate (at least the vector ranking's %d)", where, len(got), candidatePool)
				}
			}
		}
	}
	// The twins tie on everything: catalogue order, whatever the weight.
	for _, w := range []float64{0, 0.5, 1} {
		got := f.ix.SearchHybrid("twin zulu", "", f.vs.data[3*f.vs.dims:4*f.vs.dims], f.vs, w, 2)
		if names := matchNames(got); !slices.Equal(names, []string{"z_twin", "a_twin"}) {
			t.Errorf("SearchHybrid(twin zulu, w=%v) = %v; want the twins in catalogue order [z_twin a_twin]", w, names)
		}
	}
}

// SearchHybrid is the lexical Search when the query vector or the vectors
// do not fit the catalogue.
func TestSearchHybridMismatchIsLexical(t *testing.T) {
	t.Parallel()
	f := newFusionFixture(t, 50, 8)
	other, _ := NewVectors(slices.Repeat([][]float32{randomUnit(rand.New(rand.NewPCG(1, 1)), 8)}, 49))
	for _, tc := range []struct {
		name string
		q    []float32
		vs   *Vectors
	}{
		{"query of another size", make([]float32, 9), f.vs},
		{"vectors of another catalogue", f.qvecs[0], other},
		{"no vectors", f.qvecs[0], &Vectors{}},
	} {
		got := f.ix.SearchHybrid(f.queries[0], "", tc.q, tc.vs, 0.5, 8)
		want := f.ix.Search(f.queries[0], "", 8)
		if !slices.Equal(matchNames(got), matchNames(want)) {
			t.Errorf("%s: SearchHybrid = %v; want the lexical %v", tc.name, matchNames(got), matchNames(want))
		}
	}
}

func matchNames(ms []Match) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Tool.Name
	}
	return out
}

// BenchmarkHybridSearch is one hybrid find_tool ranking (k = 8) over 10,000
// tools with 512-dimension vectors, the query's vector given: the BFCL set
// replicated (or a synthetic catalogue without it), random unit vectors.
// It reports the median and the 99th percentile of one search besides
// ns/op; the target is a median of at most 2 ms.
func BenchmarkHybridSearch(b *testing.B) {
	const n, dims = 10000, 512
	tools, queries := benchCatalogue(b, n)
	ix := NewIndex(tools, nil)
	rng := rand.New(rand.NewPCG(3, 5))
	vecs := make([][]float32, len(tools))
	for i := range vecs {
		vecs[i] = randomUnit(rng, dims)
	}
	vs, ok := NewVectors(vecs)
	if !ok {
		b.Fatal("NewVectors")
	}
	qvecs := make([][]float32, len(queries))
	for i := range qvecs {
		qvecs[i] = randomUnit(rng, dims)
	}
	var took []time.Duration
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		start := time.Now()
		ix.SearchHybrid(queries[i%len(queries)], "", qvecs[i%len(qvecs)], vs, 0.5, 8)
		took = append(took, time.Since(start))
		i++
	}
	sort.Slice(took, func(a, c int) bool { return took[a] < took[c] })
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "p99-ns")
}
