package test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/goleak"
)

// TestShutdownLeavesNothing runs vmcp in process with a backend on every
// transport, uses it, shuts it down and checks that no goroutine and no
// child process of it is left. It is not parallel: goroutines of tests
// running at the same time would be counted as leaks.
func TestShutdownLeavesNothing(t *testing.T) {
	weather := startDemo(t, "weather", "weather", "streamable-http", "")
	notes := startDemo(t, "notes", "notes", "sse", "")
	local := uniqueName("local")

	// Goroutines that exist now are not vmcp's: the test framework's, the
	// parallel tests paused before they start, and the two goroutines per
	// demo backend above that read its stdout and wait for it to exit.
	ignore := goleak.IgnoreCurrent()

	v := startVMCP(t, fleetYAML(weather.URL, notes.URL, local, ""), nil)
	hc := &http.Client{Transport: &http.Transport{}}
	var changed atomic.Int32
	c := newClient(t, v.URL, clientOpts{hc: hc, listen: true, onNotification: func(n mcp.JSONRPCNotification) {
		if n.Method == mcp.MethodNotificationToolsListChanged {
			changed.Add(1)
		}
	}})
	for _, tool := range []string{"weather_echo", "notes_echo", "local_echo"} {
		if got := callText(t, c, tool, map[string]any{"text": tool}); got != tool {
			t.Errorf("%s: %q", tool, got)
		}
	}
	callText(t, c, "local_add_tool", map[string]any{"name": "extra"})
	eventually(t, 10*time.Second, "tools/list_changed", func() error {
		if changed.Load() == 0 {
			return errors.New("none yet")
		}
		return nil
	})
	if pids := processesWith(local); len(pids) != 1 {
		t.Fatalf("want the stdio backend running as 1 process, found %d:%s", len(pids), describeProcs(pids))
	}

	// Shut down with the client's GET stream still open: it must not hold
	// Shutdown up.
	start := time.Now()
	if err := v.Srv.Shutdown(ctxT(t, 30*time.Second)); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Shutdown took %s with one idle client session", d)
	}
	if _, err := noKeepAlive.Get(v.Base + "/healthz"); err == nil {
		t.Error("vmcp still answers HTTP after Shutdown")
	}
	if pids := processesWith(local); len(pids) > 0 {
		killAll(pids)
		t.Errorf("stdio backend processes survived Shutdown:%s", describeProcs(pids))
	}

	// The client is the test's, not vmcp's: end it before counting.
	_ = c.Close()
	hc.CloseIdleConnections()
	if err := goleak.Find(ignore); err != nil {
		t.Errorf("goroutines left after Shutdown:\n%v", err)
	}
}

