// Command demo is a small MCP server that ships with vmcp. It is the
// quick-start demo backend (vmcp starts it as a stdio child with
// `go run ./examples/backends/demo --name weather`), the backend of the
// end-to-end tests and the backend of the load benchmarks.
//
// Usage:
//
//	demo [--name NAME] [--flavor weather|notes] [--tools N]
//	     [--transport stdio|streamable-http|sse] [--addr HOST:PORT]
//
// Over stdio, stdout carries the protocol and the process exits when stdin
// closes. Over HTTP, once the listener is open, the process prints exactly
// one line to stdout, so a test can start it on --addr 127.0.0.1:0 and read
// the real port:
//
//	LISTENING http://HOST:PORT/mcp   (streamable-http)
//	LISTENING http://HOST:PORT/sse   (sse)
//
// Logs always go to stderr. SIGINT and SIGTERM stop the process gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/server"
)

// Transport names accepted by --transport.
const (
	transportStdio          = "stdio"
	transportStreamableHTTP = "streamable-http"
	transportSSE            = "sse"
)

// Flavors accepted by --flavor.
const (
	flavorWeather = "weather"
	flavorNotes   = "notes"
)

// shutdownTimeout bounds the graceful shutdown of the HTTP transports.
const shutdownTimeout = 5 * time.Second

// namePattern restricts --name to characters that are safe in resource URIs.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// config is the parsed command line.
type config struct {
	// name identifies the backend; it appears in texts and resource URIs.
	name string
	// flavor selects the flavor-specific tools: weather or notes.
	flavor string
	// transport is stdio, streamable-http or sse.
	transport string
	// addr is the listen address of the HTTP transports.
	addr string
	// tools is the number of extra synthetic tools (tool_0000, ...).
	tools int
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		os.Exit(2)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("backend", cfg.name)
	slog.SetDefault(logger)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := run(ctx, cfg, os.Stdin, os.Stdout, logger); err != nil {
		logger.Error("demo backend failed", "err", err)
		stop()
		os.Exit(1)
	}
}

// parseFlags parses and validates the command line. Errors are reported on
// stderr before being returned.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.name, "name", "demo", "backend name, used in texts and resource URIs")
	fs.StringVar(&cfg.flavor, "flavor", flavorWeather, "tool set: weather or notes")
	fs.StringVar(&cfg.transport, "transport", transportStdio, "stdio, streamable-http or sse")
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:0", "listen address of the HTTP transports")
	fs.IntVar(&cfg.tools, "tools", 0, "number of extra synthetic tools tool_0000... (for big catalogues)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}

	var err error
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments: %q", fs.Args())
	case !namePattern.MatchString(cfg.name):
		err = fmt.Errorf("--name %q must match %s", cfg.name, namePattern)
	case cfg.flavor != flavorWeather && cfg.flavor != flavorNotes:
		err = fmt.Errorf("--flavor %q must be %s or %s", cfg.flavor, flavorWeather, flavorNotes)
	case cfg.transport != transportStdio && cfg.transport != transportStreamableHTTP && cfg.transport != transportSSE:
		err = fmt.Errorf("--transport %q must be %s, %s or %s", cfg.transport, transportStdio, transportStreamableHTTP, transportSSE)
	case cfg.tools < 0:
		err = fmt.Errorf("--tools %d must not be negative", cfg.tools)
	}
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return cfg, err
	}
	return cfg, nil
}

// run builds the server and serves it on the configured transport until ctx
// is cancelled or, for stdio, stdin is closed.
func run(ctx context.Context, cfg config, stdin io.Reader, stdout io.Writer, logger *slog.Logger) error {
	srv, err := newServer(cfg)
	if err != nil {
		return err
	}
	if cfg.transport == transportStdio {
		return serveStdio(ctx, srv, stdin, stdout, logger)
	}
	return serveHTTP(ctx, cfg, srv, stdout, logger)
}

// serveStdio serves srv on stdin/stdout until stdin closes or ctx is done.
func serveStdio(ctx context.Context, srv *server.MCPServer, stdin io.Reader, stdout io.Writer, logger *slog.Logger) error {
	stdio := server.NewStdioServer(srv)
	stdio.SetErrorLogger(slog.NewLogLogger(logger.Handler(), slog.LevelError))
	// Benchmarks call tools concurrently; the defaults (5 workers) would
	// serialise slow calls such as sleep.
	server.WithWorkerPoolSize(100)(stdio)
	server.WithQueueSize(10000)(stdio)

	logger.Info("serving MCP over stdio")
	err := stdio.Listen(ctx, stdin, stdout)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if ctx.Err() != nil {
		logger.Info("stopped by signal")
	} else {
		logger.Info("stdin closed, exiting")
	}
	return nil
}

// serveHTTP serves srv over streamable HTTP or SSE on cfg.addr, announces
// the endpoint on stdout and shuts down gracefully when ctx is done.
func serveHTTP(ctx context.Context, cfg config, srv *server.MCPServer, stdout io.Writer, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	base := baseURL(ln.Addr())
	httpSrv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	var endpoint string
	var shutdown func(context.Context) error
	switch cfg.transport {
	case transportStreamableHTTP:
		h := server.NewStreamableHTTPServer(srv,
			server.WithEndpointPath("/mcp"),
			server.WithHTTPContextFunc(captureHeaders),
			server.WithStreamableHTTPServer(httpSrv),
			server.WithStreamableHTTPLogger(logger),
		)
		mux := http.NewServeMux()
		mux.Handle("/mcp", countCancelNotices(h))
		httpSrv.Handler = mux
		endpoint, shutdown = base+"/mcp", h.Shutdown
	case transportSSE:
		h := server.NewSSEServer(srv,
			server.WithBaseURL(base),
			server.WithSSEContextFunc(captureHeaders),
			server.WithHTTPServer(httpSrv),
		)
		httpSrv.Handler = h
		endpoint, shutdown = base+"/sse", h.Shutdown
	default:
		_ = ln.Close()
		return fmt.Errorf("unknown transport %q", cfg.transport)
	}

	served := make(chan error, 1)
	go func() { served <- httpSrv.Serve(ln) }()

	if _, err := fmt.Fprintf(stdout, "LISTENING %s\n", endpoint); err != nil {
		_ = httpSrv.Close()
		return fmt.Errorf("announce endpoint: %w", err)
	}
	logger.Info("serving MCP over "+cfg.transport, "url", endpoint)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}

	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := shutdown(sctx); err != nil {
		logger.Warn("graceful shutdown incomplete, closing", "err", err)
		_ = httpSrv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// baseURL returns the http://HOST:PORT a client should dial to reach addr.
// A wildcard listen address is announced as 127.0.0.1, which the servers'
// DNS-rebinding protection accepts.
func baseURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String()
	}
	host := "127.0.0.1"
	if tcp.IP != nil && !tcp.IP.IsUnspecified() {
		host = tcp.IP.String()
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}
