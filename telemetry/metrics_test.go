package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/config"
)

// scrape returns the Prometheus text of tel's handler.
func scrape(t *testing.T, tel *Telemetry) string {
	t.Helper()
	h := tel.MetricsHandler()
	if h == nil {
		t.Fatal("MetricsHandler is nil with prometheus on")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("/metrics answered %d", w.Code)
	}
	b, _ := io.ReadAll(w.Body)
	return string(b)
}

// TestMetricsSeries: events, gauges and the stage give every series, with
// labels bounded: a tool the catalogue does not know is "unknown", a
// method vmcp does not know is "other", refusals and find_tool searches
// carry no duration (one served unknown tool is the only "unknown" one).
func TestMetricsSeries(t *testing.T) {
	t.Parallel()
	tel, err := Setup(context.Background(), config.Telemetry{ServiceName: "vmcp", Prometheus: true}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	if tel.Tracing() {
		t.Error("tracing is on without an endpoint")
	}
	m, err := NewMetrics(tel)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m.Record(ctx, audit.Event{Method: "tools/call", Name: "weather_forecast", Backend: "weather", Outcome: audit.OutcomeSuccess, Duration: 20 * time.Millisecond})
	m.Record(ctx, audit.Event{Method: "tools/call", Name: "made-up-" + strings.Repeat("x", 10), Outcome: audit.OutcomeBackendError, Duration: time.Millisecond})
	m.Record(ctx, audit.Event{Method: "tools/call", Name: "weather_forecast", Outcome: audit.OutcomeRateLimited})
	m.Record(ctx, audit.Event{Method: "tools/call", Name: "find_tool", Via: "find_tool", Outcome: audit.OutcomeSuccess, Duration: time.Millisecond})
	m.Record(ctx, audit.Event{Outcome: audit.OutcomeUnauthenticated})
	m.Record(ctx, audit.Event{Method: "x/custom-" + strings.Repeat("y", 5), Outcome: audit.OutcomeSuccess})
	err = Observe(tel, State{
		Backends: func() []BackendState {
			return []BackendState{{Name: "weather", State: "connected", Health: "healthy", Up: true}, {Name: "notes", State: "unavailable", Health: "unhealthy"}}
		},
		Catalogue: func() CatalogueSize { return CatalogueSize{Tools: 3, Resources: 2, ResourceTemplates: 1, Prompts: 4} },
		Sessions:  func() int { return 7 },
	})
	if err != nil {
		t.Fatal(err)
	}
	New(tel)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).
		ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("BREW", "/mcp", nil))

	text := scrape(t, tel)
	for _, want := range []string{
		`vmcp_requests_total{method="tools/call",outcome="success"} 2`,
		`vmcp_requests_total{method="tools/call",outcome="backend_error"} 1`,
		`vmcp_requests_total{method="tools/call",outcome="rate_limited"} 1`,
		`vmcp_requests_total{method="unknown",outcome="unauthenticated"} 1`,
		`vmcp_requests_total{method="other",outcome="success"} 1`,
		`vmcp_tool_call_duration_seconds_count{backend="weather",tool="weather_forecast"} 1`,
		`vmcp_tool_call_duration_seconds_count{backend="unknown",tool="unknown"} 1`,
		`vmcp_backend_up{backend="weather"} 1`,
		`vmcp_backend_up{backend="notes"} 0`,
		`vmcp_backend_state{backend="notes",state="unavailable"} 1`,
		`vmcp_backend_health{backend="notes",health="unhealthy"} 1`,
		`vmcp_backend_health{backend="weather",health="healthy"} 1`,
		`vmcp_catalogue_items{kind="tools"} 3`,
		`vmcp_catalogue_items{kind="resource_templates"} 1`,
		`vmcp_catalogue_items{kind="prompts"} 4`,
		`vmcp_sessions_active 7`,
		`vmcp_http_request_duration_seconds_count{code="200",method="_OTHER"} 1`,
		`target_info{`,
		`go_goroutines `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, never := range []string{"made-up", "custom-", "BREW", "otel_scope", `tool="find_tool"`} {
		if strings.Contains(text, never) {
			t.Errorf("/metrics has %q: a label taken from client input", never)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}
}

// TestServersDoNotShareMetrics: two Telemetry in one process keep their
// own registries.
func TestServersDoNotShareMetrics(t *testing.T) {
	t.Parallel()
	var tels [2]*Telemetry
	for i := range tels {
		tel, err := Setup(context.Background(), config.Telemetry{ServiceName: "vmcp", Prometheus: true}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer tel.Shutdown(context.Background())
		tels[i] = tel
	}
	m, err := NewMetrics(tels[0])
	if err != nil {
		t.Fatal(err)
	}
	m.Record(context.Background(), audit.Event{Method: "ping", Outcome: audit.OutcomeSuccess})
	if !strings.Contains(scrape(t, tels[0]), `vmcp_requests_total{method="ping"`) {
		t.Error("the first server's series is missing")
	}
	if strings.Contains(scrape(t, tels[1]), "vmcp_requests_total") {
		t.Error("the second server shows the first one's series")
	}
}

// TestMetricsSpanIDs: Record puts the JSON-RPC id (a string id without its
// quotes), the session of an initialize (which the request header cannot
// carry) and the optimizer's call_tool on the server span, and leaves the
// mcp.session.id the stage took from the header alone.
func TestMetricsSpanIDs(t *testing.T) {
	t.Parallel()
	tel, rec := traced(t, false)
	m, err := NewMetrics(tel)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(header string, e audit.Event) sdktrace.ReadOnlySpan {
		t.Helper()
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.Record(r.Context(), e)
		})
		req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader("{}"))
		if header != "" {
			req.Header.Set("Mcp-Session-Id", header)
		}
		before := len(rec.Ended())
		New(tel)(next).ServeHTTP(httptest.NewRecorder(), req)
		spans := rec.Ended()
		if len(spans) != before+1 {
			t.Fatalf("%d spans ended, want 1", len(spans)-before)
		}
		return spans[len(spans)-1]
	}
	attrs := func(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
		got := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes() {
			got[kv.Key] = kv.Value
		}
		return got
	}

	// initialize: no header, the session comes with the response.
	s := serve("", audit.Event{Method: "initialize", RequestID: "1", SessionID: "s-new", Outcome: audit.OutcomeSuccess})
	checkAttrs(t, s.Attributes(), map[attribute.Key]attribute.Value{
		"jsonrpc.request.id": attribute.StringValue("1"),
		"mcp.session.id":     attribute.StringValue("s-new"),
		"mcp.method.name":    attribute.StringValue("initialize"),
	})
	if _, ok := attrs(s)["vmcp.via"]; ok {
		t.Error("vmcp.via set on a request that did not come through call_tool")
	}

	// A call through call_tool with a string id; the header's session stays.
	s = serve("s-1", audit.Event{Method: "tools/call", Name: "weather_forecast", Via: "call_tool", Backend: "weather",
		RequestID: `"req-7"`, SessionID: "s-other", Outcome: audit.OutcomeSuccess, Duration: time.Millisecond})
	if s.Name() != "tools/call weather_forecast" {
		t.Errorf("span name %q, want %q", s.Name(), "tools/call weather_forecast")
	}
	checkAttrs(t, s.Attributes(), map[attribute.Key]attribute.Value{
		"jsonrpc.request.id": attribute.StringValue("req-7"),
		"mcp.session.id":     attribute.StringValue("s-1"),
		"vmcp.via":           attribute.StringValue("call_tool"),
		"gen_ai.tool.name":   attribute.StringValue("weather_forecast"),
		"vmcp.backend":       attribute.StringValue("weather"),
	})

	// A find_tool search: named as what it is, with no backend.
	s = serve("s-1", audit.Event{Method: "tools/call", Name: "find_tool", Via: "find_tool", Outcome: audit.OutcomeSuccess})
	if s.Name() != "tools/call find_tool" {
		t.Errorf("span name %q, want %q", s.Name(), "tools/call find_tool")
	}
	checkAttrs(t, s.Attributes(), map[attribute.Key]attribute.Value{
		"vmcp.via":         attribute.StringValue("find_tool"),
		"gen_ai.tool.name": attribute.StringValue("find_tool"),
	})
	if v, ok := attrs(s)["vmcp.backend"]; ok {
		t.Errorf("find_tool span has vmcp.backend %v", v.Emit())
	}

	// No id (a notification), a null one, or one too long to be useful:
	// no jsonrpc.request.id.
	for _, id := range []string{"", "null", `"` + strings.Repeat("x", maxRequestID) + `"`} {
		s = serve("s-1", audit.Event{Method: "ping", RequestID: id, SessionID: "s-1", Outcome: audit.OutcomeSuccess})
		if v, ok := attrs(s)["jsonrpc.request.id"]; ok {
			t.Errorf("id %.20q: jsonrpc.request.id = %v, want none", id, v.Emit())
		}
	}
}
