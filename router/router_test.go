package router_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/aggregator"
	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/router"
)

// fakeBackend records every request it gets and answers from its fields.
type fakeBackend struct {
	name string

	mu       sync.Mutex
	calls    []mcp.CallToolRequest
	reads    []mcp.ReadResourceRequest
	prompts  []mcp.GetPromptRequest
	complete []mcp.CompleteRequest

	result *mcp.CallToolResult // nil: a text result naming the backend
	err    error
}

func (b *fakeBackend) CallTool(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, req)
	if b.err != nil {
		return nil, b.err
	}
	if b.result != nil {
		return b.result, nil
	}
	return mcp.NewToolResultText(b.name + ":" + req.Params.Name), nil
}

func (b *fakeBackend) ReadResource(_ context.Context, req mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reads = append(b.reads, req)
	if b.err != nil {
		return nil, b.err
	}
	return &mcp.ReadResourceResult{Contents: []mcp.ResourceContents{
		mcp.TextResourceContents{URI: req.Params.URI, Text: b.name},
	}}, nil
}

func (b *fakeBackend) GetPrompt(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prompts = append(b.prompts, req)
	if b.err != nil {
		return nil, b.err
	}
	return &mcp.GetPromptResult{Description: b.name + ":" + req.Params.Name}, nil
}

func (b *fakeBackend) Complete(_ context.Context, req mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.complete = append(b.complete, req)
	if b.err != nil {
		return nil, b.err
	}
	return &mcp.CompleteResult{Completion: mcp.Completion{Values: []string{b.name}}}, nil
}

var _ router.Backend = (*fakeBackend)(nil)

// fixture is a router over two backends, github and jira, that both offer a
// tool "search" and a prompt "summary", so the prefix strategy renames
// everything.
type fixture struct {
	router *router.Router
	github *fakeBackend
	jira   *fakeBackend

	mu     sync.Mutex
	opened []string // "clientSession/backend" per open call
	// openErr, when set, fails every open.
	openErr error
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	caps := map[string]*aggregator.Capabilities{
		"github": {
			Tools:     []mcp.Tool{mcp.NewTool("search"), mcp.NewTool("create_pr")},
			Prompts:   []mcp.Prompt{mcp.NewPrompt("summary")},
			Resources: []mcp.Resource{mcp.NewResource("repo://vmcp/readme", "readme")},
		},
		"jira": {
			Tools:             []mcp.Tool{mcp.NewTool("search")},
			Prompts:           []mcp.Prompt{mcp.NewPrompt("summary")},
			ResourceTemplates: []mcp.ResourceTemplate{mcp.NewResourceTemplate("jira://issue/{key}", "issue")},
		},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cat, err := aggregator.Build(config.Aggregation{}, []string{"github", "jira"}, caps, log)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	f := &fixture{github: &fakeBackend{name: "github"}, jira: &fakeBackend{name: "jira"}}
	backends := map[string]*fakeBackend{"github": f.github, "jira": f.jira}
	f.router = router.New(func() *aggregator.Catalogue { return cat }, func(ctx context.Context, backend string) (router.Backend, error) {
		clientSession := ""
		if s := mcpserver.ClientSessionFromContext(ctx); s != nil {
			clientSession = s.SessionID()
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.opened = append(f.opened, clientSession+"/"+backend)
		if f.openErr != nil {
			return nil, f.openErr
		}
		b, ok := backends[backend]
		if !ok {
			t.Errorf("open of unknown backend %q", backend)
			return nil, errors.New("unknown backend")
		}
		return b, nil
	})
	return f
}

func callReq(name string, args map[string]any) mcp.CallToolRequest {
	var req mcp.CallToolRequest
	req.Params.Name = name
	req.Params.Arguments = args
	return req
}

func TestCallToolRoutesToTheOwningBackendUnderTheOriginalName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tool        string
		wantBackend string
		wantName    string
	}{
		{tool: "github_search", wantBackend: "github", wantName: "search"},
		{tool: "jira_search", wantBackend: "jira", wantName: "search"},
		{tool: "github_create_pr", wantBackend: "github", wantName: "create_pr"},
	}
	for _, tt := range tests {
		t.Run(tt.tool, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			res, err := f.router.CallTool(context.Background(), callReq(tt.tool, map[string]any{"q": "bug"}))
			if err != nil {
				t.Fatalf("CallTool: %v", err)
			}
			if got := textOf(res); got != tt.wantBackend+":"+tt.wantName {
				t.Errorf("result = %q, want %q", got, tt.wantBackend+":"+tt.wantName)
			}
			if len(f.opened) != 1 || f.opened[0] != "/"+tt.wantBackend {
				t.Errorf("opened %q, want one session to %s", f.opened, tt.wantBackend)
			}
			owner := map[string]*fakeBackend{"github": f.github, "jira": f.jira}[tt.wantBackend]
			if len(owner.calls) != 1 {
				t.Fatalf("%s got %d calls, want 1", tt.wantBackend, len(owner.calls))
			}
			got := owner.calls[0]
			if got.Params.Name != tt.wantName {
				t.Errorf("backend saw name %q, want %q", got.Params.Name, tt.wantName)
			}
			if args, _ := got.Params.Arguments.(map[string]any); args["q"] != "bug" {
				t.Errorf("arguments = %v, want them passed through", got.Params.Arguments)
			}
		})
	}
}

