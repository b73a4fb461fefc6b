package aggregator_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/aggregator"
	"github.com/vmcp/vmcp/config"
)

type route = aggregator.Route

type caps = map[string]*aggregator.Capabilities

// TestBuildConflictStrategies covers naming and conflict resolution of
// tools and prompts under prefix, priority and manual.
func TestBuildConflictStrategies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cfg         config.Aggregation
		order       []string
		caps        caps
		wantTools   map[string]route
		wantPrompts map[string]route
		// wantErr lists substrings of the error, which must wrap
		// ErrConflict; nil means Build must succeed.
		wantErr   []string
		wantWarns []warning
	}{
		{
			name:  "prefix is the default and prefixes everything even without conflicts",
			cfg:   config.Aggregation{},
			order: []string{"github", "jira"},
			caps: caps{
				"github": {Tools: tools("create_pr", "list_issues"), Prompts: prompts("review")},
				"jira":   {Tools: tools("create_issue"), Prompts: prompts("triage")},
			},
			wantTools: map[string]route{
				"github_create_pr":   {"github", "create_pr"},
				"github_list_issues": {"github", "list_issues"},
				"jira_create_issue":  {"jira", "create_issue"},
			},
			wantPrompts: map[string]route{
				"github_review": {"github", "review"},
				"jira_triage":   {"jira", "triage"},
			},
		},
		{
			name:  "prefix spelled out with the default format",
			cfg:   config.Aggregation{ConflictResolution: config.ConflictPrefix, ConflictResolutionConfig: config.ConflictResolutionConfig{PrefixFormat: "{backend}_"}},
			order: []string{"github", "jira"},
			caps: caps{
				"github": {Tools: tools("search")},
				"jira":   {Tools: tools("search")},
			},
			wantTools: map[string]route{
				"github_search": {"github", "search"},
				"jira_search":   {"jira", "search"},
			},
			wantPrompts: map[string]route{},
		},
		{
			name:  "prefix with a custom format separates same-named tools and prompts",
			cfg:   config.Aggregation{ConflictResolutionConfig: config.ConflictResolutionConfig{PrefixFormat: "{backend}."}},
			order: []string{"github", "jira"},
			caps: caps{
				"github": {Tools: tools("search", "create_pr"), Prompts: prompts("summarize")},
				"jira":   {Tools: tools("search"), Prompts: prompts("summarize")},
			},
			wantTools: map[string]route{
				"github.search":    {"github", "search"},
				"github.create_pr": {"github", "create_pr"},
				"jira.search":      {"jira", "search"},
			},
			wantPrompts: map[string]route{
				"github.summarize": {"github", "summarize"},
				"jira.summarize":   {"jira", "summarize"},
			},
		},
		{
			name:  "prefix applies an override to the original name before prefixing",
			cfg:   config.Aggregation{Tools: []config.BackendTools{{Backend: "github", Overrides: map[string]config.ToolOverride{"create_pr": {Name: "open_pull_request"}}}}},
			order: []string{"github", "jira"},
			caps: caps{
				"github": {Tools: tools("create_pr", "list_issues")},
				"jira":   {Tools: tools("create_pr")},
			},
			wantTools: map[string]route{
				"github_open_pull_request": {"github", "create_pr"},
				"github_list_issues":       {"github", "list_issues"},
				"jira_create_pr":           {"jira", "create_pr"},
			},
			wantPrompts: map[string]route{},
		},
		{
			name:  "prefix collision after prefixing goes to config order with a warning",
			cfg:   config.Aggregation{},
			order: []string{"a", "a_b"},
			caps: caps{
				"a":   {Tools: tools("b_x")},
				"a_b": {Tools: tools("x", "y")},
			},
			wantTools: map[string]route{
				"a_b_x": {"a", "b_x"},
				"a_b_y": {"a_b", "y"},
			},
			wantPrompts: map[string]route{},
			wantWarns:   []warning{{key: "name", value: "a_b_x", kept: "a", dropped: []string{"a_b"}}},
		},
		{
			name: "priority keeps names and gives a conflict to the first listed backend",
			cfg: config.Aggregation{ConflictResolution: config.ConflictPriority, ConflictResolutionConfig: config.ConflictResolutionConfig{
				PriorityOrder: []string{"jira", "github"},
			}},
			order: []string{"github", "jira"},
			caps: caps{
				"github": {Tools: tools("search", "create_pr"), Prompts: prompts("summarize", "review")},
				"jira":   {Tools: tools("search", "create_issue"), Prompts: prompts("summarize")},
			},
			wantTools: map[string]route{
				"search":       {"jira", "search"},
				"create_pr":    {"github", "create_pr"},
				"create_issue": {"jira", "create_issue"},
			},
			wantPrompts: map[string]route{
				"summarize": {"jira", "summarize"},
				"review":    {"github", "review"},
			},
			wantWarns: []warning{
				{key: "name", value: "search", kept: "jira", dropped: []string{"github"}},
				{key: "name", value: "summarize", kept: "jira", dropped: []string{"github"}},
			},
		},
		{
			name: "priority ranks unlisted backends after listed ones, in config order",
			cfg: config.Aggregation{ConflictResolution: config.ConflictPriority, ConflictResolutionConfig: config.ConflictResolutionConfig{
				PriorityOrder: []string{"c"},
			}},
			order: []string{"a", "b", "c"},
			caps: caps{
				"a": {Tools: tools("all", "ab")},
				"b": {Tools: tools("all", "ab", "bc")},
				"c": {Tools: tools("all", "bc")},
			},
			wantTools: map[string]route{
				"all": {"c", "all"},
				"ab":  {"a", "ab"},
				"bc":  {"c", "bc"},
			},
			wantPrompts: map[string]route{},
			wantWarns: []warning{
				{key: "name", value: "all", kept: "c", dropped: []string{"a", "b"}},
				{key: "name", value: "ab", kept: "a", dropped: []string{"b"}},
				{key: "name", value: "bc", kept: "c", dropped: []string{"b"}},
			},
		},
		{
			name: "priority puts an unlisted backend after listed ones even when it comes first in config",
			cfg: config.Aggregation{ConflictResolution: config.ConflictPriority, ConflictResolutionConfig: config.ConflictResolutionConfig{
				PriorityOrder: []string{"c", "b"},
			}},
			order: []string{"a", "b", "c"},
			caps: caps{
				"a": {Tools: tools("t")},
				"b": {Tools: tools("t")},
				"c": {Tools: tools("u")},
			},
			wantTools: map[string]route{
				"t": {"b", "t"},
				"u": {"c", "u"},
			},
			wantPrompts: map[string]route{},
			wantWarns:   []warning{{key: "name", value: "t", kept: "b", dropped: []string{"a"}}},
		},
		{
			name:  "priority without priorityOrder falls back to config order",
			cfg:   config.Aggregation{ConflictResolution: config.ConflictPriority},
			order: []string{"jira", "github"},
			caps: caps{
				"github": {Tools: tools("search")},
				"jira":   {Tools: tools("search")},
			},
			wantTools:   map[string]route{"search": {"jira", "search"}},
			wantPrompts: map[string]route{},
			wantWarns:   []warning{{key: "name", value: "search", kept: "jira", dropped: []string{"github"}}},
		},
		{
			name: "priority applies overrides before resolving",
			cfg: config.Aggregation{
				ConflictResolution:       config.ConflictPriority,
				ConflictResolutionConfig: config.ConflictResolutionConfig{PriorityOrder: []string{"jira"}},
				Tools:                    []config.BackendTools{{Backend: "github", Overrides: map[string]config.ToolOverride{"search": {Name: "search_code"}}}},
			},
			order: []string{"github", "jira"},
			caps: caps{
				"github": {Tools: tools("search")},
				"jira":   {Tools: tools("search")},
			},
			wantTools: map[string]route{
				"search":      {"jira", "search"},
				"search_code": {"github", "search"},
			},
			wantPrompts: map[string]route{},
		},
		{
			name:  "manual without conflicts keeps names unprefixed",
			cfg:   config.Aggregation{ConflictResolution: config.ConflictManual},
			order: []string{"github", "jira"},
			caps: caps{
				"github": {Tools: tools("create_pr"), Prompts: prompts("review")},
				"jira":   {Tools: tools("create_issue")},
			},
			wantTools: map[string]route{
				"create_pr":    {"github", "create_pr"},
				"create_issue": {"jira", "create_issue"},
			},
			wantPrompts: map[string]route{"review": {"github", "review"}},
		},
		{
			name:  "manual reports an unsettled tool conflict naming the tool and both backends",
			cfg:   config.Aggregation{ConflictResolution: config.ConflictManual},
			order: []string{"github", "jira"},
			caps: caps{
				"github": {Tools: tools("search", "create_pr")},
				"jira":   {Tools: tools("search")},
			},
			// Meanwhile the catalogue settles it by config order.
			wantTools: map[string]route{
				"search":    {"github", "search"},
				"create_pr": {"github", "create_pr"},
			},
			wantPrompts: map[string]route{},
			wantErr:     []string{`"search"`, "github", "jira"},
		},
		{
			name:  "manual reports every conflict",
			cfg:   config.Aggregation{ConflictResolution: config.ConflictManual},
			order: []string{"a", "b", "c"},
			caps: caps{
				"a": {Tools: tools("x")},
				"b": {Tools: tools("x", "y")},
				"c": {Tools: tools("x", "y")},
			},
			wantTools: map[string]route{
				"x": {"a", "x"},
				"y": {"b", "y"},
			},
			wantPrompts: map[string]route{},
			wantErr:     []string{`"x" is offered by backends a, b, c`, `"y" is offered by backends b, c`},
		},
		{
			name: "manual conflict settled by an override",
			cfg: config.Aggregation{
				ConflictResolution: config.ConflictManual,
				Tools:              []config.BackendTools{{Backend: "jira", Overrides: map[string]config.ToolOverride{"search": {Name: "jira_search"}}}},
			},
			order: []string{"github", "jira"},
			caps: caps{
				"github": {Tools: tools("search")},
				"jira":   {Tools: tools("search")},
			},
			wantTools: map[string]route{
				"search":      {"github", "search"},
				"jira_search": {"jira", "search"},
			},
			wantPrompts: map[string]route{},
		},
		{
			name: "manual conflict created by an override is reported",
			cfg: config.Aggregation{
				ConflictResolution: config.ConflictManual,
				Tools:              []config.BackendTools{{Backend: "jira", Overrides: map[string]config.ToolOverride{"find": {Name: "search"}}}},
			},
			order: []string{"github", "jira"},
			caps: caps{
				"github": {Tools: tools("search")},
				"jira":   {Tools: tools("find")},
			},
			wantTools:   map[string]route{"search": {"github", "search"}},
			wantPrompts: map[string]route{},
			wantErr:     []string{`"search"`, "github", "jira"},
		},
		{
			name:  "manual settles prompt conflicts by config order with a warning",
			cfg:   config.Aggregation{ConflictResolution: config.ConflictManual},
			order: []string{"jira", "github"},
			caps: caps{
				"github": {Tools: tools("create_pr"), Prompts: prompts("summarize", "review")},
				"jira":   {Prompts: prompts("summarize")},
			},
			wantTools: map[string]route{"create_pr": {"github", "create_pr"}},
			wantPrompts: map[string]route{
				"summarize": {"jira", "summarize"},
				"review":    {"github", "review"},
			},
			wantWarns: []warning{{key: "name", value: "summarize", kept: "jira", dropped: []string{"github"}}},
		},
		{
			name:        "backends without capabilities and unknown backends contribute nothing",
			cfg:         config.Aggregation{},
			order:       []string{"github", "jira"},
			caps:        caps{"github": {Tools: tools("search")}, "stranger": {Tools: tools("search")}},
			wantTools:   map[string]route{"github_search": {"github", "search"}},
			wantPrompts: map[string]route{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs, log := newLogCapture()
			c, err := aggregator.Build(tc.cfg, tc.order, tc.caps, log)
			if c == nil {
				t.Fatal("Build returned a nil catalogue")
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Build: unexpected error %v", err)
				}
			} else {
				if !errors.Is(err, aggregator.ErrConflict) {
					t.Fatalf("Build error = %v, want one wrapping ErrConflict", err)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("Build error %q does not mention %q", err, s)
					}
				}
			}
			assertRoutes(t, c, tc.wantTools, tc.wantPrompts)
			logs.assertWarnings(t, tc.wantWarns)
		})
	}
}

