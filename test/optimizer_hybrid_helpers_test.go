package test

// Helpers of the hybrid find_tool tests (optimizer_hybrid_test.go): a
// backend of tools of distinct purposes written with mcp-go, `vmcp serve`
// with the optimizer's embeddings pointing at embed.mjs, and readers of
// /readyz's optimizer progress and of /metrics' fallback counter.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/optimizer"
)

// The hybrid backend's server context, as it says in initialize: the
// optimizer embeds it with every tool. None of its words (nor the tools')
// is in "make a ppt slide deck".
const (
	hybridBackendName  = "workspace"
	hybridServerTitle  = "Workspace Tools"
	hybridServerDesc   = "Everyday tools for office work"
	hybridInstructions = "Use these tools for everyday work: documents, messages, travel and data. " +
		"Always confirm with the user before sending anything on their behalf."
)

// hybridTools are the backend's tools, of distinct purposes. send_email
// and translate_text have several parameters; the others one.
func hybridTools() []mcp.Tool {
	str := func(name string) mcp.ToolOption { return mcp.WithString(name) }
	return []mcp.Tool{
		mcp.NewTool("create_presentation", mcp.WithDescription("Create a new PowerPoint file"), str("title")),
		mcp.NewTool("get_weather", mcp.WithDescription("Get the current weather for a city"), str("city")),
		mcp.NewTool("search_news", mcp.WithDescription("Search recent news articles about a company or a topic"), str("query")),
		mcp.NewTool("send_email", mcp.WithDescription("Send an email message"),
			str("to"), str("cc"), str("bcc"), str("subject"), str("body")),
		mcp.NewTool("translate_text", mcp.WithDescription("Translate text into another language"),
			str("text"), str("source_language"), str("target_language")),
		mcp.NewTool("convert_currency", mcp.WithDescription("Convert an amount of money between currencies"), str("amount")),
		mcp.NewTool("create_calendar_event", mcp.WithDescription("Schedule a meeting in the calendar"), str("when")),
		mcp.NewTool("list_files", mcp.WithDescription("List the files in a directory"), str("path")),
		mcp.NewTool("run_sql_query", mcp.WithDescription("Run a SQL query against the database"), str("sql")),
		mcp.NewTool("create_github_issue", mcp.WithDescription("Open an issue in a GitHub repository"), str("repo")),
	}
}

// hybridExtraTool is the tool a test adds at runtime (a second catalogue).
func hybridExtraTool() mcp.Tool {
	return mcp.NewTool("book_flight", mcp.WithDescription("Book a plane ticket to a destination"), mcp.WithString("destination"))
}

// hybridServer is the optimizer's view of the backend.
func hybridServer() *optimizer.Server {
	return &optimizer.Server{Name: hybridBackendName, Title: hybridServerTitle, Description: hybridServerDesc,
		Instructions: hybridInstructions}
}

// startHybridBackend serves hybridTools over streamable HTTP from the test
// process and returns the server (to add a tool) and its endpoint.
func startHybridBackend(t *testing.T) (*mcpserver.MCPServer, string) {
	t.Helper()
	srv := mcpserver.NewMCPServer(hybridBackendName, "1", mcpserver.WithToolCapabilities(true),
		mcpserver.WithTitle(hybridServerTitle), mcpserver.WithDescription(hybridServerDesc),
		mcpserver.WithInstructions(hybridInstructions))
	for _, tl := range hybridTools() {
		srv.AddTool(tl, func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText(req.Params.Name + " done"), nil
		})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{ReadHeaderTimeout: 5 * time.Second}
	h := mcpserver.NewStreamableHTTPServer(srv, mcpserver.WithStreamableHTTPServer(hs))
	hs.Handler = h
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = hs.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			_ = hs.Close()
		}
		<-served
	})
	return srv, "http://" + ln.Addr().String() + "/mcp"
}

