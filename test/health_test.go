package test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// healthYAML checks backends every 200ms; three failures in a row make a
// backend unhealthy.
const healthYAML = `health:
  interval: 200ms
  timeout: 200ms
  degradedAfter: 1
  unhealthyAfter: 3
  breaker: {failureThreshold: 5, openFor: 1s}
`

// backendReady is a backend's line in /readyz, with its health.
type backendReady struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	Health    string `json:"health"`
	Failures  int    `json:"consecutiveFailures"`
	Breaker   string `json:"breaker"`
	LastError string `json:"lastError"`
	Tools     int    `json:"tools"`
}

// readyBackend returns the /readyz line of backend name.
func readyBackend(t *testing.T, base, name string) backendReady {
	t.Helper()
	_, body := httpGet(t, base+"/readyz")
	var r struct {
		Backends []backendReady `json:"backends"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("/readyz: %v\n%s", err, body)
	}
	for _, b := range r.Backends {
		if b.Name == name {
			return b
		}
	}
	t.Fatalf("/readyz has no backend %q: %s", name, body)
	return backendReady{}
}

// load calls the echo tool of each backend in a loop from a few goroutines
// and counts what fails, per backend.
type load struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	calls    sync.Map // backend -> *atomic.Int64
	mu       sync.Mutex
	failures map[string][]string
}

func startLoad(c *client.Client, backends []string, workers int) *load {
	l := &load{stop: make(chan struct{}), failures: map[string][]string{}}
	for _, b := range backends {
		n := &atomic.Int64{}
		l.calls.Store(b, n)
		for w := range workers {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				for i := 0; ; i++ {
					select {
					case <-l.stop:
						return
					default:
					}
					text := fmt.Sprintf("%s %d %d", b, w, i)
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					req := mcp.CallToolRequest{}
					req.Params.Name = b + "_echo"
					req.Params.Arguments = map[string]any{"text": text}
					res, err := c.CallTool(ctx, req)
					cancel()
					n.Add(1)
					if err != nil || res.IsError || resultText(res) != text {
						l.mu.Lock()
						l.failures[b] = append(l.failures[b], fmt.Sprintf("err=%v res=%+v", err, res))
						l.mu.Unlock()
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
	}
	return l
}

// end stops the load and returns the failures and call count of backend.
func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) report(backend string) (failures []string, calls int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, _ := l.calls.Load(backend)
	return l.failures[backend], n.(*atomic.Int64).Load()
}

// TestHealthIsolatesAndRestoresBackends: under load on every backend, a
// killed HTTP backend is marked unhealthy within a few checks, its tools
// leave tools/list (clients are told with list_changed) while the other
// backends' calls all succeed, and it is listed and used again once it is
// back on the same address, without restarting vmcp. A killed stdio child
// is started again and its tools are served again.
func TestHealthIsolatesAndRestoresBackends(t *testing.T) {
	t.Parallel()
	f := startFleet(t, healthYAML, nil)
	var listChanged atomic.Int32
	c := newClient(t, f.V.URL, clientOpts{listen: true, onNotification: func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationToolsListChanged) {
			listChanged.Add(1)
		}
	}})
	requireTools(t, toolNames(t, c), "weather_echo", "notes_echo", "local_echo")
	if b := readyBackend(t, f.V.Base, "weather"); b.Health != "healthy" || b.Breaker != "closed" || b.Failures != 0 {
		t.Fatalf("/readyz before the kill: %+v, want healthy with the breaker closed", b)
	}

	l := startLoad(c, []string{"weather", "notes", "local"}, 2)
	time.Sleep(300 * time.Millisecond)
	addr := strings.TrimSuffix(strings.TrimPrefix(f.Weather.URL, "http://"), "/mcp")
	changedBefore := listChanged.Load()
	f.Weather.Kill()
	killed := time.Now()

	eventually(t, 10*time.Second, "weather unhealthy and hidden", func() error {
		b := readyBackend(t, f.V.Base, "weather")
		if b.Health != "unhealthy" || b.Tools != 0 || b.Failures < 3 || b.LastError == "" {
			return fmt.Errorf("weather: %+v", b)
		}
		return nil
	})
	// One failed check and two failed reconnects, 200ms apart, plus the
	// time the machine takes.
	if d := time.Since(killed); d > 5*time.Second {
		t.Errorf("weather was marked unhealthy %v after it died; checks are 200ms apart", d)
	}
	eventually(t, 5*time.Second, "weather's tools leave tools/list", func() error {
		for _, name := range toolNames(t, c) {
			if strings.HasPrefix(name, "weather_") {
				return fmt.Errorf("%s is still listed", name)
			}
		}
		return nil
	})
	requireTools(t, toolNames(t, c), "notes_echo", "local_echo")
	eventually(t, 5*time.Second, "list_changed after weather was hidden", func() error {
		if listChanged.Load() == changedBefore {
			return fmt.Errorf("no notifications/tools/list_changed")
		}
		return nil
	})
	// A client calling from the list it had learns which backend is away.
	if _, err := tryCall(t, c, "weather_echo", map[string]any{"text": "x"}); err == nil ||
		!strings.Contains(err.Error(), `backend "weather" is unavailable`) {
		t.Errorf("call to the hidden weather_echo: %v, want an error naming weather", err)
	}

	back := startDemo(t, "weather", "weather", "streamable-http", addr)
	changedBefore = listChanged.Load()
	eventually(t, 20*time.Second, "weather listed and served again", func() error {
		if !contains(toolNames(t, c), "weather_whoami") {
			return fmt.Errorf("weather_whoami is not listed")
		}
		res, err := tryCall(t, c, "weather_whoami", nil)
		if err != nil {
			return err
		}
		if !strings.Contains(resultText(res), back.Name) {
			return fmt.Errorf("whoami: %s", resultText(res))
		}
		return nil
	})
	if listChanged.Load() == changedBefore {
		t.Error("no list_changed when weather's tools came back")
	}
	if b := readyBackend(t, f.V.Base, "weather"); b.Health != "healthy" || b.State != "connected" || b.Tools == 0 {
		t.Errorf("/readyz after weather came back: %+v", b)
	}

	// Not one call to the other backends failed while weather was away.
	if failures, calls := l.report("local"); len(failures) > 0 {
		t.Errorf("%d of %d calls to local failed while weather died:\n%s", len(failures), calls, strings.Join(failures, "\n"))
	}

	// A stdio child that dies is started again and its tools served again.
	pids := processesWith(f.Local)
	if len(pids) != 1 {
		t.Fatalf("want 1 process of the stdio backend, found %d:%s", len(pids), describeProcs(pids))
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the stdio backend restarted and served", func() error {
		now := processesWith(f.Local)
		if len(now) != 1 || now[0] == pids[0] {
			return fmt.Errorf("processes: %v (killed %d)", now, pids[0])
		}
		if !contains(toolNames(t, c), "local_echo") {
			return fmt.Errorf("local_echo is not listed")
		}
		res, err := tryCall(t, c, "local_echo", map[string]any{"text": "back"})
		if err != nil {
			return err
		}
		if resultText(res) != "back" {
			return fmt.Errorf("local_echo: %q", resultText(res))
		}
		return nil
	})
	if b := readyBackend(t, f.V.Base, "local"); b.Health != "healthy" || b.State != "connected" {
		t.Errorf("/readyz after the stdio restart: %+v", b)
	}

	l.end()
	notesFailures, notesCalls := l.report("notes")
	if len(notesFailures) > 0 {
		t.Errorf("%d of %d calls to notes failed while other backends died:\n%s", len(notesFailures), notesCalls, strings.Join(notesFailures, "\n"))
	}
	if notesCalls < 20 {
		t.Errorf("only %d calls to notes were made", notesCalls)
	}
	if _, calls := l.report("weather"); calls == 0 {
		t.Error("no calls to weather were made")
	}
	t.Logf("calls: notes %d, list_changed notifications %d", notesCalls, listChanged.Load())
}

// TestHealthHiddenToolThroughCallTool: with the optimizer on, call_tool of
// a tool whose backend is hidden while unhealthy is answered as a direct
// tools/call of it is, with an error naming the backend, not as an
// unknown tool.
func TestHealthHiddenToolThroughCallTool(t *testing.T) {
	t.Parallel()
	f := startFleet(t, healthYAML+"optimizer: {enabled: true}\n", nil)
	c := newClient(t, f.V.URL, clientOpts{})
	callTool := func(name string) (*mcp.CallToolResult, error) {
		return tryCall(t, c, "call_tool", map[string]any{"tool_name": name, "parameters": map[string]any{"text": "x"}})
	}
	if res, err := callTool("weather_echo"); err != nil || res.IsError || resultText(res) != "x" {
		t.Fatalf("call_tool weather_echo before the kill: %v, %+v", err, res)
	}
	f.Weather.Kill()
	eventually(t, 10*time.Second, "weather unhealthy and hidden", func() error {
		if b := readyBackend(t, f.V.Base, "weather"); b.Health != "unhealthy" || b.Tools != 0 {
			return fmt.Errorf("weather: %+v", b)
		}
		return nil
	})
	const want = `backend "weather" is unavailable (unhealthy)`
	if _, err := callTool("weather_echo"); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("call_tool of the hidden weather_echo: %v, want %q", err, want)
	}
	if _, err := tryCall(t, c, "weather_echo", map[string]any{"text": "x"}); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("tools/call of the hidden weather_echo: %v, want %q", err, want)
	}
	res, err := callTool("weather_nope")
	if err != nil || !res.IsError || !strings.Contains(resultText(res), "unknown tool") {
		t.Errorf("call_tool of an unknown tool: %v, %+v; want an unknown-tool result", err, res)
	}
}
