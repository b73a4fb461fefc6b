package outauth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/outauth"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// errorTexts are the ways an error may be printed.
func errorTexts(err error) map[string]string {
	return map[string]string{"Error()": err.Error(), "%v": fmt.Sprintf("%v", err), "%+v": fmt.Sprintf("%+v", err),
		"%s": fmt.Sprintf("%s", err), "%q": fmt.Sprintf("%q", err), "%#v": fmt.Sprintf("%#v", err)}
}

// TestTokenEndpointFailures checks the error of each kind of failed
// answer: a refusal carries the OAuth error code, anything else is
// Unavailable; either names the backend, holds no secret, is not cached
// and is not retried.
func TestTokenEndpointFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		answer      answer
		code        string
		unavailable bool
		contains    []string
	}{
		{name: "invalid_grant", answer: refuse("invalid_grant", "the subject token has expired"),
			code: "invalid_grant", contains: []string{"invalid_grant", "the subject token has expired"}},
		{name: "invalid_client 401 JSON with charset", answer: answer{Status: 401, ContentType: "application/json; charset=utf-8",
			Body: `{"error":"invalid_client"}`}, code: "invalid_client", contains: []string{"invalid_client"}},
		{name: "invalid_target without description", answer: answer{Status: 400, Body: `{"error":"invalid_target"}`},
			code: "invalid_target", contains: []string{"invalid_target"}},
		{name: "description with control characters, cut", answer: refuse("access_denied", "line one\nline two\x1b[31m"+strings.Repeat("x", 300)),
			code: "access_denied", contains: []string{"access_denied", "line oneline two"}},
		{name: "error code with control characters", answer: answer{Status: 400, Body: `{"error":"invalid_\u001b[2Jgrant\n"}`},
			code: "invalid_[2Jgrant", contains: []string{"invalid_[2Jgrant"}},
		{name: "500 with an OAuth error body", answer: answer{Status: 500, Body: `{"error":"server_error"}`},
			unavailable: true, contains: []string{"500"}},
		{name: "503 text", answer: answer{Status: 503, ContentType: "text/plain", Body: "upstream connect error"},
			unavailable: true, contains: []string{"503"}},
		{name: "400 HTML", answer: answer{Status: 400, ContentType: "text/html", Body: "<html>bad request</html>"},
			unavailable: true, contains: []string{"400"}},
		{name: "400 JSON without error", answer: answer{Status: 400, Body: `{"message":"no"}`}, unavailable: true},
		{name: "200 not JSON", answer: answer{ContentType: "text/html", Body: "<html>login</html>"},
			unavailable: true, contains: []string{"access_token"}},
		{name: "200 without access_token", answer: answer{Body: `{"token_type":"Bearer","expires_in":3600}`},
			unavailable: true, contains: []string{"access_token"}},
		{name: "200 with an empty access_token", answer: answer{Body: `{"access_token":"","token_type":"Bearer"}`},
			unavailable: true},
		{name: "token_type mac", answer: answer{Body: fmt.Sprintf(`{"access_token":%q,"token_type":"mac","expires_in":3600}`, issued(1))},
			unavailable: true, contains: []string{"mac"}},
	}
	for _, typ := range []string{config.AuthTokenExchange, config.AuthClientCredentials} {
		for _, method := range []string{config.ClientSecretBasic, config.ClientSecretPost} {
			for _, tc := range tests {
				t.Run(typ+"/"+method+"/"+tc.name, func(t *testing.T) {
					t.Parallel()
					srv := newTokenServer(t, func(n int, _ tokenReq) answer {
						if n == 1 {
							return tc.answer
						}
						return tokenAnswer(issued(n), 3600)
					})
					var logs syncBuffer
					a := exchangeAuth(srv.URL)
					a.Type, a.ClientAuthMethod = typ, method
					b := mustNew(t, a, outauth.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
					name, value, err := b.Calls.Header(context.Background(), user("alice"))
					if err == nil {
						t.Fatalf("Header = %q: %q, want an error", name, value)
					}
					if value != "" {
						t.Errorf("header value %q with an error", value)
					}
					oe := asError(t, err)
					grant := map[string]string{config.AuthTokenExchange: "token_exchange", config.AuthClientCredentials: "client_credentials"}[typ]
					if oe.Backend != backendName || oe.Grant != grant || oe.Code != tc.code || oe.Unavailable != tc.unavailable {
						t.Errorf("error %+v: want backend %q grant %q code %q unavailable %v",
							*oe, backendName, grant, tc.code, tc.unavailable)
					}
					msg := err.Error()
					for _, w := range append([]string{`"` + backendName + `"`}, tc.contains...) {
						if !strings.Contains(msg, w) {
							t.Errorf("message %q does not contain %q", msg, w)
						}
					}
					if strings.ContainsAny(msg, "\n\x1b") || len(msg) > 400 {
						t.Errorf("message %q holds control characters or is too long", msg)
					}
					for how, s := range errorTexts(err) {
						noSecrets(t, "error "+how, s, callerToken("alice"), clientSecret, issued(1))
					}
					noSecrets(t, "log", logs.String(), callerToken("alice"), clientSecret, issued(1))
					if !strings.Contains(logs.String(), "token request failed") {
						t.Errorf("the failure was not logged: %s", logs.String())
					}
					if n := srv.count(); n != 1 {
						t.Errorf("%d requests for one failing call, want 1 (no retry)", n)
					}
					// Not cached: the next call asks again.
					if _, v := header(t, b.Calls, user("alice")); v != "Bearer "+issued(2) {
						t.Errorf("the call after the failure: %q, want Bearer %s", v, issued(2))
					}
					if n := srv.count(); n != 2 {
						t.Errorf("%d requests after two calls, want 2", n)
					}
				})
			}
		}
	}
}

