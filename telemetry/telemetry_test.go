package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/config"
)

// TestDisabledStageCostsNothing: with nothing configured the stage is next
// itself, so requests pay nothing for it, and every request reaches next.
func TestDisabledStageCostsNothing(t *testing.T) {
	t.Parallel()
	tel, err := Setup(context.Background(), config.Telemetry{ServiceName: "vmcp"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	if tel.Tracing() || tel.Metrics() || tel.MetricsHandler() != nil {
		t.Fatalf("unset telemetry is on: tracing %v, metrics %v", tel.Tracing(), tel.Metrics())
	}
	for _, tel := range []*Telemetry{tel, nil} {
		next := &countingHandler{}
		h := New(tel)(next)
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/mcp", nil))
		if next.calls != 1 {
			t.Fatalf("next called %d times, want 1", next.calls)
		}
		if h != http.Handler(next) {
			t.Fatalf("stage wrapped next in %T; a disabled stage must return next unchanged", h)
		}
	}
}

type countingHandler struct{ calls int }

func (c *countingHandler) ServeHTTP(http.ResponseWriter, *http.Request) { c.calls++ }

// traced returns Telemetry recording spans into the returned recorder.
func traced(t *testing.T, prometheus bool) (*Telemetry, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tel, err := Setup(context.Background(), config.Telemetry{ServiceName: "vmcp", Prometheus: prometheus}, Options{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel, rec
}

// TestStageSpan: the server span continues the client's traceparent, is on
// the context next sees (children and Metrics attach to it), ends with the
// status code, and is named after the MCP request once Metrics knows it.
func TestStageSpan(t *testing.T) {
	t.Parallel()
	tel, rec := traced(t, false)
	m, err := NewMetrics(tel)
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		_, child := trace.SpanFromContext(ctx).TracerProvider().Tracer("test").Start(ctx, "child")
		child.End()
		m.Record(ctx, audit.Event{Method: "tools/call", Name: "weather_forecast", Backend: "weather", Outcome: audit.OutcomeToolError, Duration: time.Millisecond})
		w.WriteHeader(http.StatusAccepted)
	})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader("{}"))
	req.Pattern = "/mcp"
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	req.Header.Set("Mcp-Session-Id", "s-1")
	New(tel)(next).ServeHTTP(httptest.NewRecorder(), req)

	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans ended, want 2 (child, server)", len(spans))
	}
	child, server := spans[0], spans[1]
	if server.SpanContext().TraceID().String() != traceID || server.Parent().SpanID().String() != "00f067aa0ba902b7" || !server.Parent().IsRemote() {
		t.Errorf("server span is not the child of the client's traceparent: trace %s parent %s", server.SpanContext().TraceID(), server.Parent().SpanID())
	}
	if child.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Errorf("child's parent is %s, want the server span %s", child.Parent().SpanID(), server.SpanContext().SpanID())
	}
	if server.SpanKind() != trace.SpanKindServer || server.Name() != "tools/call weather_forecast" {
		t.Errorf("server span %q kind %v; want %q, server", server.Name(), server.SpanKind(), "tools/call weather_forecast")
	}
	want := map[attribute.Key]attribute.Value{
		"http.request.method":       attribute.StringValue("POST"),
		"http.route":                attribute.StringValue("/mcp"),
		"http.response.status_code": attribute.IntValue(202),
		"mcp.session.id":            attribute.StringValue("s-1"),
		"mcp.method.name":           attribute.StringValue("tools/call"),
		"gen_ai.tool.name":          attribute.StringValue("weather_forecast"),
		"gen_ai.operation.name":     attribute.StringValue("execute_tool"),
		"vmcp.backend":              attribute.StringValue("weather"),
		"vmcp.outcome":              attribute.StringValue("tool_error"),
		"error.type":                attribute.StringValue("tool_error"),
	}
	checkAttrs(t, server.Attributes(), want)
	if server.Status().Code != codes.Error {
		t.Errorf("status %v, want Error for a tool error", server.Status())
	}
}

// checkAttrs fails t for every attribute of want that attrs lacks or has
// with another value.
func checkAttrs(t *testing.T, attrs []attribute.KeyValue, want map[attribute.Key]attribute.Value) {
	t.Helper()
	got := map[attribute.Key]attribute.Value{}
	for _, kv := range attrs {
		got[kv.Key] = kv.Value
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attribute %s = %v, want %v", k, got[k].Emit(), v.Emit())
		}
	}
}

// TestStagePanicEndsSpan: a panic below the stage still ends the span, as
// an error, and reaches the recover stage above.
func TestStagePanicEndsSpan(t *testing.T) {
	t.Parallel()
	tel, rec := traced(t, false)
	h := New(tel)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not reach the caller")
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/mcp", nil))
	}()
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Status().Code != codes.Error {
		t.Fatalf("spans %v; want one, ended with an error", spans)
	}
}

// TestTransport: a request whose context carries a span goes out with its
// traceparent; one without goes out unchanged; the caller's request is not
// modified.
func TestTransport(t *testing.T) {
	t.Parallel()
	got := make(chan string, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("traceparent")
	}))
	defer srv.Close()
	tel, _ := traced(t, false)
	hc := &http.Client{Transport: Transport(nil)}

	ctx, span := tel.TracerProvider().Tracer("test").Start(context.Background(), "call")
	defer span.End()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, strings.NewReader("{}"))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	want := "00-" + span.SpanContext().TraceID().String() + "-" + span.SpanContext().SpanID().String() + "-01"
	if h := <-got; h != want {
		t.Errorf("traceparent %q, want %q", h, want)
	}
	if req.Header.Get("traceparent") != "" {
		t.Error("the caller's request was modified")
	}

	req, _ = http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h := <-got; h != "" {
		t.Errorf("untraced request carried traceparent %q", h)
	}
}

// TestOTLPEndpoint: each endpoint form builds an exporter (connecting
// nothing); a bad one is a config error naming the key.
func TestOTLPEndpoint(t *testing.T) {
	t.Parallel()
	for _, ep := range []string{"collector:4317", "grpc://127.0.0.1:4317", "grpcs://collector.example:4317",
		"http://127.0.0.1:4318", "https://collector.example/custom/v1/traces"} {
		tel, err := Setup(context.Background(), config.Telemetry{ServiceName: "vmcp", OTLPEndpoint: ep}, Options{})
		if err != nil {
			t.Errorf("%s: %v", ep, err)
			continue
		}
		if !tel.Tracing() {
			t.Errorf("%s: tracing is off", ep)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := tel.Shutdown(ctx); err != nil {
			t.Errorf("%s: shutdown with nothing to export: %v", ep, err)
		}
		cancel()
	}
	for _, ep := range []string{"collector", "ftp://collector:21", "grpc://collector", "http://"} {
		_, err := Setup(context.Background(), config.Telemetry{ServiceName: "vmcp", OTLPEndpoint: ep}, Options{})
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "telemetry.otlpEndpoint") {
			t.Errorf("%s: err = %v, want a config error naming telemetry.otlpEndpoint", ep, err)
		}
	}
}
