package aggregator_test

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/aggregator"
	"github.com/vmcp/vmcp/config"
)

func TestNewStartsEmpty(t *testing.T) {
	t.Parallel()
	for _, log := range []bool{false, true} {
		t.Run(strconv.FormatBool(log), func(t *testing.T) {
			t.Parallel()
			a := aggregator.New(config.Aggregation{}, []string{"github", "jira"}, nil)
			if log {
				a = aggregator.New(config.Aggregation{}, []string{"github", "jira"}, discardLogger())
			}
			c := a.Catalogue()
			if c == nil {
				t.Fatal("Catalogue() is nil before any Update")
			}
			if len(c.Tools)+len(c.Prompts)+len(c.Resources)+len(c.ResourceTemplates) != 0 {
				t.Errorf("new catalogue is not empty: %+v", c)
			}
			if _, ok := c.Tool("github_search"); ok {
				t.Error("empty catalogue resolves a tool")
			}
		})
	}
}

// TestUpdateSequence walks an aggregator through a series of updates and
// checks the catalogue after each.
func TestUpdateSequence(t *testing.T) {
	t.Parallel()
	type step struct {
		backend     string
		caps        *aggregator.Capabilities
		wantTools   map[string]route
		wantPrompts map[string]route
		wantRes     []string
		wantErr     bool
	}
	tests := []struct {
		name  string
		cfg   config.Aggregation
		steps []step
	}{
		{
			name: "prefix: add, replace and remove backends",
			cfg:  config.Aggregation{},
			steps: []step{
				{
					backend:     "github",
					caps:        &aggregator.Capabilities{Tools: tools("search", "create_pr"), Resources: resources("shared://x")},
					wantTools:   map[string]route{"github_search": {"github", "search"}, "github_create_pr": {"github", "create_pr"}},
					wantPrompts: map[string]route{},
					wantRes:     []string{"shared://x"},
				},
				{
					backend: "jira",
					caps:    &aggregator.Capabilities{Tools: tools("search"), Prompts: prompts("triage"), Resources: resources("shared://x", "jira://y")},
					wantTools: map[string]route{
						"github_search": {"github", "search"}, "github_create_pr": {"github", "create_pr"},
						"jira_search": {"jira", "search"},
					},
					wantPrompts: map[string]route{"jira_triage": {"jira", "triage"}},
					wantRes:     []string{"jira://y", "shared://x"},
				},
				{
					// A new list from github replaces the old one.
					backend: "github",
					caps:    &aggregator.Capabilities{Tools: tools("list_issues")},
					wantTools: map[string]route{
						"github_list_issues": {"github", "list_issues"},
						"jira_search":        {"jira", "search"},
					},
					wantPrompts: map[string]route{"jira_triage": {"jira", "triage"}},
					wantRes:     []string{"jira://y", "shared://x"},
				},
				{
					backend:     "github",
					caps:        nil,
					wantTools:   map[string]route{"jira_search": {"jira", "search"}},
					wantPrompts: map[string]route{"jira_triage": {"jira", "triage"}},
					wantRes:     []string{"jira://y", "shared://x"},
				},
				{
					// Removing a backend that is already gone is harmless.
					backend:     "github",
					caps:        nil,
					wantTools:   map[string]route{"jira_search": {"jira", "search"}},
					wantPrompts: map[string]route{"jira_triage": {"jira", "triage"}},
					wantRes:     []string{"jira://y", "shared://x"},
				},
				{
					backend:     "jira",
					caps:        nil,
					wantTools:   map[string]route{},
					wantPrompts: map[string]route{},
				},
			},
		},
		{
			name: "priority: removing the winner hands the name to the next backend",
			cfg: config.Aggregation{ConflictResolution: config.ConflictPriority, ConflictResolutionConfig: config.ConflictResolutionConfig{
				PriorityOrder: []string{"jira", "github"},
			}},
			steps: []step{
				{
					backend:     "github",
					caps:        &aggregator.Capabilities{Tools: tools("search")},
					wantTools:   map[string]route{"search": {"github", "search"}},
					wantPrompts: map[string]route{},
				},
				{
					backend:     "jira",
					caps:        &aggregator.Capabilities{Tools: tools("search")},
					wantTools:   map[string]route{"search": {"jira", "search"}},
					wantPrompts: map[string]route{},
				},
				{
					backend:     "jira",
					caps:        nil,
					wantTools:   map[string]route{"search": {"github", "search"}},
					wantPrompts: map[string]route{},
				},
			},
		},
		{
			name: "manual: a conflict is reported, installed by config order, and clears when a backend leaves",
			cfg:  config.Aggregation{ConflictResolution: config.ConflictManual},
			steps: []step{
				{
					backend:     "jira",
					caps:        &aggregator.Capabilities{Tools: tools("search")},
					wantTools:   map[string]route{"search": {"jira", "search"}},
					wantPrompts: map[string]route{},
				},
				{
					backend:     "github",
					caps:        &aggregator.Capabilities{Tools: tools("search", "create_pr")},
					wantTools:   map[string]route{"search": {"github", "search"}, "create_pr": {"github", "create_pr"}},
					wantPrompts: map[string]route{},
					wantErr:     true,
				},
				{
					backend:     "github",
					caps:        nil,
					wantTools:   map[string]route{"search": {"jira", "search"}},
					wantPrompts: map[string]route{},
				},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := aggregator.New(tc.cfg, []string{"github", "jira"}, discardLogger())
			for i, s := range tc.steps {
				before := a.Catalogue()
				beforeTools := slices.Clone(toolNames(before.Tools))
				c, err := a.Update(s.backend, s.caps)
				if s.wantErr {
					if !errors.Is(err, aggregator.ErrConflict) {
						t.Fatalf("step %d: Update error = %v, want ErrConflict", i, err)
					}
				} else if err != nil {
					t.Fatalf("step %d: Update: %v", i, err)
				}
				if c != a.Catalogue() {
					t.Fatalf("step %d: Update returned a catalogue other than the installed one", i)
				}
				assertRoutes(t, c, s.wantTools, s.wantPrompts)
				var uris []string
				for _, r := range c.Resources {
					uris = append(uris, r.URI)
				}
				if !slices.Equal(uris, s.wantRes) {
					t.Errorf("step %d: resources %q, want %q", i, uris, s.wantRes)
				}
				if s.caps == nil && c.ToolCount(s.backend) != 0 {
					t.Errorf("step %d: removed backend %s still has %d tools", i, s.backend, c.ToolCount(s.backend))
				}
				// Catalogues are immutable: the one handed out before the
				// update still shows what it showed.
				if got := toolNames(before.Tools); !slices.Equal(got, beforeTools) {
					t.Errorf("step %d: previous catalogue changed from %q to %q", i, beforeTools, got)
				}
			}
		})
	}
}

