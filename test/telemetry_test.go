package test

// End-to-end tests of telemetry: vmcp in process with OIDC (keys from a
// JWKS the test serves), a rate limit and Prometheus on, in front of a
// demo backend behind a proxy that keeps the traceparent of every tools/call
// reaching it; spans go to an in-memory recorder given through
// server.Options.TracerProvider.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/vmcp/vmcp/server"
)

// telAudience is the audience of the tokens in these tests.
const telAudience = "https://vmcp.e2e.test/mcp"

// telEnv is a vmcp with telemetry in front of a demo backend.
type telEnv struct {
	V      *vmcp
	Spans  *tracetest.SpanRecorder
	Proxy  *headerProxy
	issuer string
	key    any // signs the tokens
}

// startTelEnv starts the backend, the proxy, the JWKS and vmcp with
// telemetry (yaml, indented by zero) and tp as its tracer provider (nil: none).
func startTelEnv(t *testing.T, telemetryYAML string, traced bool) *telEnv {
	t.Helper()
	e := &telEnv{}
	demo := startDemo(t, "demo", "weather", "streamable-http", "")
	e.Proxy = startHeaderProxy(t, demo.URL)

	k := newRSAKey(t)
	e.key = k
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(keys.Close)
	e.issuer = keys.URL

	yaml := fmt.Sprintf(`name: %s
server: {host: 127.0.0.1, port: 0}
backends:
  - {name: demo, transport: streamable-http, url: %q, requestTimeout: 10s}
incomingAuth:
  type: oidc
  oidc: {issuer: %q, audience: %q, jwksUrl: %q, requiredScopes: [%q]}
rateLimiting:
  perUser: {maxTokens: 100, refillPeriod: 1m}
  tools:
    - {name: demo_add, perUser: {maxTokens: 1, refillPeriod: 1h}}
%s
`, uniqueName("e2e-tel"), e.Proxy.URL, e.issuer, telAudience, keys.URL, requiredScope, telemetryYAML)
	opts := server.Options{}
	if traced {
		e.Spans = tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e.Spans))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		opts.TracerProvider = tp
	}
	e.V = startVMCPWith(t, yaml, opts)
	return e
}

// token returns a new token for sub: each is distinct, so each is
// verified (not answered from the cache) the first time.
func (e *telEnv) token(t *testing.T, sub string) string {
	return signJWT(t, e.key, jose.RS256, "k1", validClaims(e.issuer, telAudience, sub))
}

// headerProxy is a reverse proxy in front of a backend that keeps the
// traceparent header of each tools/call POST, by the marker in its body.
type headerProxy struct {
	URL string
	mu  sync.Mutex
	// traceparent maps a call's marker to the traceparent it arrived with.
	traceparent map[string]string
}

// startHeaderProxy serves a proxy to backendURL until t ends. A tools/call
// marker is the value of its "text" argument.
func startHeaderProxy(t *testing.T, backendURL string) *headerProxy {
	t.Helper()
	target, err := url.Parse(backendURL)
	if err != nil {
		t.Fatal(err)
	}
	hp := &headerProxy{traceparent: map[string]string{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	tr := &http.Transport{}
	rp.Transport = tr
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			var msg struct {
				Method string `json:"method"`
				Params struct {
					Arguments struct {
						Text string `json:"text"`
					} `json:"arguments"`
				} `json:"params"`
			}
			if json.Unmarshal(body, &msg) == nil && msg.Method == "tools/call" {
				hp.mu.Lock()
				hp.traceparent[msg.Params.Arguments.Text] = r.Header.Get("traceparent")
				hp.mu.Unlock()
			}
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			r.ContentLength = int64(len(body))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		tr.CloseIdleConnections()
	})
	hp.URL = srv.URL + target.Path
	return hp
}

// header returns the traceparent the call with marker arrived with, and
// whether it arrived at all.
func (hp *headerProxy) header(marker string) (string, bool) {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	h, ok := hp.traceparent[marker]
	return h, ok
}

// tracedPost sends body to vmcp on session sid with token and, unless "",
// the client's traceparent.
func tracedPost(t *testing.T, mcpURL, token, sid, traceparent, body string) httpResult {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t, 15*time.Second), http.MethodPost, mcpURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Mcp-Protocol-Version", protocolVersion)
	}
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// The client's trace context in these tests.
const (
	clientTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpanID  = "00f067aa0ba902b7"
)

