package test

// Tests of the RFC 8693 token exchange grant of test/js/idp.mjs, which
// vmcp's outgoing token exchange will be tested against: what the provider
// issues and refuses, and its record of both (GET /_test/exchanges).

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// The token exchange clients of test/js/idp.mjs and their secrets.
const (
	clientGateway     = "vmcp-gateway"      // client_secret_basic, may exchange
	clientGatewayPost = "vmcp-gateway-post" // client_secret_post, may exchange
	clientGatewayJWT  = "vmcp-gateway-jwt"  // private_key_jwt (--gateway-jwks), may exchange
	clientNoGrant     = "vmcp-nogrant"      // client_credentials only
)

var exchangeSecrets = map[string]string{
	clientGateway:     "vmcp-gateway-secret",
	clientGatewayPost: "vmcp-gateway-post-secret",
	clientNoGrant:     "vmcp-nogrant-secret",
}

// RFC 8693 identifiers.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
	tokenTypeJWT       = "urn:ietf:params:oauth:token-type:jwt"
	tokenTypeID        = "urn:ietf:params:oauth:token-type:id_token"
)

// How an exchange request authenticates its client.
type clientAuthMode int

const (
	authBasic     clientAuthMode = iota // HTTP Basic
	authPost                            // client_id and client_secret form fields
	authAssertion                       // private_key_jwt client assertion
)

// exchangeReq is a token exchange request to the provider.
type exchangeReq struct {
	client string
	auth   clientAuthMode
	secret string // "" for the client's own (authBasic, authPost)
	// assertionAud is the aud of the client assertion (authAssertion).
	assertionAud string
	form         url.Values // the grant's parameters besides grant_type
	query        string     // test knobs on the token endpoint, e.g. "ttl=2"
}

// exchangeResponse is the provider's answer to a token exchange.
type exchangeResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope"`
	Error           string `json:"error"`
	Description     string `json:"error_description"`
}

// gatewayKey is the key of vmcp-gateway-jwt: the provider knows its public
// half from the --gateway-jwks file.
type gatewayKey struct {
	key *rsa.PrivateKey
	kid string
}

// newGatewayKey generates the key of vmcp-gateway-jwt and writes its public
// JWKS to a file of t's temp dir, returned.
func newGatewayKey(t *testing.T) (gatewayKey, string) {
	t.Helper()
	k := gatewayKey{key: newRSAKey(t), kid: "gateway-" + rand.Text()[:8]}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &k.key.PublicKey, KeyID: k.kid, Algorithm: string(jose.RS256), Use: "sig",
	}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "gateway-jwks.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return k, file
}

// assertion is a fresh private_key_jwt client assertion of vmcp-gateway-jwt
// for aud.
func (k gatewayKey) assertion(t *testing.T, aud string) string {
	t.Helper()
	now := time.Now().Unix()
	payload, err := json.Marshal(map[string]any{
		"iss": clientGatewayJWT, "sub": clientGatewayJWT, "aud": aud,
		"jti": rand.Text(), "iat": now, "exp": now + 60,
	})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k.key},
		(&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), k.kid))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// exchange sends r to the provider's token endpoint and decodes the JSON
