package backends_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/config"
)

// discoverBackend answers server/discover with discover and any other
// request with a JSON result, recording the headers and body of each.
type discoverBackend struct {
	*httptest.Server
	probes atomic.Int32

	mu     sync.Mutex
	header http.Header
	body   string
}

func newDiscoverBackend(t *testing.T, discover http.HandlerFunc) *discoverBackend {
	t.Helper()
	b := &discoverBackend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Mcp-Method") == "server/discover" {
			b.probes.Add(1)
			discover(w, r)
			return
		}
		b.mu.Lock()
		b.header, b.body = r.Header.Clone(), string(body)
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	t.Cleanup(b.Close)
	return b
}

func answer(status int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func newModern(t *testing.T, cfg config.Backend, auth config.OutgoingAuth, opts backends.Options) *backends.Modern {
	t.Helper()
	opts.Logger = testLogger()
	m, err := backends.New([]config.Backend{cfg}, auth, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return backends.NewModern(m)
}

func TestModernSupportsProbesServerDiscover(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		discover http.HandlerFunc
		want     bool
	}{
		{"JSON result", answer(200, "application/json",
			`{"jsonrpc":"2.0","id":"vmcp-discover","result":{"supportedVersions":["2026-07-28","2025-11-25"],"capabilities":{}}}`), true},
		{"event-stream result", answer(200, "text/event-stream",
			"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"vmcp-discover\",\"result\":{\"supportedVersions\":[\"2026-07-28\"],\"capabilities\":{}}}\n\n"), true},
		{"unsupported version, session-based ones listed", answer(400, "application/json",
			`{"jsonrpc":"2.0","id":"vmcp-discover","error":{"code":-32022,"message":"unsupported","data":{"supported":["2025-11-25"],"requested":"2026-07-28"}}}`), false},
		{"method not found", answer(404, "application/json", `{"jsonrpc":"2.0","id":"vmcp-discover","error":{"code":-32601,"message":"Method not found"}}`), false},
		{"not MCP at all", answer(404, "text/plain", "404 page not found"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newDiscoverBackend(t, tc.discover)
			x := newModern(t, config.Backend{Name: "b", Transport: config.TransportStreamableHTTP, URL: b.URL}, config.OutgoingAuth{}, backends.Options{})
			for range 3 {
				if got := x.Supports(context.Background(), "b", "2026-07-28"); got != tc.want {
					t.Fatalf("Supports = %v, want %v", got, tc.want)
				}
			}
			if n := b.probes.Load(); n != 1 {
				t.Fatalf("%d server/discover probes, want 1 (the answer is kept)", n)
			}
		})
	}
}

func TestModernOnlyForStreamableHTTP(t *testing.T) {
	t.Parallel()
	b := newDiscoverBackend(t, answer(200, "application/json", `{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"]}}`))
	x := newModern(t, config.Backend{Name: "b", Transport: config.TransportSSE, URL: b.URL}, config.OutgoingAuth{}, backends.Options{})
	if x.Supports(context.Background(), "b", "2026-07-28") || x.Supports(context.Background(), "nope", "2026-07-28") {
		t.Fatal("an SSE or unknown backend is reported as taking stateless requests")
	}
	if _, err := x.Post(context.Background(), "b", "2026-07-28", []byte(`{}`), nil); !errors.Is(err, backends.ErrNotModern) {
		t.Fatalf("Post to an SSE backend = %v, want ErrNotModern", err)
	}
	if b.probes.Load() != 0 {
		t.Fatal("an SSE backend was probed")
	}
}

// TestModernPostHeaders: the backend gets the request's MCP headers and its
// outgoing auth, and nothing else of the client's request.
func TestModernPostHeaders(t *testing.T) {
	t.Parallel()
	b := newDiscoverBackend(t, answer(200, "application/json", `{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"]}}`))
	auth := config.OutgoingAuth{Backends: map[string]config.BackendAuth{
		"b": {Type: config.AuthHeaderInjection, HeaderName: "Authorization", HeaderValueEnv: "B_TOKEN"},
	}}
	x := newModern(t, config.Backend{Name: "b", Transport: config.TransportStreamableHTTP, URL: b.URL}, auth,
		backends.Options{Getenv: func(k string) (string, bool) { return "Bearer backend-token", k == "B_TOKEN" }})
	h := http.Header{}
	h.Set("Authorization", "Bearer client-token")
	h.Set("Cookie", "session=1")
	h.Set("Mcp-Protocol-Version", "2026-07-28")
	h.Set("Mcp-Method", "tools/call")
	h.Set("Mcp-Name", "t")
	h.Set("Mcp-Param-Region", "eu")
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}`
	resp, err := x.Post(context.Background(), "b", "2026-07-28", []byte(body), h)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(got) != `{"jsonrpc":"2.0","id":1,"result":{}}` {
		t.Fatalf("response body = %s", got)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.body != body {
		t.Errorf("backend got body %s, want %s", b.body, body)
	}
	for k, v := range map[string]string{
		"Authorization": "Bearer backend-token", "Cookie": "", "Mcp-Protocol-Version": "2026-07-28",
		"Mcp-Method": "tools/call", "Mcp-Name": "t", "Mcp-Param-Region": "eu", "Content-Type": "application/json",
	} {
		if g := b.header.Get(k); g != v {
			t.Errorf("backend got %s: %q, want %q", k, g, v)
		}
	}
	if !strings.Contains(b.header.Get("Accept"), "text/event-stream") {
		t.Errorf("backend got Accept %q, want event streams accepted", b.header.Get("Accept"))
	}
}

// TestModernPostFailureCounts: a request that gets no answer counts for
// the circuit breaker like a failed call through the session.
func TestModernPostFailureCounts(t *testing.T) {
	t.Parallel()
	b := newDiscoverBackend(t, answer(200, "application/json", `{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"]}}`))
	x := newModern(t, config.Backend{Name: "b", Transport: config.TransportStreamableHTTP, URL: b.URL}, config.OutgoingAuth{},
		backends.Options{Breaker: backends.BreakerConfig{FailureThreshold: 1, OpenFor: time.Hour}})
	if !x.Supports(context.Background(), "b", "2026-07-28") {
		t.Fatal("backend not probed as stateless")
	}
	b.Close()
	_, err := x.Post(context.Background(), "b", "2026-07-28", []byte(`{}`), nil)
	if !errors.Is(err, backends.ErrUnavailable) || !strings.Contains(err.Error(), `backend "b"`) || strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("Post to a closed backend = %v, want ErrUnavailable naming the backend and not its address", err)
	}
	if _, err := x.Post(context.Background(), "b", "2026-07-28", []byte(`{}`), nil); !errors.Is(err, backends.ErrCircuitOpen) {
		t.Fatalf("second Post = %v, want the open circuit", err)
	}
}