// TestBuildKeepsToolContent checks that the tool a backend offers reaches
// the catalogue unchanged apart from its name.
func TestBuildKeepsToolContent(t *testing.T) {
	t.Parallel()
	for _, strategy := range []string{config.ConflictPrefix, config.ConflictPriority, config.ConflictManual} {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			in := tool("search")
			c, err := aggregator.Build(config.Aggregation{ConflictResolution: strategy}, []string{"github"},
				caps{"github": {Tools: []mcp.Tool{in}}}, discardLogger())
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Tools) != 1 {
				t.Fatalf("tools = %q", toolNames(c.Tools))
			}
			got := c.Tools[0]
			got.Name = in.Name
			if !reflect.DeepEqual(got, in) {
				t.Errorf("tool changed beyond its name:\n got  %+v\n want %+v", got, in)
			}
		})
	}
}

// TestBuildFilterAndOverrides covers the per-backend allow-list and
// overrides of tool names and descriptions.
func TestBuildFilterAndOverrides(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		tools     []config.BackendTools
		wantTools map[string]route
		// wantDesc maps a post-aggregation name to its expected description.
		wantDesc map[string]string
	}{
		{
			name:  "no filter allows everything",
			tools: nil,
			wantTools: map[string]route{
				"github_create_pr":   {"github", "create_pr"},
				"github_list_issues": {"github", "list_issues"},
				"github_delete_repo": {"github", "delete_repo"},
				"jira_create_pr":     {"jira", "create_pr"},
				"jira_delete_repo":   {"jira", "delete_repo"},
			},
		},
		{
			name:  "filter is an allow-list for its backend only",
			tools: []config.BackendTools{{Backend: "github", Filter: []string{"create_pr", "list_issues"}}},
			wantTools: map[string]route{
				"github_create_pr":   {"github", "create_pr"},
				"github_list_issues": {"github", "list_issues"},
				"jira_create_pr":     {"jira", "create_pr"},
				"jira_delete_repo":   {"jira", "delete_repo"},
			},
		},
		{
			name:  "filter naming a tool the backend lacks keeps nothing of it",
			tools: []config.BackendTools{{Backend: "jira", Filter: []string{"no_such_tool"}}},
			wantTools: map[string]route{
				"github_create_pr":   {"github", "create_pr"},
				"github_list_issues": {"github", "list_issues"},
				"github_delete_repo": {"github", "delete_repo"},
			},
		},
		{
			name: "filter uses original names, applied before overrides",
			tools: []config.BackendTools{{
				Backend:   "github",
				Filter:    []string{"create_pr"},
				Overrides: map[string]config.ToolOverride{"create_pr": {Name: "open_pull_request", Description: "Open a pull request"}},
			}},
			wantTools: map[string]route{
				"github_open_pull_request": {"github", "create_pr"},
				"jira_create_pr":           {"jira", "create_pr"},
				"jira_delete_repo":         {"jira", "delete_repo"},
			},
			wantDesc: map[string]string{
				"github_open_pull_request": "Open a pull request",
				"jira_create_pr":           "original description of create_pr",
			},
		},
		{
			name: "filter naming the overridden name does not match",
			tools: []config.BackendTools{{
				Backend:   "github",
				Filter:    []string{"open_pull_request"},
				Overrides: map[string]config.ToolOverride{"create_pr": {Name: "open_pull_request"}},
			}},
			wantTools: map[string]route{
				"jira_create_pr":   {"jira", "create_pr"},
				"jira_delete_repo": {"jira", "delete_repo"},
			},
		},
		{
			name: "an override may change only the description",
			tools: []config.BackendTools{{
				Backend:   "jira",
				Overrides: map[string]config.ToolOverride{"delete_repo": {Description: "Delete a Jira project"}},
			}},
			wantTools: map[string]route{
				"github_create_pr":   {"github", "create_pr"},
				"github_list_issues": {"github", "list_issues"},
				"github_delete_repo": {"github", "delete_repo"},
				"jira_create_pr":     {"jira", "create_pr"},
				"jira_delete_repo":   {"jira", "delete_repo"},
			},
			wantDesc: map[string]string{
				"jira_delete_repo":   "Delete a Jira project",
				"github_delete_repo": "original description of delete_repo",
			},
		},
		{
			name: "an override may change only the name, keeping the description",
			tools: []config.BackendTools{{
				Backend:   "github",
				Overrides: map[string]config.ToolOverride{"list_issues": {Name: "issues"}},
			}},
			wantTools: map[string]route{
				"github_create_pr":   {"github", "create_pr"},
				"github_issues":      {"github", "list_issues"},
				"github_delete_repo": {"github", "delete_repo"},
				"jira_create_pr":     {"jira", "create_pr"},
				"jira_delete_repo":   {"jira", "delete_repo"},
			},
			wantDesc: map[string]string{"github_issues": "original description of list_issues"},
		},
		{
			name: "an override for a filtered-out tool has no effect",
			tools: []config.BackendTools{{
				Backend:   "github",
				Filter:    []string{"list_issues"},
				Overrides: map[string]config.ToolOverride{"create_pr": {Name: "open_pull_request"}},
			}},
			wantTools: map[string]route{
				"github_list_issues": {"github", "list_issues"},
				"jira_create_pr":     {"jira", "create_pr"},
				"jira_delete_repo":   {"jira", "delete_repo"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := caps{
				"github": {Tools: tools("create_pr", "list_issues", "delete_repo"), Prompts: prompts("review")},
				"jira":   {Tools: tools("create_pr", "delete_repo")},
			}
			c, err := aggregator.Build(config.Aggregation{Tools: tc.tools}, []string{"github", "jira"}, in, discardLogger())
			if err != nil {
				t.Fatal(err)
			}
			// Filters and overrides apply to tools only.
			assertRoutes(t, c, tc.wantTools, map[string]route{"github_review": {"github", "review"}})
			for _, tl := range c.Tools {
				if want, ok := tc.wantDesc[tl.Name]; ok && tl.Description != want {
					t.Errorf("%s: description %q, want %q", tl.Name, tl.Description, want)
				}
			}
		})
	}
}

