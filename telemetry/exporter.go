package telemetry

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/vmcp/vmcp/config"
)

// newExporter returns the OTLP span exporter for endpoint (see Setup for
// the forms). It connects nothing.
func newExporter(ctx context.Context, endpoint string) (sdktrace.SpanExporter, error) {
	bad := func(why string) error {
		return fmt.Errorf("telemetry.otlpEndpoint: %q: %s: %w", endpoint, why, config.ErrInvalid)
	}
	scheme, rest, hasScheme := strings.Cut(endpoint, "://")
	if !hasScheme {
		scheme, rest = "grpcs", endpoint
	}
	switch scheme {
	case "grpc", "grpcs":
		host, port, err := net.SplitHostPort(rest)
		if err != nil || host == "" || port == "" {
			return nil, bad("want host:port")
		}
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(rest)}
		if scheme == "grpc" {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		return otlptracegrpc.New(ctx, opts...)
	case "http", "https":
		u, err := url.Parse(endpoint)
		if err != nil || u.Host == "" {
			return nil, bad("not a URL with a host")
		}
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host)}
		if u.Path != "" && u.Path != "/" {
			opts = append(opts, otlptracehttp.WithURLPath(u.Path))
		}
		if u.Scheme == "http" {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		return otlptracehttp.New(ctx, opts...)
	default:
		return nil, bad("scheme must be grpc, grpcs, http or https")
	}
}
