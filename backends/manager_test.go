package backends_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/config"
)

// barrier holds every initialize request until n of them have arrived, so
// a Manager that connected its backends one after another would time out.
type barrier struct {
	n   int
	mu  sync.Mutex
	got int
	all chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, all: make(chan struct{})} }

func (b *barrier) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if bytes.Contains(body, []byte(`"method":"initialize"`)) {
				b.mu.Lock()
				b.got++
				if b.got == b.n {
					close(b.all)
				}
				b.mu.Unlock()
				select {
				case <-b.all:
				case <-time.After(5 * time.Second):
					http.Error(w, "initialize requests did not arrive concurrently", http.StatusServiceUnavailable)
					return
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}

func TestStartConnectsBackendsInParallel(t *testing.T) {
	t.Parallel()
	transports := []config.Transport{config.TransportStreamableHTTP, config.TransportStreamableHTTP, config.TransportSSE}
	names := []string{"alpha", "beta", "gamma"}
	bar := newBarrier(len(names))
	var cfgs []config.Backend
	for i, name := range names {
		b := startHTTPBackend(t, name, transports[i], bar.wrap)
		cfgs = append(cfgs, b.config(name, transports[i]))
	}
	cfgs = append(cfgs, stdioConfig(t, "delta"))
	names = append(names, "delta")

	var ch changes
	m := startManager(t, cfgs, config.OutgoingAuth{}, testOptions(&ch))

	if got := m.Names(); !slices.Equal(got, names) {
		t.Errorf("Names() = %q, want config order %q", got, names)
	}
	for i, st := range m.Status() {
		if st.Name != names[i] || st.State != backends.StateConnected || st.LastError != "" {
			t.Errorf("Status()[%d] = %+v, want %s connected", i, st, names[i])
		}
	}
	for _, cfg := range cfgs {
		name := cfg.Name
		// Start returns only after each backend's OnChange returned.
		if n := ch.count(name); n != 1 {
			t.Errorf("OnChange(%s) called %d times by the end of Start, want 1", name, n)
		}
		s := session(t, m, name)
		if s.Backend() != name {
			t.Errorf("Session(%s).Backend() = %q", name, s.Backend())
		}
		if got, want := call(t, s, "echo", map[string]any{"text": "hi"}), backendName(cfg)+": hi"; got != want {
			t.Errorf("%s echo = %q, want %q", name, got, want)
		}
	}
}

func TestSessionOfUnknownBackend(t *testing.T) {
	t.Parallel()
	m, err := backends.New(nil, config.OutgoingAuth{}, testOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	m.Start(context.Background())
	defer m.Close()
	_, err = m.Session(context.Background(), backends.Client{}, "nope")
	if !errors.Is(err, backends.ErrUnknownBackend) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Session(nope) error = %v, want ErrUnknownBackend naming it", err)
	}
}

// transports runs f once per backend transport, each against its own
// backend named "b".
func transports(t *testing.T, f func(t *testing.T, cfg config.Backend)) {
	for _, tr := range []config.Transport{config.TransportStreamableHTTP, config.TransportSSE, config.TransportStdio} {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			if tr == config.TransportStdio {
				f(t, stdioConfig(t, "b"))
				return
			}
			f(t, startHTTPBackend(t, "b", tr, nil).config("b", tr))
		})
	}
}

