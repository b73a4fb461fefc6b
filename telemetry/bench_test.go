package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/vmcp/vmcp/config"
)

// BenchmarkStage measures what the stage adds to one request: nothing when
// off; a sampled server span (recorded, exported by nobody), the request
// duration histogram, or both.
func BenchmarkStage(b *testing.B) {
	tp := sdktrace.NewTracerProvider() // samples every span, exports none
	defer tp.Shutdown(context.Background())
	for _, bc := range []struct {
		name string
		cfg  config.Telemetry
		tp   *sdktrace.TracerProvider
	}{
		{"off", config.Telemetry{}, nil},
		{"tracing", config.Telemetry{}, tp},
		{"metrics", config.Telemetry{Prometheus: true}, nil},
		{"both", config.Telemetry{Prometheus: true}, tp},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opts := Options{}
			if bc.tp != nil {
				opts.TracerProvider = bc.tp
			}
			tel, err := Setup(context.Background(), bc.cfg, opts)
			if err != nil {
				b.Fatal(err)
			}
			defer tel.Shutdown(context.Background())
			h := New(tel)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
			req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			w := httptest.NewRecorder()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
		})
	}
}