func TestCallToolUnknownToolIsNotFound(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// "search" is the original name; only post-aggregation names route.
	for _, name := range []string{"nope", "search", ""} {
		_, err := f.router.CallTool(context.Background(), callReq(name, nil))
		if !errors.Is(err, router.ErrNotFound) {
			t.Errorf("CallTool(%q) error = %v, want ErrNotFound", name, err)
		}
		if err != nil && name != "" && !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name the tool %q", err, name)
		}
	}
	if len(f.opened) != 0 {
		t.Errorf("opened %q for unknown tools", f.opened)
	}
}

func TestOpenErrorIsReturned(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.openErr = errors.New(`backend "github": backend unavailable`)
	ctx := context.Background()

	_, err := f.router.CallTool(ctx, callReq("github_search", nil))
	if !errors.Is(err, f.openErr) {
		t.Errorf("CallTool error = %v, want the open error", err)
	}
	var rr mcp.ReadResourceRequest
	rr.Params.URI = "repo://vmcp/readme"
	if _, err := f.router.ReadResource(ctx, "", rr); !errors.Is(err, f.openErr) {
		t.Errorf("ReadResource error = %v, want the open error", err)
	}
	var pr mcp.GetPromptRequest
	pr.Params.Name = "github_summary"
	if _, err := f.router.GetPrompt(ctx, pr); !errors.Is(err, f.openErr) {
		t.Errorf("GetPrompt error = %v, want the open error", err)
	}
	if _, err := f.router.CompletePromptArgument(ctx, "jira_summary", mcp.CompleteArgument{Name: "a"}, mcp.CompleteContext{}); !errors.Is(err, f.openErr) {
		t.Errorf("CompletePromptArgument error = %v, want the open error", err)
	}
	if len(f.github.calls)+len(f.github.reads)+len(f.github.prompts)+len(f.jira.complete) != 0 {
		t.Error("a backend was called although its session could not be opened")
	}
}

func TestCallToolBackendErrors(t *testing.T) {
	t.Parallel()
	t.Run("tool error result is returned unchanged", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		want := mcp.NewToolResultError("repository not found")
		f.github.result = want
		res, err := f.router.CallTool(context.Background(), callReq("github_create_pr", nil))
		if err != nil {
			t.Fatalf("CallTool turned a tool error into error %v", err)
		}
		if res != want || !res.IsError || textOf(res) != "repository not found" {
			t.Errorf("result = %+v, want the backend's IsError result", res)
		}
	})
	t.Run("transport error is returned", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.jira.err = errors.New(`backend "jira": connection reset`)
		_, err := f.router.CallTool(context.Background(), callReq("jira_search", nil))
		if !errors.Is(err, f.jira.err) {
			t.Errorf("error = %v, want the backend's", err)
		}
	})
}

