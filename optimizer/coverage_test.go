package optimizer

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

func TestCoverage(t *testing.T) {
	t.Parallel()
	gh := &Server{Name: "github", Title: "GitHub"}
	jira := &Server{Name: "jira", Instructions: "Tickets and sprints of the support team. Use JQL for searches."}
	slack := &Server{Name: "slack"}
	tools := func(names ...string) []mcp.Tool {
		out := make([]mcp.Tool, len(names))
		for i, n := range names {
			out[i] = mcp.Tool{Name: n}
		}
		return out
	}
	many := make([]*Server, 100)
	manyTools := make([]mcp.Tool, 100)
	for i := range many {
		many[i] = &Server{Name: fmt.Sprintf("server%02d", i), Title: strings.Repeat("x", 50)}
		manyTools[i] = mcp.Tool{Name: fmt.Sprintf("server%02d_t", i)}
	}
	tests := []struct {
		name    string
		tools   []mcp.Tool
		servers []*Server
		want    string
	}{
		{"empty", nil, nil, ""},
		{"title, first sentence of the instructions, tool names", tools("github_create_pr", "jira_search", "slack_post_message", "slack_list_channels", "slack_get_user", "slack_react"),
			[]*Server{gh, jira, slack, slack, slack, slack},
			"github (GitHub); jira (Tickets and sprints of the support team); slack (post message, list channels, get user)"},
		{"no servers", tools("get_weather", "send_mail"), nil, "tools such as get weather, send mail"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Coverage(tc.tools, tc.servers); got != tc.want {
				t.Errorf("Coverage = %q\nwant      %q", got, tc.want)
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		t.Parallel()
		got := Coverage(manyTools, many)
		if runeLen(got) > maxCoverageRunes || !strings.HasPrefix(got, "server00 (") || !strings.HasSuffix(got, " more servers") {
			t.Errorf("Coverage of 100 servers (%d runes) = %q", runeLen(got), got)
		}
	})
}

func TestDefinitionsDescribeTheCatalogue(t *testing.T) {
	t.Parallel()
	defs := Definitions(8, "github (GitHub); jira (tickets)")
	find, call := defs[0].Description, defs[1].Description
	for _, want := range []string{"servers behind this gateway: github (GitHub); jira (tickets)", "call find_tool first", "best 8 matches"} {
		if !strings.Contains(find, want) {
			t.Errorf("find_tool's description lacks %q: %s", want, find)
		}
	}
	if !strings.Contains(call, "exact name find_tool gave") {
		t.Errorf("call_tool's description: %s", call)
	}
	tools := NewTools(8, nil)
	tools.Update([]mcp.Tool{{Name: "github_create_pr"}}, []*Server{{Name: "github", Title: "GitHub"}})
	if d := tools.ServerTools()[0].Tool.Description; !strings.Contains(d, "the tools of the servers behind this gateway: github (GitHub)") {
		t.Errorf("after Update: %s", d)
	}
}
