package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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

// unsetEnvName returns the name of an environment variable that is not set.
func unsetEnvName(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "UNLIKELY_VMCP_TEST_TOKEN_" + strings.ToUpper(hex.EncodeToString(b))
	if _, ok := os.LookupEnv(name); ok {
		t.Fatalf("%s is set", name)
	}
	return name
}

// execute runs the CLI with args and returns its stdout, stderr and exit
// code.
func execute(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return out.String(), errOut.String(), code
}

const goodConfig = `
backends:
  - name: local
    transport: stdio
    command: /bin/true
`

// badConfig has four mistakes, each at its own key path.
const badConfig = `
server: {port: -1}
backends:
  - name: a
    transport: stdio
  - name: b
    transport: carrier-pigeon
aggregation:
  conflictResolution: bogus
`

var badConfigPaths = []string{
	"server.port:",
	"backends[0].command:",
	"backends[1].transport:",
	"aggregation.conflictResolution:",
}

const oidcConfig = goodConfig + `
incomingAuth:
  type: oidc
  oidc:
    issuer: http://127.0.0.1:1
    audience: x
`

func headerInjectionConfig(envName string) string {
	return goodConfig + `
outgoingAuth:
  backends:
    local:
      type: header_injection
      headerName: Authorization
      headerValueEnv: ` + envName + `
`
}

// redisConfig keeps rate limits in a Redis whose password is in envName.
func redisConfig(envName string) string {
	return goodConfig + `
redis: {address: 127.0.0.1:1, passwordEnv: ` + envName + `}
rateLimiting:
  shared: {maxTokens: 10, refillPeriod: 1m}
`
}