func TestReadResource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		uri         string
		templateKey string
		wantBackend string
		wantErr     error
	}{
		{name: "listed resource", uri: "repo://vmcp/readme", wantBackend: "github"},
		{name: "listed resource wins over the template", uri: "repo://vmcp/readme", templateKey: "jira://issue/{key}", wantBackend: "github"},
		{name: "by template", uri: "jira://issue/ENG-7", templateKey: "jira://issue/{key}", wantBackend: "jira"},
		{name: "unknown uri", uri: "jira://issue/ENG-7", wantErr: router.ErrNotFound},
		{name: "unknown template", uri: "x://y", templateKey: "x://{y}", wantErr: router.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			var req mcp.ReadResourceRequest
			req.Params.URI = tt.uri
			contents, err := f.router.ReadResource(context.Background(), tt.templateKey, req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.uri) {
					t.Errorf("error %q does not name the URI", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadResource: %v", err)
			}
			if len(contents) != 1 {
				t.Fatalf("contents = %v", contents)
			}
			tc, ok := contents[0].(mcp.TextResourceContents)
			if !ok || tc.Text != tt.wantBackend || tc.URI != tt.uri {
				t.Errorf("contents = %+v, want %s's text for %s", contents[0], tt.wantBackend, tt.uri)
			}
			owner := map[string]*fakeBackend{"github": f.github, "jira": f.jira}[tt.wantBackend]
			if len(owner.reads) != 1 || owner.reads[0].Params.URI != tt.uri {
				t.Errorf("%s reads = %+v, want the URI unchanged", tt.wantBackend, owner.reads)
			}
		})
	}
}

// mcp-go puts a template's URI variables in Params.Arguments; they are not
// part of resources/read and must not reach the backend.
func TestReadResourceByTemplateSendsNoArguments(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var req mcp.ReadResourceRequest
	req.Params.URI = "jira://issue/ENG-7"
	req.Params.Arguments = map[string]any{"key": []string{"ENG-7"}}
	if _, err := f.router.ReadResource(context.Background(), "jira://issue/{key}", req); err != nil {
		t.Fatalf("ReadResource: %v", err)
	}
	f.jira.mu.Lock()
	defer f.jira.mu.Unlock()
	if len(f.jira.reads) != 1 {
		t.Fatalf("jira reads = %+v, want one", f.jira.reads)
	}
	if got := f.jira.reads[0].Params; got.Arguments != nil || got.URI != req.Params.URI {
		t.Errorf("backend got params %+v, want the URI and no arguments", got)
	}
}

func TestReadResourceBackendError(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.github.err = errors.New("gone")
	var req mcp.ReadResourceRequest
	req.Params.URI = "repo://vmcp/readme"
	if _, err := f.router.ReadResource(context.Background(), "", req); !errors.Is(err, f.github.err) {
		t.Errorf("error = %v, want the backend's", err)
	}
}

func TestGetPromptRewritesTheName(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var req mcp.GetPromptRequest
	req.Params.Name = "jira_summary"
	req.Params.Arguments = map[string]string{"issue": "ENG-1"}
	res, err := f.router.GetPrompt(context.Background(), req)
	if err != nil {
		t.Fatalf("GetPrompt: %v", err)
	}
	if res.Description != "jira:summary" {
		t.Errorf("result = %q, want jira's summary", res.Description)
	}
	if len(f.jira.prompts) != 1 || f.jira.prompts[0].Params.Arguments["issue"] != "ENG-1" {
		t.Errorf("jira prompts = %+v, want the arguments passed through", f.jira.prompts)
	}
	if len(f.github.prompts) != 0 {
		t.Error("github got the prompt")
	}

	req.Params.Name = "summary"
	if _, err := f.router.GetPrompt(context.Background(), req); !errors.Is(err, router.ErrNotFound) {
		t.Errorf("GetPrompt(original name) error = %v, want ErrNotFound", err)
	}
}

