package telemetry

import (
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Transport returns a RoundTripper that sends the W3C trace context of
// each request's context (traceparent, tracestate) to the server, through
// base (nil: http.DefaultTransport). A request whose context carries no
// span goes out unchanged. The caller's request is never modified.
func Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{base: base}
}

type transport struct {
	base http.RoundTripper
}

var propagator = propagation.TraceContext{}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !trace.SpanContextFromContext(r.Context()).IsValid() {
		return t.base.RoundTrip(r)
	}
	r2 := r.Clone(r.Context())
	propagator.Inject(r.Context(), propagation.HeaderCarrier(r2.Header))
	return t.base.RoundTrip(r2)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach base.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
