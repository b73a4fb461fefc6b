package aggregator_test

import (
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/aggregator"
	"github.com/vmcp/vmcp/config"
)

// TestCatalogueRoute: tools and prompts route by post-aggregation name,
// resources by URI, listed or matching a template (whose route names the
// URI); a template that did not parse matches nothing, and other methods
// have no route.
func TestCatalogueRoute(t *testing.T) {
	t.Parallel()
	unparsed := mcp.ResourceTemplate{Name: "broken", URITemplate: &mcp.URITemplate{}}
	c, err := aggregator.Build(config.Aggregation{ConflictResolution: config.ConflictPrefix,
		ConflictResolutionConfig: config.ConflictResolutionConfig{PrefixFormat: "{backend}_"}},
		[]string{"notes", "docs"}, map[string]*aggregator.Capabilities{
			"notes": {
				Tools:             tools("echo"),
				Prompts:           prompts("greet"),
				Resources:         resources("demo://notes/readme"),
				ResourceTemplates: append([]mcp.ResourceTemplate{unparsed}, templates("demo://notes/items/{id}")...),
			},
			"docs": {ResourceTemplates: templates("demo://{any}/items/{id}")},
		}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, name string
		want         aggregator.Route
		ok           bool
	}{
		{"tools/call", "notes_echo", aggregator.Route{Backend: "notes", Name: "echo"}, true},
		{"prompts/get", "notes_greet", aggregator.Route{Backend: "notes", Name: "greet"}, true},
		{"resources/read", "demo://notes/readme", aggregator.Route{Backend: "notes", Name: "demo://notes/readme"}, true},
		{"resources/read", "demo://notes/items/42", aggregator.Route{Backend: "notes", Name: "demo://notes/items/42"}, true},
		{"resources/read", "demo://docs/items/7", aggregator.Route{Backend: "docs", Name: "demo://docs/items/7"}, true},
		{"tools/call", "echo", aggregator.Route{}, false},
		{"tools/call", "notes_greet", aggregator.Route{}, false},
		{"resources/read", "other://x", aggregator.Route{}, false},
		{"resources/read", "", aggregator.Route{}, false},
		{"completion/complete", "notes_greet", aggregator.Route{}, false},
	}
	for _, tt := range tests {
		got, ok := c.Route(tt.method, tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Route(%s, %q) = %+v, %v; want %+v, %v", tt.method, tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
