package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/server"
)

// backendName is the --name of the demo backend and so the prefix vmcp puts
// on its tools ("demo_echo").
const backendName = "demo"

// buildDemo builds the demo backend once into dir and returns the binary.
func buildDemo(ctx context.Context, dir string) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", fmt.Errorf("run bench inside the vmcp module (go env GOMOD: %q, %v)", gomod, err)
	}
	bin := filepath.Join(dir, "demo-backend")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./examples/backends/demo")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./examples/backends/demo: %w", err)
	}
	return bin, nil
}

// backend is a running child process serving on url: the demo backend, or
// in -sizes mode also the proxy and vmcp (see startChild).
type backend struct {
	url  string
	cmd  *exec.Cmd
	done chan error
}

// startBackend runs bin over streamable HTTP on a free loopback port with
// tools synthetic tools and waits for its LISTENING line.
func startBackend(bin string, tools int) (*backend, error) {
	cmd := exec.Command(bin,
		"--transport", "streamable-http",
		"--addr", "127.0.0.1:0",
		"--name", backendName,
		"--tools", strconv.Itoa(tools),
	)
	cmd.Stderr = os.Stderr
	return startChild(cmd, "backend")
}

// startChild starts cmd, a child that prints "LISTENING <loopback url>" as
// the first line of its stdout once it serves, and waits for that line.
// what names it in errors. The caller sets cmd.Stderr.
func startChild(cmd *exec.Cmd, what string) (*backend, error) {
	// If the harness dies without cleaning up, the kernel ends the child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", what, err)
	}
	b := &backend{cmd: cmd, done: make(chan error, 1)}

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { b.done <- cmd.Wait() }()

	select {
	case line, ok := <-lines:
		u, found := strings.CutPrefix(line, "LISTENING ")
		if !ok || !found {
			b.stop()
			return nil, fmt.Errorf("%s printed %q, want LISTENING <url>", what, line)
		}
		if err := checkLoopbackURL(u); err != nil {
			b.stop()
			return nil, err
		}
		b.url = u
	case <-time.After(60 * time.Second):
		b.stop()
		return nil, fmt.Errorf("%s did not print LISTENING within 60s", what)
	}
	return b, nil
}

// rssKB returns the backend's VmRSS in KiB, or 0.
func (b *backend) rssKB() int64 {
	return readStatusKB(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid), "VmRSS:")
}

// stop ends the child: SIGTERM, then SIGKILL after 5s.
func (b *backend) stop() {
	if b == nil || b.cmd.Process == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad url %q: %w", raw, err)
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing non-loopback url %q", raw)
	}
	return nil
}

// proxy is an in-process httputil.ReverseProxy in front of the backend.
type proxy struct {
	url string
	srv *http.Server
	tr  *http.Transport
}

// startProxy serves a reverse proxy to backendURL on a free loopback port.
// It keeps the request path, so the proxy's MCP endpoint is the backend's.
func startProxy(backendURL string, maxConns int) (*proxy, error) {
	target, err := url.Parse(backendURL)
	if err != nil {
		return nil, err
	}
	// The same pool sizes vmcp uses for its backends, so both middlemen
	// keep their upstream connections alive.
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: max(256, 2*maxConns),
		IdleConnTimeout:     90 * time.Second,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = target.Scheme
			pr.Out.URL.Host = target.Host
			pr.Out.Host = target.Host
		},
		Transport:     tr,
		FlushInterval: -1, // flush every write: SSE responses stream through
		ErrorLog:      slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	// Full duplex: the Transport reads the inbound request body while the
	// response is already streaming back. With a Content-Length body it
	// writes the body and then reads once more to check for EOF; by default
	// the server consumes and closes an HTTP/1 request body when the
	// handler first writes the response header, so if the backend answered
	// before that last read (the headers go out before the body, so it
	// can), the read fails with "invalid Read on closed Body", the
	// Transport treats it as a failed request write and closes the upstream
	// connection under the response still being copied. Responses larger
	// than the Transport's 4 KiB read buffer (tools/list with the demo's
	// catalogue) were then cut short; smaller ones arrived whole but the
	// upstream connection was lost and redialled.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			http.Error(w, "proxy: "+err.Error(), http.StatusInternalServerError)
			return
		}
		rp.ServeHTTP(w, r)
	})
	p := &proxy{
		url: "http://" + ln.Addr().String() + target.Path,
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		tr:  tr,
	}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *proxy) stop() {
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		_ = p.srv.Close()
	}
	p.tr.CloseIdleConnections()
}

// vmcpTarget is vmcp running in this process.
type vmcpTarget struct {
	url string
	srv *server.Server
}

