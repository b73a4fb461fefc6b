package outauth_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/outauth"
)

// TestExchangeCachedPerCaller checks that an exchanged token is cached
// under the caller's issuer and subject.
func TestExchangeCachedPerCaller(t *testing.T) {
	t.Parallel()
	other := func(c outauth.Caller, f func(*outauth.Caller)) outauth.Caller { f(&c); return c }
	tests := []struct {
		name     string
		calls    []outauth.Caller
		want     []string // header value of each call
		requests int
	}{
		{name: "one caller, five calls", calls: []outauth.Caller{user("alice"), user("alice"), user("alice"), user("alice"), user("alice")},
			want: []string{issued(1), issued(1), issued(1), issued(1), issued(1)}, requests: 1},
		{name: "two callers", calls: []outauth.Caller{user("alice"), user("bob"), user("alice"), user("bob")},
			want: []string{issued(1), issued(2), issued(1), issued(2)}, requests: 2},
		{name: "a new incoming token of the same caller", calls: []outauth.Caller{user("alice"),
			other(user("alice"), func(c *outauth.Caller) { c.Token = "incoming-SECRET-alice-renewed" })},
			want: []string{issued(1), issued(1)}, requests: 1},
		{name: "the same subject from another issuer", calls: []outauth.Caller{user("alice"),
			other(user("alice"), func(c *outauth.Caller) { c.Issuer = "https://other-idp.example" })},
			want: []string{issued(1), issued(2)}, requests: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newTokenServer(t, nil)
			b := mustNew(t, exchangeAuth(srv.URL), outauth.Options{})
			for i, c := range tc.calls {
				if _, v := header(t, b.Calls, c); v != "Bearer "+tc.want[i] {
					t.Errorf("call %d: %q, want Bearer %s", i, v, tc.want[i])
				}
			}
			reqs := srv.requests()
			if len(reqs) != tc.requests {
				t.Fatalf("%d exchanges, want %d", len(reqs), tc.requests)
			}
			// Each exchange was of the caller it was cached for.
			seen := map[string]bool{}
			for _, c := range tc.calls {
				if tok := string(c.Token); !seen[c.Issuer+" "+c.Subject] {
					seen[c.Issuer+" "+c.Subject] = true
					found := false
					for _, r := range reqs {
						found = found || r.Form.Get("subject_token") == tok
					}
					if !found {
						t.Errorf("no exchange of %s's token", c.Subject)
					}
				}
			}
		})
	}
}

// TestClientCredentialsCached checks that vmcp's own token is obtained
// once for all callers.
func TestClientCredentialsCached(t *testing.T) {
	t.Parallel()
	srv := newTokenServer(t, nil)
	b := mustNew(t, ccAuth(srv.URL), outauth.Options{})
	for _, u := range []string{"alice", "bob", "", "carol"} {
		if _, v := header(t, b.Calls, user(u)); v != "Bearer "+issued(1) {
			t.Errorf("%q: %q", u, v)
		}
	}
	if _, v := header(t, b.Discovery, outauth.Caller{}); v != "Bearer "+issued(1) {
		t.Errorf("discovery: %q", v)
	}
	if n := srv.count(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

// TestConcurrentFirstCalls checks that concurrent first calls of one
// caller share one exchange.
func TestConcurrentFirstCalls(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{config.AuthTokenExchange, config.AuthClientCredentials} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			srv := newTokenServer(t, func(n int, _ tokenReq) answer {
				a := tokenAnswer(issued(n), 3600)
				a.Hold = release
				return a
			})
			a := exchangeAuth(srv.URL)
			a.Type = typ
			b := mustNew(t, a, outauth.Options{})
			const n = 50
			start := make(chan struct{})
			values := make([]string, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					_, v, err := b.Calls.Header(context.Background(), user("alice"))
					if err != nil {
						t.Errorf("call %d: %v", i, err)
					}
					values[i] = v
				})
			}
			close(start)
			srv.waitArrival(t, 1)
			time.Sleep(100 * time.Millisecond) // the others join the exchange in flight
			close(release)
			wg.Wait()
			if got := srv.count(); got != 1 {
				t.Errorf("%d token requests, want 1", got)
			}
			for i, v := range values {
				if v != "Bearer "+issued(1) {
					t.Errorf("call %d: %q, want Bearer %s", i, v, issued(1))
				}
			}
		})
	}
}

