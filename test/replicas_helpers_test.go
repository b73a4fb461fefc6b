package test

// Helpers of the multi-replica end-to-end tests (replicas_test.go): one
// redis-server, one demo backend, replicaCount `vmcp serve` processes (the
// built binary, one config file, each on a port of its own) and HAProxy in
// front of them, balancing round robin with no affinity and watching
// /readyz, as a Kubernetes Service or a cloud load balancer would. Clients
// connect to HAProxy only. A test can SIGKILL a replica, restart one
// (SIGTERM, wait for the exit, start it again on its port), and kill and
// restart Redis (empty).

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
)

// replicaCount is how many vmcp processes a fleet runs.
const replicaCount = 3

// fleetRateLimit is the shared bucket of demo_add in every fleet's config:
// fleetRateLimit tokens, refilled over an hour (so none come back during a
// test). The other tools are not limited.
const fleetRateLimit = 6

// replicaFleet is Redis, a demo backend, replicaCount vmcp replicas with
// sessions in Redis, and HAProxy in front of them.
type replicaFleet struct {
	Name     string // vmcp's config name, the same on every replica
	URL      string // the MCP endpoint behind HAProxy: what clients use
	Redis    *redisServer
	Demo     *demoBackend // vmcp calls it "demo": tools demo_*
	Replicas []*replica
	LB       *haproxy
	CfgPath  string // the one vmcp.yaml of all replicas
}

// startReplicaFleet starts a fleet and waits until HAProxy sees every
// replica up. Everything is stopped when t ends. Without haproxy or
// redis-server on PATH the test stops (missingPrerequisite).
func startReplicaFleet(t *testing.T) *replicaFleet {
	t.Helper()
	haproxyBin, err := exec.LookPath("haproxy")
	if err != nil {
		missingPrerequisite(t, "multi-replica test: haproxy is not on PATH (install HAProxy, e.g. apt-get install haproxy)")
	}
	f := &replicaFleet{Name: uniqueName("e2e-replicas")}
	f.Redis = startRedis(t)
	f.Demo = startDemo(t, "demo", "weather", "streamable-http", "")
	f.CfgPath = filepath.Join(t.TempDir(), "vmcp.yaml")
	writeFile(t, f.CfgPath, fmt.Sprintf(`name: %s
server: {host: 127.0.0.1, port: 0, drainGrace: 1s, shutdownTimeout: 10s}
backends:
  - {name: demo, transport: streamable-http, url: %q, requestTimeout: 20s}
redis: {address: %q}
sessions: {store: redis, ttl: 30m}
rateLimiting:
  tools:
    - {name: demo_add, shared: {maxTokens: %d, refillPeriod: 1h}}
audit: {enabled: true, output: stdout}
telemetry: {prometheus: true}
`, f.Name, f.Demo.URL, f.Redis.Addr, fleetRateLimit))

	// Start the replicas in parallel: each connects to the backend first.
	f.Replicas = make([]*replica, replicaCount)
	errs := make([]error, replicaCount)
	var wg sync.WaitGroup
	for i := range f.Replicas {
		r := newReplica(t, fmt.Sprintf("r%d", i), f.CfgPath)
		r.setPort(freePort(t))
		f.Replicas[i] = r
		wg.Go(func() { errs[i] = r.start() })
	}
	wg.Wait()
	for i, r := range f.Replicas {
		for attempt := 0; errs[i] != nil && attempt < 2; attempt++ {
			// The free port was taken before vmcp bound it: another one.
			r.setPort(freePort(t))
			errs[i] = r.start()
		}
		if errs[i] != nil {
			t.Fatalf("replica %s: %v", r.Name, errs[i])
		}
	}
	f.LB = startHAProxy(t, haproxyBin, f.Replicas)
	f.URL = f.LB.URL + "/mcp"
	for _, r := range f.Replicas {
		f.LB.waitUp(t, r.Name)
	}
	return f
}

// replica is one `vmcp serve` process of a fleet, which the test may stop
// and start again on the same port.
type replica struct {
	Name    string // r0, r1, ...: its server name in HAProxy
	Port    int
	Base    string      // http://127.0.0.1:PORT, for /readyz and /metrics (not through HAProxy)
	Logs    *syncBuffer // stderr (slog) of every run
	Audit   *syncBuffer // stdout: audit events, one JSON line each, of every run
	cfgPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited and been reaped
	waitErr error         // cmd.Wait's, once exited is closed
}

