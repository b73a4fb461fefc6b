package auth_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/vmcp/vmcp/auth"
)

// TestVerifySpan: a verification that checks a signature is the span
// auth.verify, a child of the request's; a cache hit is not; a refusal is
// an error with the OAuth code as error.type.
func TestVerifySpan(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	p := newIDP(t, keys.rsa1)
	clk := newClock()
	v := newVerifier(t, p.oidcConfig(), auth.VerifierOptions{Now: clk.now})
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	tok := mint(t, keys.rsa1, "rsa-1", p.claims(clk.now()))

	for range 3 { // one verification, two cache hits
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Verify(ctx, tamper(tok, 2)); err == nil {
		t.Fatal("a tampered token was accepted")
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2: the verification and the refusal, no cache hit", len(spans))
	}
	for _, s := range spans {
		if s.Name() != "auth.verify" || s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %q parent %v; want auth.verify, child of the request", s.Name(), s.Parent().SpanID())
		}
	}
	if spans[0].Status().Code == codes.Error {
		t.Errorf("the accepted token's span is an error: %v", spans[0].Status())
	}
	var errType string
	for _, kv := range spans[1].Attributes() {
		if kv.Key == "error.type" {
			errType = kv.Value.AsString()
		}
	}
	if spans[1].Status().Code != codes.Error || errType != "invalid_token" {
		t.Errorf("refusal span: status %v, error.type %q; want Error, invalid_token", spans[1].Status(), errType)
	}
}