// jwtWithExp is an unsigned JWT-shaped token with the exp claim.
func jwtWithExp(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." +
		enc(fmt.Appendf(nil, `{"sub":"alice","exp":%d}`, exp.Unix())) + ".c2lnbmF0dXJl"
}

// TestRenewal checks when a cached token is renewed: when the lesser of a
// fifth of its lifetime and 30 s is left, the lifetime being expires_in,
// else the exp of a JWT access token, else 5 minutes.
func TestRenewal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// body is the token response at clock time now.
		body    func(n int, now time.Time) string
		renewAt time.Duration // after the first token
	}{
		{name: "expires_in 3600", body: func(n int, _ time.Time) string {
			return fmt.Sprintf(`{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, issued(n))
		}, renewAt: 3570 * time.Second},
		{name: "expires_in 100", body: func(n int, _ time.Time) string {
			return fmt.Sprintf(`{"access_token":%q,"token_type":"bearer","expires_in":100}`, issued(n))
		}, renewAt: 80 * time.Second},
		{name: "expires_in 10", body: func(n int, _ time.Time) string {
			return fmt.Sprintf(`{"access_token":%q,"token_type":"Bearer","expires_in":10}`, issued(n))
		}, renewAt: 8 * time.Second},
		{name: "expires_in as a string", body: func(n int, _ time.Time) string {
			return fmt.Sprintf(`{"access_token":%q,"token_type":"Bearer","expires_in":"100"}`, issued(n))
		}, renewAt: 80 * time.Second},
		{name: "JWT exp, no expires_in", body: func(n int, now time.Time) string {
			return fmt.Sprintf(`{"access_token":%q,"token_type":"Bearer"}`, jwtWithExp(now.Add(600*time.Second)))
		}, renewAt: 570 * time.Second},
		{name: "short JWT exp, no token_type", body: func(n int, now time.Time) string {
			return fmt.Sprintf(`{"access_token":%q}`, jwtWithExp(now.Add(50*time.Second)))
		}, renewAt: 40 * time.Second},
		{name: "expires_in wins over JWT exp", body: func(n int, now time.Time) string {
			return fmt.Sprintf(`{"access_token":%q,"token_type":"Bearer","expires_in":100}`, jwtWithExp(now.Add(600*time.Second)))
		}, renewAt: 80 * time.Second},
		{name: "neither", body: func(n int, _ time.Time) string {
			return fmt.Sprintf(`{"access_token":%q,"token_type":"Bearer"}`, issued(n))
		}, renewAt: 270 * time.Second},
		{name: "expires_in 0 and not a JWT", body: func(n int, _ time.Time) string {
			return fmt.Sprintf(`{"access_token":%q,"token_type":"N_A","expires_in":0}`, issued(n))
		}, renewAt: 270 * time.Second},
	}
	for _, typ := range []string{config.AuthTokenExchange, config.AuthClientCredentials} {
		for _, tc := range tests {
			t.Run(typ+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				clock := newFakeClock()
				srv := newTokenServer(t, func(n int, _ tokenReq) answer { return answer{Body: tc.body(n, clock.Now())} })
				a := exchangeAuth(srv.URL)
				a.Type = typ
				b := mustNew(t, a, outauth.WithClock(outauth.Options{}, clock.Now))
				_, first := header(t, b.Calls, user("alice"))
				clock.Advance(tc.renewAt - time.Second)
				if _, v := header(t, b.Calls, user("alice")); v != first || srv.count() != 1 {
					t.Errorf("1 s before renewal: %q after %d requests, want the first token after 1", v, srv.count())
				}
				clock.Advance(time.Second)
				// The call at the renewal time gets the current token at
				// once; the renewal runs in the background.
				if _, v := header(t, b.Calls, user("alice")); v != first {
					t.Errorf("at renewal: %q, want the current token", v)
				}
				outauth.WaitRenewals(b)
				if srv.count() != 2 {
					t.Fatalf("at renewal: %d requests, want 2", srv.count())
				}
				_, second := header(t, b.Calls, user("alice"))
				if second == first {
					t.Errorf("after renewal: still %q", second)
				}
				if _, v := header(t, b.Calls, user("alice")); v != second || srv.count() != 2 {
					t.Errorf("after renewal: %q after %d requests, want the renewed token after 2", v, srv.count())
				}
			})
		}
	}
}

// TestRenewalInFlight checks that while a token is being renewed (in the
// background) the calls of its caller, the one that started the renewal
// included, get the one still valid without waiting, and once it has
// expired they wait for the new one.
func TestRenewalInFlight(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	release := make(chan struct{})
	srv := newTokenServer(t, func(n int, _ tokenReq) answer {
		a := tokenAnswer(issued(n), 100)
		if n == 2 {
			a.Hold = release
		}
		return a
	})
	b := mustNew(t, exchangeAuth(srv.URL), outauth.WithClock(outauth.Options{}, clock.Now))
	header(t, b.Calls, user("alice"))
	clock.Advance(85 * time.Second) // renewal due at 80 s, expiry at 100 s

	renewed := make(chan string, 1)
	go func() {
		_, v, err := b.Calls.Header(context.Background(), user("alice"))
		if err != nil {
			t.Errorf("renewing call: %v", err)
		}
		renewed <- v
	}()
	srv.waitArrival(t, 2)

	// The renewal is held until release: a call that waited for it would
	// fail at its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 3 {
		if _, v, err := b.Calls.Header(ctx, user("alice")); err != nil || v != "Bearer "+issued(1) {
			t.Fatalf("during the renewal: %q, %v, want the current token at once", v, err)
		}
	}
	// Another caller is not held up either.
	if _, v := header(t, b.Calls, user("bob")); v != "Bearer "+issued(3) {
		t.Errorf("another caller during the renewal: %q", v)
	}

	// Once the current token has expired, a call waits for the renewal.
	clock.Advance(20 * time.Second)
	waited := make(chan string, 1)
	go func() {
		_, v, err := b.Calls.Header(context.Background(), user("alice"))
		if err != nil {
			t.Errorf("call after expiry: %v", err)
		}
		waited <- v
	}()
	select {
	case v := <-waited:
		t.Fatalf("a call after expiry returned %q before the renewal ended", v)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	// The call that started the renewal got the current token; the one
	// that waited, the renewed one.
	for what, want := range map[string]struct {
		ch chan string
		v  string
	}{"renewing call": {renewed, "Bearer " + issued(1)}, "waiting call": {waited, "Bearer " + issued(2)}} {
		select {
		case v := <-want.ch:
			if v != want.v {
				t.Errorf("%s: %q, want %s", what, v, want.v)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not return", what)
		}
	}
	if n := srv.count(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

// TestCacheBound checks that the exchanged tokens of at most MaxCallers
// callers are kept, expired ones dropped first.
func TestCacheBound(t *testing.T) {
	t.Parallel()
	t.Run("100 callers one after another", func(t *testing.T) {
		t.Parallel()
		srv := newTokenServer(t, nil)
		b := mustNew(t, exchangeAuth(srv.URL), outauth.Options{MaxCallers: 8})
		for i := range 100 {
			if _, v := header(t, b.Calls, user(fmt.Sprint("user-", i))); v != "Bearer "+issued(i+1) {
				t.Fatalf("caller %d: %q", i, v)
			}
			if n := outauth.CachedCallers(b); n > 8 {
				t.Fatalf("after caller %d the cache holds %d callers, more than 8", i, n)
			}
		}
		// The last caller is cached.
		header(t, b.Calls, user("user-99"))
		if n := srv.count(); n != 100 {
			t.Errorf("%d requests, want 100", n)
		}
	})
	t.Run("expired first", func(t *testing.T) {
		t.Parallel()
		clock := newFakeClock()
		srv := newTokenServer(t, func(n int, r tokenReq) answer {
			if strings.Contains(r.Form.Get("subject_token"), "short-") {
				return tokenAnswer(issued(n), 10)
			}
			return tokenAnswer(issued(n), 3600)
		})
		b := mustNew(t, exchangeAuth(srv.URL), outauth.WithClock(outauth.Options{MaxCallers: 8}, clock.Now))
		for i := range 4 {
			header(t, b.Calls, user(fmt.Sprint("long-", i)))
			header(t, b.Calls, user(fmt.Sprint("short-", i)))
		}
		clock.Advance(20 * time.Second) // the short ones have expired
		for i := range 4 {
			header(t, b.Calls, user(fmt.Sprint("new-", i)))
		}
		before := srv.count()
		for i := range 4 {
			header(t, b.Calls, user(fmt.Sprint("long-", i)))
		}
		if n := srv.count() - before; n != 0 {
			t.Errorf("%d unexpired callers were dropped while expired ones were cached", n)
		}
		if n := outauth.CachedCallers(b); n > 8 {
			t.Errorf("the cache holds %d callers", n)
		}
	})
	t.Run("100 concurrent callers", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv := newTokenServer(t, func(n int, _ tokenReq) answer {
			a := tokenAnswer(issued(n), 3600)
			a.Hold = release
			return a
		})
		b := mustNew(t, exchangeAuth(srv.URL), outauth.Options{MaxCallers: 8})
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() {
				if _, _, err := b.Calls.Header(context.Background(), user(fmt.Sprint("user-", i))); err != nil {
					t.Errorf("caller %d: %v", i, err)
				}
			})
		}
		srv.waitArrival(t, 100)
		close(release)
		wg.Wait()
		if n := outauth.CachedCallers(b); n > 8 {
			t.Errorf("after 100 concurrent callers the cache holds %d callers, more than 8", n)
		}
	})
}

// TestCallerWithoutToken checks what a request vmcp makes on a caller's
// session by itself gets (the caller named, no token): the caller's cached
// token while it is valid, due for renewal or not, and never an exchange.
func TestCallerWithoutToken(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	srv := newTokenServer(t, func(n int, _ tokenReq) answer { return tokenAnswer(issued(n), 100) })
	b := mustNew(t, exchangeAuth(srv.URL), outauth.WithClock(outauth.Options{}, clock.Now))
	named := outauth.Caller{Issuer: testIssuer, Subject: "alice"}
	if _, _, err := b.Calls.Header(context.Background(), named); err == nil {
		t.Fatal("nothing cached yet: want an error")
	}
	_, first := header(t, b.Calls, user("alice"))
	elapsed := time.Duration(0)
	for _, at := range []time.Duration{10 * time.Second, 85 * time.Second} { // before and after the renewal time
		clock.Advance(at - elapsed)
		elapsed = at
		if _, v, err := b.Calls.Header(context.Background(), named); err != nil || v != first {
			t.Errorf("at %v: %q, %v; want the cached token", at, v, err)
		}
	}
	if _, v, err := b.Calls.Header(context.Background(), outauth.Caller{Issuer: testIssuer, Subject: "bob"}); err == nil {
		t.Errorf("another caller got %q", v)
	}
	clock.Advance(20 * time.Second) // expired
	if _, v, err := b.Calls.Header(context.Background(), named); err == nil {
		t.Errorf("after expiry: %q, want an error", v)
	}
	if n := srv.count(); n != 1 {
		t.Errorf("%d token requests, want 1 (the caller's own)", n)
	}
}

// TestCachedOnly checks a request vmcp makes on a caller's session by
// itself (OnBehalf): a token exchange uses the cached token and never asks
// for one, even holding the caller's (maybe stale) incoming token;
// passthrough sends that token as it is.
func TestCachedOnly(t *testing.T) {
	t.Parallel()
	srv := newTokenServer(t, func(n int, _ tokenReq) answer { return tokenAnswer(issued(n), 100) })
	x := mustNew(t, exchangeAuth(srv.URL), outauth.Options{})
	pass := mustNew(t, config.BackendAuth{Type: config.AuthPassthrough}, outauth.Options{})
	ctx := outauth.OnBehalf(context.Background(), user("alice"))
	c := outauth.CallerFrom(ctx)
	if !c.CachedOnly || c.Subject != "alice" {
		t.Fatalf("CallerFrom(OnBehalf) = %+v", c)
	}
	if _, v, err := x.Calls.Header(ctx, c); err == nil {
		t.Errorf("nothing cached: got %q, want an error", v)
	}
	if n := srv.count(); n != 0 {
		t.Errorf("%d token requests for a request vmcp makes by itself", n)
	}
	_, first := header(t, x.Calls, user("alice"))
	if _, v, err := x.Calls.Header(ctx, c); err != nil || v != first {
		t.Errorf("cached: %q, %v; want %q", v, err, first)
	}
	if _, v, err := pass.Calls.Header(ctx, c); err != nil || v != "Bearer "+callerToken("alice") {
		t.Errorf("passthrough: %q, %v", v, err)
	}
}
