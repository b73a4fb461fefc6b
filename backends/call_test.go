package backends_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/config"
)

// A client's backend session is data: what a request on it needs
// round-trips through JSON, and a call posted as bytes carries that
// session's id and protocol version, and the backend's answer comes back
// as it was sent.
func TestSessionDataAndPost(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen []string // Mcp-Session-Id of each tools/call
	)
	b := startHTTPBackend(t, "b", config.TransportStreamableHTTP, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") != "" {
				mu.Lock()
				seen = append(seen, r.Header.Get("Mcp-Session-Id")+" "+r.Header.Get("Mcp-Protocol-Version"))
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	})
	m := startManager(t, []config.Backend{b.config("b", config.TransportStreamableHTTP)}, config.OutgoingAuth{}, testOptions(nil))
	c := backends.Client{Session: "client-1"}
	ctx := context.Background()

	d, err := m.SessionData(ctx, c, "b")
	if err != nil {
		t.Fatal(err)
	}
	if d.Backend != "b" || d.ID == "" || d.ProtocolVersion == "" || d.Capabilities.Tools == nil {
		t.Fatalf("SessionData = %+v", d)
	}
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back backends.SessionData
	if err := json.Unmarshal(raw, &back); err != nil || back.ID != d.ID || back.ProtocolVersion != d.ProtocolVersion || back.Capabilities.Tools == nil {
		t.Fatalf("SessionData through JSON = %+v (%v), want %+v", back, err, d)
	}

	resp, err := m.Post(ctx, c, "b", json.RawMessage(`"vmcp-1"`), []byte(`{"jsonrpc":"2.0","id":"vmcp-1","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), `"id":"vmcp-1"`) || !strings.Contains(string(body), `hi`) {
		t.Errorf("answer %s", body)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := d.ID + " " + d.ProtocolVersion; len(seen) == 0 || seen[len(seen)-1] != want {
		t.Errorf("the call went with %q, want %q", seen, want)
	}

	// A client without a session, or a stdio backend, is not relayed.
	if _, err := m.Post(ctx, backends.Client{}, "b", nil, []byte(`{}`)); !errors.Is(err, backends.ErrNotRelayable) {
		t.Errorf("Post without a client session = %v, want ErrNotRelayable", err)
	}
}

// A backend that answers 404 has forgotten the session: the call opens a
// new one and is sent again, once, and the client never sees the 404.
func TestPostReopensAForgottenSession(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		forgot   string // the first session's id, answered 404 once
		sessions []string
	)
	b := startHTTPBackend(t, "b", config.TransportStreamableHTTP, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			if strings.Contains(string(body), `"tools/call"`) {
				id := r.Header.Get("Mcp-Session-Id")
				mu.Lock()
				sessions = append(sessions, id)
				first := forgot == ""
				if first {
					forgot = id
				}
				mu.Unlock()
				if first {
					http.Error(w, "session not found", http.StatusNotFound)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	m := startManager(t, []config.Backend{b.config("b", config.TransportStreamableHTTP)}, config.OutgoingAuth{}, testOptions(nil))
	resp, err := m.Post(context.Background(), backends.Client{Session: "client-1"}, "b", json.RawMessage(`"vmcp-1"`),
		[]byte(`{"jsonrpc":"2.0","id":"vmcp-1","method":"tools/call","params":{"name":"echo","arguments":{"text":"again"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "again") {
		t.Errorf("answer %d %s, want the echo", resp.StatusCode, body)
	}
	if len(sessions) != 2 || sessions[0] == sessions[1] {
		t.Errorf("calls went on sessions %q, want the forgotten one, then a new one", sessions)
	}
}
