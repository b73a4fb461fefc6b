package aggregator_test

import (
	"fmt"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/aggregator"
	"github.com/vmcp/vmcp/config"
)

const (
	benchBackends        = 50
	benchToolsPerBackend = 200
)

var (
	verbs = []string{"list", "get", "create", "update", "delete", "search", "archive", "sync", "export", "watch"}
	nouns = []string{"issue", "pull_request", "repository", "branch", "commit", "comment", "label", "milestone",
		"release", "workflow", "user", "team", "project", "file", "secret", "webhook", "deployment", "artifact",
		"environment", "check_run"}
)

// benchTool returns the i-th tool of a backend: a realistic name and an
// input schema of 3 to 5 properties with descriptions, constraints and
// required fields.
func benchTool(backend string, i int) mcp.Tool {
	verb, noun := verbs[i%len(verbs)], nouns[(i/len(verbs))%len(nouns)]
	opts := []mcp.ToolOption{
		mcp.WithDescription(fmt.Sprintf("%s a %s in %s. Returns the %s as JSON, including its metadata and links.",
			verb, noun, backend, noun)),
		mcp.WithString("owner", mcp.Required(), mcp.Description("Account or organisation that owns the "+noun)),
		mcp.WithString("id", mcp.Required(), mcp.Description("Identifier of the "+noun), mcp.MinLength(1), mcp.MaxLength(200)),
		mcp.WithNumber("limit", mcp.Description("Maximum number of results"), mcp.Min(1), mcp.Max(100), mcp.DefaultNumber(30)),
	}
	if i%3 != 0 {
		opts = append(opts, mcp.WithString("state", mcp.Description("Filter by state"), mcp.Enum("open", "closed", "all")))
	}
	if i%3 == 2 {
		opts = append(opts, mcp.WithArray("labels", mcp.Description("Labels to match"), mcp.WithStringItems()))
	}
	return mcp.NewTool(fmt.Sprintf("%s_%s_%d", verb, noun, i/(len(verbs)*len(nouns))), opts...)
}

func benchCaps(backend string, generation int) *aggregator.Capabilities {
	c := &aggregator.Capabilities{}
	for i := range benchToolsPerBackend {
		t := benchTool(backend, i)
		if generation%2 == 1 {
			t.Description += " (v2)"
		}
		c.Tools = append(c.Tools, t)
	}
	c.Prompts = prompts("summarize", "review")
	c.Resources = resources(fmt.Sprintf("%s://readme", backend))
	c.ResourceTemplates = templates(fmt.Sprintf("%s://items/{id}", backend))
	return c
}

func benchInput() ([]string, map[string]*aggregator.Capabilities) {
	order := make([]string, benchBackends)
	caps := make(map[string]*aggregator.Capabilities, benchBackends)
	for i := range order {
		order[i] = fmt.Sprintf("backend%02d", i)
		caps[order[i]] = benchCaps(order[i], 0)
	}
	return order, caps
}

func benchCatalogue(tb testing.TB) *aggregator.Catalogue {
	order, caps := benchInput()
	c, err := aggregator.Build(config.Aggregation{}, order, caps, discardLogger())
	if err != nil {
		tb.Fatal(err)
	}
	if len(c.Tools) != benchBackends*benchToolsPerBackend {
		tb.Fatalf("catalogue has %d tools, want %d", len(c.Tools), benchBackends*benchToolsPerBackend)
	}
	return c
}

func BenchmarkBuild_10000Tools50Backends(b *testing.B) {
	order, caps := benchInput()
	log := discardLogger()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := aggregator.Build(config.Aggregation{}, order, caps, log); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRouteLookup(b *testing.B) {
	c := benchCatalogue(b)
	names := toolNames(c.Tools)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := c.Tool(names[i%len(names)]); !ok {
			b.Fatal("missing tool")
		}
		i++
	}
}

func BenchmarkUpdateOneBackend(b *testing.B) {
	order, caps := benchInput()
	a := aggregator.New(config.Aggregation{}, order, discardLogger())
	for _, name := range order {
		if _, err := a.Update(name, caps[name]); err != nil {
			b.Fatal(err)
		}
	}
	// Two versions of one backend's capabilities to alternate between.
	versions := []*aggregator.Capabilities{benchCaps(order[7], 1), caps[order[7]]}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := a.Update(order[7], versions[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// TestRouteLookupDoesNotAllocate guards the per-request routing path.
// It is not parallel: AllocsPerRun counts allocations of the whole process.
func TestRouteLookupDoesNotAllocate(t *testing.T) {
	c := benchCatalogue(t)
	names := toolNames(c.Tools)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := c.Tool(names[i%len(names)]); !ok {
			t.Fatal("missing tool")
		}
		i++
	})
	if allocs != 0 {
		t.Errorf("Catalogue.Tool allocates %v times per call, want 0", allocs)
	}
	// Misses must not allocate either.
	allocs = testing.AllocsPerRun(1000, func() {
		if _, ok := c.Tool("no_such_tool"); ok {
			t.Fatal("unknown tool resolved")
		}
	})
	if allocs != 0 {
		t.Errorf("Catalogue.Tool of an unknown name allocates %v times per call, want 0", allocs)
	}
}
