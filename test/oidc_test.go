package test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// whoami is the structured result of the demo's whoami tool.
type whoami struct {
	Name          string `json:"name"`
	DemoToken     string `json:"demoToken"`
	Authorization string `json:"authorization"`
}

// metadataDoc is the RFC 9728 protected resource metadata.
type metadataDoc struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
}

// metadataURL is where vmcp must announce its protected resource metadata
// for its MCP endpoint at /mcp (RFC 9728 section 3.1).
func (e *oidcEnv) metadataURL() string {
	return e.V.Base + "/.well-known/oauth-protected-resource/mcp"
}

// goodToken is an RS256 token of vmcp-test for vmcp with the required scope.
func (e *oidcEnv) goodToken(t *testing.T) string {
	t.Helper()
	return e.IdP.token(t, tokenReq{client: clientRS256, resource: e.Audience, scope: requiredScope})
}

// decodeWhoami decodes the text of a demo_whoami result.
func decodeWhoami(t *testing.T, text string) whoami {
	t.Helper()
	var w whoami
	if err := json.Unmarshal([]byte(text), &w); err != nil {
		t.Fatalf("demo_whoami: %v: %s", err, text)
	}
	return w
}

// expectEcho sends demo_echo with a fresh marker on session sid with token
// and checks that it is answered and reached the backend once.
func (e *oidcEnv) expectEcho(t *testing.T, sid, token, what string) {
	t.Helper()
	marker := uniqueName("echo")
	res := rawReq{url: e.V.URL, token: token, session: sid, body: echoCall(marker)}.do(t)
	if res.Status != http.StatusOK {
		t.Fatalf("%s: tools/call demo_echo: status %d, want 200; WWW-Authenticate %q; body %s",
			what, res.Status, res.Header.Get("WWW-Authenticate"), res.Body)
	}
	var ok struct {
		Result *struct {
			Content []struct{ Text string } `json:"content"`
		} `json:"result"`
	}
	msg := res.jsonrpcMessage()
	if err := json.Unmarshal(msg, &ok); err != nil || ok.Result == nil || len(ok.Result.Content) != 1 || ok.Result.Content[0].Text != marker {
		t.Fatalf("%s: tools/call demo_echo: want the echo of %q, got %s", what, marker, msg)
	}
	if n := e.Proxy.callsWith(marker); n != 1 {
		t.Fatalf("%s: the backend got the call %d times, want once", what, n)
	}
}

// expectRefused sends r with a demo_echo call carrying a fresh marker as
// its body and checks the answer: status, a JSON-RPC error body, a Bearer
// challenge naming vmcp's metadata, and that the backend never got the
// call. It returns the challenge.
func (e *oidcEnv) expectRefused(t *testing.T, r rawReq, status int) challenge {
	t.Helper()
	marker := uniqueName("refused")
	if r.url == "" {
		r.url = e.V.URL
	}
	r.body = echoCall(marker)
	res := r.do(t)
	if res.Status != status {
		t.Fatalf("status %d, want %d; WWW-Authenticate %q; body %s", res.Status, status, res.Header.Get("WWW-Authenticate"), res.Body)
	}
	decodeRPCError(t, res)
	if n := e.Proxy.callsWith(marker); n != 0 {
		t.Errorf("the refused call reached the backend %d times", n)
	}
	h := res.Header.Values("WWW-Authenticate")
	if len(h) != 1 {
		t.Fatalf("want one WWW-Authenticate header, got %q", h)
	}
	c := parseChallenge(t, h[0])
	if !strings.EqualFold(c.Scheme, "Bearer") {
		t.Errorf("WWW-Authenticate scheme %q, want Bearer: %s", c.Scheme, h[0])
	}
	if got := c.Params["resource_metadata"]; got != e.metadataURL() {
		t.Errorf("resource_metadata=%q, want %q: %s", got, e.metadataURL(), h[0])
	}
	if len(r.token) >= 16 && strings.Contains(h[0]+string(res.Body), r.token) {
		t.Errorf("the refusal echoes the token back: %s %s", h[0], res.Body)
	}
	return c
}

