package test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinarySIGTERMDrains runs `vmcp serve` as a load balancer sees it
// during a rolling restart: on SIGTERM /readyz turns 503 "draining" at
// once, a new session and a new call during server.drainGrace are
// served, the call that was in flight completes, and the process exits 0
// after the grace.
func TestBinarySIGTERMDrains(t *testing.T) {
	t.Parallel()
	const grace = time.Second
	weather := startDemo(t, "weather", "weather", "streamable-http", "")
	cfgPath := filepath.Join(t.TempDir(), "vmcp.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`name: e2e-drain
server: {host: 127.0.0.1, port: 0, drainGrace: %s, shutdownTimeout: 10s}
backends:
  - {name: weather, transport: streamable-http, url: %q}
`, grace, weather.URL))
	bin := startBinaryVMCP(t, cfgPath)
	base := strings.TrimSuffix(bin.URL, "/mcp")
	if code, body := getReadyz(t, base); code != http.StatusOK {
		t.Fatalf("readyz before SIGTERM = %d %+v", code, body)
	}

	c := newClient(t, bin.URL, clientOpts{listen: true})
	slow := make(chan string, 1)
	go func() {
		res, err := tryCall(t, c, "weather_sleep", map[string]any{"ms": 2000})
		switch {
		case err != nil:
			slow <- "error: " + err.Error()
		case res.IsError:
			slow <- "isError: " + resultText(res)
		default:
			slow <- resultText(res)
		}
	}()
	time.Sleep(300 * time.Millisecond) // the call reaches the backend

	sent := time.Now()
	if err := bin.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, grace/2, "readyz 503 draining", func() error {
		code, body := getReadyz(t, base)
		if code != http.StatusServiceUnavailable || body.Ready || body.Reason != "draining" {
			return fmt.Errorf("readyz = %d %+v", code, body)
		}
		return nil
	})
	if code, _ := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz during the grace = %d, want 200", code)
	}
	if got := callText(t, c, "weather_echo", map[string]any{"text": "during grace"}); got != "during grace" {
		t.Errorf("weather_echo during the grace = %q", got)
	}
	late := newClient(t, bin.URL, clientOpts{})
	if got := callText(t, late, "weather_echo", map[string]any{"text": "new session"}); got != "new session" {
		t.Errorf("weather_echo of a session begun during the grace = %q", got)
	}
	if d := time.Since(sent); d >= grace {
		t.Fatalf("the checks during the grace took %v, longer than the grace (%v)", d, grace)
	}

	select {
	case <-bin.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("vmcp serve did not exit within 20s of SIGTERM")
	}
	if bin.waitErr != nil {
		t.Errorf("vmcp serve after SIGTERM: %v, want exit status 0", bin.waitErr)
	}
	if d := time.Since(sent); d < grace {
		t.Errorf("vmcp serve exited %v after SIGTERM, before the grace (%v) was over", d, grace)
	}
	if got := <-slow; !strings.HasPrefix(got, "slept 2000 ms") {
		t.Errorf("the call in flight at SIGTERM = %q, want its result", got)
	}
	for _, want := range []string{`msg="draining: not ready, still serving" grace=1s`, "msg=stopped"} {
		if !strings.Contains(bin.Logs.String(), want) {
			t.Errorf("vmcp serve did not log %s", want)
		}
	}
}
