package backends_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/config"
)

// fakeRelay answers sampling with "model of <session>" and records
// notifications.
type fakeRelay struct {
	mu    sync.Mutex
	notes []relayed
}

type relayed struct {
	session string
	n       mcp.JSONRPCNotification
}

func (r *fakeRelay) Sample(_ context.Context, session string, _ mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	if session == "" {
		return nil, errors.New("no client")
	}
	return &mcp.CreateMessageResult{
		SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent("model of " + session)},
		Model:           "fake",
	}, nil
}

func (r *fakeRelay) Elicit(context.Context, string, mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	return nil, errors.New("not in this test")
}

func (r *fakeRelay) ListRoots(context.Context, string, mcp.ListRootsRequest) (*mcp.ListRootsResult, error) {
	return nil, errors.New("not in this test")
}

func (r *fakeRelay) Notify(_ context.Context, session string, n mcp.JSONRPCNotification) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, relayed{session, n})
}

// progress returns the progress tokens relayed to session.
func (r *fakeRelay) progress(session string) []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []any
	for _, n := range r.notes {
		if n.session == session && n.n.Method == string(mcp.MethodNotificationProgress) {
			out = append(out, n.n.Params.AdditionalFields["progressToken"])
		}
	}
	return out
}

// methodLog records the JSON-RPC bodies and HTTP methods a backend receives.
type methodLog struct {
	mu      sync.Mutex
	bodies  []string
	deletes int
}

func (l *methodLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		if r.Method == http.MethodDelete {
			l.deletes++
		}
		l.mu.Unlock()
		if r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			l.mu.Lock()
			l.bodies = append(l.bodies, string(b))
			l.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

func (l *methodLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.bodies...)
}

func (l *methodLog) saw(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.bodies {
		if strings.Contains(b, s) {
			return true
		}
	}
	return false
}

func (l *methodLog) deleteCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deletes
}

func sampling() backends.Client {
	return backends.Client{Capabilities: mcp.ClientCapabilities{Sampling: &mcp.SamplingCapability{}}}
}

// clientSession returns client id's session to backend "b", released: the
// bound may close it before the test calls it.
func clientSession(t *testing.T, m *backends.Manager, c backends.Client, id string) *backends.Session {
	t.Helper()
	c.Session = id
	s, err := m.Session(context.Background(), c, "b")
	if err != nil {
		t.Fatalf("Session(%s): %v", id, err)
	}
	s.Release()
	return s
}

// TestClientSessions: each client session gets its own backend session,
// which relays sampling and progress to that client only; CloseClient
// closes them at the backend.
func TestClientSessions(t *testing.T) {
	t.Parallel()
	var log methodLog
	b := startHTTPBackend(t, "b", config.TransportStreamableHTTP, log.wrap)
	relay := &fakeRelay{}
	opts := testOptions(nil)
	opts.Relay = relay
	m := startManager(t, []config.Backend{b.config("b", config.TransportStreamableHTTP)}, config.OutgoingAuth{}, opts)

	one, two := clientSession(t, m, sampling(), "one"), clientSession(t, m, sampling(), "two")
	if got := status(m, "b").ClientSessions; got != 2 {
		t.Errorf("client sessions = %d, want 2", got)
	}
	clientSession(t, m, sampling(), "one") // the same again
	if got := status(m, "b").ClientSessions; got != 2 {
		t.Errorf("client sessions after a second use = %d, want 2", got)
	}

	var wg sync.WaitGroup
	for _, tc := range []struct {
		s    *backends.Session
		want string
	}{{one, "model of one"}, {two, "model of two"}} {
		wg.Go(func() {
			if got := call(t, tc.s, "sample", nil); !strings.Contains(got, tc.want) {
				t.Errorf("sample = %q, want %q", got, tc.want)
			}
		})
	}
	wg.Wait()

	// The client's own progress token passes unchanged and comes back to it.
	var req mcp.CallToolRequest
	req.Params.Name = "progress"
	// holdMs: mcp-go's server may drop a notification queued just before
	// the response (a flake under load).
	req.Params.Arguments = map[string]any{"n": 2, "holdMs": 20}
	req.Params.Meta = &mcp.Meta{ProgressToken: 7}
	if _, err := two.CallTool(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "progress relayed to two", func() bool { return len(relay.progress("two")) == 2 })
	if got := relay.progress("one"); len(got) != 0 {
		t.Errorf("progress of two's call relayed to one: %v", got)
	}
	if tok := relay.progress("two")[0]; tok != float64(7) {
		t.Errorf("progress token = %#v, want 7", tok)
	}

	before := log.deleteCount()
	m.CloseClient("one")
	if got := status(m, "b").ClientSessions; got != 1 {
		t.Errorf("client sessions after CloseClient = %d, want 1", got)
	}
	if log.deleteCount() != before+1 {
		t.Errorf("backend got %d DELETEs, want 1", log.deleteCount()-before)
	}
	if _, err := callTool(one, "echo", nil); err == nil {
		t.Error("a closed backend session still answers")
	}
}

