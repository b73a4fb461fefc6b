package aggregator_test

import (
	"slices"
	"testing"

	"github.com/vmcp/vmcp/aggregator"
	"github.com/vmcp/vmcp/config"
)

// TestHide takes a backend out of the catalogue and puts it back: its
// tools, prompts and resources go and return, the other backend's stay,
// and an Update made while hidden is what returns.
func TestHide(t *testing.T) {
	t.Parallel()
	cfg := config.Aggregation{ConflictResolution: config.ConflictPrefix,
		ConflictResolutionConfig: config.ConflictResolutionConfig{PrefixFormat: "{backend}_"}}
	a := aggregator.New(cfg, []string{"github", "jira"}, discardLogger())
	mustUpdate := func(backend string, caps *aggregator.Capabilities) {
		t.Helper()
		if _, err := a.Update(backend, caps); err != nil {
			t.Fatal(err)
		}
	}
	mustUpdate("github", &aggregator.Capabilities{Tools: tools("search"), Prompts: prompts("review"),
		Resources: resources("gh://readme"), ResourceTemplates: templates("gh://{repo}")})
	mustUpdate("jira", &aggregator.Capabilities{Tools: tools("search")})

	hide := func(backend string, hidden, wantChanged bool, wantTools []string, wantRest int) {
		t.Helper()
		c, changed, err := a.Hide(backend, hidden)
		if err != nil {
			t.Fatal(err)
		}
		if changed != wantChanged {
			t.Errorf("Hide(%s, %v) changed = %v, want %v", backend, hidden, changed, wantChanged)
		}
		if c != a.Catalogue() {
			t.Error("Hide did not return the current catalogue")
		}
		if got := toolNames(c.Tools); !slices.Equal(got, wantTools) {
			t.Errorf("Hide(%s, %v): tools %v, want %v", backend, hidden, got, wantTools)
		}
		if n := len(c.Prompts) + len(c.Resources) + len(c.ResourceTemplates); n != wantRest {
			t.Errorf("Hide(%s, %v): %d prompts, resources and templates, want %d", backend, hidden, n, wantRest)
		}
	}
	hidden := func(name, want string) {
		t.Helper()
		if got, ok := a.Catalogue().Hidden(name); got != want || ok != (want != "") {
			t.Errorf("Hidden(%s) = %q, %v; want %q", name, got, ok, want)
		}
	}
	hidden("github_search", "")
	hide("github", true, true, []string{"jira_search"}, 0)
	if _, ok := a.Catalogue().Tool("github_search"); ok {
		t.Error("a hidden backend's tool still routes")
	}
	hidden("github_search", "github")
	hidden("jira_search", "")
	hidden("nope", "")
	hide("github", true, false, []string{"jira_search"}, 0)
	// What a hidden backend offers is still recorded, and is what returns.
	mustUpdate("github", &aggregator.Capabilities{Tools: tools("search", "merge")})
	if got := toolNames(a.Catalogue().Tools); !slices.Equal(got, []string{"jira_search"}) {
		t.Errorf("Update of a hidden backend shows its tools: %v", got)
	}
	hidden("github_merge", "github")
	hide("github", false, true, []string{"github_merge", "github_search", "jira_search"}, 0)
	hidden("github_search", "")
	hidden("github_merge", "")
	if r, ok := a.Catalogue().Tool("github_search"); !ok || r.Backend != "github" || r.Name != "search" {
		t.Errorf("github_search routes to %+v, %v after unhiding", r, ok)
	}
	hide("github", false, false, []string{"github_merge", "github_search", "jira_search"}, 0)
}

// TestHideUnderPriority: hiding the preferred backend lets the next one
// serve the unprefixed name, so a tool stays available while either is up.
func TestHideUnderPriority(t *testing.T) {
	t.Parallel()
	cfg := config.Aggregation{ConflictResolution: config.ConflictPriority,
		ConflictResolutionConfig: config.ConflictResolutionConfig{PrefixFormat: "{backend}_", PriorityOrder: []string{"github", "jira"}}}
	a := aggregator.New(cfg, []string{"github", "jira"}, discardLogger())
	for _, b := range []string{"github", "jira"} {
		if _, err := a.Update(b, &aggregator.Capabilities{Tools: tools("search")}); err != nil {
			t.Fatal(err)
		}
	}
	if r, _ := a.Catalogue().Tool("search"); r.Backend != "github" {
		t.Fatalf("search routes to %q, want github", r.Backend)
	}
	if _, _, err := a.Hide("github", true); err != nil {
		t.Fatal(err)
	}
	if r, _ := a.Catalogue().Tool("search"); r.Backend != "jira" {
		t.Errorf("with github hidden search routes to %q, want jira", r.Backend)
	}
	if b, ok := a.Catalogue().Hidden("search"); ok {
		t.Errorf("search, served by jira, is reported hidden with %q", b)
	}
}
