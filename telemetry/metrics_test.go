package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
// method vmcp does not know is "other", refusals carry no duration.
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
	m, err := NewMetrics(tel, func(name string) (string, bool) { return "weather", name == "weather_forecast" })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m.Record(ctx, audit.Event{Method: "tools/call", Name: "weather_forecast", Outcome: audit.OutcomeSuccess, Duration: 20 * time.Millisecond})
	m.Record(ctx, audit.Event{Method: "tools/call", Name: "made-up-" + strings.Repeat("x", 10), Outcome: audit.OutcomeBackendError, Duration: time.Millisecond})
	m.Record(ctx, audit.Event{Method: "tools/call", Name: "weather_forecast", Outcome: audit.OutcomeRateLimited})
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
		`vmcp_requests_total{method="tools/call",outcome="success"} 1`,
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
	for _, never := range []string{"made-up", "custom-", "BREW", "otel_scope"} {
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
	m, err := NewMetrics(tels[0], nil)
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