// TestTokenEndpointUnreachable checks a token endpoint that does not
// answer: no listener, a hanging answer cut by the caller's deadline, or by
// Options.Timeout.
func TestTokenEndpointUnreachable(t *testing.T) {
	t.Parallel()
	hang := func(int, tokenReq) answer { return answer{Hold: make(chan struct{})} }
	// A server that drops each connection without answering (a closed
	// server's port could be taken by another test's).
	dropping := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	t.Cleanup(dropping.Close)
	closedURL := dropping.URL + "/token"
	tests := []struct {
		name     string
		script   func(int, tokenReq) answer // nil: a server that drops the connection
		ctx      func() (context.Context, context.CancelFunc)
		timeout  time.Duration
		inTime   bool // the reason says "in time"
		requests int
	}{
		{name: "connection dropped", ctx: func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
		{name: "hanging, caller's deadline", script: hang, requests: 1, inTime: true,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 300*time.Millisecond)
			}},
		{name: "hanging, Options.Timeout without a deadline", script: hang, requests: 1, inTime: true, timeout: 300 * time.Millisecond,
			ctx: func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
		{name: "hanging, Options.Timeout before the caller's deadline", script: hang, requests: 1, inTime: true, timeout: 300 * time.Millisecond,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), time.Hour)
			}},
	}
	for _, typ := range []string{config.AuthTokenExchange, config.AuthClientCredentials} {
		for _, tc := range tests {
			t.Run(typ+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				url := closedURL
				var srv *tokenServer
				if tc.script != nil {
					srv = newTokenServer(t, tc.script)
					url = srv.URL
				}
				a := exchangeAuth(url)
				a.Type = typ
				var logs syncBuffer
				b := mustNew(t, a, outauth.Options{Timeout: tc.timeout, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
				ctx, cancel := tc.ctx()
				defer cancel()
				done := make(chan error, 1)
				start := time.Now()
				go func() {
					_, _, err := b.Calls.Header(ctx, user("alice"))
					done <- err
				}()
				var err error
				select {
				case err = <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("Header did not return within 10 s")
				}
				if time.Since(start) < 200*time.Millisecond && tc.script != nil {
					t.Errorf("returned after %v, before any deadline", time.Since(start))
				}
				oe := asError(t, err)
				if !oe.Unavailable || oe.Code != "" || oe.Backend != backendName {
					t.Errorf("error %+v, want Unavailable for backend %q", *oe, backendName)
				}
				if strings.Contains(err.Error(), "in time") != tc.inTime {
					t.Errorf("message %q: says in time %v, want %v", err, !tc.inTime, tc.inTime)
				}
				if oe.Unwrap() == nil {
					t.Error("no cause")
				}
				for how, s := range errorTexts(err) {
					noSecrets(t, "error "+how, s, callerToken("alice"), clientSecret)
				}
				noSecrets(t, "log", logs.String(), callerToken("alice"), clientSecret)
				if srv != nil && srv.count() != tc.requests {
					t.Errorf("%d requests, want %d", srv.count(), tc.requests)
				}
			})
		}
	}
}

