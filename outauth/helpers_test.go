package outauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/outauth"
)

// Secrets the tests look for where they must not be.
const (
	clientSecret = "cs-SECRET-4f1e9a"
	secretEnv    = "OUTAUTH_TEST_SECRET"
	headerEnv    = "OUTAUTH_TEST_HEADER"
	headerValue  = "hv-SECRET-77aa"
	testIssuer   = "https://idp.example"
	backendName  = "billing"
)

// tokenReq is one request the token endpoint received.
type tokenReq struct {
	Method        string
	ContentType   string
	Authorization string
	Form          url.Values
}

// answer is what the token endpoint answers to one request.
type answer struct {
	Status      int    // 0: 200
	ContentType string // "": application/json
	Body        string
	// Hold, when not nil, delays the answer until it is closed (or the
	// client goes away, or the test ends).
	Hold <-chan struct{}
}

// tokenServer is a scripted token endpoint that records every request.
type tokenServer struct {
	URL     string
	script  func(n int, r tokenReq) answer // n counts requests from 1
	arrived chan int                       // the number of each request, as it arrives
	stop    chan struct{}

	mu   sync.Mutex
	reqs []tokenReq
}

func newTokenServer(t *testing.T, script func(n int, r tokenReq) answer) *tokenServer {
	t.Helper()
	if script == nil {
		script = issue
	}
	s := &tokenServer{script: script, arrived: make(chan int, 10000), stop: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(s.stop) }) // runs first: releases held answers
	s.URL = srv.URL + "/oauth2/token"
	return s
}

func (s *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	req := tokenReq{Method: r.Method, ContentType: r.Header.Get("Content-Type"),
		Authorization: r.Header.Get("Authorization"), Form: r.PostForm}
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	n := len(s.reqs)
	s.mu.Unlock()
	a := s.script(n, req)
	s.arrived <- n
	if a.Hold != nil {
		select {
		case <-a.Hold:
		case <-r.Context().Done():
			return
		case <-s.stop:
			return
		}
	}
	ct := a.ContentType
	if ct == "" {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	if a.Status == 0 {
		a.Status = http.StatusOK
	}
	w.WriteHeader(a.Status)
	_, _ = w.Write([]byte(a.Body))
}

// requests returns the requests received so far.
func (s *tokenServer) requests() []tokenReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tokenReq(nil), s.reqs...)
}

func (s *tokenServer) count() int { return len(s.requests()) }

// grants counts the requests received so far by grant_type.
func (s *tokenServer) grants() map[string]int {
	m := map[string]int{}
	for _, r := range s.requests() {
		m[r.Form.Get("grant_type")]++
	}
	return m
}

// waitArrival waits for request n to arrive.
func (s *tokenServer) waitArrival(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-s.arrived:
			if got >= n {
				return
			}
		case <-timeout:
			t.Fatalf("request %d did not reach the token endpoint", n)
		}
	}
}

// issued is the access token the default script issues for request n.
func issued(n int) string { return fmt.Sprintf("issued-SECRET-%d", n) }

// tokenAnswer is a successful answer with access token tok; expiresIn < 0
// leaves expires_in out.
func tokenAnswer(tok string, expiresIn int) answer {
	m := map[string]any{"access_token": tok, "token_type": "Bearer"}
	if expiresIn >= 0 {
		m["expires_in"] = expiresIn
	}
	b, _ := json.Marshal(m)
	return answer{Body: string(b)}
}

// issue is the default script: a fresh token for an hour.
func issue(n int, _ tokenReq) answer { return tokenAnswer(issued(n), 3600) }

// refuse is an RFC 6749 5.2 error answer.
func refuse(code, desc string) answer {
	b, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
	return answer{Status: http.StatusBadRequest, Body: string(b)}
}

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a Getenv over a map.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// testEnv holds the client secret and the header value.
var testEnv = env(map[string]string{secretEnv: clientSecret, headerEnv: headerValue})

// exchangeAuth is a token_exchange config at url with a client secret.
func exchangeAuth(url string) config.BackendAuth {
	return config.BackendAuth{Type: config.AuthTokenExchange, TokenURL: url, ClientID: "vmcp",
		ClientSecretEnv: secretEnv, Audience: "https://billing.example"}
}

// ccAuth is a client_credentials config at url with a client secret.
func ccAuth(url string) config.BackendAuth {
	return config.BackendAuth{Type: config.AuthClientCredentials, TokenURL: url, ClientID: "vmcp",
		ClientSecretEnv: secretEnv}
}

// mustNew builds backend "billing"'s credentials; Getenv defaults to
// testEnv.
func mustNew(t *testing.T, a config.BackendAuth, o outauth.Options) *outauth.Backend {
	t.Helper()
	if o.Getenv == nil {
		o.Getenv = testEnv
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := outauth.New(backendName, a, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b
}

// user is a caller with subject sub and its incoming token.
func user(sub string) outauth.Caller {
	return outauth.Caller{Issuer: testIssuer, Subject: sub, Token: auth.Token(callerToken(sub))}
}

func callerToken(sub string) string { return "incoming-SECRET-" + sub }

// header calls c.Header and fails the test on an error.
func header(t *testing.T, c outauth.Credential, caller outauth.Caller) (string, string) {
	t.Helper()
	name, value, err := c.Header(context.Background(), caller)
	if err != nil {
		t.Fatalf("Header: %v", err)
	}
	return name, value
}

// asError returns err as an *outauth.Error, failing the test when it is
// not one.
func asError(t *testing.T, err error) *outauth.Error {
	t.Helper()
	var oe *outauth.Error
	if !errors.As(err, &oe) {
		t.Fatalf("error %v (%T) is not an *outauth.Error", err, err)
	}
	return oe
}

// noSecrets fails the test when s holds any of secrets.
func noSecrets(t *testing.T, what, s string, secrets ...string) {
	t.Helper()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			t.Errorf("%s holds the secret %q: %s", what, sec, s)
		}
	}
}
