package telemetry

import (
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
)

// New returns the telemetry stage of tel. With tracing on, each request
// gets a server span, the child of the W3C trace context the client sent
// (traceparent), on the request context: later stages add children or
// attributes through trace.SpanFromContext, and Metrics names it after the
// MCP method once the request is known. With metrics on, it records
// vmcp_http_request_duration_seconds by HTTP method and status. With both
// off (or tel nil) it returns next unchanged, at no cost per request.
func New(tel *Telemetry) func(http.Handler) http.Handler {
	if !tel.Tracing() && !tel.Metrics() {
		return func(next http.Handler) http.Handler { return next }
	}
	s := stage{prop: propagation.TraceContext{}}
	if tel.Tracing() {
		s.tracer = tel.tp.Tracer(scope)
	}
	if tel.Metrics() {
		// The name is valid, and the SDK returns a working instrument
		// even along with an error.
		s.duration, _ = tel.mp.Meter(scope).Float64Histogram("vmcp_http_request_duration_seconds",
			metric.WithDescription("Duration of HTTP requests to the MCP endpoint, by method and status; GET streams last as long as the stream."),
			metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
	}
	return func(next http.Handler) http.Handler {
		st := s
		st.next = next
		return &st
	}
}

// stage is the enabled telemetry stage.
type stage struct {
	next     http.Handler
	tracer   trace.Tracer // nil when tracing is off
	prop     propagation.TextMapPropagator
	duration metric.Float64Histogram // nil when metrics are off
}

func (s *stage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx := r.Context()
	var span trace.Span
	if s.tracer != nil {
		ctx = s.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
		ctx, span = s.tracer.Start(ctx, spanName(r), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(requestAttrs(r)...))
		r = r.WithContext(ctx)
	}
	sw := &statusWriter{ResponseWriter: w}
	done := false
	defer func() {
		if !done && span != nil { // next panicked; recover answers below us
			span.SetAttributes(semconv.ErrorTypeKey.String("panic"))
			span.SetStatus(codes.Error, "panic")
			span.End()
		}
	}()
	s.next.ServeHTTP(sw, r)
	done = true

	status := sw.status
	if status == 0 {
		status = http.StatusOK // net/http's answer when the handler wrote nothing
	}
	if span != nil {
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= 500 {
			// Server spans: only 5xx is the server's error (HTTP semconv).
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
			span.SetStatus(codes.Error, "")
		}
		span.End()
	}
	if s.duration != nil {
		s.duration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(
			attribute.String("method", httpMethod(r.Method)), attribute.Int("code", status)))
	}
}

// spanName is the HTTP server span name, "{method} {route}", until Metrics
// renames it after the MCP method.
func spanName(r *http.Request) string {
	m := httpMethod(r.Method)
	if m == "_OTHER" {
		m = "HTTP"
	}
	if r.Pattern == "" {
		return m
	}
	return m + " " + r.Pattern
}

// requestAttrs are the server span's attributes known from the headers.
func requestAttrs(r *http.Request) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 7)
	attrs = append(attrs,
		semconv.HTTPRequestMethodKey.String(httpMethod(r.Method)),
		semconv.URLPath(r.URL.Path),
		semconv.NetworkProtocolName("http"),
		semconv.ClientAddress(clientHost(r.RemoteAddr)),
	)
	if r.Pattern != "" {
		attrs = append(attrs, semconv.HTTPRoute(r.Pattern))
	}
	if id := r.Header.Get("Mcp-Session-Id"); id != "" {
		attrs = append(attrs, semconv.McpSessionID(id))
	}
	if v := r.Header.Get("Mcp-Protocol-Version"); v != "" && len(v) <= 32 {
		attrs = append(attrs, semconv.McpProtocolVersion(v))
	}
	return attrs
}

// clientHost is the host part of a RemoteAddr.
func clientHost(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			h := addr[:i]
			if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
				h = h[1 : len(h)-1]
			}
			return h
		}
	}
	return addr
}

// httpMethod bounds the method label: the methods of HTTP, else _OTHER.
func httpMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodHead, http.MethodOptions,
		http.MethodPut, http.MethodPatch, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// statusWriter remembers the status code. It unwraps for
// http.ResponseController (flushes, read deadlines) and flushes itself.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher for handlers that assert it.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