// TestConcurrentCallsShareAFailure checks that the calls waiting for an
// exchange get its failure, with no request of their own, and that the
// failure is not cached.
func TestConcurrentCallsShareAFailure(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := newTokenServer(t, func(n int, _ tokenReq) answer {
		if n == 1 {
			a := refuse("invalid_grant", "no")
			a.Hold = release
			return a
		}
		return tokenAnswer(issued(n), 3600)
	})
	b := mustNew(t, exchangeAuth(srv.URL), outauth.Options{})
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 10 {
		wg.Go(func() {
			<-start
			_, _, err := b.Calls.Header(context.Background(), user("alice"))
			if oe := asError(t, err); oe.Code != "invalid_grant" {
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	close(start)
	srv.waitArrival(t, 1)
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := srv.count(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if _, v := header(t, b.Calls, user("alice")); v != "Bearer "+issued(2) {
		t.Errorf("after the failure: %q", v)
	}
}

// renewalFailures are the failed answers to a renewal.
var renewalFailures = []answer{refuse("invalid_grant", "session revoked"), {Status: 502, ContentType: "text/plain", Body: "bad gateway"}}

// TestFailedRenewalInFlight checks that while a renewal that will fail is
// in flight, the other calls get the current token without waiting, and
// the renewing call, once it failed, gets the current token too (it is
// valid until it expires: TestRefusedRenewal).
func TestFailedRenewalInFlight(t *testing.T) {
	t.Parallel()
	for _, fail := range renewalFailures {
		for _, typ := range []string{config.AuthTokenExchange, config.AuthClientCredentials} {
			t.Run(fmt.Sprint(typ, "/", fail.Status), func(t *testing.T) {
				t.Parallel()
				clock := newFakeClock()
				release := make(chan struct{})
				srv := newTokenServer(t, func(n int, _ tokenReq) answer {
					if n == 1 {
						return tokenAnswer(issued(1), 100) // renewed at 80 s, expires at 100 s
					}
					f := fail
					f.Hold = release
					return f
				})
				a := exchangeAuth(srv.URL)
				a.Type = typ
				b := mustNew(t, a, outauth.WithClock(outauth.Options{}, clock.Now))
				header(t, b.Calls, user("alice"))
				clock.Advance(85 * time.Second)
				type result struct {
					v   string
					err error
				}
				renewing := make(chan result, 1)
				go func() {
					_, v, err := b.Calls.Header(context.Background(), user("alice"))
					renewing <- result{v, err}
				}()
				srv.waitArrival(t, 2)
				if _, v := header(t, b.Calls, user("alice")); v != "Bearer "+issued(1) {
					t.Errorf("during the renewal: %q, want the current token", v)
				}
				close(release)
				select {
				case r := <-renewing:
					if r.err != nil || r.v != "Bearer "+issued(1) {
						t.Errorf("the renewing call: %q, %v; want the current token", r.v, r.err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the renewing call did not return")
				}
				if n := srv.count(); n != 2 {
					t.Errorf("%d requests, want 2", n)
				}
			})
		}
	}
}

// TestRefusedRenewal checks that a renewal that fails leaves the current
// token in use until it expires: the calls between the renewal time and
// the expiry get it (and may ask for a new one), the calls after get an
// error.
func TestRefusedRenewal(t *testing.T) {
	t.Parallel()
	for _, fail := range renewalFailures {
		for _, typ := range []string{config.AuthTokenExchange, config.AuthClientCredentials} {
			t.Run(fmt.Sprint(typ, "/", fail.Status), func(t *testing.T) {
				t.Parallel()
				clock := newFakeClock()
				srv := newTokenServer(t, func(n int, _ tokenReq) answer {
					if n == 1 {
						return tokenAnswer(issued(1), 100) // renewed at 80 s, expires at 100 s
					}
					return fail
				})
				a := exchangeAuth(srv.URL)
				a.Type = typ
				b := mustNew(t, a, outauth.WithClock(outauth.Options{}, clock.Now))
				header(t, b.Calls, user("alice"))
				elapsed := time.Duration(0)
				for _, at := range []time.Duration{85 * time.Second, 90 * time.Second, 99 * time.Second} {
					clock.Advance(at - elapsed)
					elapsed = at
					_, v, err := b.Calls.Header(context.Background(), user("alice"))
					if err != nil || v != "Bearer "+issued(1) {
						t.Errorf("at %v, the renewal failing: %q, %v; want the current token", at, v, err)
					}
					outauth.WaitRenewals(b)
				}
				if srv.count() < 2 {
					t.Errorf("%d requests: no renewal was attempted", srv.count())
				}
				clock.Advance(time.Second) // 100 s: expired
				before := srv.count()
				_, v, err := b.Calls.Header(context.Background(), user("alice"))
				if err == nil {
					t.Fatalf("after expiry, the renewal failing: %q, want an error", v)
				}
				for how, s := range errorTexts(err) {
					noSecrets(t, "error "+how, s, issued(1), callerToken("alice"), clientSecret)
				}
				if n := srv.count() - before; n != 1 {
					t.Errorf("%d requests after expiry, want 1", n)
				}
			})
		}
	}
}

// TestAnonymousCaller checks that a per-user credential fails for a caller
// without a token, and asks nothing.
func TestAnonymousCaller(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a    func(url string) config.BackendAuth
	}{
		{name: "token_exchange", a: exchangeAuth},
		{name: "token_exchange with actorToken", a: func(u string) config.BackendAuth {
			a := exchangeAuth(u)
			a.ActorToken = true
			return a
		}},
		{name: "passthrough", a: func(string) config.BackendAuth { return config.BackendAuth{Type: config.AuthPassthrough} }},
	}
	for _, tc := range tests {
		for _, c := range []outauth.Caller{{}, {Issuer: "vmcp:anonymous", Subject: "anonymous"}, {Issuer: testIssuer, Subject: "alice"}} {
			t.Run(fmt.Sprint(tc.name, "/", c.Subject), func(t *testing.T) {
				t.Parallel()
				srv := newTokenServer(t, nil)
				b := mustNew(t, tc.a(srv.URL), outauth.Options{})
				name, value, err := b.Calls.Header(context.Background(), c)
				if err == nil {
					t.Fatalf("Header = %q: %q, want an error", name, value)
				}
				if oe := asError(t, err); oe.Backend != backendName || oe.Grant != "" || oe.Unavailable {
					t.Errorf("error %+v", *oe)
				}
				// A named caller without a token is a request vmcp makes by
				// itself: it may use a cached token, never exchange.
				want := "anonymous"
				if c.Subject == "alice" && tc.name != "passthrough" {
					want = "none to exchange"
				}
				if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), backendName) {
					t.Errorf("message %q does not say %q", err, want)
				}
				if n := srv.count(); n != 0 {
					t.Errorf("%d token requests for an anonymous caller", n)
				}
			})
		}
	}
}

// TestAbandonedExchange checks that when the call fetching a token gives
// up (its context ends), a call that was waiting for it fetches its own.
func TestAbandonedExchange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		cancel bool // the test cancels the leader's context; else its deadline passes
	}{
		{name: "cancelled", cancel: true, ctx: func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}},
		{name: "deadline", ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 300*time.Millisecond)
		}},
	}
	for _, typ := range []string{config.AuthTokenExchange, config.AuthClientCredentials} {
		for _, tc := range tests {
			t.Run(typ+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				srv := newTokenServer(t, func(n int, _ tokenReq) answer {
					if n == 1 {
						return answer{Hold: make(chan struct{})} // until the client goes away
					}
					return tokenAnswer(issued(n), 3600)
				})
				a := exchangeAuth(srv.URL)
				a.Type = typ
				b := mustNew(t, a, outauth.Options{})
				leaderCtx, cancel := tc.ctx()
				defer cancel()
				leader := make(chan error, 1)
				go func() {
					_, _, err := b.Calls.Header(leaderCtx, user("alice"))
					leader <- err
				}()
				srv.waitArrival(t, 1)
				waiter := make(chan string, 1)
				go func() {
					_, v, err := b.Calls.Header(context.Background(), user("alice"))
					if err != nil {
						t.Errorf("waiter: %v", err)
					}
					waiter <- v
				}()
				time.Sleep(100 * time.Millisecond) // the waiter waits for the leader's exchange
				if tc.cancel {
					cancel()
				}
				select {
				case err := <-leader:
					if err == nil {
						t.Error("the leader got a token after giving up")
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the leader did not return")
				}
				select {
				case v := <-waiter:
					if v != "Bearer "+issued(2) {
						t.Errorf("waiter: %q, want Bearer %s", v, issued(2))
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the waiter did not return")
				}
				if n := srv.count(); n != 2 {
					t.Errorf("%d requests, want 2", n)
				}
			})
		}
	}
}

