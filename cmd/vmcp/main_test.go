package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmcp/vmcp/config"
)

// runMainEnv makes the test binary run main instead of the tests, so that
// signal handling can be tested on a real process (signal_test.go).
const runMainEnv = "RUN_VMCP_MAIN_FOR_TEST"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// writeConfig writes text to a vmcp.yaml in a fresh directory and returns
// its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vmcp.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// syncBuffer is a bytes.Buffer safe for a logger writing while a test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const goodConfig = `
backends:
  - name: local
    transport: stdio
    command: /bin/true
`

// serveConfig is a config serve can start with: a loopback port (0: a free
// one) and a stdio backend that exits at once (start-up does not wait for
// it to work).
func serveConfig(t *testing.T, port int) config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf("server: {host: 127.0.0.1, port: %d}\n%s", port, goodConfig)), nil)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return *cfg
}

// signalContext stands in for signal.NotifyContext: stop logs that the
// signal handling ended, and cancels the context as the real stop does.
func signalContext(log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	return ctx, func() {
		log.Info("signal handling stopped")
		cancel()
	}
}

// inOrder reports whether every one of msgs appears in log, in that order.
func inOrder(log string, msgs ...string) bool {
	for _, m := range msgs {
		i := strings.Index(log, m)
		if i < 0 {
			return false
		}
		log = log[i+len(m):]
	}
	return true
}

func TestServeStopsSignalHandlingBeforeShuttingDown(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, stop := signalContext(log)
	sigCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	done := make(chan error, 1)
	go func() { done <- serve(sigCtx, stop, serveConfig(t, 0), log) }()

	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "vmcp serving") {
		if time.Now().After(deadline) {
			t.Fatalf("not serving after 20s:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	interrupt()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not return:\n%s", logs.String())
	}
	if !inOrder(logs.String(), "signal handling stopped", "shutting down", "stopped") {
		t.Errorf("want signal handling stopped before the shutdown:\n%s", logs.String())
	}
}

func TestServeInterruptedDuringStartUpIsNotAFailure(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, stop := signalContext(log)
	sigCtx, interrupt := context.WithCancel(ctx)
	interrupt() // the signal arrived while Start was connecting

	if err := serve(sigCtx, stop, serveConfig(t, 0), log); err != nil {
		t.Errorf("serve = %v, want nil (exit 0)", err)
	}
	out := logs.String()
	if !inOrder(out, "signal handling stopped", "level=INFO msg=\"interrupted during start-up\"", "stopped") {
		t.Errorf("want signal handling stopped, then an info line and a shutdown:\n%s", out)
	}
	for _, bad := range []string{"cannot start", "level=ERROR", "vmcp serving"} {
		if strings.Contains(out, bad) {
			t.Errorf("log contains %q:\n%s", bad, out)
		}
	}
}

// A start-up failure that is not a signal is still a failure, although
// stopping the signal handling cancels the context.
func TestServeStartFailureIsAFailure(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, stop := signalContext(log)

	err = serve(ctx, stop, serveConfig(t, busy.Addr().(*net.TCPAddr).Port), log)
	if err == nil {
		t.Fatalf("serve on a port in use = nil, want an error:\n%s", logs.String())
	}
	out := logs.String()
	if !strings.Contains(out, "vmcp cannot start") || strings.Contains(out, "interrupted") {
		t.Errorf("want a start-up failure logged, not an interruption:\n%s", out)
	}
}