// hybridConfig is the vmcp.yaml of a hybrid test: the backend unprefixed
// (priority), the optimizer with embeddings at embedURL (dims 0: the
// model's; timeout 300ms), Prometheus metrics, and Redis when redisAddr is
// set. name is the config name (Redis keys are per name).
func hybridConfig(t *testing.T, name, backendURL, embedURL string, dims int, redisAddr string) string {
	t.Helper()
	redisBlock := ""
	if redisAddr != "" {
		redisBlock = fmt.Sprintf("redis: {address: %q}\n", redisAddr)
	}
	path := filepath.Join(t.TempDir(), "vmcp.yaml")
	writeFile(t, path, fmt.Sprintf(`name: %s
server: {host: 127.0.0.1, port: 0, drainGrace: 0s, shutdownTimeout: 5s}
backends:
  - {name: %s, transport: streamable-http, url: %q}
aggregation: {conflictResolution: priority}
optimizer:
  enabled: true
  maxToolsToReturn: 5
  embeddings: {url: %q, model: use-lite, dimensions: %d, batchSize: 4, timeout: %s}
telemetry: {prometheus: true}
%s`, name, hybridBackendName, backendURL, embedURL, dims, hybridQueryTimeout, redisBlock))
	return path
}

// hybridQueryTimeout is optimizer.embeddings.timeout in the hybrid tests.
const hybridQueryTimeout = 300 * time.Millisecond

// hybridVMCP is `vmcp serve` of a hybrid test.
type hybridVMCP struct {
	*binaryVMCP
	Base string // http://127.0.0.1:PORT
}

// startHybridVMCP runs `vmcp serve --config cfgPath` (stopped when t ends)
// and waits until /readyz says ready.
func startHybridVMCP(t *testing.T, cfgPath string) *hybridVMCP {
	t.Helper()
	b := startBinaryVMCP(t, cfgPath)
	u, err := url.Parse(b.URL)
	if err != nil {
		t.Fatal(err)
	}
	v := &hybridVMCP{binaryVMCP: b, Base: u.Scheme + "://" + u.Host}
	eventually(t, 20*time.Second, "vmcp is ready", func() error {
		if st, r := v.readyz(t); st != http.StatusOK || !r.Ready {
			return fmt.Errorf("/readyz %d %+v", st, r)
		}
		return nil
	})
	return v
}

// hybridReadyz is /readyz with the optimizer's progress.
type hybridReadyz struct {
	Ready     bool `json:"ready"`
	Optimizer *struct {
		Tools    int `json:"tools"`
		Embedded int `json:"embedded"`
	} `json:"optimizer"`
}

func (v *hybridVMCP) readyz(t *testing.T) (int, hybridReadyz) {
	t.Helper()
	status, body := httpGet(t, v.Base+"/readyz")
	var r hybridReadyz
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("/readyz body is not JSON: %v\n%s", err, body)
	}
	return status, r
}

// waitEmbedded polls /readyz until the optimizer has tools tools, all
// embedded, failing t if /readyz ever says not ready (embedding runs in the
// background) or has no optimizer progress. It returns the progress values
// of embedded it saw.
func (v *hybridVMCP) waitEmbedded(t *testing.T, tools int, within time.Duration) []int {
	t.Helper()
	var seen []int
	eventually(t, within, fmt.Sprintf("/readyz shows %d tools embedded", tools), func() error {
		st, r := v.readyz(t)
		if st != http.StatusOK || !r.Ready {
			t.Fatalf("/readyz = %d %+v while the tools are embedded; want ready throughout", st, r)
		}
		if r.Optimizer == nil {
			t.Fatalf("/readyz has no optimizer progress: %+v", r)
		}
		if len(seen) == 0 || seen[len(seen)-1] != r.Optimizer.Embedded {
			seen = append(seen, r.Optimizer.Embedded)
		}
		if r.Optimizer.Tools != tools || r.Optimizer.Embedded != tools {
			return fmt.Errorf("optimizer %+v", *r.Optimizer)
		}
		return nil
	})
	return seen
}

var fallbackLine = regexp.MustCompile(`(?m)^vmcp_optimizer_search_fallbacks_total\{reason="([a-z_]+)"\} (\d+)$`)

// fallbacks reads vmcp_optimizer_search_fallbacks_total by reason from
// /metrics.
func (v *hybridVMCP) fallbacks(t *testing.T) map[string]int {
	t.Helper()
	status, body := httpGet(t, v.Base+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics: status %d", status)
	}
	out := map[string]int{}
	for _, m := range fallbackLine.FindAllStringSubmatch(string(body), -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] = n
	}
	return out
}