// TestOIDC runs vmcp with incomingAuth oidc against a real OpenID provider
// (test/js/idp.mjs) and checks what MCP clients with good, bad and no
// tokens get, and that refused requests never reach the backend.
func TestOIDC(t *testing.T) {
	t.Parallel()
	needIdP(t)
	e := startOIDCEnv(t, nil)
	// Once every subtest has ended: no token (nor a piece of one: every JWT
	// starts with base64url("{\"") = "eyJ") made it into vmcp's log.
	t.Cleanup(func() {
		for _, line := range strings.Split(e.V.Logs.String(), "\n") {
			if strings.Contains(line, "eyJ") {
				t.Errorf("vmcp logged a token: %s", line)
			}
		}
	})

	t.Run("valid RS256 token: tools work, the backend never sees the token", func(t *testing.T) {
		t.Parallel()
		tok := e.goodToken(t)
		if h, _ := jwtParts(t, tok); h["alg"] != "RS256" || h["kid"] != e.IdP.Kids["RS256"] {
			t.Fatalf("the provider's token header is %v, want RS256 with kid %s", h, e.IdP.Kids["RS256"])
		}
		c := newClient(t, e.V.URL, clientOpts{headers: map[string]string{"Authorization": "Bearer " + tok}})
		requireTools(t, toolNames(t, c), "demo_whoami", "demo_echo", "demo_forecast")
		w := decodeWhoami(t, callText(t, c, "demo_whoami", nil))
		if w.Name != e.Demo.Name {
			t.Errorf("demo_whoami answered by %q, want %q", w.Name, e.Demo.Name)
		}
		if w.Authorization != "" {
			t.Errorf("the backend received Authorization %q; the client's token must stay at vmcp", w.Authorization)
		}
		marker := uniqueName("mcp-go")
		if got := callText(t, c, "demo_echo", map[string]any{"text": marker}); got != marker {
			t.Errorf("demo_echo: %q, want %q", got, marker)
		}
		if n := e.Proxy.callsWith(marker); n != 1 {
			t.Errorf("the counting proxy saw the call %d times, want once", n)
		}
		// The scheme is case-insensitive (RFC 9110 section 11.1).
		if res := (rawReq{url: e.V.URL, auth: "bearer " + tok, body: initializeBody}.do(t)); res.Status != http.StatusOK {
			t.Errorf(`initialize with "Authorization: bearer <token>": status %d: %s`, res.Status, res.Body)
		}
	})

	t.Run("valid ES256 token", func(t *testing.T) {
		t.Parallel()
		for _, r := range []tokenReq{
			{client: clientRS256, resource: e.Audience, scope: requiredScope, query: url.Values{"alg": {"ES256"}}},
			{client: clientES256, resource: e.Audience, scope: requiredScope},
		} {
			tok := e.IdP.token(t, r)
			if h, _ := jwtParts(t, tok); h["alg"] != "ES256" || h["kid"] != e.IdP.Kids["ES256"] {
				t.Fatalf("client %s: token header %v, want ES256 with kid %s", r.client, h, e.IdP.Kids["ES256"])
			}
			c := newClient(t, e.V.URL, clientOpts{headers: map[string]string{"Authorization": "Bearer " + tok}})
			if w := decodeWhoami(t, callText(t, c, "demo_whoami", nil)); w.Authorization != "" {
				t.Errorf("client %s: the backend received Authorization %q", r.client, w.Authorization)
			}
			sid := openSession(t, e.V.URL, tok)
			e.expectEcho(t, sid, tok, "ES256 token of "+r.client)
		}
	})

	t.Run("missing token", func(t *testing.T) {
		t.Parallel()
		good := e.goodToken(t)
		sid := openSession(t, e.V.URL, good)
		e.expectEcho(t, sid, good, "control with a valid token")
		for name, r := range map[string]rawReq{
			"no Authorization, no session":   {},
			"no Authorization, on session":   {session: sid},
			"Basic credentials are no token": {auth: "Basic " + base64.StdEncoding.EncodeToString([]byte("vmcp-test:vmcp-test-secret")), session: sid},
		} {
			t.Run(name, func(t *testing.T) {
				c := e.expectRefused(t, r, http.StatusUnauthorized)
				if got := c.Params["scope"]; got != requiredScope {
					t.Errorf("scope=%q, want %q", got, requiredScope)
				}
				if got, ok := c.Params["error"]; ok {
					t.Errorf("error=%q in the challenge of a request without a token (RFC 6750 section 3.1: no error code then)", got)
				}
			})
		}
		// A bare initialize without a token is refused too (it is the first
		// thing a client sends).
		res := rawReq{url: e.V.URL, body: initializeBody}.do(t)
		if res.Status != http.StatusUnauthorized || res.Header.Get("Mcp-Session-Id") != "" {
			t.Errorf("initialize without a token: status %d, session %q; want 401 and no session", res.Status, res.Header.Get("Mcp-Session-Id"))
		}
		decodeRPCError(t, res)
		// The GET stream and DELETE of a session need the token too; the
		// session survives a DELETE without one.
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			res := rawReq{method: m, url: e.V.URL, session: sid}.do(t)
			if res.Status != http.StatusUnauthorized {
				t.Errorf("%s without a token: status %d, want 401: %.200s", m, res.Status, res.Body)
			} else if c := parseChallenge(t, res.Header.Get("WWW-Authenticate")); c.Params["resource_metadata"] != e.metadataURL() {
				t.Errorf("%s without a token: challenge %v", m, c.Params)
			}
		}
		e.expectEcho(t, sid, good, "the session after a DELETE without a token")
		// An empty bearer token is a malformed request, not a missing one.
		e.expectRefused(t, rawReq{auth: "Bearer ", session: sid}, http.StatusUnauthorized)
		e.expectRefused(t, rawReq{auth: "Bearer", session: sid}, http.StatusUnauthorized)
	})

	t.Run("invalid tokens", func(t *testing.T) {
		t.Parallel()
		good := e.goodToken(t)
		sid := openSession(t, e.V.URL, good)
		rsKid := e.IdP.Kids["RS256"]
		rsKey := e.IdP.signingKey(t, rsKid)
		claims := func() map[string]any { return validClaims(e.IdP.Issuer, e.Audience, clientRS256) }

		// Controls: a provider token and one signed here with the provider's
		// key and valid claims pass; each forgery below changes one thing.
		e.expectEcho(t, sid, good, "control: provider token")
		selfSigned := signJWT(t, rsKey.Key, jose.RS256, rsKid, claims())
		e.expectEcho(t, sid, selfSigned, "control: token signed with the provider's key")

		tamperedPayload := func() string {
			tok := e.goodToken(t)
			parts := strings.Split(tok, ".")
			_, c := jwtParts(t, tok)
			c["sub"] = "admin"
			parts[1] = b64json(t, c)
			return strings.Join(parts, ".")
		}()
		tamperedSig := func() string {
			tok := e.goodToken(t)
			parts := strings.Split(tok, ".")
			sig, err := base64.RawURLEncoding.DecodeString(parts[2])
			if err != nil {
				t.Fatal(err)
			}
			sig[len(sig)/2] ^= 0x01
			parts[2] = base64.RawURLEncoding.EncodeToString(sig)
			return strings.Join(parts, ".")
		}()
		jwks, err := json.Marshal(rsKey.Public())
		if err != nil {
			t.Fatal(err)
		}
		noExp := claims()
		delete(noExp, "exp")
		wrongIss := claims()
		wrongIss["iss"] = "http://127.0.0.1:1"
		slashIss := claims()
		slashIss["iss"] = e.IdP.Issuer + "/"
		arrayAud := claims()
		arrayAud["aud"] = []string{"http://other.example/mcp", "http://127.0.0.1:1/mcp"}
		noSub := claims()
		delete(noSub, "sub")

		cases := []struct{ name, token string }{
			{"expired", e.IdP.token(t, tokenReq{client: clientRS256, resource: e.Audience, scope: requiredScope,
				query: url.Values{"shift": {"-3600"}, "ttl": {"5"}}})},
			{"not yet valid", e.IdP.token(t, tokenReq{client: clientRS256, resource: e.Audience, scope: requiredScope,
				query: url.Values{"shift": {"3600"}}})},
			{"wrong audience", e.IdP.token(t, tokenReq{client: clientRS256, resource: "http://other.example/mcp", scope: requiredScope})},
			{"audience list without vmcp", signJWT(t, rsKey.Key, jose.RS256, rsKid, arrayAud)},
			{"wrong issuer", signJWT(t, rsKey.Key, jose.RS256, rsKid, wrongIss)},
			{"issuer with a trailing slash", signJWT(t, rsKey.Key, jose.RS256, rsKid, slashIss)},
			{"no exp", signJWT(t, rsKey.Key, jose.RS256, rsKid, noExp)},
			{"no sub", signJWT(t, rsKey.Key, jose.RS256, rsKid, noSub)},
			{"alg none", unsignedJWT(t, rsKid, claims())},
			{"alg none without kid", unsignedJWT(t, "", claims())},
			{"HS256 keyed with the provider's public key (PEM)", hmacJWT(t, rsKid, publicKeyPEM(t, rsKey), claims())},
			{"HS256 keyed with the provider's public key (JWK)", hmacJWT(t, rsKid, jwks, claims())},
			{"unknown kid", signJWT(t, newRSAKey(t), jose.RS256, "not-a-provider-kid-"+uniqueName("k"), claims())},
			{"known kid, another key", signJWT(t, newRSAKey(t), jose.RS256, rsKid, claims())},
			{"tampered payload", tamperedPayload},
			{"tampered signature", tamperedSig},
			{"malformed", "abc"},
			{"three parts of junk", "a.b.c"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				for _, r := range []rawReq{
					{token: tc.token, session: sid}, // on a live session
					{token: tc.token},               // as a new client would
				} {
					c := e.expectRefused(t, r, http.StatusUnauthorized)
					if got := c.Params["error"]; got != "invalid_token" {
						t.Errorf("error=%q, want invalid_token", got)
					}
					if c.Params["error_description"] == "" {
						t.Errorf("no error_description in %v", c.Params)
					}
					if r.session != "" {
						t.Logf("error_description=%q", c.Params["error_description"])
					}
				}
			})
		}
	})

	t.Run("token in the query string", func(t *testing.T) {
		t.Parallel()
		good := e.goodToken(t)
		sid := openSession(t, e.V.URL, good)
		q := e.V.URL + "?access_token=" + url.QueryEscape(good)
		e.expectRefused(t, rawReq{url: q, session: sid}, http.StatusUnauthorized)
		e.expectRefused(t, rawReq{url: q}, http.StatusUnauthorized)
		// Sent both ways, it is still refused: the query token is never
		// acceptable.
		e.expectRefused(t, rawReq{url: q, token: good, session: sid}, http.StatusUnauthorized)
		e.expectEcho(t, sid, good, "the same token in the header")
	})

	t.Run("missing scope", func(t *testing.T) {
		t.Parallel()
		for _, r := range []tokenReq{
			{client: clientNoScope, resource: e.Audience, scope: requiredScope},
			{client: clientRS256, resource: e.Audience, scope: "mcp:admin"},
		} {
			tok := e.IdP.token(t, r)
			_, claims := jwtParts(t, tok)
			if scope, _ := claims["scope"].(string); strings.Contains(scope, requiredScope) {
				t.Fatalf("the provider gave %s the scope %q", r.client, claims["scope"])
			}
			c := e.expectRefused(t, rawReq{token: tok}, http.StatusForbidden)
			if got := c.Params["error"]; got != "insufficient_scope" {
				t.Errorf("client %s: error=%q, want insufficient_scope", r.client, got)
			}
			if got := c.Params["scope"]; got != requiredScope {
				t.Errorf("client %s: scope=%q, want %q", r.client, got, requiredScope)
			}
		}
	})

	t.Run("protected resource metadata", func(t *testing.T) {
		t.Parallel()
		for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
			var doc metadataDoc
			h := getJSON(t, e.V.Base+path, &doc)
			if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s: Content-Type %q", path, ct)
			}
			if doc.Resource != e.Audience {
				t.Errorf("%s: resource %q, want %q", path, doc.Resource, e.Audience)
			}
			if len(doc.AuthorizationServers) != 1 || doc.AuthorizationServers[0] != e.IdP.Issuer {
				t.Errorf("%s: authorization_servers %q, want [%s]", path, doc.AuthorizationServers, e.IdP.Issuer)
			}
			if len(doc.ScopesSupported) != 1 || doc.ScopesSupported[0] != requiredScope {
				t.Errorf("%s: scopes_supported %q, want [%s]", path, doc.ScopesSupported, requiredScope)
			}
			if len(doc.BearerMethodsSupported) != 1 || doc.BearerMethodsSupported[0] != "header" {
				t.Errorf("%s: bearer_methods_supported %q, want [header]", path, doc.BearerMethodsSupported)
			}
		}
	})

	t.Run("a client discovers the authorization server from a 401", func(t *testing.T) {
		t.Parallel()
		// What an MCP client does (MCP authorization, RFC 9728, RFC 8414):
		// try without a token, follow resource_metadata from the challenge,
		// take the first authorization server, read its metadata, get a
		// token for the resource at its token endpoint, retry.
		res := rawReq{url: e.V.URL, body: initializeBody}.do(t)
		if res.Status != http.StatusUnauthorized {
			t.Fatalf("initialize without a token: status %d, want 401", res.Status)
		}
		ch := parseChallenge(t, res.Header.Get("WWW-Authenticate"))
		prmURL := ch.Params["resource_metadata"]
		if prmURL == "" {
			t.Fatalf("no resource_metadata in %q", res.Header.Get("WWW-Authenticate"))
		}
		var prm metadataDoc
		getJSON(t, prmURL, &prm)
		if len(prm.AuthorizationServers) == 0 {
			t.Fatalf("%s names no authorization server", prmURL)
		}
		as := strings.TrimSuffix(prm.AuthorizationServers[0], "/")
		var asMeta struct {
			Issuer        string `json:"issuer"`
			TokenEndpoint string `json:"token_endpoint"`
		}
		var found string
		for _, wk := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
			err := getJSONOptional(t, as+wk, &asMeta)
			if err == nil {
				found = wk
				break
			}
			if err != errNotFound {
				t.Fatalf("authorization server metadata %s: %v", as+wk, err)
			}
		}
		if found == "" {
			t.Fatalf("authorization server %s has no metadata", as)
		}
		if asMeta.Issuer != prm.AuthorizationServers[0] || asMeta.TokenEndpoint == "" {
			t.Fatalf("%s%s: issuer %q token_endpoint %q; want issuer %q and a token endpoint", as, found, asMeta.Issuer, asMeta.TokenEndpoint, prm.AuthorizationServers[0])
		}
		tok := fetchToken(t, asMeta.TokenEndpoint, tokenReq{
			client: clientRS256, resource: prm.Resource, scope: strings.Join(prm.ScopesSupported, " "),
		})
		c := newClient(t, e.V.URL, clientOpts{headers: map[string]string{"Authorization": "Bearer " + tok}})
		requireTools(t, toolNames(t, c), "demo_whoami")
		if w := decodeWhoami(t, callText(t, c, "demo_whoami", nil)); w.Name != e.Demo.Name || w.Authorization != "" {
			t.Errorf("demo_whoami: %+v", w)
		}
	})

	t.Run("mcp-go's OAuth client discovers the authorization server from a 401", func(t *testing.T) {
		t.Parallel()
		// mcp-go's OAuth-enabled client with a stale token: vmcp answers 401,
		// mcp-go takes resource_metadata from the challenge (checking its
		// origin), runs its own discovery (RFC 9728 resource binding, RFC
		// 8414 / OIDC metadata with the issuer check) and hands back the
		// token endpoint. mcp-go has no client-credentials grant, so the
		// token is fetched here and put in the client's store; the same
		// client then initialises.
		store := client.NewMemoryTokenStore()
		ctx := ctxT(t, 20*time.Second)
		if err := store.SaveToken(ctx, &client.Token{AccessToken: "stale-" + uniqueName("t"), TokenType: "Bearer"}); err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: &http.Transport{}}
		t.Cleanup(hc.CloseIdleConnections)
		c, err := client.NewOAuthStreamableHttpClient(e.V.URL, client.OAuthConfig{
			ClientID:     clientRS256,
			ClientSecret: idpSecrets[clientRS256],
			Scopes:       []string{requiredScope},
			TokenStore:   store,
			HTTPClient:   hc,
		}, transport.WithHTTPBasicClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if err := c.Start(ctx); err != nil {
			t.Fatalf("client start: %v", err)
		}
		init := mcp.InitializeRequest{}
		init.Params.ProtocolVersion = protocolVersion
		init.Params.ClientInfo = mcp.Implementation{Name: "vmcp-e2e-oauth", Version: "1"}
		_, err = c.Initialize(ctx, init)
		if !client.IsOAuthAuthorizationRequiredError(err) {
			t.Fatalf("initialize with a stale token: %v, want mcp-go's OAuthAuthorizationRequiredError", err)
		}
		if got := client.GetResourceMetadataURL(err); got != e.metadataURL() {
			t.Errorf("mcp-go read resource_metadata %q from the challenge, want %q", got, e.metadataURL())
		}
		h := client.GetOAuthHandler(err)
		md, err := h.GetServerMetadata(ctx)
		if err != nil {
			t.Fatalf("mcp-go's authorization server discovery: %v", err)
		}
		if md.Issuer != e.IdP.Issuer || md.TokenEndpoint != e.IdP.TokenEndpoint {
			t.Fatalf("mcp-go discovered issuer %q token endpoint %q, want %q and %q", md.Issuer, md.TokenEndpoint, e.IdP.Issuer, e.IdP.TokenEndpoint)
		}
		tok := fetchToken(t, md.TokenEndpoint, tokenReq{client: h.GetClientID(), resource: e.V.URL, scope: requiredScope})
		if err := store.SaveToken(ctx, &client.Token{AccessToken: tok, TokenType: "Bearer"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Initialize(ctx, init); err != nil {
			t.Fatalf("initialize with the discovered token: %v", err)
		}
		if w := decodeWhoami(t, callText(t, c, "demo_whoami", nil)); w.Name != e.Demo.Name || w.Authorization != "" {
			t.Errorf("demo_whoami: %+v", w)
		}
	})

	t.Run("TypeScript SDK client with a token", func(t *testing.T) {
		t.Parallel()
		needNode(t)
		tok := e.goodToken(t)
		r := runNode(t, e.V.URL, []map[string]any{
			{"op": "listTools"},
			{"op": "callTool", "name": "demo_whoami"},
		}, map[string]string{"Authorization": "Bearer " + tok}, nil)
		for i := range r.Results {
			if err := r.stepError(i); err != nil {
				t.Fatalf("client.mjs step %d: %+v", i, *err)
			}
		}
		if !strings.Contains(string(r.Results[0]), `"demo_whoami"`) {
			t.Errorf("listTools: %s", r.Results[0])
		}
		var who struct {
			StructuredContent whoami `json:"structuredContent"`
		}
		mustUnmarshal(t, r.Results[1], &who)
		if who.StructuredContent.Name != e.Demo.Name || who.StructuredContent.Authorization != "" {
			t.Errorf("demo_whoami via TypeScript: %s", r.Results[1])
		}
	})

	t.Run("a session is bound to its identity", func(t *testing.T) {
		t.Parallel()
		a1 := e.goodToken(t)
		sid := openSession(t, e.V.URL, a1)
		e.expectEcho(t, sid, a1, "A on its own session")

		// B: valid token, another subject.
		b := e.IdP.token(t, tokenReq{client: clientES256, resource: e.Audience, scope: requiredScope})
		if _, claims := jwtParts(t, b); claims["sub"] != clientES256 {
			t.Fatalf("B's token has sub %v", claims["sub"])
		}
		marker := uniqueName("hijack")
		res := rawReq{url: e.V.URL, token: b, session: sid, body: echoCall(marker)}.do(t)
		if res.Status != http.StatusForbidden {
			t.Errorf("B's token on A's session: status %d, want 403: %s", res.Status, res.Body)
		} else {
			decodeRPCError(t, res)
		}
		if n := e.Proxy.callsWith(marker); n != 0 {
			t.Errorf("B's call on A's session reached the backend %d times", n)
		}
		res = rawReq{method: http.MethodDelete, url: e.V.URL, token: b, session: sid}.do(t)
		if res.Status != http.StatusForbidden {
			t.Errorf("B deleting A's session: status %d, want 403: %s", res.Status, res.Body)
		}

		// A's next token (same client, new jti) keeps the session, and so
		// does the first one.
		a2 := e.goodToken(t)
		if a2 == a1 {
			t.Fatal("the provider issued the same token twice")
		}
		e.expectEcho(t, sid, a2, "A's refreshed token on A's session")
		e.expectEcho(t, sid, a1, "A's first token after B's attempts")

		// B's own session works for B, and not for A.
		sidB := openSession(t, e.V.URL, b)
		e.expectEcho(t, sidB, b, "B on its own session")
		if res := (rawReq{url: e.V.URL, token: a2, session: sidB, body: echoCall(uniqueName("x"))}.do(t)); res.Status != http.StatusForbidden {
			t.Errorf("A's token on B's session: status %d, want 403", res.Status)
		}
	})
}

// TestOIDCKeyRotation: the provider restarts with new signing keys (the
// old ones still published); tokens signed with the new keys are accepted
// by the running vmcp without a restart, and old tokens keep working.
func TestOIDCKeyRotation(t *testing.T) {
	t.Parallel()
	needIdP(t)
	p1 := startIdP(t, idpOpts{})
	e := startOIDCEnv(t, p1)
	old := e.goodToken(t)
	sid := openSession(t, e.V.URL, old)
	e.expectEcho(t, sid, old, "token before the rotation")

	p1.Stop()
	var p2 *idp
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if p2, err = tryStartIdP(t, idpOpts{port: p1.Port, keys: p1.KeysFile, rotate: true}); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("restart the provider on port %d: %v", p1.Port, err)
	}
	if p2.Issuer != p1.Issuer {
		t.Fatalf("issuer changed across the restart: %s → %s", p1.Issuer, p2.Issuer)
	}
	for _, alg := range []string{"RS256", "ES256"} {
		if p2.Kids[alg] == p1.Kids[alg] {
			t.Fatalf("--rotate kept the %s key %s", alg, p1.Kids[alg])
		}
	}

	for _, tc := range []struct {
		alg string
		req tokenReq
	}{
		{"RS256", tokenReq{client: clientRS256, resource: e.Audience, scope: requiredScope}},
		{"ES256", tokenReq{client: clientES256, resource: e.Audience, scope: requiredScope}},
	} {
		tok := p2.token(t, tc.req)
		if h, _ := jwtParts(t, tok); h["kid"] != p2.Kids[tc.alg] {
			t.Fatalf("%s token after the rotation has kid %v, want the new %s", tc.alg, h["kid"], p2.Kids[tc.alg])
		}
		s := openSession(t, e.V.URL, tok)
		e.expectEcho(t, s, tok, tc.alg+" token with the new key")
	}
	// vmcp fetched the new keys once, on the first token naming one.
	if n := p2.jwksFetches(); n != 1 {
		t.Errorf("vmcp fetched the rotated JWKS %d times, want once", n)
	}
	// A flood of tokens naming unknown keys right after that fetch makes
	// vmcp refuse them, not refetch: one fetch per cooldown at most.
	stranger := newRSAKey(t)
	for i := 0; i < 20; i++ {
		e.expectRefused(t, rawReq{token: signJWT(t, stranger, jose.RS256, "flood-"+uniqueName("k"),
			validClaims(p2.Issuer, e.Audience, clientRS256))}, http.StatusUnauthorized)
	}
	if n := p2.jwksFetches(); n != 1 {
		t.Errorf("20 tokens with unknown keys made vmcp fetch the JWKS %d more times, want none within the cooldown", n-1)
	}
	// The old key is still published: the old token, and one never seen
	// before signed with the old key, pass.
	e.expectEcho(t, sid, old, "token from before the rotation")
	oldKey := p2.signingKey(t, p1.Kids["RS256"])
	fresh := signJWT(t, oldKey.Key, jose.RS256, p1.Kids["RS256"], validClaims(p2.Issuer, e.Audience, clientRS256))
	e.expectEcho(t, sid, fresh, "new token signed with the old key")
}

