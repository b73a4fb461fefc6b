package backends

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/outauth"
)

// tokenEndpoint is a token endpoint that issues "tok-N" for every request
// and counts them.
func tokenEndpoint(tb testing.TB) (url string, requests *atomic.Int64) {
	requests = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"tok-` + string(rune('0'+n%10)) + `","token_type":"Bearer","expires_in":600}`))
	}))
	tb.Cleanup(srv.Close)
	return srv.URL + "/token", requests
}

// authBackend returns a backend with outgoing auth a, and a session of a
// client with it.
func authBackend(tb testing.TB, a config.BackendAuth) (*backend, *clientConn) {
	cred, err := newCredentials("jira", a, outauth.Options{Getenv: func(k string) (string, bool) { return "secret-" + k, true }})
	if err != nil {
		tb.Fatal(err)
	}
	b := &backend{cfg: config.Backend{Name: "jira", Transport: config.TransportStreamableHTTP}, cred: cred}
	cc := &clientConn{b: b}
	cc.header = b.sessionHeader(SessionData{Backend: "jira", ID: "s1", ProtocolVersion: protocolVersion})
	return b, cc
}

func callerCtx(subject string) context.Context {
	return auth.WithIdentity(context.Background(), auth.Identity{Issuer: "https://idp", Subject: subject, Token: auth.Token("incoming-" + subject)})
}

func TestRequestHeader(t *testing.T) {
	t.Parallel()
	url, requests := tokenEndpoint(t)
	exchange := config.BackendAuth{Type: config.AuthTokenExchange, TokenURL: url, ClientID: "vmcp", ClientSecretEnv: "S", Audience: "jira"}
	for _, tc := range []struct {
		name   string
		auth   config.BackendAuth
		ctx    context.Context
		client Client
		want   string // Authorization; "" none
		err    bool
	}{
		{"none", config.BackendAuth{}, callerCtx("alice"), Client{Session: "c1"}, "", false},
		{"header injection", config.BackendAuth{Type: config.AuthHeaderInjection, HeaderName: "Authorization", HeaderValueEnv: "T"},
			callerCtx("alice"), Client{Session: "c1"}, "secret-T", false},
		{"passthrough", config.BackendAuth{Type: config.AuthPassthrough}, callerCtx("alice"), Client{Session: "c1"}, "Bearer incoming-alice", false},
		{"passthrough anonymous", config.BackendAuth{Type: config.AuthPassthrough},
			auth.WithIdentity(context.Background(), auth.Identity{Issuer: auth.AnonymousIssuer, Subject: auth.AnonymousSubject}),
			Client{Session: "c1"}, "", true},
		{"exchange without a session", exchange, callerCtx("alice"), Client{}, "", true},
		{"exchange", exchange, callerCtx("alice"), Client{Session: "c1"}, "Bearer tok-1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, cc := authBackend(t, tc.auth)
			err := b.authorize(tc.ctx, tc.client)
			if err == nil {
				var h http.Header
				if h, err = cc.requestHeader(tc.ctx); err == nil {
					if got := h.Get("Authorization"); got != tc.want {
						t.Errorf("Authorization = %q, want %q", got, tc.want)
					}
					if h.Get("Mcp-Session-Id") != "s1" {
						t.Errorf("session header lost: %v", h)
					}
				}
			}
			var oe *outauth.Error
			if tc.err != (err != nil) || (err != nil && !errors.As(err, &oe)) {
				t.Fatalf("err = %v, want an *outauth.Error: %v", err, tc.err)
			}
		})
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("token endpoint requests = %d, want 1 (one exchange, none for a refused request)", n)
	}
}

// TestRequestHeaderReused checks that a session's headers with an
// unchanged credential are built once, and that the shared session header
// is never modified.
func TestRequestHeaderReused(t *testing.T) {
	t.Parallel()
	url, _ := tokenEndpoint(t)
	_, cc := authBackend(t, config.BackendAuth{Type: config.AuthTokenExchange, TokenURL: url, ClientID: "vmcp", ClientSecretEnv: "S", Audience: "jira"})
	ctx := callerCtx("alice")
	h1, err := cc.requestHeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := cc.requestHeader(ctx)
	if h1["Authorization"] == nil || &h1["Authorization"][0] != &h2["Authorization"][0] {
		t.Errorf("headers rebuilt for an unchanged credential")
	}
	if cc.header.Get("Authorization") != "" {
		t.Errorf("the session's shared header was modified: %v", cc.header)
	}
	// A request vmcp makes on the session by itself (no caller on its
	// context) uses the session's last caller.
	h3, err := cc.requestHeader(context.Background())
	if err != nil || h3.Get("Authorization") != h1.Get("Authorization") {
		t.Errorf("background request: %q, %v; want the last caller's %q", h3.Get("Authorization"), err, h1.Get("Authorization"))
	}
}

// BenchmarkCallCredential measures what a relayed call spends on its
// outgoing credential (authorize, then the request's headers), by type.
// The bound: a cached exchanged token costs at most 2 µs more per
// call than header injection.
func BenchmarkCallCredential(b *testing.B) {
	url, _ := tokenEndpoint(b)
	for _, tc := range []struct {
		name string
		auth config.BackendAuth
	}{
		{"header_injection", config.BackendAuth{Type: config.AuthHeaderInjection, HeaderName: "Authorization", HeaderValueEnv: "T"}},
		{"client_credentials", config.BackendAuth{Type: config.AuthClientCredentials, TokenURL: url, ClientID: "vmcp", ClientSecretEnv: "S", Resource: "https://jira"}},
		{"token_exchange_cached", config.BackendAuth{Type: config.AuthTokenExchange, TokenURL: url, ClientID: "vmcp", ClientSecretEnv: "S", Audience: "jira"}},
		{"passthrough", config.BackendAuth{Type: config.AuthPassthrough}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			be, cc := authBackend(b, tc.auth)
			ctx := callerCtx("alice")
			c := Client{Session: "c1"}
			if _, err := cc.requestHeader(ctx); err != nil { // warm the cache
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := be.authorize(ctx, c); err != nil {
					b.Fatal(err)
				}
				if _, err := cc.requestHeader(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCredentialNotRedirected checks that the credential a connection's
// HTTP client adds goes to the backend's origin only: a redirect elsewhere
// (which Go's client follows, and mcp-go's does through it) carries none,
// one on the backend's own origin (/mcp → /mcp/) keeps it.
func TestCredentialNotRedirected(t *testing.T) {
	t.Parallel()
	got := make(chan string, 4)
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- "elsewhere:" + r.Header.Get("Authorization") + r.Header.Get("X-Key")
	}))
	t.Cleanup(elsewhere.Close)
	var backend *httptest.Server
	backend = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/mcp":
			http.Redirect(w, r, backend.URL+"/mcp/", http.StatusTemporaryRedirect)
		case "/mcp/":
			got <- "backend:" + r.Header.Get("Authorization") + r.Header.Get("X-Key")
			http.Redirect(w, r, elsewhere.URL+"/steal", http.StatusTemporaryRedirect)
		}
	}))
	t.Cleanup(backend.Close)
	hc := withCredential(&http.Client{}, backend.URL+"/mcp", map[string]string{"X-Key": "k"},
		func(context.Context) map[string]string {
			return map[string]string{"Authorization": "Bearer user-token"}
		})
	resp, err := hc.Get(backend.URL + "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	for _, want := range []string{"backend:Bearer user-tokenk", "elsewhere:"} {
		if g := <-got; g != want {
			t.Errorf("got %q, want %q", g, want)
		}
	}
}
