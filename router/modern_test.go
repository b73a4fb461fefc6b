package router_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

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

func rawRequest(method, name, body string) router.RawRequest {
	h := http.Header{}
	h.Set("Mcp-Method", method)
	h.Set("Mcp-Name", name)
	h.Set("Mcp-Param-Q", "x")
	b := []byte(body)
	var params []byte
	if i := strings.Index(body, `"params":`); i >= 0 {
		params = b[i+len(`"params":`) : len(b)-1] // the bodies end with the params' } and the message's
	}
	return router.RawRequest{Method: method, Name: name, Version: "2026-07-28", Body: b, Params: params, Header: h}
}

func TestRelayRenames(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cases := []struct {
		name                   string
		req                    router.RawRequest
		backend, body, mcpName string
	}{
		{"tool", rawRequest("tools/call", "jira_search", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"jira_search","arguments":{"q":"<a&b>"},"_meta":{"progressToken":1}}}`),
			"jira", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":1},"arguments":{"q":"<a&b>"},"name":"search"}}`, "search"},
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
			resp, err := f.router.Relay(context.Background(), p, tc.req)
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
	if _, err := f.router.Relay(context.Background(), p, rawRequest("tools/call", "nope", `{}`)); !errors.Is(err, router.ErrNotFound) {
		t.Errorf("unknown tool: %v, want ErrNotFound", err)
	}
	if _, err := f.router.Relay(context.Background(), p, rawRequest("tools/call", "jira_search", `{}`)); !errors.Is(err, router.ErrNotRelayed) {
		t.Errorf("backend without the revision: %v, want ErrNotRelayed", err)
	}
	if p.backend != "" {
		t.Errorf("posted to %s", p.backend)
	}
}

// TestRelayRenamesParamsInTheirBody: renaming replaces the params where
// they are in the body, so params that are not a slice of it are refused
// rather than guessed at.
func TestRelayRenamesParamsInTheirBody(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	req := rawRequest("tools/call", "jira_search", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"jira_search"}}`)
	req.Params = []byte(string(req.Params))
	p := &fakePoster{modern: map[string]bool{"jira": true}}
	_, err := f.router.Relay(context.Background(), p, req)
	if err == nil || errors.Is(err, router.ErrNotFound) || errors.Is(err, router.ErrNotRelayed) || p.backend != "" {
		t.Fatalf("Relay with copied params = %v, posted to %q; want an error and nothing posted", err, p.backend)
	}
}
