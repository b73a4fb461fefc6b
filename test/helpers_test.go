// Package test holds vmcp's end-to-end tests: they run vmcp (in process
// through server.New, and as the built binary) in front of real backend
// processes over streamable HTTP, SSE and stdio, and drive it with real MCP
// clients: mcp-go's and the official TypeScript SDK's (test/js/client.mjs).
package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/server"
)

// Paths filled by TestMain.
var (
	// repoRoot is the module root (the parent of test/).
	repoRoot string
	// demoBin and vmcpBin are the binaries built once for all tests.
	demoBin, vmcpBin string
	// everythingJS is server-everything's entry point under test/js.
	everythingJS string
	// clientJS is test/js/client.mjs.
	clientJS string
	// nodeMissing says why the Node-based tests cannot run, or "".
	nodeMissing string
)

// protocolVersion is the session-based MCP revision the mcp-go test
// clients ask for, so server-initiated notifications arrive on the GET
// stream of the session.
const protocolVersion = mcp.ProtocolVersion20251125

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	repoRoot = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "vmcp-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	demoBin = filepath.Join(dir, "demo")
	vmcpBin = filepath.Join(dir, "vmcp")
	for pkg, out := range map[string]string{"./examples/backends/demo": demoBin, "./cmd/vmcp": vmcpBin} {
		if err := goBuild(pkg, out); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
	}

	jsDir := filepath.Join(repoRoot, "test", "js")
	clientJS = filepath.Join(jsDir, "client.mjs")
	everythingJS = filepath.Join(jsDir, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")
	if _, err := exec.LookPath("node"); err != nil {
		nodeMissing = "node is not on PATH (install Node.js >= 20)"
	} else if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "@modelcontextprotocol", "sdk")); err != nil {
		nodeMissing = "test/js/node_modules is missing (run `npm ci` in test/js)"
	} else if _, err := os.Stat(everythingJS); err != nil {
		nodeMissing = "server-everything is missing from test/js/node_modules (run `npm ci` in test/js)"
	}
	return m.Run()
}

// goBuild builds package pkg of the module into out.
func goBuild(pkg, out string) error {
	// go test puts the go command of its toolchain first on PATH.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = repoRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// needNode stops t when Node.js or test/js/node_modules is missing
// (missingPrerequisite).
func needNode(t *testing.T) {
	t.Helper()
	if nodeMissing != "" {
		missingPrerequisite(t, "Node-based test: "+nodeMissing)
	}
}

// skipMissingEnv names the variable that lets tests whose prerequisites
// are not installed skip instead of fail.
const skipMissingEnv = "VMCP_TEST_SKIP_MISSING"

// missingPrerequisite stops a test whose prerequisite (redis-server,
// Node.js, the npm packages) is not installed. It fails, saying what to
// install, so that a plain `go test ./...` (which shows skips only with
// -v) does not pass while testing less than it says; with
// VMCP_TEST_SKIP_MISSING=1 the test is skipped instead.
func missingPrerequisite(t testing.TB, what string) {
	t.Helper()
	if os.Getenv(skipMissingEnv) == "1" {
		t.Skip("skipping " + what)
	}
	t.Fatal("cannot run " + what + ". `bash .ci/run` installs every prerequisite and runs the tests; " +
		skipMissingEnv + "=1 skips the tests that need what is missing")
}

// uniqueName returns base with a random suffix; it marks processes so a
// test can find them in /proc.
func uniqueName(base string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return base + "-" + hex.EncodeToString(b)
}

// syncBuffer is a goroutine-safe bytes.Buffer.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// maxDump bounds how much of a log dumpOnFailure shows: the end.
const maxDump = 16 << 10

// dumpOnFailure logs what w collected (named what) if t fails. Register it
// before anything that writes to w, so it runs after their cleanups.
func dumpOnFailure(t testing.TB, what string, w *syncBuffer) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		text := w.String()
		if len(text) > maxDump {
			text = fmt.Sprintf("[... %d bytes left out ...]\n%s", len(text)-maxDump, text[len(text)-maxDump:])
		}
		t.Logf("--- %s ---\n%s", what, text)
	})
}

// demoBackend is a demo MCP server running as a child process of the test.
type demoBackend struct {
	Name string // --name, unique per test run
	URL  string // the announced endpoint
	cmd  *exec.Cmd
	done chan struct{}
}