// TestClientSessionsBound: beyond the bound the least recently used idle
// session is closed; when every one has a call in flight, a new client is
// refused.
func TestClientSessionsBound(t *testing.T) {
	t.Parallel()
	b := startHTTPBackend(t, "b", config.TransportStreamableHTTP, nil)
	opts := testOptions(nil)
	opts.MaxClientSessions = 2
	m := startManager(t, []config.Backend{b.config("b", config.TransportStreamableHTTP)}, config.OutgoingAuth{}, opts)

	one := clientSession(t, m, backends.Client{}, "one")
	clientSession(t, m, backends.Client{}, "two")
	clientSession(t, m, backends.Client{}, "three") // evicts one
	if got := status(m, "b").ClientSessions; got != 2 {
		t.Errorf("client sessions = %d, want the bound 2", got)
	}
	if _, err := callTool(one, "echo", nil); err == nil {
		t.Error("the evicted session still answers")
	}

	// Hold a call on both open sessions: nothing can be evicted.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var started atomic.Int32
	for _, id := range []string{"two", "three"} {
		s := clientSession(t, m, backends.Client{}, id)
		wg.Go(func() {
			var req mcp.CallToolRequest
			req.Params.Name = "progress"
			req.Params.Arguments = map[string]any{"holdMs": 10000}
			started.Add(1)
			_, _ = s.CallTool(ctx, req)
		})
	}
	waitFor(t, 5*time.Second, "calls started", func() bool { return started.Load() == 2 })
	time.Sleep(100 * time.Millisecond)
	_, err := m.Session(context.Background(), backends.Client{Session: "four"}, "b")
	if !errors.Is(err, backends.ErrTooManySessions) {
		t.Errorf("Session beyond the bound with every session busy: %v, want ErrTooManySessions", err)
	}
	cancel()
	wg.Wait()
	clientSession(t, m, backends.Client{}, "four")
}

// TestClientSessionHeldUntilItsCall: a session Manager.Session returned is
// not closed at the bound before the caller's request has started (another
// client is refused instead); once that request has ended it may be.
func TestClientSessionHeldUntilItsCall(t *testing.T) {
	t.Parallel()
	b := startHTTPBackend(t, "b", config.TransportStreamableHTTP, nil)
	opts := testOptions(nil)
	opts.MaxClientSessions = 1
	m := startManager(t, []config.Backend{b.config("b", config.TransportStreamableHTTP)}, config.OutgoingAuth{}, opts)

	one, err := m.Session(context.Background(), backends.Client{Session: "one"}, "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Session(context.Background(), backends.Client{Session: "two"}, "b"); !errors.Is(err, backends.ErrTooManySessions) {
		t.Fatalf("Session of another client while one's is held: %v, want ErrTooManySessions", err)
	}
	if got := call(t, one, "echo", map[string]any{"text": "hi"}); !strings.Contains(got, "hi") {
		t.Errorf("echo = %q", got)
	}
	two, err := m.Session(context.Background(), backends.Client{Session: "two"}, "b")
	if err != nil {
		t.Fatalf("Session after one's call ended: %v", err)
	}
	two.Release()
	two.Release() // more than once is fine
	if _, err := callTool(one, "echo", nil); err == nil {
		t.Error("the evicted session still answers")
	}
}

