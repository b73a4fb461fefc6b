package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/parse"
)

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

// TestIdleSessionsEndWithinTheSweep: a session no request names for the
// idle timeout is ended (through end, as a DELETE) within a sweep, one
// that requests keep naming is not.
func TestIdleSessionsEndWithinTheSweep(t *testing.T) {
	t.Parallel()
	s := newSessionIDs()
	var mu sync.Mutex
	var ended []string
	stop := s.run(0, 0, 200*time.Millisecond, quietLogger(), func(id string) {
		mu.Lock()
		ended = append(ended, id)
		mu.Unlock()
		_, _ = s.Terminate(id)
	})
	defer stop()
	idle, busy := s.Generate(), s.Generate()
	// A request in flight holds busy: however late this goroutine runs, it
	// is in use (naming it every few ms instead raced the 200ms timeout on
	// a loaded machine).
	release, _ := s.hold(busy, nil)
	defer release()
	deadline := time.Now().Add(5 * time.Second)
	for s.valid(busy) && s.count() == 2 {
		if time.Now().After(deadline) {
			t.Fatal("the idle session was not ended within 5s of a 200ms idle timeout")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !s.valid(busy) {
		t.Fatal("a session in use was ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ended) != 1 || ended[0] != idle {
		t.Fatalf("ended %q, want only the idle session", ended)
	}
	if c := s.counts(); c.Expired != 1 {
		t.Fatalf("expired %d, want 1", c.Expired)
	}
}

// TestSessionsPerIdentity: at its cap, an identity's new session ends its
// least recently used one when that has been unused for evictableAfter,
// and is refused with 429 and the wait otherwise; other identities are
// not affected.
func TestSessionsPerIdentity(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newSessionIDs()
	s.now = clk.now
	var ended []string
	stop := s.run(0, 2, time.Hour, quietLogger(), func(id string) { ended = append(ended, id); _, _ = s.Terminate(id) })
	defer stop()
	open := func(owner string) (string, *httptest.ResponseRecorder) {
		t.Helper()
		w := httptest.NewRecorder()
		refused, n := s.refuseNew(w, initRequest(), &parse.Parsed{Method: "initialize", ID: json.RawMessage(`1`)}, owner)
		if refused {
			return "", w
		}
		id := s.Generate()
		if err := n.create(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		n.done()
		return id, w
	}
	a, _ := open("alice")
	clk.advance(time.Second)
	b, _ := open("alice")
	clk.advance(evictableAfter)
	s.valid(b) // b is used now; a is 11s idle
	c, _ := open("alice")
	if c == "" || len(ended) != 1 || ended[0] != a || s.valid(a) {
		t.Fatalf("third session %q, ended %q; want a new one and the idle %q ended", c, ended, a)
	}
	clk.advance(3 * time.Second)
	d, w := open("alice")
	if d != "" || w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "7" {
		t.Fatalf("fourth session: %q %d Retry-After %q; want 429 after 7s (b and c are in recent use)", d, w.Code, w.Header().Get("Retry-After"))
	}
	var body struct {
		ID    json.RawMessage `json:"id"`
		Error struct {
			Code int `json:"code"`
			Data struct {
				Reason string `json:"reason"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || string(body.ID) != "1" || body.Error.Code != codeSessionLimit ||
		body.Error.Data.Reason != "max_sessions_per_identity" {
		t.Fatalf("refusal %s (%v)", w.Body, err)
	}
	if e, _ := open("bob"); e == "" {
		t.Fatal("another identity was refused")
	}
	if c := s.counts(); c.Evicted != 1 || c.RefusedPerIdentity != 1 {
		t.Fatalf("counts %+v", c)
	}
}

// TestServerRefusesSessionsOverTheBounds goes through Server.ServeHTTP:
// anonymous clients are bounded in all only; over maxSessions an
// initialize (one that names a session too) gets 503 with Retry-After and a
// JSON-RPC error; an evicted session answers 404 and is let go by mcp-go.
func TestServerRefusesSessionsOverTheBounds(t *testing.T) {
	t.Parallel()
	srv := startOneBackend(t, func(s *config.Server) { s.MaxSessions, s.MaxSessionsPerIdentity = 3, 2 })
	initialize := func() *httptest.ResponseRecorder { return post(srv, "", initBody) }
	// Anonymous clients (this server's) have no per-identity bound: one
	// would otherwise end the others' sessions.
	first := initialize().Header().Get("Mcp-Session-Id")
	second := initialize().Header().Get("Mcp-Session-Id")
	third := initialize().Header().Get("Mcp-Session-Id")
	if first == "" || second == "" || third == "" {
		t.Fatal("no session within maxSessions")
	}
	// An initialize that names a session opens a new one all the same:
	// it is bounded like any.
	req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(initBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", first)
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, req)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "10" {
		t.Fatalf("over maxSessions: %d Retry-After %q %s; want 503 and 10", w.Code, w.Header().Get("Retry-After"), w.Body)
	}

	// A session ended to make room goes everywhere: 404, and mcp-go has
	// let it go (its backend sessions closed).
	srv.sessions.mu.Lock()
	srv.sessions.live[first].ending.Store(true)
	srv.sessions.mu.Unlock()
	srv.sessions.evict(first)
	if w := post(srv, first, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`); w.Code != http.StatusNotFound {
		t.Fatalf("the evicted session answered %d, want 404", w.Code)
	}
	if _, ok := srv.relay.clients.sessions.Load(first); ok {
		t.Fatal("the evicted session is still registered with mcp-go (its backend sessions stay open)")
	}
	srv.sessions.bind(srv.sessions.Generate(), "someone else")
	w = initialize()
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("full again: %d, want 503", w.Code)
	}
	var body struct {
		ID    json.RawMessage `json:"id"`
		Error struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || string(body.ID) != "1" || body.Error.Code != codeSessionLimit {
		t.Fatalf("refusal %s (%v)", w.Body, err)
	}
}

func initRequest() *http.Request {
	return httptest.NewRequest(http.MethodPost, "/mcp", nil)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestInitializesTogetherKeepTheCaps: initializes that arrive together,
// each reserving its place before mcp-go serves it, cannot pass the bounds
// together, in all or per identity; the anonymous identity has no bound of
// its own (one anonymous client would end the others' sessions).
func TestInitializesTogetherKeepTheCaps(t *testing.T) {
	t.Parallel()
	s := newSessionIDs()
	stop := s.run(3, 1, time.Hour, quietLogger(), nil)
	defer stop()
	reserve := func(owner string) (bool, func()) {
		refused, n := s.refuseNew(httptest.NewRecorder(), initRequest(), &parse.Parsed{Method: "initialize", ID: json.RawMessage(`1`)}, owner)
		if refused {
			return true, func() {}
		}
		return false, n.done
	}
	// One identity: the second initialize while the first is served is
	// refused.
	if refused, _ := reserve("alice"); refused {
		t.Fatal("alice's first initialize was refused")
	}
	if refused, _ := reserve("alice"); !refused {
		t.Fatal("alice's second initialize passed while the first held her only place")
	}
	// In all: 10 at once against maxSessions 3 (alice's place counts).
	passed := 0
	for i := range 10 {
		if refused, _ := reserve(fmt.Sprintf("user-%d", i)); !refused {
			passed++
		}
	}
	if passed != 2 {
		t.Fatalf("%d initializes passed together, want 2 (3 places, one alice's)", passed)
	}
	// Anonymous clients are bounded in all only.
	s2 := newSessionIDs()
	stop2 := s2.run(0, 1, time.Hour, quietLogger(), nil)
	defer stop2()
	for i := range 3 {
		if refused, _ := s2.refuseNew(httptest.NewRecorder(), initRequest(), &parse.Parsed{Method: "initialize", ID: json.RawMessage(`1`)}, anonymousOwner); refused {
			t.Fatalf("anonymous initialize %d refused by the per-identity bound", i)
		}
	}
}

// TestHeldSessionsAreNotIdle: a session with a request in flight (a GET
// stream held open, a long call) is not ended for being idle, however long
// the request takes; once released it ages as usual.
func TestHeldSessionsAreNotIdle(t *testing.T) {
	t.Parallel()
	s := newSessionIDs()
	stop := s.run(0, 0, 100*time.Millisecond, quietLogger(), func(id string) { _, _ = s.Terminate(id) })
	defer stop()
	id := s.Generate()
	release, _ := s.hold(id, nil)
	time.Sleep(500 * time.Millisecond) // several sweeps past the idle timeout
	if s.count() != 1 {                // not valid(): it would count as a use
		t.Fatal("a session with a request in flight was ended as idle")
	}
	release()
	deadline := time.Now().Add(5 * time.Second)
	for s.count() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the released session was not ended as idle")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnboundSessionsGoSooner: a session that was issued but never bound
// to an identity (its initialize's answer never got out) is ended within a
// minute, not after the idle timeout.
func TestUnboundSessionsGoSooner(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newSessionIDs()
	s.now = clk.now
	stop := s.run(0, 0, time.Hour, quietLogger(), func(id string) { _, _ = s.Terminate(id) })
	defer stop()
	_, bound := s.Generate(), s.Generate() // the first is never bound
	s.bind(bound, "alice")
	clk.advance(unboundFor + time.Second)
	s.sweep()
	if s.count() != 1 || !s.valid(bound) {
		t.Fatalf("after a minute: %d live, bound live %v; want only the bound session", s.count(), s.valid(bound))
	}
}