// TestBuildResources covers resources and resource templates: URIs are
// kept, and a duplicate goes to the first backend in config order whatever
// the strategy and priorityOrder.
func TestBuildResources(t *testing.T) {
	t.Parallel()
	in := func() caps {
		return caps{
			"github": {
				Resources:         resources("repo://vmcp/readme", "shared://notes"),
				ResourceTemplates: templates("repo://{owner}/{name}", "shared://{id}"),
			},
			"jira": {
				Resources:         resources("shared://notes", "jira://board"),
				ResourceTemplates: templates("shared://{id}", "jira://issue/{key}"),
			},
		}
	}
	wantResources := map[string]route{
		"jira://board":       {"jira", "jira://board"},
		"repo://vmcp/readme": {"github", "repo://vmcp/readme"},
		"shared://notes":     {"github", "shared://notes"},
	}
	wantTemplates := map[string]route{
		"jira://issue/{key}":    {"jira", "jira://issue/{key}"},
		"repo://{owner}/{name}": {"github", "repo://{owner}/{name}"},
		"shared://{id}":         {"github", "shared://{id}"},
	}
	wantWarns := []warning{
		{key: "uri", value: "shared://notes", kept: "github", dropped: []string{"jira"}},
		{key: "uriTemplate", value: "shared://{id}", kept: "github", dropped: []string{"jira"}},
	}
	priorityJiraFirst := config.ConflictResolutionConfig{PriorityOrder: []string{"jira", "github"}}
	for _, cfg := range []config.Aggregation{
		{},
		{ConflictResolution: config.ConflictPriority, ConflictResolutionConfig: priorityJiraFirst},
		{ConflictResolution: config.ConflictManual, ConflictResolutionConfig: priorityJiraFirst},
	} {
		t.Run(cfg.ConflictResolution, func(t *testing.T) {
			t.Parallel()
			logs, log := newLogCapture()
			c, err := aggregator.Build(cfg, []string{"github", "jira"}, in(), log)
			if err != nil {
				t.Fatalf("duplicate resources are not conflicts to settle: %v", err)
			}
			var uris []string
			for _, r := range c.Resources {
				uris = append(uris, r.URI)
				if r.Name != "resource "+r.URI {
					t.Errorf("resource %s has name %q", r.URI, r.Name)
				}
			}
			if want := sortedKeys(wantResources); !slices.Equal(uris, want) {
				t.Errorf("resources:\n got  %q\n want %q", uris, want)
			}
			for uri, want := range wantResources {
				if got, ok := c.Resource(uri); !ok || got != want {
					t.Errorf("Resource(%q) = %+v, %v; want %+v", uri, got, ok, want)
				}
			}
			var raws []string
			for _, tpl := range c.ResourceTemplates {
				raws = append(raws, rawTemplate(tpl))
			}
			if want := sortedKeys(wantTemplates); !slices.Equal(raws, want) {
				t.Errorf("templates:\n got  %q\n want %q", raws, want)
			}
			for raw, want := range wantTemplates {
				if got, ok := c.Template(raw); !ok || got != want {
					t.Errorf("Template(%q) = %+v, %v; want %+v", raw, got, ok, want)
				}
			}
			logs.assertWarnings(t, wantWarns)
		})
	}
}

