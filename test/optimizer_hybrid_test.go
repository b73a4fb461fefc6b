package test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// hybridTop is how far down find_tool's answer a tool found by its vector
// only must be.
const hybridTop = 3

// findsByVector checks, retrying for a while (the embedder can miss the
// query deadline on a loaded machine; a missed query is not cached),
// that find_tool(desc) has want within its first hybridTop results.
func findsByVector(t *testing.T, q hybridQueries, c *client.Client, desc, want string) {
	t.Helper()
	eventually(t, 15*time.Second, fmt.Sprintf("find_tool(%q) has %s in its first %d", desc, want, hybridTop), func() error {
		got, _ := q.find(t, c, desc)
		if !slices.Contains(got[:min(hybridTop, len(got))], want) {
			return fmt.Errorf("ranking %v", got)
		}
		return nil
	})
}

// TestHybridFindToolEndToEnd: vmcp (the binary) in front of a backend of
// ten tools, with the optimizer's embeddings on the real USE-lite server
// and Redis. /readyz shows the embedding's progress and stays ready;
// find_tool finds "make a ppt slide deck" (no word in common with any
// tool) by its vector; each tool text is embedded once, after a second
// catalogue, by a second vmcp sharing the Redis, and after a restart.
func TestHybridFindToolEndToEnd(t *testing.T) {
	t.Parallel()
	needEmbedder(t)
	emb := startEmbedder(t, embedderOpts{})
	rds := startRedis(t)
	backend, backendURL := startHybridBackend(t)
	name := uniqueName("hybrid")
	cfg := hybridConfig(t, name, backendURL, emb.URL, 0, rds.Addr)
	tools := hybridTools()
	texts := toolTexts(append(slices.Clone(tools), hybridExtraTool()), hybridServer())
	q := hybridQueries{}

	// checkOnce fails t unless the embedder was asked each tool text of
	// want exactly once, and nothing else but queries.
	checkOnce := func(stage string, want []mcp.Tool) map[string]int {
		t.Helper()
		inputs := documentInputs(emb.stats(t), q)
		per, _ := embeddedPerTool(inputs, texts)
		wrong := map[string]bool{}
		for _, tl := range want {
			if per[tl.Name] != 1 {
				wrong[tl.Name] = true
			}
		}
		if len(per) != len(want) || len(wrong) > 0 {
			t.Errorf("%s: tools embedded more than once or not at all: %v (times per tool %v); their texts "+
				"(BUG if they differ in parameter order only: DocumentText lists them in map order, see TestDocumentTextIsDeterministic):%s",
				stage, slices.Sorted(maps.Keys(wrong)), per, describeInputs(inputsOf(inputs, texts, wrong), texts))
		}
		return inputs
	}
	// checkNone fails t if the embedder was asked a tool text since
	// before.
	checkNone := func(stage string, before map[string]int) {
		t.Helper()
		if added := newInputs(before, documentInputs(emb.stats(t), q)); len(added) > 0 {
			t.Errorf("%s: tool texts embedded again (BUG if only their parameter order is new: DocumentText lists them "+
				"in map order, see TestDocumentTextIsDeterministic):%s", stage, describeInputs(added, texts))
		}
	}

	a := startHybridVMCP(t, cfg)
	progress := a.waitEmbedded(t, len(tools), 20*time.Second)
	t.Logf("embedded counts seen on /readyz while embedding: %v", progress)
	c := newClient(t, a.URL, clientOpts{})
	if got := toolNames(t, c); !slices.Equal(got, []string{"call_tool", "find_tool"}) {
		t.Fatalf("tools/list = %v; want call_tool and find_tool", got)
	}
	findsByVector(t, q, c, "make a ppt slide deck", "create_presentation")
	if got, _ := q.find(t, c, "send an email message to Alice"); len(got) == 0 || got[0] != "send_email" {
		t.Errorf("find_tool(send an email message to Alice) = %v; want send_email first", got)
	}
	if got := callText(t, c, "call_tool", map[string]any{"tool_name": "create_presentation",
		"parameters": map[string]any{"title": "Q3"}}); got != "create_presentation done" {
		t.Errorf("call_tool create_presentation = %q", got)
	}
	inputs := checkOnce("first catalogue", tools)
	keys, err := rds.Client.Keys(ctxT(t, 5*time.Second), "vmcp:{"+name+"}:emb:*").Result()
	if err != nil || len(keys) != len(inputs) {
		t.Errorf("Redis holds %d vectors under vmcp:{%s}:emb: (%v); want one per text embedded, %d", len(keys), name, err, len(inputs))
	}

	// A second catalogue (the backend adds a tool): only the new tool's
	// text is embedded.
	backend.AddTool(hybridExtraTool(), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("booked"), nil
	})
	a.waitEmbedded(t, len(tools)+1, 20*time.Second)
	all := append(slices.Clone(tools), hybridExtraTool())
	findsByVector(t, q, c, "reserve a flight to Rome", "book_flight")
	before := checkOnce("after a second catalogue", all)

	// A second vmcp sharing the Redis embeds no tool text: it finds every
	// vector there.
	b := startHybridVMCP(t, cfg)
	b.waitEmbedded(t, len(all), 20*time.Second)
	findsByVector(t, q, newClient(t, b.URL, clientOpts{}), "build a ppt slide deck for the board", "create_presentation")
	checkNone("a second vmcp sharing the Redis", before)

	// A restart of the first one: the same.
	_ = c.Close()
	if err := a.stop(t); err != nil {
		t.Errorf("vmcp serve after SIGTERM: %v", err)
	}
	a2 := startHybridVMCP(t, cfg)
	a2.waitEmbedded(t, len(all), 20*time.Second)
	findsByVector(t, q, newClient(t, a2.URL, clientOpts{}), "make a ppt slide deck", "create_presentation")
	checkNone("a restarted vmcp", before)
}