// startDemo starts the demo backend with the given flavor over transport
// (streamable-http or sse) on addr ("" for 127.0.0.1:0) and waits for its
// LISTENING line. The process is stopped when t ends.
func startDemo(t *testing.T, base, flavor, transportName, addr string) *demoBackend {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	d := &demoBackend{Name: uniqueName(base), done: make(chan struct{})}
	logs := &syncBuffer{}
	dumpOnFailure(t, "demo "+d.Name+" stderr", logs)
	d.cmd = exec.Command(demoBin, "--name", d.Name, "--flavor", flavor, "--transport", transportName, "--addr", addr)
	d.cmd.Stderr = logs
	url, err := startAnnounced(t, d.cmd, d.done, d.Stop, "LISTENING ")
	if err != nil {
		t.Fatalf("demo backend %s: %v; stderr:\n%s", d.Name, err, logs.String())
	}
	d.URL = url
	return d
}

// startAnnounced starts cmd, closes done when it exits, registers stop as a
// cleanup, and waits up to 20s for its first stdout line, which must start
// with prefix; it returns the rest of that line. The rest of stdout is
// drained so the child never blocks on it. On failure cmd is stopped.
func startAnnounced(t testing.TB, cmd *exec.Cmd, done chan struct{}, stop func(), prefix string) (string, error) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start: %w", err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(stop)
	select {
	case line, ok := <-lines:
		rest, found := strings.CutPrefix(line, prefix)
		if !ok || !found {
			stop()
			return "", fmt.Errorf("did not announce itself with %q (stdout %q)", prefix, line)
		}
		return rest, nil
	case <-time.After(20 * time.Second):
		stop()
		return "", fmt.Errorf("did not print %q within 20s", prefix)
	}
}

// Kill ends the backend at once (SIGKILL), as a crash would.
func (d *demoBackend) Kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// Stop ends the backend gracefully, or kills it after 5s.
func (d *demoBackend) Stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		d.Kill()
	}
}

// demoToolCount is how many tools a demo backend of either flavor offers
// (common, relay and flavor tools) before add_tool.
const demoToolCount = 15

// vmcp is an in-process vmcp server.
type vmcp struct {
	Srv  *server.Server
	Base string // http://HOST:PORT
	URL  string // the MCP endpoint
	Logs *syncBuffer
}