// TestBinaryServeAndSIGTERM runs the built vmcp binary (`vmcp serve
// --config F`) with stdio and HTTP backends, uses it, stops it with
// SIGTERM and checks that it exits 0 and leaves no child process.
func TestBinaryServeAndSIGTERM(t *testing.T) {
	t.Parallel()
	marker := uniqueName("vmcp-e2e-marker")
	weather := startDemo(t, "weather", "weather", "streamable-http", "")
	everything := ""
	if nodeMissing == "" {
		node, _ := exec.LookPath("node")
		everything = fmt.Sprintf(`  - name: everything
    transport: stdio
    command: %q
    args: [%q, stdio]
    env: {VMCP_E2E_MARKER: %q}
`, node, everythingJS, marker)
	} else {
		t.Logf("no server-everything backend: %s", nodeMissing)
	}
	cfgPath := filepath.Join(t.TempDir(), "vmcp.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`name: e2e-binary
server: {host: 127.0.0.1, port: 0, drainGrace: 1s, shutdownTimeout: 5s}
backends:
  - {name: weather, transport: streamable-http, url: %q}
  - {name: local, transport: stdio, command: %q, args: [--name, %q, --flavor, notes]}
%s`, weather.URL, demoBin, marker+"-local", everything))

	// Registered first, so it runs after the binary is killed.
	t.Cleanup(func() { killAll(processesWith(marker)) })
	bin := startBinaryVMCP(t, cfgPath)

	c := newClient(t, bin.URL, clientOpts{listen: true})
	if got := callText(t, c, "weather_echo", map[string]any{"text": "bin"}); got != "bin" {
		t.Errorf("weather_echo: %q", got)
	}
	if got := callText(t, c, "local_whoami", nil); !strings.Contains(got, marker+"-local") {
		t.Errorf("local_whoami: %q", got)
	}
	want := 1
	if everything != "" {
		want = 2
		eventually(t, 15*time.Second, "everything_echo is listed", func() error {
			if names := toolNames(t, c); !contains(names, "everything_echo") {
				return fmt.Errorf("tools: %v", names)
			}
			return nil
		})
		if got := callText(t, c, "everything_echo", map[string]any{"message": "bin"}); got != "Echo: bin" {
			t.Errorf("everything_echo: %q", got)
		}
	}
	if pids := processesWith(marker); len(pids) != want {
		t.Fatalf("want %d stdio backend processes, found %d:%s", want, len(pids), describeProcs(pids))
	}

	start := time.Now()
	if err := bin.stop(t); err != nil {
		t.Errorf("vmcp serve after SIGTERM: %v, want exit status 0", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("vmcp serve took %s to stop (drainGrace is 1s, shutdownTimeout 5s)", d)
	}
	if !strings.Contains(bin.Logs.String(), `msg=stopped`) {
		t.Errorf("vmcp serve did not log a clean stop")
	}
	// SIGKILLed children may need a moment to be reaped by init.
	var left []int
	for range 10 {
		if left = processesWith(marker); len(left) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("child processes survived vmcp serve:%s", describeProcs(left))
	}
}

// binaryVMCP is a running `vmcp serve` process.
type binaryVMCP struct {
	Cmd  *exec.Cmd
	URL  string // the MCP endpoint it logged
	Logs *syncBuffer
	// exited is closed when the process has exited, with waitErr set.
	exited  chan struct{}
	waitErr error
}

// startBinaryVMCP runs `vmcp serve --config cfgPath`, kills it when t ends,
// shows its output if t fails, and waits (up to 30s) for the URL it logs.
func startBinaryVMCP(t *testing.T, cfgPath string) *binaryVMCP {
	t.Helper()
	b := &binaryVMCP{Logs: &syncBuffer{}, exited: make(chan struct{})}
	dumpOnFailure(t, "vmcp serve stderr", b.Logs)
	b.Cmd = exec.Command(vmcpBin, "serve", "--config", cfgPath)
	b.Cmd.Stderr, b.Cmd.Stdout = b.Logs, b.Logs
	if err := b.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		b.waitErr = b.Cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() {
		_ = b.Cmd.Process.Kill()
		<-b.exited
	})
	serving := regexp.MustCompile(`msg="vmcp serving" url=(http://\S+)`)
	eventually(t, 30*time.Second, "vmcp serve logs its URL", func() error {
		select {
		case <-b.exited:
			t.Fatalf("vmcp serve exited early: %v", b.waitErr)
		default:
		}
		m := serving.FindStringSubmatch(b.Logs.String())
		if m == nil {
			return errors.New("not yet")
		}
		b.URL = m[1]
		return nil
	})
	return b
}

// stop sends SIGTERM and returns the process's exit error; t fails at once
// if the process has not exited within 20s.
func (b *binaryVMCP) stop(t *testing.T) error {
	t.Helper()
	if err := b.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.exited:
		return b.waitErr
	case <-time.After(20 * time.Second):
		t.Fatal("vmcp serve did not exit within 20s of SIGTERM")
		return nil
	}
}

// TestBinaryValidate runs `vmcp validate` on good and bad configs.
func TestBinaryValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	run := func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, vmcpBin, args...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("vmcp %v: %v", args, err)
			}
			code = ee.ExitCode()
		}
		return code, stdout.String(), stderr.String()
	}

	t.Run("good", func(t *testing.T) {
		p := filepath.Join(dir, "good.yaml")
		writeFile(t, p, `name: ok
backends:
  - {name: weather, transport: streamable-http, url: "http://127.0.0.1:8081/mcp"}
  - {name: files, transport: stdio, command: demo}
`)
		code, stdout, stderr := run(t, "validate", "--config", p)
		if code != 0 || !strings.Contains(stdout, "ok") {
			t.Errorf("validate good config: exit %d stdout %q stderr %q", code, stdout, stderr)
		}
	})
	t.Run("bad values", func(t *testing.T) {
		p := filepath.Join(dir, "bad.yaml")
		writeFile(t, p, `name: bad
server: {port: 70000}
backends:
  - {name: weather, transport: sse}
  - {name: weather, transport: stdio, command: demo}
  - {name: files, transport: carrier-pigeon}
aggregation:
  conflictResolution: merge
outgoingAuth:
  backends:
    nobody: {type: header_injection, headerName: X-Token, headerValueEnv: TOKEN}
`)
		code, stdout, stderr := run(t, "validate", "--config", p)
		if code == 0 {
			t.Fatalf("validate bad config exited 0; stdout %q", stdout)
		}
		for _, path := range []string{
			"server.port", "backends[0].url", "backends[1].name", "backends[2].transport",
			"aggregation.conflictResolution", "outgoingAuth.backends.nobody",
		} {
			if !strings.Contains(stderr, path) {
				t.Errorf("validate output does not name %s:\n%s", path, stderr)
			}
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		p := filepath.Join(dir, "typo.yaml")
		writeFile(t, p, `name: typo
backends:
  - {name: weather, transport: streamable-http, url: "http://127.0.0.1:8081/mcp", requestTimout: 5s}
`)
		code, _, stderr := run(t, "validate", "--config", p)
		if code == 0 || !strings.Contains(stderr, "requestTimout") {
			t.Errorf("validate with a misspelt key: exit %d, stderr %q; want non-zero naming requestTimout", code, stderr)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		code, _, stderr := run(t, "validate", "--config", filepath.Join(dir, "nope.yaml"))
		if code == 0 || !strings.Contains(stderr, "nope.yaml") {
			t.Errorf("validate missing file: exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("serve refuses a bad config", func(t *testing.T) {
		p := filepath.Join(dir, "bad-serve.yaml")
		writeFile(t, p, `name: bad
backends:
  - {name: weather, transport: sse}
`)
		code, _, stderr := run(t, "serve", "--config", p)
		if code == 0 || !strings.Contains(stderr, "backends[0].url") {
			t.Errorf("serve with a bad config: exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("version", func(t *testing.T) {
		code, stdout, _ := run(t, "version")
		if code != 0 || !strings.HasPrefix(stdout, "vmcp ") {
			t.Errorf("version: exit %d stdout %q", code, stdout)
		}
	})
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