// TestCancelReachesBackend: a call whose context ends is cancelled at an
// HTTP backend with notifications/cancelled naming the request.
func TestCancelReachesBackend(t *testing.T) {
	t.Parallel()
	var log methodLog
	b := startHTTPBackend(t, "b", config.TransportStreamableHTTP, log.wrap)
	m := startManager(t, []config.Backend{b.config("b", config.TransportStreamableHTTP)}, config.OutgoingAuth{}, testOptions(nil))
	s := clientSession(t, m, backends.Client{}, "one")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var req mcp.CallToolRequest
	req.Params.Name = "progress"
	req.Params.Arguments = map[string]any{"holdMs": 10000}
	if _, err := s.CallTool(ctx, req); err == nil {
		t.Fatal("a call cancelled by its context succeeded")
	}
	// The notification goes out after the call has returned (off the
	// caller's goroutine).
	deadline := time.Now().Add(5 * time.Second)
	for !(log.saw(`"method":"notifications/cancelled"`) && log.saw(`"requestId":"vmcp-`)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !log.saw(`"method":"notifications/cancelled"`) || !log.saw(`"requestId":"vmcp-`) {
		t.Errorf("backend got no notifications/cancelled for the call; bodies: %q", log.snapshot())
	}
}

// TestSharedConnectionAttribution: on a stdio backend, which every client
// shares, progress goes back by its rewritten token and a sampling request
// to the one client whose call is in flight.
func TestSharedConnectionAttribution(t *testing.T) {
	t.Parallel()
	relay := &fakeRelay{}
	opts := testOptions(nil)
	opts.Relay = relay
	m := startManager(t, []config.Backend{stdioConfig(t, "b")}, config.OutgoingAuth{}, opts)

	one, two := clientSession(t, m, sampling(), "one"), clientSession(t, m, sampling(), "two")
	if got := status(m, "b").ClientSessions; got != 0 {
		t.Errorf("client sessions of a stdio backend = %d, want 0 (shared)", got)
	}
	var wg sync.WaitGroup
	for _, tc := range []struct {
		s     *backends.Session
		token any
	}{{one, "same"}, {two, "same"}} {
		wg.Go(func() {
			var req mcp.CallToolRequest
			req.Params.Name = "progress"
			req.Params.Arguments = map[string]any{"n": 3}
			req.Params.Meta = &mcp.Meta{ProgressToken: tc.token}
			if _, err := tc.s.CallTool(context.Background(), req); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	waitFor(t, 5*time.Second, "progress of both calls", func() bool {
		return len(relay.progress("one")) == 3 && len(relay.progress("two")) == 3
	})
	for _, id := range []string{"one", "two"} {
		for _, tok := range relay.progress(id) {
			if tok != "same" {
				t.Errorf("progress token relayed to %s = %#v, want the client's own", id, tok)
			}
		}
	}
	if got := call(t, two, "sample", nil); !strings.Contains(got, "model of two") {
		t.Errorf("sample on the shared connection = %q, want two's model", got)
	}
}

// waitingRelay is a fakeRelay whose client never answers sampling: Sample
// waits for its context and reports how long it had.
type waitingRelay struct {
	fakeRelay
	had chan time.Duration
}

func (r *waitingRelay) Sample(ctx context.Context, _ string, _ mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	start := time.Now()
	d, ok := ctx.Deadline()
	<-ctx.Done()
	if !ok {
		d = time.Now()
	}
	r.had <- d.Sub(start)
	return nil, ctx.Err()
}

// TestClientRequestBound: a backend's request on its GET stream (where
// mcp-go's server sends sampling) is bounded by the backend's
// requestTimeout, not by mcp-go's 30 s, and the timeout is answered to the
// backend by vmcp's own POST.
func TestClientRequestBound(t *testing.T) {
	t.Parallel()
	var log methodLog
	b := startHTTPBackend(t, "b", config.TransportStreamableHTTP, log.wrap)
	relay := &waitingRelay{had: make(chan time.Duration, 1)}
	opts := testOptions(nil)
	opts.Relay = relay
	cfg := b.config("b", config.TransportStreamableHTTP)
	cfg.RequestTimeout = config.Duration(time.Second)
	m := startManager(t, []config.Backend{cfg}, config.OutgoingAuth{}, opts)

	s := clientSession(t, m, sampling(), "one")
	go func() { _, _ = callTool(s, "sample", nil) }()
	select {
	case had := <-relay.had:
		if had > 2*time.Second {
			t.Errorf("the sampling handler had %s, want the backend's requestTimeout (1s)", had)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sampling handler did not end within 10s")
	}
	waitFor(t, 5*time.Second, "the timeout answered to the backend", func() bool { return log.saw(`"request timed out"`) })
}