// answer, whatever its status.
func (p *idp) exchange(t *testing.T, gk gatewayKey, r exchangeReq) (int, exchangeResponse) {
	t.Helper()
	u := p.TokenEndpoint
	if r.query != "" {
		u += "?" + r.query
	}
	form := url.Values{"grant_type": {grantTokenExchange}}
	for k, v := range r.form {
		form[k] = v
	}
	secret := r.secret
	if secret == "" {
		secret = exchangeSecrets[r.client]
	}
	switch r.auth {
	case authPost:
		form.Set("client_id", r.client)
		form.Set("client_secret", secret)
	case authAssertion:
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", gk.assertion(t, r.assertionAud))
	}
	req, err := http.NewRequestWithContext(ctxT(t, 10*time.Second), http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if r.auth == authBasic {
		req.SetBasicAuth(r.client, secret)
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatalf("token exchange at %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var er exchangeResponse
	if err := json.Unmarshal(body, &er); err != nil {
		t.Fatalf("token exchange at %s: status %d, not JSON: %v: %s", u, resp.StatusCode, err, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	return resp.StatusCode, er
}

// verifyProviderJWT checks token's signature with the provider's published
// JWKS and returns its header and claims.
func verifyProviderJWT(t *testing.T, p *idp, token string) (jose.Header, map[string]any) {
	t.Helper()
	var set jose.JSONWebKeySet
	getJSON(t, p.JWKSURI, &set)
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatalf("exchanged token: %v", err)
	}
	if len(jws.Signatures) != 1 {
		t.Fatalf("exchanged token: %d signatures", len(jws.Signatures))
	}
	h := jws.Signatures[0].Protected
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("the provider's JWKS has %d keys %q", len(keys), h.KeyID)
	}
	payload, err := jws.Verify(keys[0].Public())
	if err != nil {
		t.Fatalf("exchanged token does not verify with the provider's key %s: %v", h.KeyID, err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return h, claims
}

func TestIdPTokenExchange(t *testing.T) {
	needIdP(t)
	const (
		deniedClient = clientNoScope // its tokens' sub is refused by --exchange-deny
		backendURL   = "https://backend.example/mcp"
		exchangeTTL  = 300
	)
	gk, jwksFile := newGatewayKey(t)
	p := startIdP(t, idpOpts{
		exchangeAudiences: "jira confluence " + backendURL,
		exchangeDeny:      deniedClient,
		exchangeTTL:       exchangeTTL,
		gatewayJWKS:       jwksFile,
	})

	// Subject and actor tokens: client-credentials tokens (sub = the client).
	resource := "http://127.0.0.1:1/mcp"
	eng := p.token(t, tokenReq{client: clientEng, resource: resource, scope: requiredScope})
	support := p.token(t, tokenReq{client: clientSupport, resource: resource, scope: requiredScope})
	es256 := p.token(t, tokenReq{client: clientES256, resource: resource}) // no scope
	actor := p.token(t, tokenReq{client: clientRS256, resource: resource, scope: requiredScope})
	denied := p.token(t, tokenReq{client: deniedClient, resource: resource})
	expired := p.token(t, tokenReq{client: clientEng, resource: resource, scope: requiredScope,
		query: url.Values{"shift": {"-3600"}}})
	rsKey := p.signingKey(t, p.Kids["RS256"])
	forged := signJWT(t, newRSAKey(t), jose.RS256, p.Kids["RS256"], validClaims(p.Issuer, resource, clientEng))
	otherIssuer := signJWT(t, rsKey.Key, jose.RS256, p.Kids["RS256"], validClaims("http://127.0.0.1:2", resource, clientEng))

	subject := func(token string, extra ...string) url.Values {
		f := url.Values{"subject_token": {token}, "subject_token_type": {tokenTypeAccess}}
		for i := 0; i+1 < len(extra); i += 2 {
			f[extra[i]] = append(f[extra[i]], extra[i+1])
		}
		return f
	}
	basic := func(form url.Values) exchangeReq {
		return exchangeReq{client: clientGateway, auth: authBasic, form: form}
	}

	type issued struct {
		sub      string
		aud      any // string, or []any of strings
		clientID string
		scope    string   // "": no scope claim
		groups   []string // nil: no groups claim
		act      string   // "": no act claim
		ttl      int64
	}
	cases := []struct {
		name string
		req  exchangeReq
		// Either want (a 200) or a refusal: status, error and the sub the
		// provider records with it.
		want         *issued
		status       int
		err          string
		descContains string
		refusedSub   string
	}{
		{name: "eng for jira", req: basic(subject(eng, "audience", "jira")),
			want: &issued{sub: clientEng, aud: "jira", clientID: clientGateway, scope: requiredScope, groups: []string{"eng"}, ttl: exchangeTTL}},
		{name: "support for jira", req: basic(subject(support, "audience", "jira")),
			want: &issued{sub: clientSupport, aud: "jira", clientID: clientGateway, scope: requiredScope, groups: []string{"support"}, ttl: exchangeTTL}},
		{name: "client_secret_post client", req: exchangeReq{client: clientGatewayPost, auth: authPost, form: subject(eng, "audience", "jira")},
			want: &issued{sub: clientEng, aud: "jira", clientID: clientGatewayPost, scope: requiredScope, groups: []string{"eng"}, ttl: exchangeTTL}},
		// oidc-provider takes a client_secret_basic client's secret as form fields too.
		{name: "form fields for the basic client", req: exchangeReq{client: clientGateway, auth: authPost, form: subject(eng, "audience", "jira")},
			want: &issued{sub: clientEng, aud: "jira", clientID: clientGateway, scope: requiredScope, groups: []string{"eng"}, ttl: exchangeTTL}},
		{name: "private_key_jwt, aud issuer", req: exchangeReq{client: clientGatewayJWT, auth: authAssertion, assertionAud: p.Issuer, form: subject(eng, "audience", "jira")},
			want: &issued{sub: clientEng, aud: "jira", clientID: clientGatewayJWT, scope: requiredScope, groups: []string{"eng"}, ttl: exchangeTTL}},
		{name: "private_key_jwt, aud token endpoint", req: exchangeReq{client: clientGatewayJWT, auth: authAssertion, assertionAud: p.TokenEndpoint, form: subject(support, "audience", "jira")},
			want: &issued{sub: clientSupport, aud: "jira", clientID: clientGatewayJWT, scope: requiredScope, groups: []string{"support"}, ttl: exchangeTTL}},
		{name: "actor token", req: basic(subject(eng, "audience", "jira", "actor_token", actor, "actor_token_type", tokenTypeAccess)),
			want: &issued{sub: clientEng, aud: "jira", clientID: clientGateway, scope: requiredScope, groups: []string{"eng"}, act: clientRS256, ttl: exchangeTTL}},
		{name: "requested scope", req: basic(subject(eng, "audience", "jira", "scope", "mcp:admin")),
			want: &issued{sub: clientEng, aud: "jira", clientID: clientGateway, scope: "mcp:admin", groups: []string{"eng"}, ttl: exchangeTTL}},
		{name: "two audiences", req: basic(subject(eng, "audience", "jira", "audience", "confluence")),
			want: &issued{sub: clientEng, aud: []any{"jira", "confluence"}, clientID: clientGateway, scope: requiredScope, groups: []string{"eng"}, ttl: exchangeTTL}},
		{name: "resource only", req: basic(subject(eng, "resource", backendURL)),
			want: &issued{sub: clientEng, aud: backendURL, clientID: clientGateway, scope: requiredScope, groups: []string{"eng"}, ttl: exchangeTTL}},
		{name: "audience wins over resource", req: basic(subject(eng, "audience", "confluence", "resource", backendURL)),
			want: &issued{sub: clientEng, aud: "confluence", clientID: clientGateway, scope: requiredScope, groups: []string{"eng"}, ttl: exchangeTTL}},
		{name: "jwt subject_token_type, ES256 subject without scope", req: basic(url.Values{
			"subject_token": {es256}, "subject_token_type": {tokenTypeJWT}, "audience": {"jira"},
			"requested_token_type": {tokenTypeAccess}}),
			want: &issued{sub: clientES256, aud: "jira", clientID: clientGateway, ttl: exchangeTTL}},
		{name: "ttl knob", req: exchangeReq{client: clientGateway, auth: authBasic, form: subject(eng, "audience", "jira"), query: "ttl=2"},
			want: &issued{sub: clientEng, aud: "jira", clientID: clientGateway, scope: requiredScope, groups: []string{"eng"}, ttl: 2}},

		{name: "unknown audience", req: basic(subject(eng, "audience", "github")),
			status: 400, err: "invalid_target", refusedSub: clientEng},
		{name: "one of two audiences unknown", req: basic(subject(eng, "audience", "jira", "audience", "github")),
			status: 400, err: "invalid_target", refusedSub: clientEng},
		{name: "no audience or resource", req: basic(subject(eng)),
			status: 400, err: "invalid_target", refusedSub: clientEng},
		{name: "denied subject", req: basic(subject(denied, "audience", "jira")),
			status: 400, err: "invalid_grant", descContains: "subject " + deniedClient + " may not be exchanged", refusedSub: deniedClient},
		{name: "garbage subject token", req: basic(subject("garbage", "audience", "jira")),
			status: 400, err: "invalid_grant"},
		{name: "forged subject token", req: basic(subject(forged, "audience", "jira")),
			status: 400, err: "invalid_grant"},
		{name: "expired subject token", req: basic(subject(expired, "audience", "jira")),
			status: 400, err: "invalid_grant"},
		{name: "subject token of another issuer", req: basic(subject(otherIssuer, "audience", "jira")),
			status: 400, err: "invalid_grant"},
		{name: "garbage actor token", req: basic(subject(eng, "audience", "jira", "actor_token", "garbage", "actor_token_type", tokenTypeAccess)),
			status: 400, err: "invalid_grant", refusedSub: clientEng},
		{name: "actor token without its type", req: basic(subject(eng, "audience", "jira", "actor_token", actor)),
			status: 400, err: "invalid_request"},
		{name: "unsupported subject_token_type", req: basic(url.Values{"subject_token": {eng}, "subject_token_type": {tokenTypeID}, "audience": {"jira"}}),
			status: 400, err: "invalid_request"},
		{name: "no subject_token", req: basic(url.Values{"subject_token_type": {tokenTypeAccess}, "audience": {"jira"}}),
			status: 400, err: "invalid_request"},
		{name: "unsupported requested_token_type", req: basic(subject(eng, "audience", "jira", "requested_token_type", tokenTypeID)),
			status: 400, err: "invalid_request"},
		{name: "client without the grant", req: exchangeReq{client: clientNoGrant, auth: authBasic, form: subject(eng, "audience", "jira")},
			status: 400, err: "invalid_request", descContains: "requested grant type is not allowed for this client"},
		{name: "wrong secret", req: exchangeReq{client: clientGateway, auth: authBasic, secret: "wrong", form: subject(eng, "audience", "jira")},
			status: 401, err: "invalid_client"},
		{name: "private_key_jwt, wrong assertion aud", req: exchangeReq{client: clientGatewayJWT, auth: authAssertion, assertionAud: p.Issuer + "/other", form: subject(eng, "audience", "jira")},
			status: 401, err: "invalid_client"},
	}

	tokens := []string{eng, support, es256, actor, denied} // must never be logged
	var wantIssued []idpExchange
	var wantRefused []idpRefusal
	for _, c := range cases {
		if c.want != nil {
			aud, ok := c.want.aud.([]any)
			if !ok {
				aud = []any{c.want.aud}
			}
			var auds []string
			for _, a := range aud {
				auds = append(auds, a.(string))
			}
			wantIssued = append(wantIssued, idpExchange{Client: c.want.clientID, Sub: c.want.sub, Aud: auds, Act: c.want.act, Scope: c.want.scope})
		} else {
			wantRefused = append(wantRefused, idpRefusal{Client: c.req.client, Sub: c.refusedSub, Error: c.err})
		}
		t.Run(c.name, func(t *testing.T) {
			before := time.Now().Unix()
			status, res := p.exchange(t, gk, c.req)
			if c.want == nil {
				if status != c.status || res.Error != c.err || res.AccessToken != "" {
					t.Fatalf("status %d error %q (%s), want %d %q and no token", status, res.Error, res.Description, c.status, c.err)
				}
				if !strings.Contains(res.Description, c.descContains) {
					t.Errorf("error_description %q, want it to contain %q", res.Description, c.descContains)
				}
				return
			}
			w := c.want
			if status != http.StatusOK || res.AccessToken == "" {
				t.Fatalf("status %d, error %q (%s), token given: %v", status, res.Error, res.Description, res.AccessToken != "")
			}
			if res.IssuedTokenType != tokenTypeAccess || res.TokenType != "Bearer" || res.ExpiresIn != w.ttl || res.Scope != w.scope {
				t.Errorf("issued_token_type %s, token_type %s, expires_in %d, scope %q; want %s, Bearer, %d, %q",
					res.IssuedTokenType, res.TokenType, res.ExpiresIn, res.Scope, tokenTypeAccess, w.ttl, w.scope)
			}
			tokens = append(tokens, res.AccessToken)
			h, claims := verifyProviderJWT(t, p, res.AccessToken)
			if h.Algorithm != "RS256" || h.KeyID != p.Kids["RS256"] || h.ExtraHeaders[jose.HeaderType] != "at+jwt" {
				t.Errorf("header alg %s kid %s typ %v, want RS256 %s at+jwt", h.Algorithm, h.KeyID, h.ExtraHeaders[jose.HeaderType], p.Kids["RS256"])
			}
			wantKeys := []string{"iss", "sub", "aud", "client_id", "iat", "exp", "jti"}
			if w.scope != "" {
				wantKeys = append(wantKeys, "scope")
			}
			if w.groups != nil {
				wantKeys = append(wantKeys, "groups")
			}
			if w.act != "" {
				wantKeys = append(wantKeys, "act")
			}
			var keys []string
			for k := range claims {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			slices.Sort(wantKeys)
			if !slices.Equal(keys, wantKeys) {
				t.Errorf("claims %v, want exactly %v", keys, wantKeys)
			}
			if claims["iss"] != p.Issuer || claims["sub"] != w.sub || claims["client_id"] != w.clientID {
				t.Errorf("iss %v sub %v client_id %v, want %s %s %s", claims["iss"], claims["sub"], claims["client_id"], p.Issuer, w.sub, w.clientID)
			}
			if !reflect.DeepEqual(claims["aud"], w.aud) {
				t.Errorf("aud %#v, want %#v", claims["aud"], w.aud)
			}
			if w.scope != "" && claims["scope"] != w.scope {
				t.Errorf("scope %v, want %q", claims["scope"], w.scope)
			}
			if w.groups != nil {
				var want []any
				for _, g := range w.groups {
					want = append(want, g)
				}
				if !reflect.DeepEqual(claims["groups"], want) {
					t.Errorf("groups %#v, want %v", claims["groups"], w.groups)
				}
			}
			if w.act != "" && !reflect.DeepEqual(claims["act"], map[string]any{"sub": w.act}) {
				t.Errorf("act %#v, want {sub: %s}", claims["act"], w.act)
			}
			iat, _ := claims["iat"].(float64)
			exp, _ := claims["exp"].(float64)
			if int64(iat) < before-1 || int64(iat) > time.Now().Unix()+1 {
				t.Errorf("iat %v, not now (%d)", claims["iat"], before)
			}
			if int64(exp)-int64(iat) != w.ttl {
				t.Errorf("exp - iat = %v, want %d", exp-iat, w.ttl)
			}
			if jti, _ := claims["jti"].(string); len(jti) < 16 {
				t.Errorf("jti %q, want a random string", jti)
			}
		})
	}

	// The provider's record: every exchange in order, without token values.
	got := p.exchanges(t)
	for i := range got.Issued {
		got.Issued[i].Exp = 0 // checked through the tokens above
	}
	if !reflect.DeepEqual(got.Issued, wantIssued) {
		t.Errorf("issued exchanges:\n got %+v\nwant %+v", got.Issued, wantIssued)
	}
	if !reflect.DeepEqual(got.Refused, wantRefused) {
		t.Errorf("refused exchanges:\n got %+v\nwant %+v", got.Refused, wantRefused)
	}
	logs := p.Logs.String()
	for i, tok := range tokens {
		if strings.Contains(logs, tok) {
			t.Errorf("the provider's log holds token %d", i)
		}
	}
}