func TestCommands(t *testing.T) {
	t.Parallel()
	unset := unsetEnvName(t)
	tests := []struct {
		name string
		// "{config}" in args, config and the wanted output is replaced by
		// the path of config.
		args   []string
		config string
		// wantErr: the command fails (main exits 1).
		wantErr bool
		// wantOut and wantErrOut must appear in stdout and stderr.
		wantOut    []string
		wantErrOut []string
		// notErrOut must not appear in stderr.
		notErrOut []string
	}{
		{
			name:    "version",
			args:    []string{"version"},
			wantOut: []string{"vmcp dev\n"},
		},
		{
			name:    "--version",
			args:    []string{"--version"},
			wantOut: []string{"vmcp dev\n"},
		},
		{
			name:       "a misspelt flag is named, with a hint",
			args:       []string{"serve", "--confg", "{config}"},
			wantErr:    true,
			wantErrOut: []string{"Error: unknown flag: --confg\n", "Run 'vmcp serve --help' for usage.\n"},
		},
		{
			name:       "a flag without its value is named",
			args:       []string{"validate", "--config"},
			wantErr:    true,
			wantErrOut: []string{"Error: flag needs an argument: --config\n", "Run 'vmcp validate --help' for usage.\n"},
		},
		{
			name:       "an unknown subcommand is named, with a suggestion",
			args:       []string{"serv"},
			wantErr:    true,
			wantErrOut: []string{`Error: unknown command "serv" for "vmcp"`, "serve", "Run 'vmcp --help' for usage.\n"},
		},
		{
			name:       "an extra argument is named",
			args:       []string{"validate", "-c", "{config}", "vmcp.yaml"},
			config:     goodConfig,
			wantErr:    true,
			wantErrOut: []string{`Error: unknown command "vmcp.yaml" for "vmcp validate"`, "Run 'vmcp validate --help' for usage.\n"},
		},
		{
			name:       "an extra argument to version is named",
			args:       []string{"version", "now"},
			wantErr:    true,
			wantErrOut: []string{`Error: unknown command "now" for "vmcp version"`},
		},
		{
			name:       "a bad --log-level is named before the config is read",
			args:       []string{"serve", "-c", "{config}", "--log-level", "loud"},
			config:     goodConfig,
			wantErr:    true,
			wantErrOut: []string{"Error: --log-level: ", `"loud"`, "Run 'vmcp serve --help' for usage.\n"},
			notErrOut:  []string{"vmcp serving"},
		},
		{
			name:    "validate a good config",
			args:    []string{"validate", "--config", "{config}"},
			config:  goodConfig,
			wantOut: []string{"{config}: ok\n"},
		},
		{
			name:       "validate lists every mistake with its key path",
			args:       []string{"validate", "--config", "{config}"},
			config:     badConfig,
			wantErr:    true,
			wantErrOut: append([]string{"{config}: 4 error(s)\n"}, badConfigPaths...),
			notErrOut:  []string{"Error:", "--help"}, // printed once, by validate
		},
		{
			name:       "validate a missing file",
			args:       []string{"validate", "-c", "{config}.missing"},
			wantErr:    true,
			wantErrOut: []string{"no such file"},
		},
		{
			name:       "validate names the unset headerValueEnv variable",
			args:       []string{"validate", "-c", "{config}"},
			config:     headerInjectionConfig(unset),
			wantErr:    true,
			wantErrOut: []string{"{config}: 1 error(s)\n", unset, "not set"},
		},
		{
			name:       "validate names the unset redis.passwordEnv variable",
			args:       []string{"validate", "-c", "{config}"},
			config:     redisConfig(unset),
			wantErr:    true,
			wantErrOut: []string{"{config}: 1 error(s)\n", "redis.passwordEnv: ", unset, "not set"},
		},
		{
			name:       "validate refuses an audit file in a missing directory",
			args:       []string{"validate", "-c", "{config}"},
			config:     goodConfig + "audit: {enabled: true, output: \"{config}.d/audit.log\"}\n",
			wantErr:    true,
			wantErrOut: []string{"{config}: 1 error(s)\n", "audit.output: ", "{config}.d/audit.log", "no such file or directory"},
		},
		{
			name:       "validate refuses an audit output that is a directory",
			args:       []string{"validate", "-c", "{config}"},
			config:     goodConfig + "audit: {enabled: true, output: /}\n",
			wantErr:    true,
			wantErrOut: []string{"audit.output: ", "is a directory"},
		},
		{
			name:    "validate accepts an audit file it can create, and leaves none",
			args:    []string{"validate", "-c", "{config}"},
			config:  goodConfig + "audit: {enabled: true, output: \"{config}.audit.log\"}\n",
			wantOut: []string{"{config}: ok\n"},
		},
		{
			name:    "validate checks an oidc config without reaching the provider",
			args:    []string{"validate", "-c", "{config}"},
			config:  oidcConfig,
			wantOut: []string{"{config}: ok"},
		},
		{
			name:       "serve on a bad config does not start",
			args:       []string{"serve", "-c", "{config}"},
			config:     badConfig,
			wantErr:    true,
			wantErrOut: badConfigPaths,
			notErrOut:  []string{"vmcp serving"},
		},
		{
			name:       "serve does not start when the identity provider is unreachable",
			args:       []string{"serve", "-c", "{config}"},
			config:     oidcConfig,
			wantErr:    true,
			wantErrOut: []string{"vmcp cannot start", "incomingAuth.oidc", "127.0.0.1:1"},
			notErrOut:  []string{"vmcp serving"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "vmcp.yaml")
			subst := func(s string) string { return strings.ReplaceAll(s, "{config}", path) }
			if tt.config != "" {
				if err := os.WriteFile(path, []byte(subst(tt.config)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = subst(a)
			}

			stdout, stderr, code := execute(t, args...)

			if (code != 0) != tt.wantErr {
				t.Errorf("exit code = %d, want error %v\nstderr:\n%s", code, tt.wantErr, stderr)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(stdout, subst(w)) {
					t.Errorf("stdout does not contain %q:\n%s", subst(w), stdout)
				}
			}
			if tt.wantErr && strings.Contains(stdout, "ok") {
				t.Errorf("stdout says ok for a failure:\n%s", stdout)
			}
			for _, w := range tt.wantErrOut {
				if !strings.Contains(stderr, subst(w)) {
					t.Errorf("stderr does not contain %q:\n%s", subst(w), stderr)
				}
			}
			for _, n := range tt.notErrOut {
				if strings.Contains(stderr, n) {
					t.Errorf("stderr contains %q:\n%s", n, stderr)
				}
			}
			if _, err := os.Stat(path + ".audit.log"); err == nil {
				t.Errorf("an audit file was left behind at %s.audit.log", path)
			}
		})
	}
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

// serveConfig is a config serve can start with: a loopback port (0: a free
// one), no drain grace, and a stdio backend that exits at once (start-up
// does not wait for it to work).
func serveConfig(t *testing.T, port int) config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf("server: {host: 127.0.0.1, port: %d, drainGrace: 0s}\n%s", port, goodConfig)), nil)
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
	go func() { done <- serve(sigCtx, stop, nil, serveConfig(t, 0), log) }()

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

	if err := serve(sigCtx, stop, nil, serveConfig(t, 0), log); err != nil {
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

	err = serve(ctx, stop, nil, serveConfig(t, busy.Addr().(*net.TCPAddr).Port), log)
	if err == nil {
		t.Fatalf("serve on a port in use = nil, want an error:\n%s", logs.String())
	}
	out := logs.String()
	if !strings.Contains(out, "vmcp cannot start") || strings.Contains(out, "interrupted") {
		t.Errorf("want a start-up failure logged, not an interruption:\n%s", out)
	}
}

// TestServeReopensAuditLogOnHUP: a value on hup (SIGHUP) while serving
// reopens the audit file: after a rename, a new file appears at the path.
func TestServeReopensAuditLogOnHUP(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, stop := signalContext(log)
	sigCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	path := filepath.Join(t.TempDir(), "audit.log")
	cfg := serveConfig(t, 0)
	cfg.Audit = config.Audit{Enabled: true, Output: path}
	hup := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- serve(sigCtx, stop, hup, cfg, log) }()

	waitLog := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(logs.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log after 20s:\n%s", what, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLog("vmcp serving")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	hup <- syscall.SIGHUP
	waitLog("audit log reopened")
	if _, err := os.Stat(path); err != nil {
		t.Errorf("after SIGHUP no audit file at the path: %v", err)
	}
	interrupt()
	if err := <-done; err != nil {
		t.Errorf("serve = %v, want nil", err)
	}
}