func TestSessionCalls(t *testing.T) {
	t.Parallel()
	transports(t, func(t *testing.T, cfg config.Backend) {
		m := startManager(t, []config.Backend{cfg}, config.OutgoingAuth{}, testOptions(nil))
		s := session(t, m, "b")
		ctx := context.Background()

		t.Run("tool error is a result, not an error", func(t *testing.T) {
			res, err := callTool(s, "fail", nil)
			if err != nil {
				t.Fatalf("CallTool(fail) error = %v", err)
			}
			if !res.IsError || resultText(res) != "it failed" {
				t.Errorf("result = %+v, want IsError with the backend's text", res)
			}
		})
		t.Run("unknown tool names the backend", func(t *testing.T) {
			_, err := callTool(s, "missing", nil)
			if err == nil || !strings.Contains(err.Error(), `backend "b"`) {
				t.Errorf("error = %v, want one naming the backend", err)
			}
			if st := status(m, "b"); st.State != backends.StateConnected {
				t.Errorf("state after a protocol error = %s, want connected", st.State)
			}
		})
		t.Run("read resource", func(t *testing.T) {
			var req mcp.ReadResourceRequest
			req.Params.URI = "test://" + backendName(cfg) + "/doc1"
			res, err := s.ReadResource(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Contents) != 1 {
				t.Fatalf("contents = %+v", res.Contents)
			}
		})
		t.Run("complete", func(t *testing.T) {
			var req mcp.CompleteRequest
			req.Params.Ref = mcp.PromptReference{Type: "ref/prompt", Name: "prompt1"}
			req.Params.Argument = mcp.CompleteArgument{Name: "who", Value: "al"}
			res, err := s.Complete(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if want := backendName(cfg) + ":prompt1:al"; len(res.Completion.Values) != 1 || res.Completion.Values[0] != want {
				t.Errorf("completion = %v, want [%s]", res.Completion.Values, want)
			}
		})
		t.Run("client hop _meta is not forwarded", func(t *testing.T) {
			var req mcp.CallToolRequest
			req.Params.Name = "meta"
			req.Params.Meta = &mcp.Meta{ProgressToken: "tok-1", AdditionalFields: map[string]any{
				"io.modelcontextprotocol/clientInfo": map[string]any{"name": "client"},
				"app.example/trace":                  "t-9",
			}}
			res, err := s.CallTool(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			got := resultText(res)
			if strings.Contains(got, `"name":"client"`) {
				t.Errorf("backend saw the client's own hop metadata: %s", got)
			}
			// The shared connection makes the token unique on it.
			if !strings.Contains(got, `"progressToken":"vmcp-`) || !strings.Contains(got, `"app.example/trace":"t-9"`) {
				t.Errorf("backend _meta = %s, want a progress token and the application keys", got)
			}
		})
		t.Run("get prompt", func(t *testing.T) {
			var req mcp.GetPromptRequest
			req.Params.Name = "prompt2"
			res, err := s.GetPrompt(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Description != backendName(cfg) {
				t.Errorf("description = %q", res.Description)
			}
		})
	})
}

// backendName is the name testServer runs under for cfg.
func backendName(cfg config.Backend) string {
	if cfg.Transport == config.TransportStdio {
		return "stdio"
	}
	return cfg.Name
}

func TestDiscover(t *testing.T) {
	t.Parallel()
	transports(t, func(t *testing.T, cfg config.Backend) {
		m := startManager(t, []config.Backend{cfg}, config.OutgoingAuth{}, testOptions(nil))
		caps, err := session(t, m, "b").Discover(context.Background())
		if err != nil {
			t.Fatalf("Discover: %v", err)
		}

		// testServer pages by two, so each complete list took cursors.
		var names []string
		for _, tool := range caps.Tools {
			names = append(names, tool.Name)
		}
		if !sameSet(names, testTools) {
			t.Errorf("tools = %q, want %q", names, testTools)
		}
		if len(caps.Resources) != 3 || len(caps.ResourceTemplates) != 3 || len(caps.Prompts) != 3 {
			t.Errorf("got %d resources, %d templates, %d prompts; want 3 of each",
				len(caps.Resources), len(caps.ResourceTemplates), len(caps.Prompts))
		}

		i := slices.IndexFunc(caps.Tools, func(tool mcp.Tool) bool { return tool.Name == "raw" })
		if i < 0 {
			t.Fatal("no raw tool")
		}
		raw := caps.Tools[i]
		if string(raw.RawInputSchema) != rawInputSchema {
			t.Errorf("input schema changed on the way:\n got %s\nwant %s", raw.RawInputSchema, rawInputSchema)
		}
		if string(raw.RawOutputSchema) != rawOutputSchema {
			t.Errorf("output schema changed on the way:\n got %s\nwant %s", raw.RawOutputSchema, rawOutputSchema)
		}
		// The tool must re-encode exactly as the backend sent it when vmcp
		// serves it to its own clients.
		enc, err := raw.MarshalJSON()
		if err != nil {
			t.Fatalf("re-encode raw tool: %v", err)
		}
		if !bytes.Contains(enc, []byte(`"inputSchema":`+rawInputSchema)) {
			t.Errorf("re-encoded tool lost the schema: %s", enc)
		}

		j := slices.IndexFunc(caps.Tools, func(tool mcp.Tool) bool { return tool.Name == "echo" })
		if j < 0 || !bytes.Contains(caps.Tools[j].RawInputSchema, []byte(`"text"`)) {
			t.Errorf("echo tool lost its ordinary schema: %+v", caps.Tools[j])
		}
	})
}

// TestDiscoverConcurrently runs several discoveries on one connection at
// once, as rediscovery after list_changed and a caller's own Discover may.
// Over stdio and SSE responses are matched to requests by id only.
func TestDiscoverConcurrently(t *testing.T) {
	t.Parallel()
	transports(t, func(t *testing.T, cfg config.Backend) {
		cfg.RequestTimeout = config.Duration(5 * time.Second)
		m := startManager(t, []config.Backend{cfg}, config.OutgoingAuth{}, testOptions(nil))
		s := session(t, m, "b")
		const n = 6
		errs := make(chan error, n)
		for range n {
			go func() {
				caps, err := s.Discover(context.Background())
				if err == nil && len(caps.Tools) != len(testTools) {
					err = errors.New("incomplete tool list")
				}
				errs <- err
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Errorf("concurrent Discover: %v", err)
			}
		}
	})
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// headerLog records one header of every request a backend gets.
type headerLog struct {
	header string
	mu     sync.Mutex
	seen   []string // "METHOD value"
}

func (l *headerLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.seen = append(l.seen, r.Method+" "+r.Header.Get(l.header))
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *headerLog) requests() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seen)
}

func TestHeaderInjection(t *testing.T) {
	t.Parallel()
	for _, tr := range []config.Transport{config.TransportStreamableHTTP, config.TransportSSE} {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			log := &headerLog{header: "Authorization"}
			srv := startHTTPBackend(t, "github", tr, log.wrap)
			auth := config.OutgoingAuth{Backends: map[string]config.BackendAuth{
				"github": {Type: config.AuthHeaderInjection, HeaderName: "Authorization", HeaderValueEnv: "GITHUB_TOKEN"},
			}}
			opts := testOptions(nil)
			opts.Getenv = func(k string) (string, bool) {
				if k == "GITHUB_TOKEN" {
					return "Bearer s3cret", true
				}
				return "", false
			}
			m := startManager(t, []config.Backend{srv.config("github", tr)}, auth, opts)

			// A client's own headers must never reach the backend.
			var req mcp.CallToolRequest
			req.Params.Name = "echo"
			req.Header = http.Header{"Authorization": {"Bearer client-token"}}
			if _, err := session(t, m, "github").CallTool(context.Background(), req); err != nil {
				t.Fatal(err)
			}

			// The streamable HTTP GET stream opens in the background.
			waitFor(t, 5*time.Second, "the GET stream", func() bool {
				return slices.ContainsFunc(log.requests(), func(s string) bool { return strings.HasPrefix(s, "GET ") })
			})
			seen := log.requests()
			var posts, gets int
			for _, s := range seen {
				method, value, _ := strings.Cut(s, " ")
				switch method {
				case http.MethodPost:
					posts++
				case http.MethodGet:
					gets++
				default:
					continue
				}
				if value != "Bearer s3cret" {
					t.Errorf("%s carried Authorization %q, want the injected value", method, value)
				}
			}
			if posts < 2 || gets < 1 {
				t.Errorf("requests = %q, want the stream GET and at least initialize and the call", seen)
			}
		})
	}
}

