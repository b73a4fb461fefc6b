package router_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestBackendCallSpans: under a recording span each backend call is a
// client span, its child, naming the backend and the original name;
// failures are errors. Untraced calls make no span.
func TestBackendCallSpans(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	f := newFixture(t)

	if _, err := f.router.CallTool(context.Background(), callReq("jira_search", nil)); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("an untraced call made %d spans", n)
	}

	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	if _, err := f.router.CallTool(ctx, callReq("jira_search", nil)); err != nil {
		t.Fatal(err)
	}
	f.github.result = &mcp.CallToolResult{IsError: true}
	if _, err := f.router.CallTool(ctx, callReq("github_search", nil)); err != nil {
		t.Fatal(err)
	}
	f.github.err = errors.New("connection refused")
	_, _ = f.router.GetPrompt(ctx, mcp.GetPromptRequest{Params: mcp.GetPromptParams{Name: "github_summary"}})
	parent.End()

	spans := rec.Ended()
	if len(spans) != 4 {
		t.Fatalf("%d spans, want 3 calls and the parent", len(spans))
	}
	want := []struct {
		name, backend, errType string
		target                 attribute.KeyValue
	}{
		{"tools/call search", "jira", "", attribute.String("gen_ai.tool.name", "search")},
		{"tools/call search", "github", "tool_error", attribute.String("gen_ai.tool.name", "search")},
		{"prompts/get summary", "github", "backend_error", attribute.String("gen_ai.prompt.name", "summary")},
	}
	for i, w := range want {
		s := spans[i]
		attrs := map[attribute.Key]string{}
		for _, kv := range s.Attributes() {
			attrs[kv.Key] = kv.Value.Emit()
		}
		if s.Name() != w.name || s.SpanKind() != trace.SpanKindClient || s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %d: %q kind %v parent %v; want %q, client, child of the request", i, s.Name(), s.SpanKind(), s.Parent().SpanID(), w.name)
		}
		if attrs["vmcp.backend"] != w.backend || attrs[w.target.Key] != w.target.Value.AsString() || attrs["error.type"] != w.errType {
			t.Errorf("span %d attributes %v; want backend %s, %s, error.type %q", i, attrs, w.backend, w.target.Key, w.errType)
		}
		if (w.errType != "") != (s.Status().Code == codes.Error) {
			t.Errorf("span %d status %v, error.type %q", i, s.Status(), w.errType)
		}
	}
}
