package backends_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/config"
)

// memStore is a SessionStore in memory that two Managers share, as two
// replicas share Redis.
type memStore struct {
	mu    sync.Mutex
	by    map[string]map[string]backends.SessionData // client → backend → session
	level map[string]mcp.LoggingLevel
	subs  map[string]map[string][]string
}

func newMemStore(clients ...string) *memStore {
	s := &memStore{by: map[string]map[string]backends.SessionData{}, level: map[string]mcp.LoggingLevel{},
		subs: map[string]map[string][]string{}}
	for _, c := range clients {
		s.by[c] = map[string]backends.SessionData{}
	}
	return s
}

func (s *memStore) Load(_ context.Context, session string) (backends.ClientState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.by[session]
	if !ok {
		return backends.ClientState{}, io.EOF
	}
	out := backends.ClientState{Backends: map[string]backends.SessionData{}, LogLevel: s.level[session], Subscriptions: s.subs[session]}
	for k, v := range b {
		out.Backends[k] = v
	}
	return out, nil
}

func (s *memStore) Swap(_ context.Context, session, backend string, prev, next *backends.SessionData) (*backends.SessionData, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.by[session]
	cur, ok := b[backend]
	if ok == (prev != nil) && (!ok || cur.ID == prev.ID) {
		if next == nil {
			delete(b, backend)
			return nil, nil
		}
		b[backend] = *next
		return next, nil
	}
	if !ok {
		return nil, nil
	}
	return &cur, nil
}

func (s *memStore) LogLevel(_ context.Context, session string, level mcp.LoggingLevel) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.level[session] = level
	return nil
}

func (s *memStore) Subscribed(_ context.Context, session, backend, uri string, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs[session] == nil {
		s.subs[session] = map[string][]string{}
	}
	if on {
		s.subs[session][backend] = append(s.subs[session][backend], uri)
	}
	return nil
}

// TestStoredSessionsSharedByReplicas: two replicas relaying one client's
// calls use one backend session; when the backend loses it, the replica
// that sees the 404 opens one new session, and the other replica moves to
// it on its own 404 without opening a third.
func TestStoredSessionsSharedByReplicas(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		inits int
		calls []string // Mcp-Session-Id of each tools/call
		lost  = map[string]bool{}
	)
	b := startHTTPBackend(t, "b", config.TransportStreamableHTTP, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			id := r.Header.Get("Mcp-Session-Id")
			mu.Lock()
			switch {
			case strings.Contains(string(body), `"initialize"`):
				inits++
			case strings.Contains(string(body), `"tools/call"`):
				calls = append(calls, id)
				if lost[id] {
					mu.Unlock()
					http.Error(w, "session not found", http.StatusNotFound)
					return
				}
			}
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	})
	store := newMemStore("client-1")
	cfg := []config.Backend{b.config("b", config.TransportStreamableHTTP)}
	replica := func() *backends.Manager {
		opts := testOptions(nil)
		opts.Store = store
		return startManager(t, cfg, config.OutgoingAuth{}, opts)
	}
	a, z := replica(), replica()
	c := backends.Client{Session: "client-1"}
	post := func(m *backends.Manager, text string) {
		t.Helper()
		resp, err := m.Post(context.Background(), c, "b", json.RawMessage(`"vmcp-1"`),
			[]byte(`{"jsonrpc":"2.0","id":"vmcp-1","method":"tools/call","params":{"name":"echo","arguments":{"text":"`+text+`"}}}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), text) {
			t.Fatalf("answer %d %s, want the echo of %s", resp.StatusCode, body, text)
		}
	}
	mu.Lock()
	base := inits // the shared connections' own
	mu.Unlock()

	post(a, "one")
	post(z, "two")
	post(a, "three")
	mu.Lock()
	if inits-base != 1 || calls[0] != calls[1] || calls[1] != calls[2] {
		t.Fatalf("%d initializes, calls on %q: want one backend session for both replicas", inits-base, calls)
	}
	first := calls[0]
	lost[first] = true
	calls = nil
	mu.Unlock()

	post(z, "four") // 404, a new session, the call again
	post(a, "five") // 404 on its cached one, then the new one
	post(z, "six")
	mu.Lock()
	defer mu.Unlock()
	if inits-base != 2 {
		t.Errorf("%d initializes, want 2: one new session after the loss, whichever replica saw it first", inits-base)
	}
	want := []string{first, calls[1], first, calls[1], calls[1]}
	if len(calls) != 5 || calls[1] == first || strings.Join(calls, ",") != strings.Join(want, ",") {
		t.Errorf("calls on %q, want %q", calls, want)
	}
	if st, _ := store.Load(context.Background(), "client-1"); st.Backends["b"].ID != calls[1] {
		t.Errorf("store has %q, want the new session %q", st.Backends["b"].ID, calls[1])
	}
}
