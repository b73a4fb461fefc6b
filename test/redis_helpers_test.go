package test

// Helpers of the rate-limit end-to-end tests (ratelimit_test.go): a real
// redis-server as a child process of the test, which a test can stop and
// start again on the same port, and raw MCP requests with a chosen
// MCP-Protocol-Version header.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server of one test, on a loopback port of its own,
// with persistence off.
type redisServer struct {
	Addr   string        // 127.0.0.1:PORT
	Client *redis.Client // for the test's own look at the keys
	bin    string
	port   int
	logs   *syncBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited and been reaped
}

// startRedis starts a redis-server on a free loopback port and waits until
// it answers PING. It is stopped (and its client closed) when t ends.
// Without redis-server on PATH the test stops (missingPrerequisite).
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missingPrerequisite(t, "rate-limit test with Redis: redis-server is not on PATH (install Redis, e.g. apt-get install redis-server)")
	}
	r := &redisServer{bin: bin, logs: &syncBuffer{}}
	dumpOnFailure(t, "redis-server output", r.logs)
	t.Cleanup(r.Stop)
	var lastErr error
	for range 3 { // a free port can be taken before redis binds it
		r.port = freePort(t)
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
		if lastErr = r.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("start redis-server: %v", lastErr)
	}
	r.Client = redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = r.Client.Close() })
	return r
}

// freePort returns a loopback port no one listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	addr := freeAddr(t)
	_, p, _ := net.SplitHostPort(addr)
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// start runs redis-server on r.port and waits for PING to be answered.
func (r *redisServer) start() error {
	cmd := exec.Command(r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--databases", "1")
	cmd.Stdout, cmd.Stderr = r.logs, r.logs
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { // ends when the server exits
		_ = cmd.Wait()
		close(done)
	}()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()

	probe := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer probe.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := probe.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited: %s", r.port, lastLines(r.logs.String(), 5))
		default:
		}
		if time.Now().After(deadline) {
			r.Stop()
			return fmt.Errorf("redis-server on port %d does not answer PING: %v", r.port, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server (as a crash would) and reaps it. It may be called
// more than once.
func (r *redisServer) Stop() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts a fresh server on the same port (empty: persistence is
// off) after Stop.
func (r *redisServer) Restart(t *testing.T) {
	t.Helper()
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for { // the port can stay busy for a moment after the kill
		if err = r.start(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart redis-server on %s: %v", r.Addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// mcpPost is a raw MCP POST with a chosen MCP-Protocol-Version header.
type mcpPost struct {
	url     string
	token   string // Authorization: Bearer, unless ""
	session string // Mcp-Session-Id, unless ""
	version string // MCP-Protocol-Version, unless ""
	body    string
}

// do sends p and reads the whole answer.
func (p mcpPost) do(t *testing.T) httpResult {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t, 15*time.Second), http.MethodPost, p.url, strings.NewReader(p.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	if p.session != "" {
		req.Header.Set("Mcp-Session-Id", p.session)
	}
	if p.version != "" {
		req.Header.Set("MCP-Protocol-Version", p.version)
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", p.url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read body: %v", p.url, err)
	}
	return httpResult{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// openSessionVersion initialises a session at url for protocol revision
// version (initialize, then notifications/initialized, with the header
// MCP-Protocol-Version: version on the latter) and returns its id.
func openSessionVersion(t *testing.T, url, token, version string) string {
	t.Helper()
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + version +
		`","capabilities":{},"clientInfo":{"name":"vmcp-e2e-ratelimit","version":"1"}}}`
	res := mcpPost{url: url, token: token, body: init}.do(t)
	if res.Status != http.StatusOK {
		t.Fatalf("initialize: status %d: %s", res.Status, res.Body)
	}
	sid := res.Header.Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatalf("initialize: no Mcp-Session-Id in the answer: %v", res.Header)
	}
	res = mcpPost{url: url, token: token, session: sid, version: version,
		body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`}.do(t)
	if res.Status != http.StatusAccepted && res.Status != http.StatusOK {
		t.Fatalf("notifications/initialized: status %d: %s", res.Status, res.Body)
	}
	return sid
}
