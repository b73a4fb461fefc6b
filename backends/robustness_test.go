package backends_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/config"
)

// rpcMethod reads a JSON-RPC request body and puts it back for next.
func rpcMethod(r *http.Request) (method string, id json.RawMessage) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var m struct {
		Method string          `json:"method"`
		ID     json.RawMessage `json:"id"`
	}
	_ = json.Unmarshal(body, &m)
	return m.Method, m.ID
}

// TestOneFailedRequestKeepsTheConnection: a proxy's 502 on one call fails
// that call, but the backend still answers, so its connection (shared by
// every client) must stay up.
func TestOneFailedRequestKeepsTheConnection(t *testing.T) {
	t.Parallel()
	var armed atomic.Bool
	var initializes atomic.Int32
	srv := startHTTPBackend(t, "flaky", config.TransportStreamableHTTP, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				method, _ := rpcMethod(r)
				if method == "initialize" {
					initializes.Add(1)
				}
				if method == "tools/call" && armed.CompareAndSwap(true, false) {
					http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	ch := &changes{}
	m := startManager(t, []config.Backend{srv.config("flaky", config.TransportStreamableHTTP)}, config.OutgoingAuth{}, testOptions(ch))
	s := session(t, m, "flaky")

	armed.Store(true)
	if _, err := callTool(s, "echo", map[string]any{"text": "x"}); err == nil || !strings.Contains(err.Error(), `backend "flaky"`) {
		t.Fatalf("call answered 502 returned %v, want an error naming the backend", err)
	}
	// Give the supervisor time to act on the report.
	time.Sleep(300 * time.Millisecond)
	if st := status(m, "flaky"); st.State != backends.StateConnected {
		t.Fatalf("after one 502 the backend is %s (%s), want still connected", st.State, st.LastError)
	}
	if got := call(t, session(t, m, "flaky"), "echo", map[string]any{"text": "again"}); !strings.Contains(got, "again") {
		t.Fatalf("next call = %q", got)
	}
	if n := initializes.Load(); n != 1 {
		t.Errorf("backend was initialized %d times, want 1 (no reconnect for one failed request)", n)
	}
	if n := ch.count("flaky"); n != 1 {
		t.Errorf("OnChange called %d times, want 1", n)
	}
}

// TestDiscoverTreatsMethodNotFoundAsEmpty: a backend that declares
// resources but has no resources/templates/list still gets its tools and
// resources into the catalogue.
func TestDiscoverTreatsMethodNotFoundAsEmpty(t *testing.T) {
	t.Parallel()
	srv := startHTTPBackend(t, "partial", config.TransportStreamableHTTP, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				if method, id := rpcMethod(r); method == "resources/templates/list" {
					w.Header().Set("Content-Type", "application/json")
					_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"error":{"code":-32601,"message":"Method not found"}}`))
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	m := startManager(t, []config.Backend{srv.config("partial", config.TransportStreamableHTTP)}, config.OutgoingAuth{}, testOptions(nil))
	caps, err := session(t, m, "partial").Discover(context.Background())
	if err != nil {
		t.Fatalf("Discover = %v, want the lists the backend has", err)
	}
	if len(caps.Tools) != len(testTools) || len(caps.Resources) == 0 || len(caps.ResourceTemplates) != 0 {
		t.Fatalf("Discover = %d tools, %d resources, %d templates; want all tools, the resources, no templates",
			len(caps.Tools), len(caps.Resources), len(caps.ResourceTemplates))
	}
}

// TestStdioChildDoesNotInheritSecrets: a stdio child sees PATH and what its
// own env setting gives it, not the rest of vmcp's environment (other
// backends' tokens, the Redis password).
func TestStdioChildDoesNotInheritSecrets(t *testing.T) {
	t.Setenv("VMCP_TEST_OTHER_BACKEND_TOKEN", "s3cret")
	m := startManager(t, []config.Backend{stdioConfig(t, "files")}, config.OutgoingAuth{}, testOptions(nil))
	s := session(t, m, "files")
	if got := call(t, s, "env", map[string]any{"name": "VMCP_TEST_OTHER_BACKEND_TOKEN"}); got != "" {
		t.Fatalf("stdio child read vmcp's VMCP_TEST_OTHER_BACKEND_TOKEN = %q", got)
	}
	if got := call(t, s, "env", map[string]any{"name": "HOME"}); got == "" {
		t.Fatal("stdio child has no HOME")
	}
}

// TestStdioChildEndedBySignalClosesCleanly: a child that does not exit when
// its stdin closes is ended by the signal Close sends; that is a clean
// close, not an error (vmcp serve would otherwise exit 1 on SIGTERM).
func TestStdioChildEndedBySignalClosesCleanly(t *testing.T) {
	t.Parallel()
	cfg := stdioConfig(t, "stubborn")
	cfg.Env[childEnv] = "stubborn"
	m, err := backends.New([]config.Backend{cfg}, config.OutgoingAuth{}, testOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	m.Start(context.Background())
	if st := status(m, "stubborn"); st.State != backends.StateConnected {
		t.Fatalf("stubborn child is %s: %s", st.State, st.LastError)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close = %v, want nil for a child ended by vmcp's own signal", err)
	}
}