// documentInputs is what the embedder was asked besides the queries
// (queryKeys: embedInputKey of each query text): the tool texts, by key.
func documentInputs(s embedderStats, queries map[string]bool) map[string]int {
	out := map[string]int{}
	for k, n := range s.ByInput {
		if !queries[k] {
			out[k] = n
		}
	}
	return out
}

// hybridQueries remembers the query texts a test sent, to tell them from
// tool texts in the embedder's stats.
type hybridQueries map[string]bool

// find calls find_tool with desc through c, remembering the query.
func (q hybridQueries) find(t *testing.T, c interface {
	CallTool(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error)
}, desc string) ([]string, time.Duration) {
	t.Helper()
	q[embedInputKey(desc)] = true
	req := mcp.CallToolRequest{}
	req.Params.Name = "find_tool"
	req.Params.Arguments = map[string]any{"tool_description": desc}
	start := time.Now()
	res, err := c.CallTool(ctxT(t, 15*time.Second), req)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("find_tool(%q): %v", desc, err)
	}
	if res.IsError {
		t.Fatalf("find_tool(%q): error result %s", desc, resultText(res))
	}
	var found foundTools
	if err := json.Unmarshal([]byte(resultText(res)), &found); err != nil {
		t.Fatalf("find_tool(%q): %v: %s", desc, err, resultText(res))
	}
	return found.names(), took
}

// toolTexts maps the embedder's key of every text the optimizer may embed
// for each tool (with server) to the tool's name and the text. DocumentText
// lists a tool's parameter names in the order Go iterates its schema's map,
// so a tool with several parameters has one text per order: all of them
// are listed.
func toolTexts(tools []mcp.Tool, server *optimizer.Server) map[string][2]string {
	out := map[string][2]string{}
	for i := range tools {
		text := optimizer.DocumentText(&tools[i], server)
		var params []string
		for p := range tools[i].InputSchema.Properties {
			params = append(params, strings.ReplaceAll(p, "_", " "))
		}
		perms := permutations(params)
		used := ""
		for _, p := range perms {
			if s := strings.Join(p, ", "); strings.Contains(text, s) {
				used = s
				break
			}
		}
		for _, p := range perms {
			variant := text
			if used != "" {
				variant = strings.Replace(text, used, strings.Join(p, ", "), 1)
			}
			out[embedInputKey(variant)] = [2]string{tools[i].Name, variant}
		}
	}
	return out
}

// permutations returns every order of s.
func permutations(s []string) [][]string {
	if len(s) <= 1 {
		return [][]string{slices.Clone(s)}
	}
	var out [][]string
	for i := range s {
		rest := append(slices.Clone(s[:i]), s[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]string{s[i]}, p...))
		}
	}
	return out
}

// embeddedPerTool sums the document inputs per tool name, and lists the
// inputs that are no tool's text.
func embeddedPerTool(inputs map[string]int, texts map[string][2]string) (map[string]int, []string) {
	per := map[string]int{}
	var unknown []string
	for k, n := range inputs {
		if tt, ok := texts[k]; ok {
			per[tt[0]] += n
		} else {
			unknown = append(unknown, k[:12])
		}
	}
	return per, unknown
}

// describeInputs lists the texts of inputs, for messages.
func describeInputs(inputs map[string]int, texts map[string][2]string) string {
	var lines []string
	for k, n := range inputs {
		tt, ok := texts[k]
		if !ok {
			tt[1] = "(not a tool text, key " + k[:12] + ")"
		}
		lines = append(lines, fmt.Sprintf("\n  %d× %q", n, tt[1]))
	}
	slices.Sort(lines)
	return strings.Join(lines, "")
}

// newInputs returns the inputs of after that before has not (or fewer
// times), with how many more times.
func newInputs(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for k, n := range after {
		if n > before[k] {
			out[k] = n - before[k]
		}
	}
	return out
}

// inputsOf returns the inputs that are texts of the tools named.
func inputsOf(inputs map[string]int, texts map[string][2]string, names map[string]bool) map[string]int {
	out := map[string]int{}
	for k, n := range inputs {
		if tt, ok := texts[k]; !ok || names[tt[0]] {
			out[k] = n
		}
	}
	return out
}
