package router

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
)

// noSpan is the span of calls made while the request is not traced.
var noSpan = trace.SpanFromContext(context.Background())

// startCall starts the client span of one backend call, "{method}
// {target}", as a child of the span on ctx, with the tracer provider of
// that span. When that span is not recording (tracing off, or not
// sampled) it costs nothing and ctx is returned as is. target is the
// original name of a tool or prompt, the attribute target is set on.
func startCall(ctx context.Context, method, backend string, target attribute.KeyValue) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, noSpan
	}
	name := method
	if target.Key != semconv.McpResourceURIKey { // URIs would make span names unbounded
		name += " " + target.Value.AsString()
	}
	attrs := []attribute.KeyValue{
		semconv.McpMethodNameKey.String(method),
		attribute.String("vmcp.backend", backend),
		target,
	}
	if method == "tools/call" {
		attrs = append(attrs, semconv.GenAIOperationNameExecuteTool)
	}
	return parent.TracerProvider().Tracer("github.com/vmcp/vmcp/router").Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endCall ends a backend call's span: error.type backend_error for a
// failed call, tool_error for a tool result with isError.
func endCall(span trace.Span, err error, toolError bool) {
	switch {
	case err != nil:
		span.SetAttributes(semconv.ErrorTypeKey.String("backend_error"))
		span.SetStatus(codes.Error, err.Error())
	case toolError:
		span.SetAttributes(semconv.ErrorTypeKey.String("tool_error"))
		span.SetStatus(codes.Error, "tool_error")
	}
	span.End()
}