// startVMCP starts vmcp on a free loopback port with the backend as its one
// streamable-http backend; extra is appended to its config at top level.
// It logs to logger; nil: stderr, below warn dropped.
func startVMCP(ctx context.Context, backendURL, extra string, logger *slog.Logger) (*vmcpTarget, error) {
	yaml := fmt.Sprintf(`
name: bench
server: {host: 127.0.0.1, port: 0, path: /mcp, drainGrace: 0s, maxSessionsPerIdentity: 10000}  # every bench session is the same anonymous caller; no balancer to wait for
backends:
  - {name: %s, transport: streamable-http, url: %q}
%s`, backendName, backendURL, extra)
	noEnv := func(string) (string, bool) { return "", false }
	cfg, err := config.Parse([]byte(yaml), noEnv)
	if err != nil {
		return nil, fmt.Errorf("vmcp config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "vmcp")
	}
	srv, err := server.New(*cfg, server.Options{Logger: logger, Version: "bench", Getenv: noEnv})
	if err != nil {
		return nil, fmt.Errorf("vmcp: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := srv.Start(sctx); err != nil {
		_ = srv.Shutdown(context.Background())
		return nil, fmt.Errorf("vmcp start: %w", err)
	}
	addr := srv.Addr()
	if addr == nil {
		_ = srv.Shutdown(context.Background())
		return nil, errors.New("vmcp has no listen address")
	}
	u := "http://" + addr.String() + cfg.Server.Path
	if err := checkLoopbackURL(u); err != nil {
		_ = srv.Shutdown(context.Background())
		return nil, err
	}
	return &vmcpTarget{url: u, srv: srv}, nil
}

func (v *vmcpTarget) stop() error {
	if v == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return v.srv.Shutdown(ctx)
}

// readStatusKB reads a "Key:   N kB" line of a /proc/*/status file.
func readStatusKB(path, key string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// cpuSample is a reading of the CPU time used so far by this process (the
// load client plus the proxy or vmcp), by the backend child and by the
// whole machine.
type cpuSample struct {
	harness, backend        time.Duration
	machineBusy, machineAll uint64 // jiffies of all CPUs
}

// clockTick is USER_HZ, the unit of /proc/*/stat times; 100 on Linux.
const clockTick = 10 * time.Millisecond

func takeCPU(backendPID int) cpuSample {
	var s cpuSample
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.harness = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s.backend = procCPU(backendPID)
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line)
		if len(f) >= 9 && f[0] == "cpu" {
			for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
				n, _ := strconv.ParseUint(v, 10, 64)
				s.machineAll += n
				if i != 3 && i != 4 {
					s.machineBusy += n
				}
			}
		}
	}
	return s
}

// procCPU is the user plus system CPU time process pid has used so far, 0
// if it cannot be read.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which may hold spaces: state is the
	// first, utime the 12th and stime the 13th.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) <= 12 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * clockTick
}

// cpuUse is the CPU used between two samples.
type cpuUse struct {
	harness, backend time.Duration
	busy             float64 // fraction of all the machine's CPUs that was busy
}

func (s cpuSample) since(prev cpuSample) cpuUse {
	u := cpuUse{harness: s.harness - prev.harness, backend: s.backend - prev.backend}
	if all := s.machineAll - prev.machineAll; all > 0 {
		u.busy = float64(s.machineBusy-prev.machineBusy) / float64(all)
	}
	return u
}

// comparedVMCP is one vmcp of a comparison mode (-ratelimit,
// -observability): its sessions and what was measured through them.
type comparedVMCP struct {
	name     string
	vm       *vmcpTarget
	sessions []*session
	total    result    // summed over the rounds
	rounds   []float64 // throughput of each round
}

// start starts the vmcp with extra config in front of backendURL and opens
// n sessions on it. logger nil: warnings and errors to stderr.
func (c *comparedVMCP) start(ctx context.Context, hc *http.Client, backendURL, extra string, n int, logger *slog.Logger) error {
	var err error
	c.vm, err = startVMCP(ctx, backendURL, extra, logger)
	if err != nil {
		return fmt.Errorf("vmcp %s: %w", c.name, err)
	}
	for range n {
		s, err := openSession(ctx, hc, c.vm.url)
		if err != nil {
			return fmt.Errorf("vmcp %s: open session: %w", c.name, err)
		}
		c.sessions = append(c.sessions, s)
	}
	return nil
}

// stop closes the sessions and shuts the vmcp down; a second call does
// nothing.
func (c *comparedVMCP) stop() error {
	for _, s := range c.sessions {
		s.close()
	}
	c.sessions = nil
	err := c.vm.stop()
	c.vm = nil
	if err != nil {
		return fmt.Errorf("vmcp %s shutdown: %w", c.name, err)
	}
	return nil
}

// addRound adds one measured round r, which used u.
func (c *comparedVMCP) addRound(r result, u cpuUse) {
	c.rounds = append(c.rounds, r.throughput())
	c.total = addResults(c.total, r, u)
}

// rotated returns ts starting at element round mod len(ts): the order of
// the phases of one round of a comparison mode. Rotating it each round
// gives every target every position equally often, so a bias of position
// (the heap left by the previous phase, the machine's drift within a round)
// does not fall on one target.
func rotated[T any](ts []T, round int) []T {
	if len(ts) == 0 {
		return ts
	}
	k := round % len(ts)
	return append(append(make([]T, 0, len(ts)), ts[k:]...), ts[:k]...)
}