// TestWaiterContextEnds checks that a call waiting for another's exchange
// returns when its own context ends, with an *Error.
func TestWaiterContextEnds(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := newTokenServer(t, func(n int, _ tokenReq) answer {
		a := tokenAnswer(issued(n), 3600)
		a.Hold = release
		return a
	})
	b := mustNew(t, exchangeAuth(srv.URL), outauth.Options{})
	leader := make(chan string, 1)
	go func() {
		_, v, _ := b.Calls.Header(context.Background(), user("alice"))
		leader <- v
	}()
	srv.waitArrival(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := b.Calls.Header(ctx, user("alice"))
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting call did not return at its deadline")
	}
	close(release)
	if v := <-leader; v != "Bearer "+issued(1) {
		t.Errorf("leader: %q", v)
	}
	if err == nil {
		t.Fatal("the waiting call got no error")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap the context's", err)
	}
	var oe *outauth.Error
	if !errors.As(err, &oe) {
		t.Errorf("error %v (%T) is not an *outauth.Error, as Credential.Header promises", err, err)
	} else if !oe.Unavailable || oe.Backend != backendName {
		t.Errorf("error %+v", *oe)
	}
}

// TestRefusalQuotingTheToken checks that a provider's error description
// that repeats the caller's token does not carry it into the error.
func TestRefusalQuotingTheToken(t *testing.T) {
	t.Parallel()
	srv := newTokenServer(t, func(int, tokenReq) answer {
		return refuse("invalid_grant", "subject_token "+callerToken("alice")+" is revoked")
	})
	b := mustNew(t, exchangeAuth(srv.URL), outauth.Options{})
	_, _, err := b.Calls.Header(context.Background(), user("alice"))
	if oe := asError(t, err); oe.Code != "invalid_grant" {
		t.Fatalf("error %+v", *oe)
	}
	if strings.Contains(err.Error(), callerToken("alice")) || !strings.Contains(err.Error(), "subject_token [redacted] is revoked") {
		t.Errorf("message %q", err)
	}
}
