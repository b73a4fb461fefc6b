package auth

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
)

// noSpan is the span of a verification while the request is not traced.
var noSpan = trace.SpanFromContext(context.Background())

// startVerify starts the span "auth.verify" of a token verification that
// missed the cache (a signature check, perhaps a key fetch), as a child of
// the span on ctx, with that span's tracer provider. A cache hit gets no
// span: it costs less than one. Untraced requests pay nothing.
func startVerify(ctx context.Context) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, noSpan
	}
	return parent.TracerProvider().Tracer("github.com/vmcp/vmcp/auth").Start(ctx, "auth.verify")
}

// endVerify ends the span, with the OAuth error code as error.type when
// the token was refused.
func endVerify(span trace.Span, err error) {
	if err != nil {
		typ := "invalid_token"
		var e *Error
		if errors.As(err, &e) {
			typ = e.Code
		}
		span.SetAttributes(semconv.ErrorTypeKey.String(typ))
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