// TestTelemetryTraceOfToolCall: a tools/call carrying the client's
// traceparent makes one trace: vmcp's server span, the child of the
// client's span, with the token verification, the rate-limit check and
// the backend call as its children; the backend receives the trace,
// as the child of the backend-call span.
func TestTelemetryTraceOfToolCall(t *testing.T) {
	t.Parallel()
	e := startTelEnv(t, "telemetry: {prometheus: true}", true)
	sid := openSession(t, e.V.URL, e.token(t, "alice"))

	marker := uniqueName("traced")
	res := tracedPost(t, e.V.URL, e.token(t, "alice"), sid, "00-"+clientTraceID+"-"+clientSpanID+"-01",
		toolCall(`3`, "demo_echo", map[string]any{"text": marker}))
	if res.Status != http.StatusOK || !strings.Contains(string(res.Body), marker) {
		t.Fatalf("tools/call: status %d: %s", res.Status, res.Body)
	}

	var spans map[string]sdktrace.ReadOnlySpan // by name
	var server sdktrace.ReadOnlySpan
	eventually(t, 5*time.Second, "the server span ends", func() error {
		spans = map[string]sdktrace.ReadOnlySpan{}
		server = nil
		for _, s := range e.Spans.Ended() {
			if s.SpanContext().TraceID().String() != clientTraceID {
				continue
			}
			spans[s.Name()] = s
			if s.SpanKind() == trace.SpanKindServer {
				server = s
			}
		}
		if server == nil {
			return fmt.Errorf("spans of the trace so far: %v", names(spans))
		}
		return nil
	})
	if server.Parent().SpanID().String() != clientSpanID || !server.Parent().IsRemote() {
		t.Errorf("server span's parent is %s, want the client's span %s", server.Parent().SpanID(), clientSpanID)
	}
	attrs := attrMap(server)
	if server.Name() != "tools/call demo_echo" || attrs["mcp.method.name"] != "tools/call" || attrs["gen_ai.tool.name"] != "demo_echo" ||
		attrs["vmcp.backend"] != "demo" || attrs["vmcp.outcome"] != "success" {
		t.Errorf("server span %q attributes %v; want it named and annotated after the MCP request", server.Name(), attrs)
	}
	if attrs["http.request.method"] != "POST" || attrs["http.response.status_code"] != "200" || attrs["mcp.session.id"] != sid {
		t.Errorf("server span %q attributes %v", server.Name(), attrs)
	}
	for _, name := range []string{"auth.verify", "ratelimit.check", "tools/call echo"} {
		s, ok := spans[name]
		if !ok {
			t.Errorf("no span %q in the trace; have %v", name, names(spans))
			continue
		}
		if s.Parent().SpanID() != server.SpanContext().SpanID() {
			t.Errorf("span %q is not a child of the server span", name)
		}
	}
	call, ok := spans["tools/call echo"]
	if !ok {
		return
	}
	if a := attrMap(call); call.SpanKind() != trace.SpanKindClient || a["vmcp.backend"] != "demo" ||
		a["gen_ai.tool.name"] != "echo" || a["mcp.method.name"] != "tools/call" {
		t.Errorf("backend call span: kind %v, attributes %v", call.SpanKind(), a)
	}
	if a := attrMap(spans["ratelimit.check"]); a["vmcp.ratelimit.allowed"] != "true" {
		t.Errorf("rate-limit check span attributes %v", a)
	}

	got, ok := e.Proxy.header(marker)
	want := "00-" + clientTraceID + "-" + call.SpanContext().SpanID().String() + "-01"
	if !ok || got != want {
		t.Errorf("the backend got traceparent %q (arrived %v), want %q: the backend-call span's context", got, ok, want)
	}
}