func TestOutgoingAuthErrors(t *testing.T) {
	t.Parallel()
	getenv := func(k string) (string, bool) {
		switch k {
		case "SET":
			return "v", true
		case "EMPTY":
			return "", true
		}
		return "", false
	}
	tests := []struct {
		name string
		auth config.BackendAuth
		want []string // substrings of the error
	}{
		{
			name: "missing variable",
			auth: config.BackendAuth{Type: config.AuthHeaderInjection, HeaderName: "Authorization", HeaderValueEnv: "GITHUB_TOKEN"},
			want: []string{"outgoingAuth.backends.github.headerValueEnv: environment variable GITHUB_TOKEN is not set"},
		},
		{
			name: "empty variable",
			auth: config.BackendAuth{Type: config.AuthHeaderInjection, HeaderName: "Authorization", HeaderValueEnv: "EMPTY"},
			want: []string{"outgoingAuth.backends.github.headerValueEnv: environment variable EMPTY is not set"},
		},
		{
			name: "no header name",
			auth: config.BackendAuth{Type: config.AuthHeaderInjection, HeaderValueEnv: "SET"},
			want: []string{"outgoingAuth.backends.github.headerName: empty"},
		},
		{
			name: "unknown type",
			auth: config.BackendAuth{Type: "oauth2"},
			want: []string{"outgoingAuth.backends.github.type: unsupported \"oauth2\""},
		},
		{
			name: "client secret not set",
			auth: config.BackendAuth{Type: config.AuthTokenExchange, TokenURL: "http://127.0.0.1:1/token", ClientID: "vmcp",
				ClientSecretEnv: "TE_SECRET", Audience: "github"},
			want: []string{"outgoingAuth.backends.github.clientSecretEnv: environment variable TE_SECRET is not set"},
		},
		{
			name: "discovery's secret not set",
			auth: config.BackendAuth{Type: config.AuthPassthrough, Discovery: config.AuthClientCredentials,
				TokenURL: "http://127.0.0.1:1/token", ClientID: "vmcp", ClientSecretEnv: "CC_SECRET"},
			want: []string{"outgoingAuth.backends.github.clientSecretEnv: environment variable CC_SECRET is not set"},
		},
		{
			name: "key file missing",
			auth: config.BackendAuth{Type: config.AuthClientCredentials, TokenURL: "http://127.0.0.1:1/token", ClientID: "vmcp",
				PrivateKeyFile: "/nonexistent/key.pem"},
			want: []string{"outgoingAuth.backends.github.privateKeyFile: open /nonexistent/key.pem"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Backend{Name: "github", Transport: config.TransportStreamableHTTP, URL: "http://127.0.0.1:1/mcp"}
			opts := testOptions(nil)
			opts.Getenv = getenv
			m, err := backends.New([]config.Backend{cfg}, config.OutgoingAuth{Backends: map[string]config.BackendAuth{"github": tt.auth}}, opts)
			if err == nil {
				_ = m.Close()
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestBackendDownAtStart(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: connections are refused at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/mcp"
	_ = ln.Close()

	cfg := config.Backend{Name: "down", Transport: config.TransportStreamableHTTP, URL: url, ConnectTimeout: config.Duration(2 * time.Second)}
	start := time.Now()
	m := startManager(t, []config.Backend{cfg}, config.OutgoingAuth{}, testOptions(nil))
	if d := time.Since(start); d > time.Second {
		t.Errorf("Start took %v for a refused connection", d)
	}

	st := status(m, "down")
	if st.State != backends.StateUnavailable || !strings.Contains(st.LastError, "connection refused") {
		t.Errorf("status = %+v, want unavailable with the refusal", st)
	}
	_, err = m.Session(context.Background(), backends.Client{}, "down")
	if !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("Session error = %v, want ErrUnavailable", err)
	}
	// Clients learn which backend is unavailable, not its internals: the
	// cause is in the status (and the logs) only.
	if !strings.Contains(err.Error(), `backend "down"`) || strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Session error %q should name the backend and keep the cause to the status", err)
	}
}

func TestBackendComingUpLaterReconnects(t *testing.T) {
	t.Parallel()
	// Hold the port with a listener that does not serve yet: connections
	// wait in its backlog and the first attempt times out.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Backend{
		Name: "late", Transport: config.TransportStreamableHTTP, URL: "http://" + ln.Addr().String() + "/mcp",
		ConnectTimeout: config.Duration(300 * time.Millisecond),
	}
	var ch changes
	opts := testOptions(&ch)
	m := startManager(t, []config.Backend{cfg}, config.OutgoingAuth{}, opts)

	st := status(m, "late")
	if st.State != backends.StateUnavailable || st.LastError == "" {
		t.Fatalf("status after Start = %+v, want unavailable with an error", st)
	}
	if ch.count("late") != 0 {
		t.Error("OnChange called for a backend that never connected")
	}

	srv := &http.Server{Handler: server.NewStreamableHTTPServer(testServer("late"))}
	up := time.Now()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	waitFor(t, 5*time.Second, "OnChange after the backend came up", func() bool { return ch.count("late") == 1 })
	// The next attempt comes at most MaxBackoff after the failed one;
	// connecting itself takes a few milliseconds.
	if d := time.Since(up); d > opts.MaxBackoff+500*time.Millisecond {
		t.Errorf("reconnected %v after the backend came up; MaxBackoff is %v", d, opts.MaxBackoff)
	}
	st = status(m, "late")
	if st.State != backends.StateConnected || st.LastError != "" {
		t.Errorf("status = %+v, want connected without an error", st)
	}
	if got := call(t, session(t, m, "late"), "echo", map[string]any{"text": "x"}); got != "late: x" {
		t.Errorf("echo = %q", got)
	}
}

func TestListChangedTriggersOnChange(t *testing.T) {
	t.Parallel()
	transports(t, func(t *testing.T, cfg config.Backend) {
		var ch changes
		m := startManager(t, []config.Backend{cfg}, config.OutgoingAuth{}, testOptions(&ch))
		if n := ch.count("b"); n != 1 {
			t.Fatalf("OnChange count after Start = %d, want 1", n)
		}
		s := session(t, m, "b")
		// The backend adds a tool to its running server and announces it.
		// Over streamable HTTP the announcement travels on the GET stream,
		// which opens in the background after initialize; one made before
		// it opens is lost, so add tools until one gets through.
		added := 0
		waitFor(t, 5*time.Second, "OnChange after tools/list_changed", func() bool {
			call(t, s, "add_tool", map[string]any{"name": "fresh" + strconv.Itoa(added)})
			added++
			time.Sleep(20 * time.Millisecond)
			return ch.count("b") >= 2
		})

		caps, err := s.Discover(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(caps.Tools, func(tool mcp.Tool) bool { return tool.Name == "fresh0" }) {
			t.Error("rediscovery does not show the new tool")
		}
	})
}

func TestListChangedFromTheServerSide(t *testing.T) {
	t.Parallel()
	// A change made by the backend on its own, not during a call, arrives
	// on the standalone stream (GET for streamable HTTP, the SSE stream).
	for _, tr := range []config.Transport{config.TransportStreamableHTTP, config.TransportSSE} {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			srv := startHTTPBackend(t, "b", tr, nil)
			var ch changes
			startManager(t, []config.Backend{srv.config("b", tr)}, config.OutgoingAuth{}, testOptions(&ch))
			// The GET stream opens in the background after initialize; keep
			// adding until one announcement gets through.
			waitFor(t, 5*time.Second, "OnChange after the server added a tool", func() bool {
				srv.mcp.AddTool(mcp.NewTool("late"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) { return nil, nil })
				time.Sleep(20 * time.Millisecond)
				return ch.count("b") >= 2
			})
		})
	}
}

func TestKilledHTTPBackend(t *testing.T) {
	t.Parallel()
	for _, tr := range []config.Transport{config.TransportStreamableHTTP, config.TransportSSE} {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			srv := startHTTPBackend(t, "victim", tr, nil)
			m := startManager(t, []config.Backend{srv.config("victim", tr)}, config.OutgoingAuth{}, testOptions(nil))
			s := session(t, m, "victim")
			call(t, s, "echo", nil)

			srv.kill()
			_, err := callTool(s, "echo", nil)
			if err == nil {
				t.Fatal("CallTool on a dead backend succeeded")
			}
			if !strings.Contains(err.Error(), `backend "victim"`) {
				t.Errorf("error %q does not name the backend", err)
			}
			waitFor(t, 5*time.Second, "state unavailable", func() bool {
				return status(m, "victim").State == backends.StateUnavailable
			})
			if st := status(m, "victim"); st.LastError == "" {
				t.Errorf("status = %+v, want the error", st)
			}
			// The state may turn before the supervisor has let the
			// connection go: Session follows within the same bound.
			waitFor(t, 5*time.Second, "Session after the loss failing with ErrUnavailable", func() bool {
				_, err := m.Session(context.Background(), backends.Client{}, "victim")
				return errors.Is(err, backends.ErrUnavailable)
			})
		})
	}
}