func TestCompletePromptArgumentUsesTheOriginalName(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arg := mcp.CompleteArgument{Name: "issue", Value: "EN"}
	cc := mcp.CompleteContext{Arguments: map[string]string{"project": "ENG"}}
	got, err := f.router.CompletePromptArgument(context.Background(), "jira_summary", arg, cc)
	if err != nil {
		t.Fatalf("CompletePromptArgument: %v", err)
	}
	if len(got.Values) != 1 || got.Values[0] != "jira" {
		t.Errorf("completion = %v, want jira's", got.Values)
	}
	if len(f.jira.complete) != 1 {
		t.Fatalf("jira got %d completions, want 1", len(f.jira.complete))
	}
	p := f.jira.complete[0].Params
	ref, ok := p.Ref.(mcp.PromptReference)
	if !ok || ref.Type != "ref/prompt" || ref.Name != "summary" {
		t.Errorf("ref = %#v, want PromptReference to the original name summary", p.Ref)
	}
	if p.Argument != arg || p.Context.Arguments["project"] != "ENG" {
		t.Errorf("argument %+v, context %+v; want them passed through", p.Argument, p.Context)
	}

	if _, err := f.router.CompletePromptArgument(context.Background(), "summary", arg, cc); !errors.Is(err, router.ErrNotFound) {
		t.Errorf("unknown prompt error = %v, want ErrNotFound", err)
	}
}

func TestCompleteResourceArgument(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uri         string
		wantBackend string
	}{
		{uri: "jira://issue/{key}", wantBackend: "jira"},
		{uri: "repo://vmcp/readme", wantBackend: "github"},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			arg := mcp.CompleteArgument{Name: "key", Value: "ENG-"}
			got, err := f.router.CompleteResourceArgument(context.Background(), tt.uri, arg, mcp.CompleteContext{})
			if err != nil {
				t.Fatalf("CompleteResourceArgument: %v", err)
			}
			if len(got.Values) != 1 || got.Values[0] != tt.wantBackend {
				t.Errorf("completion = %v, want %s's", got.Values, tt.wantBackend)
			}
			owner := map[string]*fakeBackend{"github": f.github, "jira": f.jira}[tt.wantBackend]
			if len(owner.complete) != 1 {
				t.Fatalf("%s got %d completions", tt.wantBackend, len(owner.complete))
			}
			ref, ok := owner.complete[0].Params.Ref.(mcp.ResourceReference)
			if !ok || ref.Type != "ref/resource" || ref.URI != tt.uri {
				t.Errorf("ref = %#v, want ResourceReference %s", owner.complete[0].Params.Ref, tt.uri)
			}
		})
	}
	f := newFixture(t)
	if _, err := f.router.CompleteResourceArgument(context.Background(), "x://{y}", mcp.CompleteArgument{}, mcp.CompleteContext{}); !errors.Is(err, router.ErrNotFound) {
		t.Errorf("unknown template error = %v, want ErrNotFound", err)
	}
}

// clientSession is the part of an mcp-go client session the router reads.
type clientSession struct{ id string }

func (s clientSession) Initialize()                                         {}
func (s clientSession) Initialized() bool                                   { return true }
func (s clientSession) NotificationChannel() chan<- mcp.JSONRPCNotification { return nil }
func (s clientSession) SessionID() string                                   { return s.id }