// TestMetricsEndpoint: /metrics on the server port has every series, with
// labels from the catalogue and the config only.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	e := startTelEnv(t, "telemetry: {prometheus: true}", false)
	tok := e.token(t, "bob")
	sid := openSession(t, e.V.URL, tok)

	marker := uniqueName("metrics")
	for _, call := range []struct {
		tool   string
		args   map[string]any
		status int
	}{
		{"demo_echo", map[string]any{"text": marker}, http.StatusOK},
		{"demo_add", map[string]any{"a": 1, "b": 2}, http.StatusOK},
		{"demo_add", map[string]any{"a": 1, "b": 2}, http.StatusTooManyRequests},
		{"made_up_" + marker, nil, http.StatusOK}, // answered with a JSON-RPC error
	} {
		if res := tracedPost(t, e.V.URL, tok, sid, "", toolCall(`4`, call.tool, call.args)); res.Status != call.status {
			t.Fatalf("%s: status %d, want %d: %s", call.tool, res.Status, call.status, res.Body)
		}
	}
	if res := tracedPost(t, e.V.URL, "", "", "", initializeBody); res.Status != http.StatusUnauthorized {
		t.Fatalf("without a token: status %d", res.Status)
	}
	if _, ok := e.Proxy.header(marker); !ok {
		t.Fatal("the echo call did not reach the backend")
	}
	if h, _ := e.Proxy.header(marker); h != "" {
		t.Errorf("with tracing off the backend got traceparent %q", h)
	}

	status, body := httpGet(t, e.V.Base+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics: status %d", status)
	}
	text := string(body)
	for _, want := range []string{
		`vmcp_requests_total{method="tools/call",outcome="success"} 2`,
		`vmcp_requests_total{method="tools/call",outcome="rate_limited"} 1`,
		`vmcp_requests_total{method="tools/call",outcome="bad_request"} 1`,
		`vmcp_requests_total{method="unknown",outcome="unauthenticated"} 1`,
		`vmcp_requests_total{method="initialize",outcome="success"} 1`,
		`vmcp_tool_call_duration_seconds_count{backend="demo",tool="demo_echo"} 1`,
		`vmcp_tool_call_duration_seconds_count{backend="demo",tool="demo_add"} 1`,
		`vmcp_ratelimit_decisions_total{outcome="allowed",scope="all"} 3`,
		`vmcp_ratelimit_decisions_total{outcome="rejected",scope="perUser tool demo_add"} 1`,
		`vmcp_ratelimit_check_duration_seconds_count 4`,
		`vmcp_backend_up{backend="demo"} 1`,
		`vmcp_backend_state{backend="demo",state="connected"} 1`,
		`vmcp_backend_health{backend="demo",health="healthy"} 1`,
		`vmcp_catalogue_items{kind="tools"} `,
		`vmcp_catalogue_items{kind="prompts"} `,
		`vmcp_catalogue_items{kind="resources"} `,
		`vmcp_sessions_active 1`,
		`vmcp_http_request_duration_seconds_count{code="200",method="POST"}`,
		`vmcp_http_request_duration_seconds_count{code="429",method="POST"} 1`,
		`vmcp_http_request_duration_seconds_count{code="401",method="POST"} 1`,
		`target_info{`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(text, marker) {
		t.Error("/metrics has a label value taken from a client's request")
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}
}

// TestTelemetryUnset: with no telemetry there is no /metrics, and a
// client's traceparent does not reach the backend.
func TestTelemetryUnset(t *testing.T) {
	t.Parallel()
	e := startTelEnv(t, "", false)
	tok := e.token(t, "carol")
	sid := openSession(t, e.V.URL, tok)
	marker := uniqueName("untraced")
	res := tracedPost(t, e.V.URL, tok, sid, "00-"+clientTraceID+"-"+clientSpanID+"-01",
		toolCall(`5`, "demo_echo", map[string]any{"text": marker}))
	if res.Status != http.StatusOK {
		t.Fatalf("tools/call: status %d: %s", res.Status, res.Body)
	}
	if h, ok := e.Proxy.header(marker); !ok || h != "" {
		t.Errorf("backend got traceparent %q (arrived %v), want the call without one", h, ok)
	}
	if status, _ := httpGet(t, e.V.Base+"/metrics"); status != http.StatusNotFound {
		t.Errorf("/metrics: status %d, want 404", status)
	}
}

// names lists the keys of spans.
func names(spans map[string]sdktrace.ReadOnlySpan) []string {
	out := make([]string, 0, len(spans))
	for n := range spans {
		out = append(out, n)
	}
	return out
}

// attrMap returns a span's attributes as strings.
func attrMap(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	if s == nil {
		return m
	}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}