func newReplica(t *testing.T, name, cfgPath string) *replica {
	r := &replica{Name: name, cfgPath: cfgPath, Logs: &syncBuffer{}, Audit: &syncBuffer{}}
	dumpOnFailure(t, "vmcp replica "+name+" stderr", r.Logs)
	t.Cleanup(r.Kill)
	return r
}

// setPort sets the port the replica listens on (before its first start).
func (r *replica) setPort(port int) {
	r.Port = port
	r.Base = "http://127.0.0.1:" + strconv.Itoa(port)
}

// serving is the line `vmcp serve` logs once it listens.
const serving = `msg="vmcp serving"`

// start runs `vmcp serve` on r.Port and waits until it logs that it serves
// and its /readyz says ready.
func (r *replica) start() error {
	from := len(r.Logs.String())
	fmt.Fprintf(r.Logs, "=== start on port %d\n", r.Port)
	cmd := exec.Command(vmcpBin, "serve", "--config", r.cfgPath)
	cmd.Env = append(os.Environ(), "VMCP_SERVER_PORT="+strconv.Itoa(r.Port))
	cmd.Stdout, cmd.Stderr = r.Audit, r.Logs
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()
	go func() {
		err := cmd.Wait()
		r.mu.Lock()
		r.waitErr = err
		r.mu.Unlock()
		close(exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("vmcp serve on port %d exited before serving: %s", r.Port, lastLines(r.Logs.String()[from:], 5))
		default:
		}
		if strings.Contains(r.Logs.String()[from:], serving) {
			if code, err := r.readyz(); err == nil && code == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			r.Kill()
			return fmt.Errorf("vmcp serve on port %d is not ready within 30s: %s", r.Port, lastLines(r.Logs.String()[from:], 5))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readyz returns the status of the replica's own /readyz.
func (r *replica) readyz() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.Base+"/readyz", nil)
	if err != nil {
		return 0, err
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// running returns the live process and its exit channel, or nils.
func (r *replica) running() (*exec.Cmd, chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return nil, nil
	}
	select {
	case <-r.exited:
		return nil, nil
	default:
		return r.cmd, r.exited
	}
}

// Kill ends the replica at once (SIGKILL), as a crash or an OOM kill would,
// and reaps it. It may be called when the replica is not running.
func (r *replica) Kill() {
	cmd, exited := r.running()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Stop sends SIGTERM and waits up to 20s for the exit; it returns the
// process's exit error (nil: status 0).
func (r *replica) Stop(t *testing.T) error {
	t.Helper()
	cmd, exited := r.running()
	if cmd == nil {
		t.Fatalf("replica %s is not running", r.Name)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("replica %s did not exit within 20s of SIGTERM", r.Name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waitErr
}

// KillReplica SIGKILLs replica i.
func (f *replicaFleet) KillReplica(t *testing.T, i int) {
	t.Helper()
	f.Replicas[i].Kill()
	fmt.Fprintf(f.Replicas[i].Logs, "=== SIGKILLed by the test\n")
}

// RestartReplica restarts replica i as a rolling update does: SIGTERM,
// wait for it to exit (status 0), start it again on the same port, and
// wait until HAProxy sends it requests again.
func (f *replicaFleet) RestartReplica(t *testing.T, i int) {
	t.Helper()
	r := f.Replicas[i]
	if err := r.Stop(t); err != nil {
		t.Errorf("replica %s after SIGTERM: %v, want exit status 0", r.Name, err)
	}
	f.StartReplica(t, i)
}

// StartReplica starts replica i (stopped or killed) again on its port and
// waits until HAProxy sees it up.
func (f *replicaFleet) StartReplica(t *testing.T, i int) {
	t.Helper()
	r := f.Replicas[i]
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for { // the port can stay busy for a moment after the exit
		if err = r.start(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart replica %s on port %d: %v", r.Name, r.Port, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	f.LB.waitUp(t, r.Name)
}

// KillRedis kills redis-server (SIGKILL).
func (f *replicaFleet) KillRedis() { f.Redis.Stop() }

// RestartRedis starts an empty redis-server on the same port.
func (f *replicaFleet) RestartRedis(t *testing.T) { f.Redis.Restart(t) }

// auditEvent is the part of an audit line the replica tests read.
type auditEvent struct {
	SessionID string `json:"sessionId"`
	Method    string `json:"method"`
	Name      string `json:"name"`
	Outcome   string `json:"outcome"`
}

// auditOf returns the audit events replica r has written so far (every
// run). Lines that are not audit events are left out.
func (r *replica) auditOf() []auditEvent {
	var out []auditEvent
	sc := bufio.NewScanner(strings.NewReader(r.Audit.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e auditEvent
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Method != "" {
			out = append(out, e)
		}
	}
	return out
}

// callsPerReplica counts, per replica, the tools/call audit events of
// session sid (any session when sid is "") with the given outcome (any
// when "").
func (f *replicaFleet) callsPerReplica(sid, outcome string) []int {
	counts := make([]int, len(f.Replicas))
	for i, r := range f.Replicas {
		for _, e := range r.auditOf() {
			if e.Method == "tools/call" && (sid == "" || e.SessionID == sid) && (outcome == "" || e.Outcome == outcome) {
				counts[i]++
			}
		}
	}
	return counts
}

// haproxy is HAProxy in front of a fleet's replicas, a child process of
// the test.
type haproxy struct {
	URL      string // http://127.0.0.1:PORT
	StatsURL string // the stats page, CSV
	Log      *syncBuffer
	cmd      *exec.Cmd
	exited   chan struct{}
}

// haproxyConfig is the load balancer: round robin with no stickiness (no
// cookie, no stick table), health checks on /readyz every 300ms (one
// failure takes a replica out, two successes bring it back), and retries
// on another replica of requests that could not be delivered: refused
// connections and connections closed before any answer. Timeouts are long
// enough for SSE streams. Each request is logged as soon as its answer
// starts (so a GET stream is logged when it opens): when the request
// began, replica, method, status, Mcp-Session-Id and the start of the body.
const haproxyConfig = `global
  log stdout format raw local0
  maxconn 4096

defaults
  mode http
  log global
  timeout connect 2s
  timeout client 1h
  timeout server 1h
  timeout http-request 30s
  timeout queue 10s
  timeout check 2s
  retries 3
  option redispatch
  retry-on conn-failure empty-response

frontend mcp
  bind 127.0.0.1:%d
  option http-buffer-request
  option logasap
  http-request capture req.hdr(mcp-session-id) len 128
  http-request capture req.body len 200
  log-format "LB %%tr %%s %%HM %%ST sid=%%[capture.req.hdr(0)] body=%%[capture.req.hdr(1)]"
  default_backend vmcp

backend vmcp
  balance roundrobin
  option httpchk GET /readyz HTTP/1.1
  http-check send hdr Host localhost
  http-check expect status 200
  default-server inter 300ms fall 2 rise 2
%s
frontend stats
  bind 127.0.0.1:%d
  stats enable
  stats uri /stats
`

// startHAProxy writes haproxy.cfg for replicas into a temporary directory
// and runs `haproxy -db -f haproxy.cfg`, killed when t ends.
func startHAProxy(t *testing.T, bin string, replicas []*replica) *haproxy {
	t.Helper()
	var servers strings.Builder
	for _, r := range replicas {
		fmt.Fprintf(&servers, "  server %s 127.0.0.1:%d check\n", r.Name, r.Port)
	}
	h := &haproxy{Log: &syncBuffer{}}
	dumpOnFailure(t, "haproxy log", h.Log)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	var lastErr error
	for range 3 { // a free port can be taken before haproxy binds it
		port, statsPort := freePort(t), freePort(t)
		writeFile(t, cfg, fmt.Sprintf(haproxyConfig, port, servers.String(), statsPort))
		h.URL = "http://127.0.0.1:" + strconv.Itoa(port)
		h.StatsURL = "http://127.0.0.1:" + strconv.Itoa(statsPort) + "/stats;csv"
		if lastErr = h.start(bin, cfg); lastErr == nil {
			t.Cleanup(h.stop)
			return h
		}
	}
	t.Fatalf("haproxy: %v\n%s", lastErr, h.Log.String())
	return nil
}

func (h *haproxy) start(bin, cfg string) error {
	h.cmd = exec.Command(bin, "-db", "-f", cfg)
	h.cmd.Stdout, h.cmd.Stderr = h.Log, h.Log
	if err := h.cmd.Start(); err != nil {
		return err
	}
	h.exited = make(chan struct{})
	go func() {
		_ = h.cmd.Wait()
		close(h.exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-h.exited:
			return errors.New("haproxy exited")
		default:
		}
		if _, err := h.stats(); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			h.stop()
			return errors.New("haproxy's stats page does not answer within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *haproxy) stop() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	_ = h.cmd.Process.Kill()
	<-h.exited
}

// stats returns HAProxy's view of each server of backend vmcp: its status
// (UP, DOWN, "UP 1/2" while rising, ...).
func (h *haproxy) stats() (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.StatsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("stats: status %d", resp.StatusCode)
	}
	rows, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil || len(rows) == 0 {
		return nil, fmt.Errorf("stats: %v", err)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[strings.TrimPrefix(strings.TrimSpace(name), "# ")] = i
	}
	px, sv, st := col["pxname"], col["svname"], col["status"]
	out := map[string]string{}
	for _, row := range rows[1:] {
		if len(row) > st && row[px] == "vmcp" && row[sv] != "BACKEND" {
			out[row[sv]] = row[st]
		}
	}
	return out, nil
}

// waitUp waits until HAProxy considers server name UP (its health checks
// passed rise times in a row), so that it gets requests again.
func (h *haproxy) waitUp(t *testing.T, name string) {
	t.Helper()
	eventually(t, 20*time.Second, "haproxy sees "+name+" UP", func() error {
		st, err := h.stats()
		if err != nil {
			return err
		}
		if st[name] != "UP" {
			return fmt.Errorf("status %q (all: %v)", st[name], st)
		}
		return nil
	})
}

// lbEntry is one request HAProxy logged.
type lbEntry struct {
	Began   time.Time // when HAProxy got the request's first byte
	Server  string    // the replica (its HAProxy server name), or <NOSRV>
	Method  string    // HTTP method
	Status  string
	Session string // Mcp-Session-Id, or "-"
	Body    string // the start of the request body, as HAProxy escapes it
}

// lbTime is the layout of HAProxy's %tr (the date the request began, local time).
const lbTime = "02/Jan/2006:15:04:05.000"

// entries parses HAProxy's request log, in the order the requests began.
func (h *haproxy) entries() []lbEntry {
	var out []lbEntry
	for _, line := range strings.Split(h.Log.String(), "\n") {
		rest, ok := strings.CutPrefix(line, "LB ")
		if !ok {
			continue
		}
		head, body, _ := strings.Cut(rest, " body=")
		f := strings.Fields(head)
		if len(f) != 5 {
			continue
		}
		began, err := time.ParseInLocation(lbTime, f[0], time.Local)
		if err != nil {
			continue
		}
		out = append(out, lbEntry{Began: began, Server: f[1], Method: f[2], Status: f[3], Session: strings.TrimPrefix(f[4], "sid="), Body: body})
	}
	// A request is logged when its answer begins: a long call may be logged
	// after a shorter request that began later.
	sort.SliceStable(out, func(i, j int) bool { return out[i].Began.Before(out[j].Began) })
	return out
}

// sessionOf returns the Mcp-Session-Id of an mcp-go client.
func sessionOf(t *testing.T, c *client.Client) string {
	t.Helper()
	tr, ok := c.GetTransport().(*transport.StreamableHTTP)
	if !ok {
		t.Fatalf("client transport is %T", c.GetTransport())
	}
	sid := tr.GetSessionId()
	if sid == "" {
		t.Fatal("client has no session id")
	}
	return sid
}

// isSessionGone reports whether err is mcp-go's report of a 404 for its
// session (the server no longer knows it: re-initialize).
func isSessionGone(err error) bool {
	return err != nil && (errors.Is(err, transport.ErrSessionTerminated) || strings.Contains(err.Error(), "session terminated (404)"))
}

// callOnce makes one call of tool and returns "" when it succeeded with the
// expected text (want, or any text starting with wantPrefix), or what went
// wrong. It never fails the test: load goroutines use it.
func callOnce(c *client.Client, tool string, args map[string]any, wantPrefix string) string {
	res, err := tryCallNoFatal(c, tool, args)
	switch {
	case err != nil:
		return "error: " + err.Error()
	case res.IsError:
		return "isError: " + resultText(res)
	case !strings.HasPrefix(resultText(res), wantPrefix):
		return fmt.Sprintf("result %q, want %q...", resultText(res), wantPrefix)
	}
	return ""
}

// loadCall is one call a load client made.
type loadCall struct {
	Client int
	Start  time.Time
	End    time.Time
	Err    string // "" when it succeeded
}

// callLoad is clients mcp-go clients, each calling in a loop (demo_echo with a
// fresh marker, then demo_sleep 50ms) through HAProxy until Stop.
type callLoad struct {
	Clients  []*client.Client
	Sessions []string // each client's session id when the load began
	stop     chan struct{}
	wg       sync.WaitGroup
	total    atomic.Int64
	mu       sync.Mutex
	calls    []loadCall
}

// startCallLoad connects clients clients to url and starts their loops.
func startCallLoad(t *testing.T, url string, clients int) *callLoad {
	t.Helper()
	l := &callLoad{stop: make(chan struct{})}
	for range clients {
		c := newClient(t, url, clientOpts{})
		l.Clients = append(l.Clients, c)
		l.Sessions = append(l.Sessions, sessionOf(t, c))
	}
	t.Cleanup(l.Stop)
	for i, c := range l.Clients {
		l.wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				call := loadCall{Client: i, Start: time.Now()}
				if n%2 == 0 {
					marker := uniqueName(fmt.Sprintf("load%d", i))
					call.Err = callOnce(c, "demo_echo", map[string]any{"text": marker}, marker)
				} else {
					call.Err = callOnce(c, "demo_sleep", map[string]any{"ms": 50}, "slept 50 ms")
				}
				call.End = time.Now()
				l.total.Add(1)
				l.mu.Lock()
				l.calls = append(l.calls, call)
				l.mu.Unlock()
			}
		})
	}
	return l
}

// waitCalls waits until the clients have made n more calls than now.
func (l *callLoad) waitCalls(t *testing.T, n int64) {
	t.Helper()
	target := l.total.Load() + n
	eventually(t, 30*time.Second, fmt.Sprintf("%d more calls under load", n), func() error {
		if got := l.total.Load(); got < target {
			return fmt.Errorf("%d of %d", got, target)
		}
		return nil
	})
}

// Stop ends the loops and waits for the calls in flight.
func (l *callLoad) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// failures returns the calls that failed, and how many calls were made.
func (l *callLoad) failures() ([]loadCall, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var failed []loadCall
	for _, c := range l.calls {
		if c.Err != "" {
			failed = append(failed, c)
		}
	}
	return failed, len(l.calls)
}

// describeCalls renders calls for a message, their times relative to since.
func describeCalls(calls []loadCall, since time.Time) string {
	var b strings.Builder
	for _, c := range calls {
		fmt.Fprintf(&b, "\n  client %d, %v..%v after the event: %s", c.Client,
			c.Start.Sub(since).Round(time.Millisecond), c.End.Sub(since).Round(time.Millisecond), c.Err)
	}
	return b.String()
}

// checkSessionsContinue fails t unless every load client still has the
// session it began with and its next call succeeds on it.
func (l *callLoad) checkSessionsContinue(t *testing.T) {
	t.Helper()
	for i, c := range l.Clients {
		marker := uniqueName("after")
		if msg := callOnce(c, "demo_echo", map[string]any{"text": marker}, marker); msg != "" {
			t.Errorf("client %d: the call after the event failed: %s", i, msg)
		}
		if sid := sessionOf(t, c); sid != l.Sessions[i] {
			t.Errorf("client %d: session %s, want the one it began with (%s): it had to re-initialise", i, sid, l.Sessions[i])
		}
	}
}

// rawMCP is a raw MCP request through any URL, with a deadline, that
// reports transport errors instead of failing the test.
type rawMCP struct {
	method  string // default POST
	url     string
	session string
	version string // MCP-Protocol-Version, unless ""
	body    string
	timeout time.Duration // default 10s
}

func (r rawMCP) do() (httpResult, error) {
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	timeout := r.timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.url, body)
	if err != nil {
		return httpResult{}, err
	}
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	if r.session != "" {
		req.Header.Set("Mcp-Session-Id", r.session)
	}
	if r.version != "" {
		req.Header.Set("MCP-Protocol-Version", r.version)
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		return httpResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return httpResult{}, err
	}
	return httpResult{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// echoArgs are the arguments of demo_echo with text.
func echoArgs(text string) map[string]any { return map[string]any{"text": text} }