// startVMCP parses yamlText (as a user's vmcp.yaml; server.port should be
// 0), builds and starts the server with env as its environment, and shuts
// it down when t ends. The log is shown if t fails.
func startVMCP(t *testing.T, yamlText string, env map[string]string) *vmcp {
	t.Helper()
	getenv := func(k string) (string, bool) { s, ok := env[k]; return s, ok }
	v, err := launchVMCP(t, yamlText, env, server.Options{Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// startVMCPWith is startVMCP with server options and no environment.
func startVMCPWith(t *testing.T, yamlText string, opts server.Options) *vmcp {
	t.Helper()
	v, err := launchVMCP(t, yamlText, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// launchVMCP parses yamlText with env as the environment of its
// references, builds the server with opts (Logger and Version are set
// here), starts it and shuts it down when t ends; the log is shown if t
// fails. A config or server.New error fails t; Start's error is returned
// (after cleaning up), so a caller may retry. server.drainGrace is 0
// unless yamlText sets it.
func launchVMCP(t *testing.T, yamlText string, env map[string]string, opts server.Options) (*vmcp, error) {
	t.Helper()
	v := &vmcp{Logs: &syncBuffer{}}
	dumpOnFailure(t, "vmcp log", v.Logs)
	cfg, err := config.Parse([]byte(yamlText), func(k string) (string, bool) { s, ok := env[k]; return s, ok })
	if err != nil {
		t.Fatalf("config.Parse: %v\n%s", err, yamlText)
	}
	if !strings.Contains(yamlText, "drainGrace") {
		// No load balancer watches these servers: each test's Shutdown
		// need not wait the default grace.
		cfg.Server.DrainGrace = 0
	}
	opts.Logger = slog.New(slog.NewTextHandler(v.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Version = "e2e"
	v.Srv, err = server.New(*cfg, opts)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := v.Srv.Start(ctx); err != nil {
		_ = v.Srv.Shutdown(context.Background())
		return nil, fmt.Errorf("Start: %w", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := v.Srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	v.Base = "http://" + v.Srv.Addr().String()
	v.URL = v.Base + cfg.Server.Path
	return v, nil
}

// clientOpts tunes newClient.
type clientOpts struct {
	headers map[string]string
	// listen opens the GET stream, so server-initiated notifications arrive.
	listen bool
	// onNotification receives every notification.
	onNotification func(mcp.JSONRPCNotification)
	// hc carries the client's requests; nil: a new client closed with t.
	hc *http.Client
	// mcp are options of mcp-go's client: sampling and elicitation
	// handlers, for example.
	mcp []client.ClientOption
}

// newClient connects mcp-go's Streamable HTTP client to url and
// initialises the session; it is closed when t ends.
func newClient(t *testing.T, url string, o clientOpts) *client.Client {
	t.Helper()
	hc := o.hc
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	var listening chan struct{}
	if o.listen {
		// Learn when the server has accepted the GET stream, so a test does
		// not make a change before the client can hear about it.
		listening = make(chan struct{})
		base := hc.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		hc = &http.Client{Transport: &streamSignal{base: base, opened: listening}}
	}
	opts := []transport.StreamableHTTPCOption{transport.WithHTTPBasicClient(hc)}
	if o.headers != nil {
		opts = append(opts, transport.WithHTTPHeaders(o.headers))
	}
	if o.listen {
		opts = append(opts, transport.WithContinuousListening())
	}
	tr, err := transport.NewStreamableHTTP(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr, o.mcp...)
	t.Cleanup(func() {
		_ = c.Close()
		hc.CloseIdleConnections()
	})
	if o.onNotification != nil {
		c.OnNotification(o.onNotification)
	}
	// Start's context bounds the client's GET stream: it must live as long
	// as the client, not just the handshake.
	live, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	if err := c.Start(live); err != nil {
		t.Fatalf("client start: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = protocolVersion
	req.Params.ClientInfo = mcp.Implementation{Name: "vmcp-e2e-go", Version: "1"}
	res, err := c.Initialize(ctx, req)
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	if res.ProtocolVersion != protocolVersion {
		t.Fatalf("negotiated protocol %q, want %q", res.ProtocolVersion, protocolVersion)
	}
	if listening != nil {
		select {
		case <-listening:
		case <-time.After(10 * time.Second):
			t.Fatalf("the server did not accept the client's GET stream within 10s")
		}
	}
	return c
}

// streamSignal is an http.RoundTripper that closes opened once a GET
// (the standalone SSE stream of streamable HTTP) is answered 200.
type streamSignal struct {
	base   http.RoundTripper
	opened chan struct{}
	once   sync.Once
}

func (s *streamSignal) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(r)
	if err == nil && r.Method == http.MethodGet && resp.StatusCode == http.StatusOK {
		s.once.Do(func() { close(s.opened) })
	}
	return resp, err
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach base.
func (s *streamSignal) CloseIdleConnections() {
	if c, ok := s.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// ctxT returns a context bounded by d that ends with t.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// toolNames lists the tools the client sees, sorted as served.
func toolNames(t *testing.T, c *client.Client) []string {
	t.Helper()
	res, err := c.ListTools(ctxT(t, 10*time.Second), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	names := make([]string, len(res.Tools))
	for i, tl := range res.Tools {
		names[i] = tl.Name
	}
	return names
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// requireTools fails t unless every name in want is listed.
func requireTools(t *testing.T, have []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !contains(have, w) {
			t.Fatalf("tool %q is not listed; tools: %v", w, have)
		}
	}
}

// callTool calls a tool and fails t on a protocol error.
func callTool(t *testing.T, c *client.Client, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res, err := tryCall(t, c, name, args)
	if err != nil {
		t.Fatalf("tools/call %s: %v", name, err)
	}
	return res
}

// tryCall calls a tool with a 15s bound.
func tryCall(t *testing.T, c *client.Client, name string, args map[string]any) (*mcp.CallToolResult, error) {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	return c.CallTool(ctxT(t, 15*time.Second), req)
}

// resultText joins the text contents of a tool result.
func resultText(r *mcp.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// callText calls a tool that must succeed and returns its text.
func callText(t *testing.T, c *client.Client, name string, args map[string]any) string {
	t.Helper()
	res := callTool(t, c, name, args)
	if res.IsError {
		t.Fatalf("tools/call %s: isError result: %s", name, resultText(res))
	}
	return resultText(res)
}

// eventually retries f every 100ms until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readyz is the body of /readyz.
type readyz struct {
	Ready    bool   `json:"ready"`
	Reason   string `json:"reason"`
	Backends []struct {
		Name      string `json:"name"`
		Transport string `json:"transport"`
		State     string `json:"state"`
		Tools     int    `json:"tools"`
		LastError string `json:"lastError"`
	} `json:"backends"`
}

// getReadyz fetches /readyz and returns its status and decoded body.
func getReadyz(t *testing.T, base string) (int, readyz) {
	t.Helper()
	status, body := httpGet(t, base+"/readyz")
	var r readyz
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("/readyz body is not JSON: %v\n%s", err, body)
	}
	return status, r
}

// httpGet does a GET with a 10s bound.
func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t, 10*time.Second), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, body
}

// noKeepAlive is the HTTP client for raw requests; it leaves no idle
// connections (and goroutines) behind.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// freeAddr returns a loopback address no one listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// nodeResult is the output line of client.mjs.
type nodeResult struct {
	Results       []json.RawMessage `json:"results"`
	ConnectError  *nodeError        `json:"connectError"`
	Notifications map[string]int    `json:"notifications"`
	Session       struct {
		ID              string          `json:"id"`
		ProtocolVersion string          `json:"protocolVersion"`
		ServerInfo      json.RawMessage `json:"serverInfo"`
	} `json:"session"`
}

type nodeError struct {
	Code       int    `json:"code"`
	Message    string `json:"message"`
	HTTPStatus int    `json:"httpStatus"`
}

// stepError returns the error of result i, or nil.
func (r *nodeResult) stepError(i int) *nodeError {
	var e struct {
		Error *nodeError `json:"error"`
	}
	_ = json.Unmarshal(r.Results[i], &e)
	return e.Error
}

// runNode runs client.mjs against url with ops (marshalled to JSON). step,
// if not nil, is called with each "STEP i op" index as client.mjs starts it.
func runNode(t *testing.T, url string, ops []map[string]any, headers map[string]string, step func(int)) *nodeResult {
	t.Helper()
	opsJSON, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{clientJS, "--timeout", "20000"}
	for k, v := range headers {
		args = append(args, "--header", k+"="+v)
	}
	args = append(args, url, "-")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Stdin = bytes.NewReader(opsJSON)
	var stdout bytes.Buffer
	stderrLog := &syncBuffer{}
	cmd.Stdout = &stdout
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	steps := make(chan struct{})
	go func() {
		defer close(steps)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			_, _ = stderrLog.Write([]byte(line + "\n"))
			if rest, ok := strings.CutPrefix(line, "STEP "); ok && step != nil {
				if i, err := strconv.Atoi(strings.Fields(rest)[0]); err == nil {
					step(i)
				}
			}
		}
	}()
	err = cmd.Run()
	_ = pw.Close()
	<-steps
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("client.mjs: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderrLog.String())
		}
	}
	var res nodeResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("client.mjs output is not JSON: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderrLog.String())
	}
	if res.ConnectError != nil {
		t.Fatalf("client.mjs could not connect: %+v\nstderr: %s", *res.ConnectError, stderrLog.String())
	}
	if len(res.Results) != len(ops) {
		t.Fatalf("client.mjs returned %d results for %d operations", len(res.Results), len(ops))
	}
	return &res
}

// processesWith returns the pids of live processes whose command line or
// environment contains marker.
func processesWith(marker string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if zombie(pid) {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), f))
			if err == nil && bytes.Contains(b, []byte(marker)) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// zombie reports whether pid has exited but is not reaped yet.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // gone
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// describeProcs renders pids with their command lines, for messages.
func describeProcs(pids []int) string {
	var sb strings.Builder
	for _, p := range pids {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		fmt.Fprintf(&sb, "\n  pid %d: %s", p, strings.ReplaceAll(string(b), "\x00", " "))
	}
	return sb.String()
}

// killAll SIGKILLs pids (a safety net for processes a failed test left).
func killAll(pids []int) {
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

// jsChild is a server script of test/js running under node as a child of
// the test. It announces itself with one "READY {json}" line on stdout,
// logs to stderr, ends on SIGTERM, and, started with --exit-on-stdin-close,
// also when its standard input closes, which happens when the test binary
// dies.
type jsChild struct {
	// Logs is the script's stderr, shown if the test fails.
	Logs *syncBuffer

	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	once  sync.Once
}

// startJS starts test/js/script with args (and --exit-on-stdin-close),
// stopped when t ends, waits for its READY line and decodes the JSON after
// it into ready.
func startJS(t testing.TB, script string, args []string, ready any) (*jsChild, error) {
	t.Helper()
	c := &jsChild{Logs: &syncBuffer{}, done: make(chan struct{})}
	dumpOnFailure(t, script+" stderr", c.Logs)
	c.cmd = exec.Command("node", append([]string{filepath.Join(repoRoot, "test", "js", script), "--exit-on-stdin-close"}, args...)...)
	c.cmd.Dir = filepath.Join(repoRoot, "test", "js")
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	c.cmd.Stderr = c.Logs
	rest, err := startAnnounced(t, c.cmd, c.done, c.Stop, "READY ")
	if err != nil {
		return nil, fmt.Errorf("%s: %w; stderr:\n%s", script, err, c.Logs.String())
	}
	if err := json.Unmarshal([]byte(rest), ready); err != nil {
		c.Stop()
		return nil, fmt.Errorf("%s READY line: %v: %s", script, err, rest)
	}
	return c, nil
}

// Stop ends the script with SIGTERM (SIGKILL after 5s) and reaps it. It
// may be called more than once.
func (c *jsChild) Stop() {
	c.once.Do(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
		_ = c.stdin.Close()
	})
}
