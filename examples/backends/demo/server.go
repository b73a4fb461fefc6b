package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// version is reported as serverInfo.version.
const version = "0.1.0"

// greetNames are the completion values offered for the who argument of the
// greet prompt.
var greetNames = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}

// backend holds what the handlers of one demo server share.
type backend struct {
	// name is the --name of the backend.
	name string
	// flavor is weather or notes.
	flavor string
	// srv is the MCP server the runtime tools (add_tool, remove_tool) edit.
	srv *server.MCPServer
	// toolsMu serialises add_tool and remove_tool.
	toolsMu sync.Mutex
	// notes is the in-memory note store of the notes flavor; nil otherwise.
	notes *noteStore
	// stats counts sessions and cancellations and tracks subscriptions.
	stats sessionStats
	// counter is the value of the counter resource.
	counter atomic.Int64
}

// newServer builds the demo MCP server described by cfg: the common tools,
// the flavor's tools, cfg.tools synthetic tools, the resources and the greet
// prompt. Tools, resources and prompts all advertise listChanged.
func newServer(cfg config) (*server.MCPServer, error) {
	if cfg.flavor != flavorWeather && cfg.flavor != flavorNotes {
		return nil, fmt.Errorf("unknown flavor %q", cfg.flavor)
	}
	if cfg.tools < 0 {
		return nil, errors.New("negative number of synthetic tools")
	}

	b := &backend{name: cfg.name, flavor: cfg.flavor}
	b.stats.subs = map[string]map[string]struct{}{}
	b.srv = server.NewMCPServer(cfg.name, version,
		server.WithTitle(fmt.Sprintf("vmcp demo backend %q (%s)", cfg.name, cfg.flavor)),
		server.WithInstructions(fmt.Sprintf(
			"Demo backend %s with the %s tool set; it also offers echo, add, fail, sleep, whoami, add_tool and remove_tool.",
			cfg.name, cfg.flavor)),
		server.WithToolCapabilities(true),
		server.WithResourceCapabilities(true, true),
		server.WithPromptCapabilities(true),
		server.WithCompletions(),
		server.WithPromptCompletionProvider(greetCompletions{}),
		server.WithLogging(),
		server.WithHooks(b.stats.hooks()),
		server.WithRecovery(),
	)

	tools := append(b.commonTools(), b.relayTools()...)
	switch cfg.flavor {
	case flavorWeather:
		tools = append(tools, b.weatherTools()...)
	case flavorNotes:
		b.notes = newNoteStore()
		tools = append(tools, b.notesTools()...)
	}
	tools = append(tools, syntheticTools(cfg.name, cfg.tools)...)
	b.srv.AddTools(tools...)

	b.addResources()
	b.addCounter()
	b.addPrompts()
	b.srv.AddNotificationHandler(mcp.MethodNotificationRootsListChanged, b.rootsChanged)
	return b.srv, nil
}

// headersKey is the context key under which captureHeaders stores the
// headers of the HTTP request that carried an MCP message.
type headersKey struct{}

// captureHeaders puts the request's headers into ctx. It is used as both
// the streamable HTTP and the SSE context function.
func captureHeaders(ctx context.Context, r *http.Request) context.Context {
	return context.WithValue(ctx, headersKey{}, r.Header.Clone())
}

// requestHeader returns the named header of the HTTP request behind ctx, or
// "" when there is none (stdio, in-process) or the header was not sent.
func requestHeader(ctx context.Context, name string) string {
	h, _ := ctx.Value(headersKey{}).(http.Header)
	return h.Get(name)
}

// readmeURI returns the URI of the static readme resource.
func (b *backend) readmeURI() string { return "demo://" + b.name + "/readme" }

// itemsPrefix returns the URI prefix of the items resource template.
func (b *backend) itemsPrefix() string { return "demo://" + b.name + "/items/" }

