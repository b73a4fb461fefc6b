package router_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vmcp/vmcp/parse"
	"github.com/vmcp/vmcp/router"
)

// fakePoster records the raw requests it is given and answers each with an
// empty JSON body; backends in modern take them raw.
type fakePoster struct {
	modern  map[string]bool
	backend string
	body    string
	header  http.Header
	closed  bool
}

func (p *fakePoster) Supports(_ context.Context, backend, version string) bool {
	return p.modern[backend] && version == "2026-07-28"
}

func (p *fakePoster) Post(_ context.Context, backend, _ string, body []byte, header http.Header) (*http.Response, error) {
	p.backend, p.body, p.header = backend, string(body), header
	return &http.Response{StatusCode: 200, Body: closeRecorder{io.NopCloser(strings.NewReader("{}")), &p.closed}}, nil
}

type closeRecorder struct {
	io.ReadCloser
	closed *bool
}

func (c closeRecorder) Close() error { *c.closed = true; return c.ReadCloser.Close() }

var _ router.Poster = (*fakePoster)(nil)

// rawRequest is the request the endpoint relays for body, read by the
// parse stage as the endpoint reads it.
func rawRequest(method, name, body string) router.RawRequest {
	h := http.Header{}
	h.Set("Mcp-Method", method)
	h.Set("Mcp-Name", name)
	h.Set("Mcp-Param-Q", "x")
	p, perr := parse.Parse([]byte(body), parse.Options{Optimizer: true})
	if perr != nil {
		panic(perr.Message)
	}
	return router.RawRequest{Method: method, Name: name, RefType: p.RefType, Version: "2026-07-28", Body: p.Body, NameJSON: p.Name,
		ID: p.ID, CallTool: p.Optimizer == parse.CallToolName, Arguments: p.Arguments, Meta: p.Meta, Header: h}
}

func TestRelayRenames(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cases := []struct {
		name                   string
		req                    router.RawRequest
		backend, body, mcpName string
	}{
		{"tool", rawRequest("tools/call", "jira_search", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"jira_search","arguments":{"q":"<a&b>", "n": 1.50},"_meta":{"progressToken":1},"x-extra":[1]}}`),
			"jira", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"<a&b>", "n": 1.50},"_meta":{"progressToken":1},"x-extra":[1]}}`, "search"},
		{"call_tool unwrapped", rawRequest("tools/call", "jira_search", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"call_tool","arguments":{"tool_name":"jira_search","parameters":{"q":"x"}},"_meta":{"progressToken":"p"}}}`),
			"jira", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"search","arguments":{"q":"x"},"_meta":{"progressToken":"p"}}}`, "search"},
		{"prompt completion", rawRequest("completion/complete", "github_summary", `{"jsonrpc":"2.0","id":6,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"github_summary"},"argument":{"name":"a","value":"b"}}}`),
			"github", `{"jsonrpc":"2.0","id":6,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"summary"},"argument":{"name":"a","value":"b"}}}`, "summary"},
		{"prompt", rawRequest("prompts/get", "github_summary", `{"jsonrpc":"2.0","id":"x","method":"prompts/get","params":{"name":"github_summary"}}`),
			"github", `{"jsonrpc":"2.0","id":"x","method":"prompts/get","params":{"name":"summary"}}`, "summary"},
		{"listed resource, byte for byte", rawRequest("resources/read", "repo://vmcp/readme", `{"jsonrpc":"2.0", "id":2, "method":"resources/read","params":{"uri":"repo://vmcp/readme"}}`),
			"github", `{"jsonrpc":"2.0", "id":2, "method":"resources/read","params":{"uri":"repo://vmcp/readme"}}`, "repo://vmcp/readme"},
		{"templated resource", rawRequest("resources/read", "jira://issue/V-1", `{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"jira://issue/V-1"}}`),
			"jira", `{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"jira://issue/V-1"}}`, "jira://issue/V-1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakePoster{modern: map[string]bool{"github": true, "jira": true}}
			resp, _, err := f.router.Relay(context.Background(), p, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if p.backend != tc.backend || p.body != tc.body {
				t.Fatalf("posted to %s:\n%s\nwant %s:\n%s", p.backend, p.body, tc.backend, tc.body)
			}
			if got := p.header.Get("Mcp-Name"); got != tc.mcpName {
				t.Errorf("Mcp-Name = %q, want %q", got, tc.mcpName)
			}
			if got := p.header.Get("Mcp-Param-Q"); got != "x" {
				t.Errorf("Mcp-Param-Q = %q, want it passed on", got)
			}
			if tc.req.Header.Get("Mcp-Name") != tc.req.Name {
				t.Error("Relay changed the caller's headers")
			}
			_ = resp.Body.Close()
			if !p.closed {
				t.Error("closing the relayed body did not close the backend's")
			}
		})
	}
}

func TestRelayLeavesWhatItCannotTake(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := &fakePoster{modern: map[string]bool{"github": true}}
	if _, _, err := f.router.Relay(context.Background(), p, rawRequest("tools/call", "nope", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}`)); !errors.Is(err, router.ErrNotFound) {
		t.Errorf("unknown tool: %v, want ErrNotFound", err)
	}
	if _, _, err := f.router.Relay(context.Background(), p, rawRequest("tools/call", "jira_search", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"jira_search"}}`)); !errors.Is(err, router.ErrNotRelayed) {
		t.Errorf("backend without the revision: %v, want ErrNotRelayed", err)
	}
	if p.backend != "" {
		t.Errorf("posted to %s", p.backend)
	}
}

// A new id replaces the client's, wherever it is in the body.
func TestRelayReplacesTheID(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	req := rawRequest("tools/call", "jira_search", `{"params":{"name":"jira_search","arguments":{}},"method":"tools/call","jsonrpc":"2.0","id":"client-1"}`)
	req.NewID = []byte(`"vmcp-9"`)
	p := &fakePoster{modern: map[string]bool{"jira": true}}
	if _, _, err := f.router.Relay(context.Background(), p, req); err != nil {
		t.Fatal(err)
	}
	if want := `{"params":{"name":"search","arguments":{}},"method":"tools/call","jsonrpc":"2.0","id":"vmcp-9"}`; p.body != want {
		t.Errorf("posted %s, want %s", p.body, want)
	}
}

// TestRelayRenamesInTheBody: renaming replaces the name where it is in the
// body, so a name that is not a slice of it is refused rather than guessed
// at.
func TestRelayRenamesInTheBody(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	req := rawRequest("tools/call", "jira_search", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"jira_search"}}`)
	req.NameJSON = []byte(string(req.NameJSON))
	p := &fakePoster{modern: map[string]bool{"jira": true}}
	_, _, err := f.router.Relay(context.Background(), p, req)
	if err == nil || errors.Is(err, router.ErrNotFound) || errors.Is(err, router.ErrNotRelayed) || p.backend != "" {
		t.Fatalf("Relay with copied params = %v, posted to %q; want an error and nothing posted", err, p.backend)
	}
}