func TestDeadBackendIsNoticedWithoutCalls(t *testing.T) {
	t.Parallel()
	// SSE notices the end of its stream; streamable HTTP needs the ping.
	for _, tr := range []config.Transport{config.TransportStreamableHTTP, config.TransportSSE} {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			srv := startHTTPBackend(t, "quiet", tr, nil)
			opts := testOptions(nil)
			if tr == config.TransportStreamableHTTP {
				opts.PingInterval = 50 * time.Millisecond
			}
			m := startManager(t, []config.Backend{srv.config("quiet", tr)}, config.OutgoingAuth{}, opts)
			srv.kill()
			waitFor(t, 5*time.Second, "state unavailable", func() bool {
				return status(m, "quiet").State == backends.StateUnavailable
			})
		})
	}
}

func TestCloseIsFinal(t *testing.T) {
	t.Parallel()
	srv := startHTTPBackend(t, "b", config.TransportStreamableHTTP, nil)
	m, err := backends.New([]config.Backend{srv.config("b", config.TransportStreamableHTTP)}, config.OutgoingAuth{}, testOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() }) // should the test stop early
	m.Start(context.Background())
	s := session(t, m, "b")
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if st := status(m, "b"); st.State != backends.StateClosed {
		t.Errorf("state after Close = %s, want closed", st.State)
	}
	if _, err := m.Session(context.Background(), backends.Client{}, "b"); !errors.Is(err, backends.ErrUnavailable) {
		t.Errorf("Session after Close = %v, want ErrUnavailable", err)
	}
	if _, err := callTool(s, "echo", nil); err == nil {
		t.Error("a session taken before Close still works after it")
	}
}