// TestHybridFallbacksEndToEnd: with the embedding service slow, failing or
// answering vectors of another size, find_tool still answers, lexically,
// within the query timeout and a margin, and
// vmcp_optimizer_search_fallbacks_total counts the reason; once the
// service is well again find_tool is hybrid again. Two vmcp: one taking the
// model's dimensions, one configured with dimensions: 512.
func TestHybridFallbacksEndToEnd(t *testing.T) {
	t.Parallel()
	needEmbedder(t)
	emb := startEmbedder(t, embedderOpts{})
	_, backendURL := startHybridBackend(t)
	n := len(hybridTools())
	q := hybridQueries{}
	type instance struct {
		name string
		v    *hybridVMCP
		c    *client.Client
	}
	var vs []instance
	for _, dims := range []int{0, 512} {
		v := startHybridVMCP(t, hybridConfig(t, uniqueName("hybrid-fallback"), backendURL, emb.URL, dims, ""))
		v.waitEmbedded(t, n, 20*time.Second)
		vs = append(vs, instance{fmt.Sprintf("dimensions %d", dims), v, newClient(t, v.URL, clientOpts{})})
	}
	for _, in := range vs {
		findsByVector(t, q, in.c, "make a ppt slide deck", "create_presentation")
	}

	const margin = time.Second
	for _, tc := range []struct {
		name      string
		delayMs   int
		fail      bool
		dims      int
		query     string
		wantFirst string
		reason    string
	}{
		{"slow", int(hybridQueryTimeout/time.Millisecond) * 5, false, 0, "send an email message to Alice", "send_email", "timeout"},
		{"failing", 0, true, 0, "get the weather in Paris", "get_weather", "query_error"},
		{"wrong dimensions", 0, false, 256, "search the news about NIO", "search_news", "dimensions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emb.configure(t, tc.delayMs, tc.fail, tc.dims)
			for _, in := range vs {
				before := in.v.fallbacks(t)
				got, took := q.find(t, in.c, tc.query)
				if took > hybridQueryTimeout+margin {
					t.Errorf("%s: find_tool took %s; want at most the query timeout %s + %s", in.name, took, hybridQueryTimeout, margin)
				}
				if len(got) == 0 || got[0] != tc.wantFirst {
					t.Errorf("%s: find_tool(%q) = %v; want the lexical answer, %s first", in.name, tc.query, got, tc.wantFirst)
				}
				after := in.v.fallbacks(t)
				want := maps.Clone(before)
				want[tc.reason]++
				if !maps.Equal(after, want) {
					bug := ""
					if tc.reason == "dimensions" && after["query_error"] > before["query_error"] {
						bug = "BUG: with optimizer.embeddings.dimensions set, the client rejects a vector of another size " +
							"(embeddings.ErrDimensions) and optimizer.queryCosines counts it as query_error, not dimensions: "
					}
					t.Errorf("%s%s: vmcp_optimizer_search_fallbacks_total went from %v to %v; want %v (reason %q)",
						bug, in.name, before, after, want, tc.reason)
				}
			}
		})
	}

	// Recovery. The instance with configured dimensions saw three query
	// failures in a row (the wrong size is the service's failure there):
	// its queries are paused, each search lexical at once and counted
	// "paused", for 10 s; then hybrid again. The other took the wrong
	// size for a new model (its vectors stale) and embedded its tools
	// again, and again once the size came back: meanwhile its searches
	// count "dimensions". Either way no other reason, and hybrid again.
	emb.configure(t, 0, false, 0)
	for _, in := range vs {
		recovering := "dimensions"
		if in.name == "dimensions 512" {
			recovering = "paused"
		}
		before := in.v.fallbacks(t)
		findsByVector(t, q, in.c, "build a ppt slide deck", "create_presentation")
		after := in.v.fallbacks(t)
		delete(after, recovering)
		delete(before, recovering)
		if !maps.Equal(before, after) {
			t.Errorf("%s: with the service well again the fallbacks went from %v to %v (%s aside)", in.name, before, after, recovering)
		}
	}
}

