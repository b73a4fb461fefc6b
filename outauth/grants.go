package outauth

import (
	"context"
	"net/url"
	"strings"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

// tokenTypeAccessToken is RFC 8693's identifier of an access token.
const tokenTypeAccessToken = config.SubjectTokenTypeAccessToken

// clientCredentials is vmcp's own access token for a backend, from the
// client credentials grant (RFC 6749 4.4), cached and renewed before it
// expires.
type clientCredentials struct {
	ep    *endpoint
	form  url.Values
	cache *tokenCache
}

func newClientCredentials(backend string, a config.BackendAuth, o Options) (*clientCredentials, error) {
	ep, err := newEndpoint(backend, a, o)
	if err != nil {
		return nil, err
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	targets(form, a)
	return &clientCredentials{ep: ep, form: form, cache: newTokenCache(1, o.now)}, nil
}

// Header returns vmcp's own token, whoever the caller.
func (cc *clientCredentials) Header(ctx context.Context, _ Caller) (string, string, error) {
	if v, ok := cc.cache.fresh(callerKey{}); ok {
		return "Authorization", v, nil
	}
	v, err := cc.cache.get(ctx, callerKey{}, func(ctx context.Context) (token, error) {
		return cc.ep.request(ctx, grantClientCredentials, cc.form)
	})
	return "Authorization", v, cc.ep.asError(grantClientCredentials, err)
}

// exchange is the caller's token exchanged for one scoped to the backend
// (RFC 8693), cached per caller until shortly before it expires.
type exchange struct {
	backend string
	ep      *endpoint
	form    url.Values // the grant's fixed parameters
	actor   *clientCredentials
	cache   *tokenCache
}

func newExchange(backend string, a config.BackendAuth, o Options) (*exchange, error) {
	ep, err := newEndpoint(backend, a, o)
	if err != nil {
		return nil, err
	}
	subjectType := a.SubjectTokenType
	if subjectType == "" {
		subjectType = tokenTypeAccessToken
	}
	form := url.Values{"grant_type": {grantTypeTokenExchange}, "subject_token_type": {subjectType},
		"requested_token_type": {tokenTypeAccessToken}}
	targets(form, a)
	x := &exchange{backend: backend, ep: ep, form: form, cache: newTokenCache(o.MaxCallers, o.now)}
	if a.ActorToken {
		// vmcp's own token, from the same client, names it as the actor.
		if x.actor, err = newClientCredentials(backend, a, o); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// Header returns the caller's exchanged token: from the cache, or from one
// exchange that concurrent calls of the same caller share.
//
// A request vmcp makes by itself (CachedOnly), or a caller named without a
// token, gets the cached token while it is valid, and nothing is exchanged
// for it.
func (x *exchange) Header(ctx context.Context, c Caller) (string, string, error) {
	k := callerKey{c.Issuer, c.Subject}
	if v, ok := x.cache.fresh(k); ok {
		return "Authorization", v, nil
	}
	if c.Token == "" || c.CachedOnly {
		if v, ok := x.cache.valid(k); ok && c.Subject != "" {
			return "Authorization", v, nil
		}
		reason := "the caller has no token to exchange (anonymous)"
		switch {
		case c.CachedOnly:
			reason = "no valid token of the caller's is cached for a request vmcp makes by itself (it obtains none)"
		case c.Subject != "" && c.Issuer != auth.AnonymousIssuer:
			reason = "no valid token of the caller's is cached, and this request has none to exchange"
		}
		return "", "", &Error{Backend: x.backend, Reason: reason}
	}
	v, err := x.cache.get(ctx, k, x.fetcher(c.Token))
	return "Authorization", v, x.ep.asError(grantTokenExchange, err)
}

// fetcher returns the exchange of subject (apart from Header, so that the
// cached path does not allocate the closure).
func (x *exchange) fetcher(subject auth.Token) func(context.Context) (token, error) {
	return func(ctx context.Context) (token, error) {
		form := cloneForm(x.form)
		form.Set("subject_token", string(subject))
		if x.actor != nil {
			_, actor, err := x.actor.Header(ctx, Caller{})
			if err != nil {
				return token{}, err
			}
			form.Set("actor_token", strings.TrimPrefix(actor, "Bearer "))
			form.Set("actor_token_type", tokenTypeAccessToken)
		}
		return x.ep.request(ctx, grantTokenExchange, form)
	}
}

// targets adds what names the backend to the token endpoint: RFC 8693's
// audience, RFC 8707's resource, and the scopes.
func targets(form url.Values, a config.BackendAuth) {
	if a.Audience != "" {
		form.Set("audience", a.Audience)
	}
	if a.Resource != "" {
		form.Set("resource", a.Resource)
	}
	if len(a.Scopes) > 0 {
		form.Set("scope", strings.Join(a.Scopes, " "))
	}
}
