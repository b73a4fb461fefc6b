package backends_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/config"
)

// healthLog records the health states OnHealthChange reports.
type healthLog struct {
	m      *backends.Manager
	mu     sync.Mutex
	states []backends.HealthState
}

func (l *healthLog) changed(name string) {
	st := status(l.m, name)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.states = append(l.states, st.Health)
}

func (l *healthLog) seen(s backends.HealthState) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.states {
		if x == s {
			return true
		}
	}
	return false
}

// startWatched starts a Manager whose health changes go to the returned log.
func startWatched(t *testing.T, cfg config.Backend, opts backends.Options) (*backends.Manager, *healthLog) {
	t.Helper()
	l := &healthLog{}
	opts.OnHealthChange = l.changed
	m, err := backends.New([]config.Backend{cfg}, config.OutgoingAuth{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	l.m = m
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m.Start(ctx)
	return m, l
}

// TestKilledStdioChildIsRestarted: a stdio backend whose process dies is
// started again with backoff, rediscovered, and healthy again, while its
// health went through degraded.
func TestKilledStdioChildIsRestarted(t *testing.T) {
	t.Parallel()
	var ch changes
	opts := testOptions(&ch)
	opts.PingInterval = 100 * time.Millisecond
	m, hl := startWatched(t, stdioConfig(t, "crashy"), opts)
	pid, err := strconv.Atoi(call(t, session(t, m, "crashy"), "pgid", nil))
	if err != nil {
		t.Fatal(err)
	}
	if st := status(m, "crashy"); st.Health != backends.HealthHealthy || st.Failures != 0 {
		t.Fatalf("status before the crash = %+v, want healthy", st)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the child to be started again and rediscovered", func() bool { return ch.count("crashy") >= 2 })
	got, err := strconv.Atoi(call(t, session(t, m, "crashy"), "pgid", nil))
	if err != nil || got == pid {
		t.Fatalf("pgid after the restart = %d (%v), want a new process (was %d)", got, err, pid)
	}
	caps, err := session(t, m, "crashy").Discover(context.Background())
	if err != nil || len(caps.Tools) != len(testTools) {
		t.Fatalf("Discover after the restart: %d tools, %v", len(caps.Tools), err)
	}
	waitFor(t, 5*time.Second, "healthy again", func() bool { return status(m, "crashy").Health == backends.HealthHealthy })
	if !hl.seen(backends.HealthDegraded) {
		t.Errorf("health changes %v do not include degraded", hl.states)
	}
}

// TestHealthFollowsAKilledAndRestartedBackend: a backend that dies goes
// degraded, then unhealthy after UnhealthyAfter failures (checked every
// PingInterval), and healthy once it is back on the same address.
func TestHealthFollowsAKilledAndRestartedBackend(t *testing.T) {
	t.Parallel()
	srv := startHTTPBackend(t, "phoenix", config.TransportStreamableHTTP, nil)
	addr := srv.ts.Listener.Addr().String()
	opts := testOptions(nil)
	opts.PingInterval = 100 * time.Millisecond
	opts.MaxBackoff = 5 * time.Second // the checks, not the backoff cap, set the pace
	opts.UnhealthyAfter = 3
	m, hl := startWatched(t, srv.config("phoenix", config.TransportStreamableHTTP), opts)

	srv.kill()
	killed := time.Now()
	waitFor(t, 5*time.Second, "unhealthy", func() bool { return status(m, "phoenix").Health == backends.HealthUnhealthy })
	// A ping fails, then two reconnect attempts 100ms and 200ms apart.
	if d := time.Since(killed); d > 2*time.Second {
		t.Errorf("unhealthy %v after the kill; checks are 100ms apart", d)
	}
	st := status(m, "phoenix")
	if st.Failures < 3 || st.LastError == "" || st.State != backends.StateUnavailable {
		t.Errorf("status = %+v, want unavailable with 3+ failures and the error", st)
	}
	if !hl.seen(backends.HealthDegraded) {
		t.Errorf("health changes %v skip degraded", hl.states)
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	back := &http.Server{Handler: server.NewStreamableHTTPServer(testServer("phoenix"))}
	go func() { _ = back.Serve(ln) }()
	t.Cleanup(func() { _ = back.Close() })
	waitFor(t, 10*time.Second, "healthy again", func() bool { return status(m, "phoenix").Health == backends.HealthHealthy })
	if st := status(m, "phoenix"); st.State != backends.StateConnected || st.Failures != 0 {
		t.Errorf("status after the restart = %+v, want connected without failures", st)
	}
	call(t, session(t, m, "phoenix"), "echo", nil)
}

// TestBreaker: timeouts open the circuit and calls then fail at once,
// naming the backend; after OpenFor a probe call that succeeds closes it.
// A tool's own failure (isError) counts for nothing.
func TestBreaker(t *testing.T) {
	t.Parallel()
	var hang atomic.Bool
	srv := startHTTPBackend(t, "slow", config.TransportStreamableHTTP, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && hang.Load() {
				if method, _ := rpcMethod(r); method == "tools/call" {
					select {
					case <-r.Context().Done():
					case <-time.After(5 * time.Second):
					}
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	cfg := srv.config("slow", config.TransportStreamableHTTP)
	cfg.RequestTimeout = config.Duration(100 * time.Millisecond)
	opts := testOptions(nil)
	opts.Breaker = backends.BreakerConfig{FailureThreshold: 2, OpenFor: 300 * time.Millisecond}
	opts.UnhealthyAfter = 10
	m, _ := startWatched(t, cfg, opts)
	s := session(t, m, "slow")

	for range 5 {
		if res, err := callTool(s, "fail", nil); err != nil || !res.IsError {
			t.Fatalf("fail tool: %v, %+v", err, res)
		}
	}
	if st := status(m, "slow"); st.Breaker != backends.BreakerClosed || st.Health != backends.HealthHealthy {
		t.Fatalf("after isError results status = %+v, want closed and healthy", st)
	}

	hang.Store(true)
	for i := range 2 {
		if _, err := callTool(s, "echo", nil); err == nil || errors.Is(err, backends.ErrCircuitOpen) {
			t.Fatalf("call %d to a hanging backend: %v, want a timeout", i, err)
		}
	}
	st := status(m, "slow")
	if st.Breaker != backends.BreakerOpen || st.Health != backends.HealthDegraded || st.Failures != 2 {
		t.Fatalf("after 2 timeouts status = %+v, want open, degraded, 2 failures", st)
	}
	start := time.Now()
	_, err := callTool(s, "echo", nil)
	if !errors.Is(err, backends.ErrCircuitOpen) || !errors.Is(err, backends.ErrUnavailable) ||
		!strings.Contains(err.Error(), `backend "slow" is unavailable (circuit open)`) {
		t.Fatalf("call with the circuit open: %v", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("a call refused by the open circuit took %v", d)
	}

	hang.Store(false)
	waitFor(t, 2*time.Second, "half-open", func() bool { return status(m, "slow").Breaker == backends.BreakerHalfOpen })
	call(t, s, "echo", map[string]any{"text": "probe"})
	if st := status(m, "slow"); st.Breaker != backends.BreakerClosed || st.Health != backends.HealthHealthy {
		t.Errorf("after a good probe status = %+v, want closed and healthy", st)
	}
}

// TestPingTimeoutKeepsTheConnectionUntilUnhealthy: a backend that stops
// answering ping is degraded but keeps its connection; once unhealthy it is
// reconnected.
func TestPingTimeoutKeepsTheConnectionUntilUnhealthy(t *testing.T) {
	t.Parallel()
	var mute atomic.Bool
	var initializes atomic.Int32
	srv := startHTTPBackend(t, "mute", config.TransportStreamableHTTP, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				method, _ := rpcMethod(r)
				if method == "initialize" {
					initializes.Add(1)
				}
				if method == "ping" && mute.Load() {
					<-r.Context().Done()
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	opts := testOptions(nil)
	opts.PingInterval = 100 * time.Millisecond
	opts.PingTimeout = 50 * time.Millisecond
	opts.UnhealthyAfter = 4
	m, hl := startWatched(t, srv.config("mute", config.TransportStreamableHTTP), opts)

	mute.Store(true)
	waitFor(t, 5*time.Second, "degraded", func() bool { return status(m, "mute").Health == backends.HealthDegraded })
	if st := status(m, "mute"); st.State != backends.StateConnected || initializes.Load() != 1 {
		t.Errorf("a degraded backend was reconnected: %+v, %d initializes", st, initializes.Load())
	}
	waitFor(t, 5*time.Second, "a reconnect once unhealthy", func() bool { return initializes.Load() >= 2 })
	if !hl.seen(backends.HealthUnhealthy) {
		t.Errorf("reconnected before unhealthy; health changes %v", hl.states)
	}
	mute.Store(false)
	waitFor(t, 5*time.Second, "healthy", func() bool { return status(m, "mute").Health == backends.HealthHealthy })
}