// TestModernPostLeavesTheProbeToTheCaller: Post sends what the caller
// decided to relay without probing again, so a probe that expired (or
// changed its answer) after the caller's Supports cannot fail the request
// with ErrNotModern, which the router would not take as "serve it through
// the session".
func TestModernPostLeavesTheProbeToTheCaller(t *testing.T) {
	t.Parallel()
	b := newDiscoverBackend(t, answer(404, "application/json", `{"jsonrpc":"2.0","id":"vmcp-discover","error":{"code":-32601,"message":"Method not found"}}`))
	x := newModern(t, config.Backend{Name: "b", Transport: config.TransportStreamableHTTP, URL: b.URL}, config.OutgoingAuth{}, backends.Options{})
	resp, err := x.Post(context.Background(), "b", "2026-07-28", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}`), nil)
	if err != nil {
		t.Fatalf("Post = %v, want the backend's answer", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || b.probes.Load() != 0 {
		t.Fatalf("Post answered %d after %d probes; want 200 and no probe", resp.StatusCode, b.probes.Load())
	}
	if _, err := x.Post(context.Background(), "b", "2025-11-25", []byte(`{}`), nil); !errors.Is(err, backends.ErrNotModern) {
		t.Fatalf("Post of a session-based revision = %v, want ErrNotModern", err)
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestWrapTransport: every backend request goes through the wrapped
// transport, of the pooled client or of the caller's, which is left as it
// was.
func TestWrapTransport(t *testing.T) {
	t.Parallel()
	b := newDiscoverBackend(t, answer(200, "application/json", `{"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2026-07-28"]}}`))
	callers := &http.Client{}
	for _, hc := range []*http.Client{nil, callers} {
		var wrapped atomic.Int32
		x := newModern(t, config.Backend{Name: "b", Transport: config.TransportStreamableHTTP, URL: b.URL}, config.OutgoingAuth{},
			backends.Options{HTTPClient: hc, WrapTransport: func(base http.RoundTripper) http.RoundTripper {
				return roundTripFunc(func(r *http.Request) (*http.Response, error) {
					wrapped.Add(1)
					return base.RoundTrip(r)
				})
			}})
		resp, err := x.Post(context.Background(), "b", "2026-07-28", []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if wrapped.Load() != 1 {
			t.Errorf("client %v: %d requests went through the wrapper, want 1", hc, wrapped.Load())
		}
	}
	if callers.Transport != nil {
		t.Error("the caller's client was modified")
	}
}