// addResources registers the readme resource and the items template.
func (b *backend) addResources() {
	readme := mcp.NewResource(b.readmeURI(), "readme",
		mcp.WithResourceTitle("About the "+b.name+" demo backend"),
		mcp.WithResourceDescription("What this demo backend offers, in Markdown."),
		mcp.WithMIMEType("text/markdown"),
	)
	b.srv.AddResource(readme, func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		return []mcp.ResourceContents{mcp.TextResourceContents{
			URI:      b.readmeURI(),
			MIMEType: "text/markdown",
			Text:     b.readme(),
		}}, nil
	})

	items := mcp.NewResourceTemplate(b.itemsPrefix()+"{id}", "item",
		mcp.WithTemplateTitle("Item of the "+b.name+" demo backend"),
		mcp.WithTemplateDescription("A demo item; any id resolves to a one-line text."),
		mcp.WithTemplateMIMEType("text/plain"),
	)
	b.srv.AddResourceTemplate(items, func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		id := templateArg(req.Params.Arguments, "id")
		if id == "" {
			id = strings.TrimPrefix(req.Params.URI, b.itemsPrefix())
		}
		if err := b.slow(ctx, id); err != nil {
			return nil, err
		}
		return []mcp.ResourceContents{mcp.TextResourceContents{
			URI:      req.Params.URI,
			MIMEType: "text/plain",
			Text:     fmt.Sprintf("item %s from %s", id, b.name),
		}}, nil
	})
}

// templateArg returns a URI template variable as mcp-go hands it to
// template handlers (a string or a one-element []string).
func templateArg(args map[string]any, key string) string {
	switch v := args[key].(type) {
	case string:
		return v
	case []string:
		if len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// readme renders the Markdown of the readme resource.
func (b *backend) readme() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# %s\n\nA demo MCP backend shipped with vmcp (flavor: %s). Its data is made up.\n\n## Tools\n\n", b.name, b.flavor)
	switch b.flavor {
	case flavorWeather:
		sb.WriteString("- `search`: find weather stations by name, city, country or ICAO code\n")
		sb.WriteString("- `forecast`: a made-up forecast for a city (`city`, optional `days`)\n")
	case flavorNotes:
		sb.WriteString("- `search`: search the in-memory notes\n")
		sb.WriteString("- `create_note`: add a note (`title`, `body`)\n")
	}
	sb.WriteString("- `echo`, `add`, `fail`, `sleep`, `whoami`: test helpers\n")
	sb.WriteString("- `add_tool`, `remove_tool`: change the tool list at runtime\n")
	sb.WriteString("- `sample`, `elicit`, `progress`, `log`, `touch`, `stats`: talk back to the client (sampling, elicitation, progress, log messages, resource updates)\n")
	fmt.Fprintf(&sb, "\n## Resources\n\n- `%s`: this page\n- `%s`: a number `touch` increments (subscribable)\n- `%s{id}`: one line per item (`slow-<ms>` answers after that many milliseconds)\n", b.readmeURI(), b.counterURI(), b.itemsPrefix())
	sb.WriteString("\n## Prompts\n\n- `greet`: says hello to `who` (with completions; `slow-<ms>` answers after that many milliseconds)\n")
	return sb.String()
}

// addPrompts registers the greet prompt.
func (b *backend) addPrompts() {
	greet := mcp.NewPrompt("greet",
		mcp.WithPromptTitle("Greet someone"),
		mcp.WithPromptDescription("A user message greeting someone from this backend."),
		mcp.WithArgument("who",
			mcp.ArgumentDescription("Who to greet, for example alice or bob."),
			mcp.RequiredArgument(),
		),
	)
	b.srv.AddPrompt(greet, func(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		who := req.Params.Arguments["who"]
		if who == "" {
			return nil, errors.New(`argument "who" is required`)
		}
		if err := b.slow(ctx, who); err != nil {
			return nil, err
		}
		return mcp.NewGetPromptResult("Greeting from "+b.name, []mcp.PromptMessage{
			mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(fmt.Sprintf("Hello %s from %s", who, b.name))),
		}), nil
	})
}

// greetCompletions completes the who argument of the greet prompt from
// greetNames; anything else gets no completions.
type greetCompletions struct{}

// CompletePromptArgument implements server.PromptCompletionProvider.
func (greetCompletions) CompletePromptArgument(_ context.Context, prompt string, arg mcp.CompleteArgument, _ mcp.CompleteContext) (*mcp.Completion, error) {
	values := []string{}
	if prompt == "greet" && arg.Name == "who" {
		prefix := strings.ToLower(arg.Value)
		for _, n := range greetNames {
			if strings.HasPrefix(n, prefix) {
				values = append(values, n)
			}
		}
	}
	return &mcp.Completion{Values: values, Total: len(values)}, nil
}