func TestCloseWithoutStart(t *testing.T) {
	t.Parallel()
	m, err := backends.New([]config.Backend{stdioConfig(t, "never")}, config.OutgoingAuth{}, testOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestStartReturnsWhenCtxEnds(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // never served
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := config.Backend{Name: "slow", Transport: config.TransportStreamableHTTP, URL: "http://" + ln.Addr().String() + "/mcp",
		ConnectTimeout: config.Duration(time.Minute)}
	m, err := backends.New([]config.Backend{cfg}, config.OutgoingAuth{}, testOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	m.Start(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Start took %v after its ctx ended", d)
	}
	if st := status(m, "slow"); st.State != backends.StateConnecting {
		t.Errorf("state = %s, want connecting", st.State)
	}
	closed := time.Now()
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(closed); d > 2*time.Second {
		t.Errorf("Close took %v while a connect was pending", d)
	}
}

func TestFlappingBackendIsRetriedWithBackoff(t *testing.T) {
	t.Parallel()
	// The backend accepts initialize but forgets the session at once, as
	// one that keeps crashing behind a proxy would: every connection is
	// lost as soon as it is used.
	var initializes atomic.Int32
	forget := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			switch {
			case r.Method == http.MethodPost && bytes.Contains(body, []byte(`"method":"initialize"`)):
				initializes.Add(1)
			case r.Method == http.MethodPost && bytes.Contains(body, []byte(`"method":"notifications/initialized"`)):
			default:
				http.Error(w, "session not found", http.StatusNotFound)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	srv := startHTTPBackend(t, "flappy", config.TransportStreamableHTTP, forget)

	// OnChange rediscovers, as the server does, which loses the connection.
	var m *backends.Manager
	opts := testOptions(nil)
	opts.OnChange = func(ctx context.Context, name string) error {
		s, err := m.Session(context.Background(), backends.Client{}, name)
		if err != nil {
			return err
		}
		_, err = s.Discover(ctx)
		return err
	}
	m, err := backends.New([]config.Backend{srv.config("flappy", config.TransportStreamableHTTP)}, config.OutgoingAuth{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.Start(context.Background())

	n0 := initializes.Load()
	time.Sleep(time.Second)
	// Backoff from MaxBackoff (200ms) allows about 5 attempts a second.
	if n := initializes.Load() - n0; n > 8 {
		t.Errorf("re-initialized a flapping backend %d times in 1s; want backoff between attempts", n)
	}
	waitFor(t, time.Second, "the loss to show between attempts", func() bool {
		st := status(m, "flappy")
		return st.State == backends.StateUnavailable && strings.Contains(st.LastError, "session terminated")
	})
}
