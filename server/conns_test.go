package server

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vmcp/vmcp/config"
)

// startOneBackend starts a server with one backend and the given server
// settings, shut down at the end of the test.
func startOneBackend(t *testing.T, set func(*config.Server)) *Server {
	t.Helper()
	a := newBackend(t, "alpha", "search")
	cfg := testConfig(t, config.Backend{Name: "alpha", Transport: config.TransportStreamableHTTP, URL: a.URL + "/mcp"})
	set(&cfg.Server)
	return startServer(t, cfg)
}

// getHealthz sends GET /healthz on a kept-alive connection and reads the
// answer.
func getHealthz(t *testing.T, c net.Conn, br *bufio.Reader) *http.Response {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

// TestConnectionsBeyondMaxAreRefused: with server.maxConnections open, one
// more connection is answered 503 with Retry-After, Connection: close and
// a JSON-RPC error, and closed; once a connection closes, a new one is
// served. The refusals are counted.
func TestConnectionsBeyondMaxAreRefused(t *testing.T) {
	t.Parallel()
	srv := startOneBackend(t, func(s *config.Server) { s.MaxConnections = 2 })
	addr := srv.Addr().String()
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A request under way (its headers not finished): the connection
		// is busy, not idle, so it cannot be closed to make room.
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n"); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitActive(t, srv, 2)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	resp := getHealthz(t, c, br)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !resp.Close ||
		!strings.Contains(string(body), `"jsonrpc":"2.0"`) {
		t.Fatalf("connection over the cap: %d %v %s; want 503, Retry-After 1, Connection: close, a JSON-RPC error", resp.StatusCode, resp.Header, body)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("refused connection still open: read %v, want EOF", err)
	}

	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		resp := getHealthz(t, c, bufio.NewReader(c))
		c.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after a connection closed: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, refused := srv.listener.(*connLimiter).counts(); refused < 1 {
		t.Fatalf("refused %d, want at least 1", refused)
	}
}

// waitActive waits until n connections are open at the server.
func waitActive(t *testing.T, srv *Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if active, _ := srv.listener.(*connLimiter).counts(); active >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d connections open", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIdleConnectionsMakeRoom: at server.maxConnections, a new connection
// closes the one idle the longest (a keep-alive between requests) instead
// of being refused, so a client that opens connections and leaves them
// idle cannot keep others out until the idle timeout.
func TestIdleConnectionsMakeRoom(t *testing.T) {
	t.Parallel()
	srv := startOneBackend(t, func(s *config.Server) { s.MaxConnections = 2 })
	addr := srv.Addr().String()
	var idle []net.Conn
	var readers []*bufio.Reader
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if resp := getHealthz(t, c, br); resp.StatusCode != http.StatusOK {
			t.Fatalf("connection within the cap: %d", resp.StatusCode)
		}
		idle, readers = append(idle, c), append(readers, br)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp := getHealthz(t, c, bufio.NewReader(c)); resp.StatusCode != http.StatusOK {
		t.Fatalf("new connection at the cap with idle ones open: %d, want 200", resp.StatusCode)
	}
	// The first went idle first, but under load the server may see the two
	// go idle in either order: one of them makes room.
	closed := make(chan int, 2)
	for i := range idle {
		_ = idle[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		go func() { // ends by the read deadline at the latest
			if _, err := readers[i].ReadByte(); errors.Is(err, io.EOF) {
				closed <- i
				return
			}
			closed <- -1
		}()
	}
	for range idle {
		if i := <-closed; i >= 0 {
			return
		}
	}
	t.Fatal("no idle connection was closed to make room for the new one")
}

// TestIdleConnectionsAreClosed: a keep-alive connection that carries no
// request for server.idleTimeout is closed by the server.
func TestIdleConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	srv := startOneBackend(t, func(s *config.Server) { s.IdleTimeout = config.Duration(200 * time.Millisecond) })
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if resp := getHealthz(t, c, br); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %v, want EOF from the server closing it", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("idle connection closed after %v, want about 200ms", took)
	}
}

// TestRefusalsDoNotBlockAcceptAndEndWithClose: clients over the cap that
// never read their refusal neither hold up Accept for the next client
// that fits nor outlive the listener's Close.
func TestRefusalsDoNotBlockAcceptAndEndWithClose(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := limitConns(inner, 1, quietLogger())
	accepted := make(chan net.Conn, 4)
	go func() { // ends when l is closed
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	first := <-accepted
	for range 5 { // over the cap, and they never read
		dial()
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, refused := l.counts(); refused == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the connections over the cap were not refused")
		}
	}
	first.Close()
	dial()
	select {
	case <-accepted:
	case <-time.After(refuseWithin / 2):
		t.Fatal("a connection that fits waited behind the refusals")
	}
	start := time.Now()
	l.Close()
	if took := time.Since(start); took > refuseWithin/2 {
		t.Fatalf("Close took %v: it waited for the refusals' deadline", took)
	}
	if _, refused := l.counts(); refused != 5 {
		t.Fatalf("refused %d, want 5", refused)
	}
}

// TestIdleTimeoutSparesGETStreams: a GET stream that carries nothing for
// longer than server.idleTimeout stays open: the timeout applies between
// requests only, and no write timeout cuts a response.
func TestIdleTimeoutSparesGETStreams(t *testing.T) {
	t.Parallel()
	srv := startOneBackend(t, func(s *config.Server) { s.IdleTimeout = config.Duration(100 * time.Millisecond) })
	sid := post(srv, "", initBody).Header().Get("Mcp-Session-Id")
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /mcp HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nMcp-Session-Id: "+sid+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET stream: %v %v", resp, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("GET stream after 5 idle timeouts: %v, want it still open", err)
	}
}