func TestOpenGetsTheClientSession(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	srv := mcpserver.NewMCPServer("test", "1")
	ctx := srv.WithContext(context.Background(), clientSession{id: "client-42"})

	if _, err := f.router.CallTool(ctx, callReq("jira_search", nil)); err != nil {
		t.Fatal(err)
	}
	var pr mcp.GetPromptRequest
	pr.Params.Name = "github_summary"
	if _, err := f.router.GetPrompt(ctx, pr); err != nil {
		t.Fatal(err)
	}
	want := []string{"client-42/jira", "client-42/github"}
	if strings.Join(f.opened, ",") != strings.Join(want, ",") {
		t.Errorf("opened %q, want %q", f.opened, want)
	}
}

func TestRouterReadsTheCurrentCatalogue(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	agg := aggregator.New(config.Aggregation{}, []string{"a"}, log)
	b := &fakeBackend{name: "a"}
	r := router.New(agg.Catalogue, func(context.Context, string) (router.Backend, error) { return b, nil })

	if _, err := r.CallTool(context.Background(), callReq("a_echo", nil)); !errors.Is(err, router.ErrNotFound) {
		t.Fatalf("before discovery: error = %v, want ErrNotFound", err)
	}
	if _, err := agg.Update("a", &aggregator.Capabilities{Tools: []mcp.Tool{mcp.NewTool("echo")}}); err != nil {
		t.Fatal(err)
	}
	res, err := r.CallTool(context.Background(), callReq("a_echo", nil))
	if err != nil || textOf(res) != "a:echo" {
		t.Errorf("after discovery: %v, %v; want a:echo", textOf(res), err)
	}
}

// TestCallToolOfAHiddenBackend: a tool whose backend is hidden while
// unhealthy is answered with an error naming the backend, not as unknown.
func TestCallToolOfAHiddenBackend(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	agg := aggregator.New(config.Aggregation{}, []string{"a", "b"}, log)
	b := &fakeBackend{name: "a"}
	r := router.New(agg.Catalogue, func(context.Context, string) (router.Backend, error) { return b, nil })
	for _, name := range []string{"a", "b"} {
		if _, err := agg.Update(name, &aggregator.Capabilities{Tools: []mcp.Tool{mcp.NewTool("echo")}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Unhealthy("a_echo"); err != nil {
		t.Errorf("Unhealthy(a_echo) before hiding = %v", err)
	}
	if _, _, err := agg.Hide("a", true); err != nil {
		t.Fatal(err)
	}
	_, err := r.CallTool(context.Background(), callReq("a_echo", nil))
	if !errors.Is(err, router.ErrUnhealthy) || errors.Is(err, router.ErrNotFound) || err.Error() != `backend "a" is unavailable (unhealthy)` {
		t.Errorf("CallTool(a_echo) of hidden a: %v, want ErrUnhealthy naming a", err)
	}
	if got := r.Unhealthy("a_echo"); got == nil || got.Error() != err.Error() {
		t.Errorf("Unhealthy(a_echo) = %v, want %v", got, err)
	}
	for _, name := range []string{"b_echo", "nope"} {
		if err := r.Unhealthy(name); err != nil {
			t.Errorf("Unhealthy(%s) = %v, want nil", name, err)
		}
	}
	if _, err := r.CallTool(context.Background(), callReq("nope", nil)); !errors.Is(err, router.ErrNotFound) {
		t.Errorf("CallTool(nope) = %v, want ErrNotFound", err)
	}
	if len(b.calls) != 0 {
		t.Errorf("the backend got %d calls", len(b.calls))
	}
}

func textOf(res *mcp.CallToolResult) string {
	if res == nil || len(res.Content) == 0 {
		return ""
	}
	if tc, ok := res.Content[0].(mcp.TextContent); ok {
		return tc.Text
	}
	return ""
}

func TestResourceBackend(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		uri, want string
		ok        bool
	}{
		{"repo://vmcp/readme", "github", true},
		{"jira://issue/ABC-1", "jira", true},
		{"jira://other/ABC-1", "", false},
	} {
		got, ok := f.router.ResourceBackend(tc.uri)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ResourceBackend(%q) = %q, %v; want %q, %v", tc.uri, got, ok, tc.want, tc.ok)
		}
	}
}