// TestCatalogueSortedAndLookups checks the order of the catalogue's slices
// and the answers of its lookups for unknown names.
func TestCatalogueSortedAndLookups(t *testing.T) {
	t.Parallel()
	in := caps{
		"zeta": {
			Tools:             tools("yank", "apply", "merge"),
			Prompts:           prompts("zz", "aa"),
			Resources:         resources("z://last", "a://first"),
			ResourceTemplates: templates("z://{x}", "a://{x}"),
		},
		"alpha": {
			Tools:             tools("zip", "build"),
			Prompts:           prompts("mm"),
			Resources:         resources("m://middle"),
			ResourceTemplates: templates("m://{x}"),
		},
		"empty": {},
	}
	cfg := config.Aggregation{
		Tools: []config.BackendTools{{Backend: "alpha", Filter: []string{"zip"}}},
	}
	c, err := aggregator.Build(cfg, []string{"zeta", "alpha", "empty"}, in, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := toolNames(c.Tools), []string{"alpha_zip", "zeta_apply", "zeta_merge", "zeta_yank"}; !slices.Equal(got, want) {
		t.Errorf("tools %q, want %q", got, want)
	}
	if got, want := promptNames(c.Prompts), []string{"alpha_mm", "zeta_aa", "zeta_zz"}; !slices.Equal(got, want) {
		t.Errorf("prompts %q, want %q", got, want)
	}
	if !slices.IsSortedFunc(c.Resources, func(a, b mcp.Resource) int { return strings.Compare(a.URI, b.URI) }) {
		t.Errorf("resources not sorted by URI: %+v", c.Resources)
	}
	if !slices.IsSortedFunc(c.ResourceTemplates, func(a, b mcp.ResourceTemplate) int {
		return strings.Compare(rawTemplate(a), rawTemplate(b))
	}) {
		t.Errorf("templates not sorted")
	}
	for backend, want := range map[string]int{"zeta": 3, "alpha": 1, "empty": 0, "unknown": 0} {
		if got := c.ToolCount(backend); got != want {
			t.Errorf("ToolCount(%q) = %d, want %d", backend, got, want)
		}
	}

	unknown := []struct {
		what   string
		lookup func(string) (aggregator.Route, bool)
		names  []string
	}{
		// Original and unprefixed names do not resolve under prefix.
		{"Tool", c.Tool, []string{"", "apply", "zeta_", "alpha_build", "zeta_apply ", "ZETA_APPLY"}},
		{"Prompt", c.Prompt, []string{"", "zz", "zeta_apply"}},
		{"Resource", c.Resource, []string{"", "z://{x}", "z://last/"}},
		{"Template", c.Template, []string{"", "z://last", "z://{y}"}},
	}
	for _, u := range unknown {
		for _, n := range u.names {
			if r, ok := u.lookup(n); ok || r != (aggregator.Route{}) {
				t.Errorf("%s(%q) = %+v, %v; want zero, false", u.what, n, r, ok)
			}
		}
	}

	var zero aggregator.Catalogue
	if _, ok := zero.Tool("x"); ok {
		t.Error("zero Catalogue resolves a tool")
	}
}

// TestBuildDoesNotMutateInput checks that Build leaves the capabilities it
// is given as they were: the aggregator keeps them and rebuilds from them
// on every update, so a renamed or prefixed tool leaking back into the input
// would be renamed again next time.
func TestBuildDoesNotMutateInput(t *testing.T) {
	t.Parallel()
	input := func() caps {
		return caps{
			"github": {
				Tools:             tools("search", "create_pr", "list_issues"),
				Prompts:           prompts("summarize", "review"),
				Resources:         resources("z://b", "a://a"),
				ResourceTemplates: templates("z://{b}", "a://{a}"),
			},
			"jira": {
				Tools:             tools("search", "create_issue", "archive"),
				Prompts:           prompts("summarize"),
				Resources:         resources("a://a", "m://m"),
				ResourceTemplates: templates("a://{a}", "m://{m}"),
			},
		}
	}
	overrides := []config.BackendTools{
		{Backend: "github", Filter: []string{"search", "create_pr"}, Overrides: map[string]config.ToolOverride{
			"create_pr": {Name: "open_pull_request", Description: "Open a pull request"},
		}},
		{Backend: "jira", Overrides: map[string]config.ToolOverride{"search": {Name: "jira_search"}}},
	}
	cfgs := map[string]config.Aggregation{
		"prefix":   {Tools: overrides},
		"custom":   {ConflictResolutionConfig: config.ConflictResolutionConfig{PrefixFormat: "{backend}."}, Tools: overrides},
		"priority": {ConflictResolution: config.ConflictPriority, ConflictResolutionConfig: config.ConflictResolutionConfig{PriorityOrder: []string{"jira"}}},
		"manual":   {ConflictResolution: config.ConflictManual, Tools: overrides[:1]}, // leaves a conflict
	}
	for name, cfg := range cfgs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in, pristine := input(), input()
			first, _ := aggregator.Build(cfg, []string{"github", "jira"}, in, discardLogger())
			for b := range pristine {
				got, want := in[b], pristine[b]
				if g, w := toolNames(got.Tools), toolNames(want.Tools); !slices.Equal(g, w) {
					t.Errorf("%s: input tool names became %q, were %q", b, g, w)
				}
				if !reflect.DeepEqual(got.Tools, want.Tools) {
					t.Errorf("%s: input tools changed", b)
				}
				if g, w := promptNames(got.Prompts), promptNames(want.Prompts); !slices.Equal(g, w) {
					t.Errorf("%s: input prompt names became %q, were %q", b, g, w)
				}
				if !reflect.DeepEqual(got.Prompts, want.Prompts) {
					t.Errorf("%s: input prompts changed", b)
				}
				if !reflect.DeepEqual(got.Resources, want.Resources) {
					t.Errorf("%s: input resources changed (reordered?): %+v", b, got.Resources)
				}
				var g, w []string
				for i := range got.ResourceTemplates {
					g = append(g, rawTemplate(got.ResourceTemplates[i]))
					w = append(w, rawTemplate(want.ResourceTemplates[i]))
				}
				if !slices.Equal(g, w) {
					t.Errorf("%s: input templates became %q, were %q", b, g, w)
				}
			}
			// Rebuilding from the same input gives the same catalogue.
			second, _ := aggregator.Build(cfg, []string{"github", "jira"}, in, discardLogger())
			if !reflect.DeepEqual(toolNames(first.Tools), toolNames(second.Tools)) ||
				!reflect.DeepEqual(first.Tools, second.Tools) {
				t.Errorf("rebuild differs:\n first  %q\n second %q", toolNames(first.Tools), toolNames(second.Tools))
			}
			if !reflect.DeepEqual(first.Prompts, second.Prompts) {
				t.Errorf("rebuilt prompts differ: %q vs %q", promptNames(first.Prompts), promptNames(second.Prompts))
			}
			// Editing a catalogue does not reach back into the input.
			for i := range first.Tools {
				first.Tools[i].Name = "edited"
				first.Tools[i].Description = "edited"
			}
			for i := range first.Prompts {
				first.Prompts[i].Name = "edited"
			}
			for i := range first.Resources {
				first.Resources[i].URI = "edited"
			}
			for b := range pristine {
				if !reflect.DeepEqual(in[b].Tools, pristine[b].Tools) ||
					!reflect.DeepEqual(in[b].Prompts, pristine[b].Prompts) ||
					!reflect.DeepEqual(in[b].Resources, pristine[b].Resources) {
					t.Errorf("%s: editing the catalogue changed the input", b)
				}
			}
		})
	}
}