// TestHybridEmbedderDownAtStart: with the embedding service down when vmcp
// starts, vmcp is ready and find_tool lexical; once the service is up the
// tools are embedded (the retries) and find_tool is hybrid, without a
// restart.
func TestHybridEmbedderDownAtStart(t *testing.T) {
	t.Parallel()
	needEmbedder(t)
	port := freePort(t)
	_, backendURL := startHybridBackend(t)
	n := len(hybridTools())
	v := startHybridVMCP(t, hybridConfig(t, uniqueName("hybrid-down"), backendURL, fmt.Sprintf("http://127.0.0.1:%d/v1", port), 0, ""))
	c := newClient(t, v.URL, clientOpts{})
	q := hybridQueries{}

	if got, _ := q.find(t, c, "send an email message"); len(got) == 0 || got[0] != "send_email" {
		t.Errorf("with the service down, find_tool(send an email message) = %v; want send_email first (lexical)", got)
	}
	if got, _ := q.find(t, c, "make a ppt slide deck"); slices.Contains(got, "create_presentation") {
		t.Errorf("with the service down, find_tool(make a ppt slide deck) = %v; the lexical search cannot know it", got)
	}
	// Ready all along, nothing embedded.
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		st, r := v.readyz(t)
		if st != http.StatusOK || !r.Ready || r.Optimizer == nil || r.Optimizer.Tools != n || r.Optimizer.Embedded != 0 {
			t.Fatalf("with the service down, /readyz = %d %+v; want ready with optimizer {%d, 0}", st, r, n)
		}
	}
	if fb := v.fallbacks(t); len(fb) != 0 {
		t.Errorf("fallbacks %v before the tools had vectors; want none counted (lexical by design, not a fallback)", fb)
	}

	startEmbedder(t, embedderOpts{port: port})
	up := time.Now()
	v.waitEmbedded(t, n, 30*time.Second)
	t.Logf("the tools were embedded %s after the service came up", time.Since(up).Round(time.Millisecond))
	findsByVector(t, q, c, "make a ppt slide deck", "create_presentation")
}

// TestHybridMixedDimensionsRecover: the embedding service changes its
// vectors' size in the middle of a catalogue (a model switched behind the
// same name; optimizer.embeddings.dimensions not set), then answers
// consistently again. The catalogue's vectors differ in size and cannot be
// installed; the retries must get it embedded once the service is
// consistent, and find_tool must become hybrid, as /readyz's progress
// says.
func TestHybridMixedDimensionsRecover(t *testing.T) {
	t.Parallel()
	needEmbedder(t)
	emb := startEmbedder(t, embedderOpts{})
	_, backendURL := startHybridBackend(t)
	n := len(hybridTools())
	// batchSize 4: three requests for the ten tools, the first answered
	// with 512 dimensions, the others with 256.
	emb.configure(t, 500, false, 0)
	v := startHybridVMCP(t, hybridConfig(t, uniqueName("hybrid-mixed"), backendURL, emb.URL, 0, ""))
	waitStats := func(what string, cond func(embedderStats) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond(emb.stats(t)) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitStats("the first batch is asked", func(s embedderStats) bool { return s.Requests >= 1 })
	emb.configure(t, 500, false, 256)
	waitStats("every batch is asked", func(s embedderStats) bool { return s.Requests >= 3 })
	emb.configure(t, 0, false, 0)

	v.waitEmbedded(t, n, 20*time.Second)
	c := newClient(t, v.URL, clientOpts{})
	q := hybridQueries{}
	eventually(t, 15*time.Second, "find_tool becomes hybrid once the service is consistent again", func() error {
		if got, _ := q.find(t, c, "make a ppt slide deck"); !slices.Contains(got[:min(hybridTop, len(got))], "create_presentation") {
			st, r := v.readyz(t)
			return fmt.Errorf("BUG: find_tool(make a ppt slide deck) = %v (lexical) while /readyz says %d %+v: "+
				"the vectors of mixed sizes stay cached and every retry fails (%d requests to the service since)",
				got, st, *r.Optimizer, emb.stats(t).Requests)
		}
		return nil
	})
}
