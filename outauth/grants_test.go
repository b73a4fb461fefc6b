package outauth_test

import (
	"context"
	"net/url"
	"reflect"
	"sync"
	"testing"

	"github.com/vmcp/vmcp/outauth"
)

const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	accessTokenType    = "urn:ietf:params:oauth:token-type:access_token"
	idTokenType        = "urn:ietf:params:oauth:token-type:id_token"
)

// grantForm is a token request's form without the client authentication.
func grantForm(f url.Values) url.Values {
	out := url.Values{}
	for k, v := range f {
		switch k {
		case "client_id", "client_secret", "client_assertion", "client_assertion_type":
		default:
			out[k] = v
		}
	}
	return out
}

// TestClientCredentialsForm checks the parameters of the client
// credentials grant.
func TestClientCredentialsForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name               string
		audience, resource string
		scopes             []string
		want               url.Values
	}{
		{name: "no target", want: url.Values{"grant_type": {"client_credentials"}}},
		{name: "all targets", audience: "https://billing.example", resource: "https://billing.example/mcp",
			scopes: []string{"billing.read", "billing.write", "openid"},
			want: url.Values{"grant_type": {"client_credentials"}, "audience": {"https://billing.example"},
				"resource": {"https://billing.example/mcp"}, "scope": {"billing.read billing.write openid"}}},
		{name: "one scope", scopes: []string{"billing.read"},
			want: url.Values{"grant_type": {"client_credentials"}, "scope": {"billing.read"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newTokenServer(t, nil)
			a := ccAuth(srv.URL)
			a.Audience, a.Resource, a.Scopes = tc.audience, tc.resource, tc.scopes
			b := mustNew(t, a, outauth.Options{})
			if _, v := header(t, b.Calls, user("alice")); v != "Bearer "+issued(1) {
				t.Errorf("header value %q, want Bearer %s", v, issued(1))
			}
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			if got := grantForm(reqs[0].Form); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("form %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTokenExchangeForm checks the parameters of the RFC 8693 token
// exchange.
func TestTokenExchangeForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name               string
		audience, resource string
		scopes             []string
		subjectType        string
		want               url.Values
	}{
		{name: "audience, default subject type", audience: "https://billing.example",
			want: url.Values{"grant_type": {grantTokenExchange}, "subject_token": {callerToken("alice")},
				"subject_token_type": {accessTokenType}, "requested_token_type": {accessTokenType},
				"audience": {"https://billing.example"}}},
		{name: "resource and scopes, id token subject", resource: "https://billing.example/mcp",
			scopes: []string{"billing.read", "billing.write"}, subjectType: idTokenType,
			want: url.Values{"grant_type": {grantTokenExchange}, "subject_token": {callerToken("alice")},
				"subject_token_type": {idTokenType}, "requested_token_type": {accessTokenType},
				"resource": {"https://billing.example/mcp"}, "scope": {"billing.read billing.write"}}},
		{name: "all targets, JWT subject", audience: "billing", resource: "https://billing.example/mcp",
			scopes: []string{"s1"}, subjectType: "urn:ietf:params:oauth:token-type:jwt",
			want: url.Values{"grant_type": {grantTokenExchange}, "subject_token": {callerToken("alice")},
				"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "requested_token_type": {accessTokenType},
				"audience": {"billing"}, "resource": {"https://billing.example/mcp"}, "scope": {"s1"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newTokenServer(t, nil)
			a := exchangeAuth(srv.URL)
			a.Audience, a.Resource, a.Scopes, a.SubjectTokenType = tc.audience, tc.resource, tc.scopes, tc.subjectType
			b := mustNew(t, a, outauth.Options{})
			if name, v := header(t, b.Calls, user("alice")); name != "Authorization" || v != "Bearer "+issued(1) {
				t.Errorf("header %q: %q, want Authorization: Bearer %s", name, v, issued(1))
			}
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			if got := grantForm(reqs[0].Form); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("form %v, want %v", got, tc.want)
			}
		})
	}
}

// TestActorToken checks that with actorToken the exchange names vmcp as
// the actor with its own client credentials token, which is obtained once
// for all exchanges.
func TestActorToken(t *testing.T) {
	t.Parallel()
	const actor = "actor-SECRET-vmcp"
	srv := newTokenServer(t, func(n int, r tokenReq) answer {
		if r.Form.Get("grant_type") == "client_credentials" {
			return tokenAnswer(actor, 3600)
		}
		return tokenAnswer("exchanged-for-"+r.Form.Get("subject_token"), 3600)
	})
	a := exchangeAuth(srv.URL)
	a.ActorToken, a.Resource, a.Scopes = true, "https://billing.example/mcp", []string{"billing.read"}
	b := mustNew(t, a, outauth.Options{})
	users := []string{"alice", "bob", "carol", "dave"}
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Go(func() {
			_, v, err := b.Calls.Header(context.Background(), user(u))
			if err != nil {
				t.Errorf("%s: %v", u, err)
			} else if want := "Bearer exchanged-for-" + callerToken(u); v != want {
				t.Errorf("%s: header value %q, want %q", u, v, want)
			}
		})
	}
	wg.Wait()
	got := srv.grants()
	if want := map[string]int{"client_credentials": 1, grantTokenExchange: len(users)}; !reflect.DeepEqual(got, want) {
		t.Errorf("requests by grant %v, want %v", got, want)
	}
	for _, r := range srv.requests() {
		f := grantForm(r.Form)
		switch f.Get("grant_type") {
		case "client_credentials":
			want := url.Values{"grant_type": {"client_credentials"}, "audience": {a.Audience},
				"resource": {a.Resource}, "scope": {"billing.read"}}
			if !reflect.DeepEqual(f, want) {
				t.Errorf("actor token request form %v, want %v", f, want)
			}
		case grantTokenExchange:
			if f.Get("actor_token") != actor || f.Get("actor_token_type") != accessTokenType {
				t.Errorf("exchange actor_token %q actor_token_type %q, want %q %q",
					f.Get("actor_token"), f.Get("actor_token_type"), actor, accessTokenType)
			}
		}
	}

	// Without actorToken, no actor.
	srv2 := newTokenServer(t, nil)
	b2 := mustNew(t, exchangeAuth(srv2.URL), outauth.Options{})
	header(t, b2.Calls, user("alice"))
	for _, r := range srv2.requests() {
		if r.Form.Has("actor_token") || r.Form.Has("actor_token_type") {
			t.Errorf("actor in an exchange without actorToken: %v", grantForm(r.Form))
		}
	}
	if got := srv2.grants(); !reflect.DeepEqual(got, map[string]int{grantTokenExchange: 1}) {
		t.Errorf("requests by grant %v without actorToken", got)
	}
}

// TestActorTokenRefused checks that a refused actor token fails the
// exchange without asking for it.
func TestActorTokenRefused(t *testing.T) {
	t.Parallel()
	srv := newTokenServer(t, func(n int, r tokenReq) answer {
		if r.Form.Get("grant_type") == "client_credentials" {
			return refuse("unauthorized_client", "no client credentials for you")
		}
		return tokenAnswer(issued(n), 3600)
	})
	a := exchangeAuth(srv.URL)
	a.ActorToken = true
	b := mustNew(t, a, outauth.Options{})
	for i := range 2 {
		_, _, err := b.Calls.Header(context.Background(), user("alice"))
		if oe := asError(t, err); oe.Code != "unauthorized_client" || oe.Unavailable {
			t.Errorf("call %d: %+v, want a refusal unauthorized_client", i, oe)
		}
	}
	if got := srv.grants(); !reflect.DeepEqual(got, map[string]int{"client_credentials": 2}) {
		t.Errorf("requests by grant %v, want two client_credentials and no exchange", got)
	}
}