// TestOIDCProviderDown: once vmcp has the provider's keys, the provider
// going away does not matter for tokens signed with those keys: seen ones
// and never-seen ones keep working (no network needed), and a token with
// an unknown key is refused without losing the keys held.
func TestOIDCProviderDown(t *testing.T) {
	t.Parallel()
	needIdP(t)
	p := startIdP(t, idpOpts{})
	e := startOIDCEnv(t, p)
	seen := e.goodToken(t)
	unseen := p.token(t, tokenReq{client: clientES256, resource: e.Audience, scope: requiredScope})
	sid := openSession(t, e.V.URL, seen)
	e.expectEcho(t, sid, seen, "before the provider stops")

	p.Stop()
	if resp, err := noKeepAlive.Get(p.JWKSURI); err == nil {
		resp.Body.Close()
		t.Fatalf("the provider still answers at %s after Stop", p.JWKSURI)
	}

	e.expectEcho(t, sid, seen, "a token seen before the provider stopped")
	sidES := openSession(t, e.V.URL, unseen)
	e.expectEcho(t, sidES, unseen, "a provider token first shown after the provider stopped")
	rs := p.signingKey(t, p.Kids["RS256"])
	es := p.signingKey(t, p.Kids["ES256"])
	e.expectEcho(t, sid, signJWT(t, rs.Key, jose.RS256, p.Kids["RS256"], validClaims(p.Issuer, e.Audience, clientRS256)),
		"a never-seen RS256 token signed with a known key")

	// An unknown kid makes vmcp try the (gone) provider: refused, and the
	// failed fetch keeps the keys held.
	c := e.expectRefused(t, rawReq{
		token:   signJWT(t, newRSAKey(t), jose.RS256, "rotated-away-"+uniqueName("k"), validClaims(p.Issuer, e.Audience, clientRS256)),
		session: sid,
	}, http.StatusUnauthorized)
	if c.Params["error"] != "invalid_token" {
		t.Errorf("unknown kid with the provider down: error=%q, want invalid_token", c.Params["error"])
	}
	e.expectEcho(t, sidES, signJWT(t, es.Key, jose.ES256, p.Kids["ES256"], validClaims(p.Issuer, e.Audience, clientES256)),
		"a never-seen ES256 token signed with a known key, after a failed key fetch")
}
