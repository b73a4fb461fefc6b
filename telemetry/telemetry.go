// Package telemetry is vmcp's OpenTelemetry: the telemetry stage of the
// request path (a server span per HTTP request, continuing the client's W3C
// trace context, and the HTTP request duration), the MCP-level metrics
// (Metrics, an audit.Recorder), the server's gauges (Observe), a
// RoundTripper that carries the trace to HTTP backends (Transport), and the
// Prometheus endpoint.
//
// Tracing is on when telemetry.otlpEndpoint is set (or a TracerProvider is
// given); metrics are on with telemetry.prometheus. What is off costs
// nothing: no SDK provider exists for it, its providers are no-ops, and
// with both off the stage is next itself.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/vmcp/vmcp/config"
)

// scope is the instrumentation scope of vmcp's tracers and meters.
const scope = "github.com/vmcp/vmcp"

// Options are what Setup takes besides the config. The zero value works.
type Options struct {
	// Version is the service.version of the resource. "": "dev".
	Version string
	// TracerProvider records vmcp's spans instead of the one Setup would
	// build; the caller owns it (Shutdown does not shut it down). nil: an
	// SDK provider exporting to telemetry.otlpEndpoint, or no tracing when
	// that is unset.
	TracerProvider trace.TracerProvider
}

// Telemetry holds the tracer and meter providers of one server. A nil
// *Telemetry is valid and has everything off.
type Telemetry struct {
	tp      trace.TracerProvider // a no-op provider when tracing is off
	tracing bool
	mp      metric.MeterProvider // a no-op provider when metrics are off
	metrics bool
	handler http.Handler // nil when metrics are off
	// shutdown flushes and stops the providers Setup built, in order.
	shutdown []func(context.Context) error
}

// Setup builds the providers cfg asks for. It opens no connection: an OTLP
// exporter connects on its first export. The caller must call Shutdown,
// which flushes what is buffered.
//
// telemetry.otlpEndpoint selects the OTLP trace exporter: "host:port" and
// "grpcs://host:port" are OTLP/gRPC over TLS, "grpc://host:port" is
// OTLP/gRPC in plain text, and an "http://" or "https://" URL is OTLP/HTTP
// (protobuf), to the URL's path or /v1/traces when it has none. The
// exporters also read the standard OTEL_EXPORTER_OTLP_* variables (headers,
// certificates, timeout); the endpoint from the config wins.
func Setup(ctx context.Context, cfg config.Telemetry, opts Options) (_ *Telemetry, err error) {
	t := &Telemetry{tp: tracenoop.NewTracerProvider(), mp: metricnoop.NewMeterProvider()}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.Shutdown(context.Background()))
		}
	}()
	if opts.Version == "" {
		opts.Version = "dev"
	}
	var res *resource.Resource
	if opts.TracerProvider != nil || cfg.OTLPEndpoint != "" || cfg.Prometheus {
		res, err = resource.Merge(resource.Default(), resource.NewSchemaless(
			semconv.ServiceName(cfg.ServiceName), semconv.ServiceVersion(opts.Version)))
		if err != nil {
			return nil, fmt.Errorf("telemetry: resource: %w", err)
		}
	}

	switch {
	case opts.TracerProvider != nil:
		t.tp, t.tracing = opts.TracerProvider, true
	case cfg.OTLPEndpoint != "":
		exp, err := newExporter(ctx, cfg.OTLPEndpoint)
		if err != nil {
			return nil, err
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		t.shutdown = append(t.shutdown, tp.Shutdown)
		t.tp, t.tracing = tp, true
	}

	if cfg.Prometheus {
		// A registry of this server's own: several servers may share a
		// process (tests, embedders), and the global one is not ours.
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
		if err != nil {
			return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
		t.shutdown = append(t.shutdown, mp.Shutdown)
		t.mp, t.metrics = mp, true
		t.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	}
	return t, nil
}

// TracerProvider returns the provider of vmcp's spans: a no-op one when
// tracing is off.
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t == nil {
		return tracenoop.NewTracerProvider()
	}
	return t.tp
}

// MeterProvider returns the provider of vmcp's instruments (the stages',
// the audit writer's): a no-op one when metrics are off.
func (t *Telemetry) MeterProvider() metric.MeterProvider {
	if t == nil {
		return metricnoop.NewMeterProvider()
	}
	return t.mp
}

// MetricsHandler serves the metrics in the Prometheus text format; nil
// when telemetry.prometheus is off.
func (t *Telemetry) MetricsHandler() http.Handler {
	if t == nil {
		return nil
	}
	return t.handler
}

// Tracing reports whether spans are recorded.
func (t *Telemetry) Tracing() bool { return t != nil && t.tracing }

// Metrics reports whether metrics are collected.
func (t *Telemetry) Metrics() bool { return t != nil && t.metrics }

// shutdownTimeout bounds Close.
const shutdownTimeout = 5 * time.Second

// Shutdown flushes buffered spans and stops the providers Setup built
// (not one given in Options). Nothing may be recorded through them after.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	for _, f := range t.shutdown {
		if err := f(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: %w", err))
		}
	}
	t.shutdown = nil
	return errors.Join(errs...)
}

// Close is Shutdown bounded by 5s, for cleanup hooks that take no context.
func (t *Telemetry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return t.Shutdown(ctx)
}