// TestUpdateIgnoresUnknownBackend checks that capabilities of a backend not
// in the config order do not reach the catalogue.
func TestUpdateIgnoresUnknownBackend(t *testing.T) {
	t.Parallel()
	a := aggregator.New(config.Aggregation{}, []string{"github"}, discardLogger())
	c, err := a.Update("stranger", &aggregator.Capabilities{Tools: tools("search")})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tools) != 0 {
		t.Errorf("unknown backend's tools in catalogue: %q", toolNames(c.Tools))
	}
}

// TestUpdateConcurrentReaders runs readers against a writer that keeps
// replacing backends' capabilities; run it with -race. Every catalogue a
// reader sees must be internally consistent and be one the writer built,
// and catalogues must never go back in time.
func TestUpdateConcurrentReaders(t *testing.T) {
	t.Parallel()
	backends := []string{"alpha", "beta", "gamma"}
	// generation g gives backend b (g%5)+1 tools, all described "gen g".
	capsFor := func(b string, g int) *aggregator.Capabilities {
		n := g%5 + 1
		c := &aggregator.Capabilities{Prompts: prompts("p")}
		for i := range n {
			c.Tools = append(c.Tools, mcp.NewTool(fmt.Sprintf("t%d", i), mcp.WithDescription("gen "+strconv.Itoa(g)),
				mcp.WithString("q")))
		}
		if g%3 == 0 {
			c = nil // the backend goes away now and then
		}
		return c
	}
	a := aggregator.New(config.Aggregation{}, backends, discardLogger())

	const updates = 3000
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
		done.Store(true)
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lastGen := map[string]int{}
			for !done.Load() {
				c := a.Catalogue()
				if err := checkConsistent(c, backends, lastGen); err != nil {
					report(err)
					return
				}
			}
		}()
	}
	wantCount := map[string]int{}
	for g := 1; g <= updates && !done.Load(); g++ {
		b := backends[g%len(backends)]
		c := capsFor(b, g)
		wantCount[b] = 0
		if c != nil {
			wantCount[b] = len(c.Tools)
		}
		if _, err := a.Update(b, c); err != nil {
			report(err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// After the writer is done, the last update of each backend is in.
	c := a.Catalogue()
	for _, b := range backends {
		if got := c.ToolCount(b); got != wantCount[b] {
			t.Errorf("final ToolCount(%s) = %d, want %d", b, got, wantCount[b])
		}
	}
}

// checkConsistent checks one catalogue seen by a reader of
// TestUpdateConcurrentReaders.
func checkConsistent(c *aggregator.Catalogue, backends []string, lastGen map[string]int) error {
	if c == nil {
		return errors.New("nil catalogue")
	}
	sum := 0
	for _, b := range backends {
		sum += c.ToolCount(b)
	}
	if sum != len(c.Tools) {
		return fmt.Errorf("ToolCount sums to %d but Tools has %d", sum, len(c.Tools))
	}
	gens := map[string]string{}
	counts := map[string]int{}
	for i, tl := range c.Tools {
		if i > 0 && c.Tools[i-1].Name >= tl.Name {
			return fmt.Errorf("tools not sorted: %q before %q", c.Tools[i-1].Name, tl.Name)
		}
		r, ok := c.Tool(tl.Name)
		if !ok {
			return fmt.Errorf("tool %q listed but not routed", tl.Name)
		}
		if tl.Name != r.Backend+"_"+r.Name {
			return fmt.Errorf("tool %q routed to %+v", tl.Name, r)
		}
		if g, seen := gens[r.Backend]; seen && g != tl.Description {
			return fmt.Errorf("backend %s mixes %q and %q in one catalogue", r.Backend, g, tl.Description)
		}
		gens[r.Backend] = tl.Description
		counts[r.Backend]++
	}
	for b, d := range gens {
		g, err := strconv.Atoi(strings.TrimPrefix(d, "gen "))
		if err != nil {
			return fmt.Errorf("description %q", d)
		}
		if counts[b] != g%5+1 {
			return fmt.Errorf("backend %s has %d tools of generation %d, want %d", b, counts[b], g, g%5+1)
		}
		if g < lastGen[b] {
			return fmt.Errorf("backend %s went back from generation %d to %d", b, lastGen[b], g)
		}
		lastGen[b] = g
		if _, ok := c.Prompt(b + "_p"); !ok {
			return fmt.Errorf("backend %s has tools but no prompt", b)
		}
	}
	return nil
}

// TestUpdateConcurrentWriters has each backend's supervisor update its own
// share at the same time; no update may be lost.
func TestUpdateConcurrentWriters(t *testing.T) {
	t.Parallel()
	var backends []string
	for i := range 8 {
		backends = append(backends, fmt.Sprintf("b%d", i))
	}
	a := aggregator.New(config.Aggregation{}, backends, discardLogger())
	var wg sync.WaitGroup
	for i, b := range backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 50 {
				names := make([]string, n%4+1)
				for j := range names {
					names[j] = fmt.Sprintf("t%d", j)
				}
				if _, err := a.Update(b, &aggregator.Capabilities{Tools: tools(names...)}); err != nil {
					t.Error(err)
				}
			}
			// Odd backends leave at the end.
			if i%2 == 1 {
				if _, err := a.Update(b, nil); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	c := a.Catalogue()
	for i, b := range backends {
		want := 49%4 + 1
		if i%2 == 1 {
			want = 0
		}
		if got := c.ToolCount(b); got != want {
			t.Errorf("ToolCount(%s) = %d, want %d", b, got, want)
		}
	}
}
