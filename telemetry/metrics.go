package telemetry

import (
	"context"
	"encoding/json"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/parse"
)

// Metrics turns audit events into the MCP-level series and span
// attributes. It is an audit.Recorder: the server hands it every event,
// the audited ones and the others alike.
//
//	vmcp_requests_total{method, outcome}
//	vmcp_tool_call_duration_seconds{tool, backend}
//
// Labels are bounded: method is an MCP method name vmcp knows, "other" or
// "unknown" (refused before the body was read); tool and backend are the
// event's name and Backend (which the audit stage takes from the
// catalogue), "unknown" for an event that names no backend. A find_tool
// search is vmcp's own and no tool call: it is counted, but has no
// duration series. Record also names the request's server span
// "{method} {tool}" and sets mcp.method.name, gen_ai.tool.name,
// vmcp.backend and vmcp.outcome on it, vmcp.via for a call through the
// optimizer (call_tool, find_tool), jsonrpc.request.id, mcp.session.id when
// the stage has not set it from the request header (initialize: the
// session starts with the response), and error.type (the outcome) with an
// error status for every outcome but success.
type Metrics struct {
	requests metric.Int64Counter
	duration metric.Float64Histogram
}

var _ audit.Recorder = (*Metrics)(nil)

// NewMetrics creates the instruments on tel's meter provider.
func NewMetrics(tel *Telemetry) (*Metrics, error) {
	m := tel.MeterProvider().Meter(scope)
	requests, err := m.Int64Counter("vmcp_requests_total",
		metric.WithDescription("MCP requests, by method and outcome, the refused ones included."))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	duration, err := m.Float64Histogram("vmcp_tool_call_duration_seconds",
		metric.WithDescription("Duration of served tools/call requests, by post-aggregation tool and backend."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	return &Metrics{requests: requests, duration: duration}, nil
}

// unknown is the label of a value vmcp does not know.
const unknown = "unknown"

// Record counts e, records the duration of a served tool call, and
// annotates the span on ctx. It never blocks.
func (m *Metrics) Record(ctx context.Context, e audit.Event) {
	method := methodLabel(e.Method)
	outcome := string(e.Outcome)
	if outcome == "" {
		outcome = unknown
	}
	m.requests.Add(ctx, 1, metric.WithAttributes(attribute.String("method", method), attribute.String("outcome", outcome)))

	var tool, backend string
	if e.Method == methodToolsCall {
		switch {
		case e.Via == parse.FindToolName:
			tool = parse.FindToolName
		case e.Backend != "":
			tool, backend = e.Name, e.Backend
		default:
			tool, backend = unknown, unknown
		}
		if backend != "" && !refused(e.Outcome) {
			m.duration.Record(ctx, e.Duration.Seconds(), metric.WithAttributes(
				attribute.String("tool", tool), attribute.String("backend", backend)))
		}
	}

	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 9)
	attrs = append(attrs, attribute.String("vmcp.outcome", outcome))
	if id, ok := requestID(e.RequestID); ok {
		attrs = append(attrs, semconv.JSONRPCRequestID(id))
	}
	if e.SessionID != "" && !hasAttr(span, semconv.McpSessionIDKey) {
		attrs = append(attrs, semconv.McpSessionID(e.SessionID))
	}
	if e.Method != "" {
		attrs = append(attrs, semconv.McpMethodNameKey.String(method))
		span.SetName(method)
	}
	if tool != "" {
		attrs = append(attrs, semconv.GenAIToolName(tool), semconv.GenAIOperationNameExecuteTool)
		if backend != "" {
			attrs = append(attrs, attribute.String("vmcp.backend", backend))
		}
		span.SetName(method + " " + tool)
	}
	if e.Via != "" {
		attrs = append(attrs, attribute.String("vmcp.via", e.Via))
	}
	if e.Outcome != audit.OutcomeSuccess {
		attrs = append(attrs, semconv.ErrorTypeKey.String(outcome))
		span.SetStatus(codes.Error, e.Reason)
	}
	span.SetAttributes(attrs...)
}

// maxRequestID bounds the JSON-RPC id put on a span: the id is client
// input, and a longer one is no use for finding a request.
const maxRequestID = 256

// requestID is the jsonrpc.request.id of raw, the id's JSON text: a
// string's value without quotes, a number as sent. ok is false for no id,
// null, or one longer than maxRequestID.
func requestID(raw string) (id string, ok bool) {
	if raw == "" || raw == "null" || len(raw) > maxRequestID {
		return "", false
	}
	if raw[0] != '"' {
		return raw, true
	}
	if err := json.Unmarshal([]byte(raw), &id); err != nil {
		return "", false
	}
	return id, true
}

// hasAttr reports whether span already has an attribute under key. A span
// that cannot tell (not the SDK's) is taken not to have it.
func hasAttr(span trace.Span, key attribute.Key) bool {
	ro, ok := span.(interface{ Attributes() []attribute.KeyValue })
	if !ok {
		return false
	}
	for _, kv := range ro.Attributes() {
		if kv.Key == key {
			return true
		}
	}
	return false
}

// refused reports whether outcome is a refusal before the call was
// served: such events carry no call duration.
func refused(o audit.Outcome) bool {
	switch o {
	case audit.OutcomeUnauthenticated, audit.OutcomeForbidden, audit.OutcomeRateLimited, audit.OutcomeBadRequest:
		return true
	}
	return false
}

const methodToolsCall = "tools/call"

// methods are the MCP methods a client may send, the label values of
// method besides "other" and "unknown".
var methods = map[string]bool{
	"initialize": true, "ping": true,
	"tools/list": true, methodToolsCall: true,
	"resources/list": true, "resources/templates/list": true, "resources/read": true,
	"resources/subscribe": true, "resources/unsubscribe": true,
	"prompts/list": true, "prompts/get": true,
	"completion/complete": true, "logging/setLevel": true,
	"notifications/initialized": true, "notifications/cancelled": true,
	"notifications/progress": true, "notifications/roots/list_changed": true,
}

// methodLabel bounds an MCP method name coming from a client.
func methodLabel(m string) string {
	switch {
	case m == "":
		return unknown
	case methods[m]:
		return m
	}
	return "other"
}
