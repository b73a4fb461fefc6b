package test

// Helpers of the OIDC end-to-end tests (oidc_test.go): a real OpenID
// provider (test/js/idp.mjs, on the npm package oidc-provider) as a child
// process, tokens from it and forged ones, a counting proxy in front of a
// demo backend, vmcp with incomingAuth oidc, and raw MCP requests.

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/vmcp/vmcp/server"
)

// The clients test/js/idp.mjs knows.
const (
	clientRS256   = "vmcp-test"         // RS256 tokens with the requested scopes
	clientES256   = "vmcp-test-es256"   // ES256 tokens with the requested scopes
	clientNoScope = "vmcp-test-noscope" // tokens that never carry a scope
)

// idpSecrets are the client secrets of test/js/idp.mjs.
var idpSecrets = map[string]string{
	clientRS256:   "vmcp-test-secret",
	clientES256:   "vmcp-test-es256-secret",
	clientNoScope: "vmcp-test-noscope-secret",
}

// requiredScope is the scope vmcp requires in these tests.
const requiredScope = "mcp:tools"

// needIdP stops t (missingPrerequisite) when the OpenID provider cannot run: no node, or no
// oidc-provider under test/js/node_modules (CI installs both).
func needIdP(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		missingPrerequisite(t, "OIDC end-to-end test: node is not on PATH (install Node.js >= 20)")
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "test", "js", "node_modules", "oidc-provider")); err != nil {
		missingPrerequisite(t, "OIDC end-to-end test: test/js/node_modules/oidc-provider is missing (run `npm ci` in test/js)")
	}
}

// idp is test/js/idp.mjs running as a child process of the test.
type idp struct {
	Issuer        string            `json:"issuer"`
	JWKSURI       string            `json:"jwks_uri"`
	TokenEndpoint string            `json:"token_endpoint"`
	Port          int               `json:"port"`
	Kids          map[string]string `json:"kids"` // alg → kid new tokens are signed with
	// KeysFile holds the private JWKS the provider signs with (--keys-out).
	KeysFile string `json:"-"`
	// The running provider; its Logs hold one line per HTTP request,
	// among others.
	*jsChild `json:"-"`
}

// idpOpts tunes startIdP.
type idpOpts struct {
	port   int    // 0: a free port
	keys   string // --keys FILE
	rotate bool   // --rotate

	// Token exchange (RFC 8693) by the vmcp-gateway* clients.
	exchangeAudiences string // --exchange-audiences "a b": the audiences allowed ("": any)
	exchangeDeny      string // --exchange-deny "sub1 sub2": subjects never exchanged
	exchangeTTL       int    // --exchange-ttl SECONDS (0: the provider's default, 600)
	gatewayJWKS       string // --gateway-jwks FILE: public JWKS of vmcp-gateway-jwt, registered only then
}

// startIdP starts the provider, waits for its READY line and stops it when
// t ends. The provider writes its keys to a file of t's temp dir
// (KeysFile). Its stderr is shown if t fails.
func startIdP(t testing.TB, o idpOpts) *idp {
	t.Helper()
	p, err := tryStartIdP(t, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func tryStartIdP(t testing.TB, o idpOpts) (*idp, error) {
	t.Helper()
	keysOut, err := os.CreateTemp(t.TempDir(), "idp-keys-*.json")
	if err != nil {
		return nil, err
	}
	_ = keysOut.Close()
	args := []string{"--port", strconv.Itoa(o.port), "--keys-out", keysOut.Name()}
	if o.keys != "" {
		args = append(args, "--keys", o.keys)
	}
	if o.rotate {
		args = append(args, "--rotate")
	}
	if o.exchangeAudiences != "" {
		args = append(args, "--exchange-audiences", o.exchangeAudiences)
	}
	if o.exchangeDeny != "" {
		args = append(args, "--exchange-deny", o.exchangeDeny)
	}
	if o.exchangeTTL != 0 {
		args = append(args, "--exchange-ttl", strconv.Itoa(o.exchangeTTL))
	}
	if o.gatewayJWKS != "" {
		args = append(args, "--gateway-jwks", o.gatewayJWKS)
	}
	p := &idp{KeysFile: keysOut.Name()}
	if p.jsChild, err = startJS(t, "idp.mjs", args, p); err != nil {
		return nil, err
	}
	return p, nil
}

// jwksFetches counts the requests for the provider's JWKS so far.
func (p *idp) jwksFetches() int {
	n := 0
	for _, line := range strings.Split(p.Logs.String(), "\n") {
		if strings.HasPrefix(line, "idp: GET ") && strings.HasSuffix(line, " "+strings.TrimPrefix(p.JWKSURI, p.Issuer)) {
			n++
		}
	}
	return n
}

// idpExchanges is the provider's record of token exchanges (GET /_test/exchanges), in order.
type idpExchanges struct {
	Issued  []idpExchange `json:"issued"`
	Refused []idpRefusal  `json:"refused"`
}

// idpExchange is a token exchange the provider granted.
type idpExchange struct {
	Client string   `json:"client"` // the exchanging client
	Sub    string   `json:"sub"`    // the subject token's sub
	Aud    []string `json:"aud"`    // the issued token's audiences (always a list here)
	Act    string   `json:"act"`    // the actor token's sub, "" without one
	Scope  string   `json:"scope"`  // the issued token's scope, "" when none
	Exp    int64    `json:"exp"`
}

// idpRefusal is a token exchange request the provider refused.
type idpRefusal struct {
	Client string `json:"client"` // "" when the request named none
	Sub    string `json:"sub"`    // the subject token's sub, "" unless it was verified
	Error  string `json:"error"`  // the OAuth error code, e.g. invalid_grant
}

// exchanges fetches the provider's record of token exchanges so far.
func (p *idp) exchanges(t testing.TB) idpExchanges {
	t.Helper()
	var x idpExchanges
	getJSON(t, p.Issuer+"/_test/exchanges", &x)
	return x
}

// tokenReq is a token request to the provider.
type tokenReq struct {
	client   string     // one of the idp.mjs clients; its secret is looked up
	resource string     // RFC 8707 resource: the token's aud
	scope    string     // "" for none
	query    url.Values // test knobs on the token endpoint: alg, ttl, shift
}

// tokenResponse is the provider's answer to a token request.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// token obtains an access token with the client-credentials grant at the
// provider's token endpoint.
func (p *idp) token(t *testing.T, r tokenReq) string {
	t.Helper()
	return fetchToken(t, p.TokenEndpoint, r)
}

// fetchToken does a client-credentials token request at endpoint.
func fetchToken(t testing.TB, endpoint string, r tokenReq) string {
	t.Helper()
	u := endpoint
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {r.resource}}
	if r.scope != "" {
		form.Set("scope", r.scope)
	}
	req, err := http.NewRequestWithContext(ctxT(t, 10*time.Second), http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(r.client, idpSecrets[r.client])
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatalf("token request to %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil || resp.StatusCode != http.StatusOK || tr.AccessToken == "" {
		t.Fatalf("token request to %s (client %s): status %d: %s", u, r.client, resp.StatusCode, body)
	}
	if !strings.EqualFold(tr.TokenType, "Bearer") {
		t.Fatalf("token_type %q, want Bearer", tr.TokenType)
	}
	return tr.AccessToken
}

// jwtParts decodes the header and claims of a compact JWS, without checking
// anything.
func jwtParts(t *testing.T, token string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("JWS part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatalf("JWS part %d: %v: %s", i, err, b)
		}
	}
	return header, claims
}

// b64json is the base64url (unpadded) encoding of v as JSON.
func b64json(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// providerKeys reads the private JWKS the provider wrote (--keys-out).
func (p *idp) providerKeys(t *testing.T) []jose.JSONWebKey {
	t.Helper()
	b, err := os.ReadFile(p.KeysFile)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatalf("keys of the provider: %v", err)
	}
	return set.Keys
}

// signingKey returns the provider's private key with kid.
func (p *idp) signingKey(t *testing.T, kid string) jose.JSONWebKey {
	t.Helper()
	for _, k := range p.providerKeys(t) {
		if k.KeyID == kid {
			if k.IsPublic() {
				t.Fatalf("key %s of the provider has no private part", kid)
			}
			return k
		}
	}
	t.Fatalf("the provider has no key %s", kid)
	return jose.JSONWebKey{}
}

// validClaims are the claims of a token the provider could have issued to
// sub for audience, valid for 5 minutes, with the required scope.
func validClaims(issuer, audience, sub string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"jti":       rand.Text(),
		"iss":       issuer,
		"aud":       audience,
		"sub":       sub,
		"client_id": sub,
		"iat":       now,
		"exp":       now + 300,
		"scope":     requiredScope,
	}
}

// signJWT signs claims as a compact JWS with key (a private key) under alg,
// naming kid in the header.
func signJWT(t *testing.T, key any, alg jose.SignatureAlgorithm, kid string, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	opts := (&jose.SignerOptions{}).WithType("at+jwt")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
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

// unsignedJWT is a token with "alg":"none" and an empty signature.
func unsignedJWT(t *testing.T, kid string, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": "none", "typ": "at+jwt"}
	if kid != "" {
		h["kid"] = kid
	}
	return b64json(t, h) + "." + b64json(t, claims) + "."
}

// hmacJWT is an HS256 token whose HMAC key is secret (the classic attack
// signs with the provider's public key as the shared secret).
func hmacJWT(t *testing.T, kid string, secret []byte, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": kid}
	input := b64json(t, h) + "." + b64json(t, claims)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// publicKeyPEM is the PEM (SubjectPublicKeyInfo) of the public half of k.
func publicKeyPEM(t *testing.T, k jose.JSONWebKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public().Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// newRSAKey generates an RSA key the provider does not know.
func newRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// countingProxy is a reverse proxy in front of a demo backend that keeps
// the body of every POST reaching the backend (any JSON-RPC method), so a
// test can tell whether a given request got through vmcp.
type countingProxy struct {
	URL string // the proxied MCP endpoint
	mu  sync.Mutex
	// bodies are the bodies of the POSTs forwarded.
	bodies []string
}

// startCountingProxy serves a proxy to backendURL (http://host:port/path)
// until t ends.
func startCountingProxy(t *testing.T, backendURL string) *countingProxy {
	t.Helper()
	target, err := url.Parse(backendURL)
	if err != nil {
		t.Fatal(err)
	}
	cp := &countingProxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	rp.Transport = &http.Transport{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			cp.mu.Lock()
			cp.bodies = append(cp.bodies, string(body))
			cp.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		rp.Transport.(*http.Transport).CloseIdleConnections()
	})
	cp.URL = srv.URL + target.Path
	return cp
}

// seen counts the forwarded requests of method whose body contains marker
// ("" for any).
func (cp *countingProxy) seen(method, marker string) int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	n := 0
	for _, b := range cp.bodies {
		if strings.Contains(b, `"`+method+`"`) && strings.Contains(b, marker) {
			n++
		}
	}
	return n
}

// callsWith counts the forwarded tools/call requests whose body contains
// marker.
func (cp *countingProxy) callsWith(marker string) int { return cp.seen("tools/call", marker) }

// total counts every forwarded tools/call.
func (cp *countingProxy) total() int { return cp.seen("tools/call", "") }

// oidcEnv is vmcp with incomingAuth oidc against a real provider, in front
// of one demo backend (named demo) reached through a counting proxy.
type oidcEnv struct {
	IdP   *idp
	Demo  *demoBackend
	Proxy *countingProxy
	V     *vmcp
	// Audience is vmcp's MCP endpoint URL: the audience and the resource.
	Audience string
}

// startOIDCEnv starts a provider (unless p is given), a demo backend
// behind a counting proxy, and vmcp requiring requiredScope from tokens of
// the provider for its own MCP URL.
func startOIDCEnv(t *testing.T, p *idp) *oidcEnv {
	t.Helper()
	if p == nil {
		p = startIdP(t, idpOpts{})
	}
	e := &oidcEnv{IdP: p}
	e.Demo = startDemo(t, "demo", "weather", "streamable-http", "")
	e.Proxy = startCountingProxy(t, e.Demo.URL)
	e.V, e.Audience = startVMCPAt(t, func(port, audience string) string {
		return fmt.Sprintf(`name: e2e-oidc
server: {host: 127.0.0.1, port: %s}
backends:
  - {name: demo, transport: streamable-http, url: %q, requestTimeout: 10s}
incomingAuth:
  type: oidc
  oidc:
    issuer: %q
    audience: %q
    requiredScopes: [%q]
`, port, e.Proxy.URL, p.Issuer, audience, requiredScope)
	})
	return e
}

// startVMCPAt starts vmcp with the config yaml gives for a free port and
// the audience naming vmcp's URL there (http://127.0.0.1:PORT/mcp), and
// returns it with that audience. The port must be known before Start, so
// it is taken first; another process may grab it in between, so a taken
// port is retried.
func startVMCPAt(t *testing.T, yaml func(port, audience string) string) (*vmcp, string) {
	t.Helper()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		port := freeAddr(t)[len("127.0.0.1:"):]
		audience := "http://127.0.0.1:" + port + "/mcp"
		var v *vmcp
		if v, err = tryStartVMCP(t, yaml(port, audience)); err == nil {
			return v, audience
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatal(err)
	return nil, ""
}

// tryStartVMCP is startVMCP that returns Start's error (after cleaning up)
// instead of failing t, so a taken port can be retried.
func tryStartVMCP(t *testing.T, yamlText string) (*vmcp, error) {
	t.Helper()
	return launchVMCP(t, yamlText, nil, server.Options{})
}

// httpResult is a raw HTTP answer.
type httpResult struct {
	Status int
	Header http.Header
	Body   []byte
}

// rawReq describes a raw MCP request to vmcp.
type rawReq struct {
	method  string // default POST
	url     string
	token   string // sent as "Authorization: Bearer <token>" unless ""
	auth    string // a raw Authorization header, instead of token
	session string // Mcp-Session-Id
	body    string
}

// do sends r and reads the whole answer.
func (r rawReq) do(t *testing.T) httpResult {
	t.Helper()
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctxT(t, 15*time.Second), method, r.url, body)
	if err != nil {
		t.Fatal(err)
	}
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	switch {
	case r.auth != "":
		req.Header.Set("Authorization", r.auth)
	case r.token != "":
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.session != "" {
		req.Header.Set("Mcp-Session-Id", r.session)
		req.Header.Set("Mcp-Protocol-Version", protocolVersion)
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, r.url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, r.url, err)
	}
	return httpResult{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// jsonrpcMessage returns the JSON-RPC message of an answer, from a JSON
// body or from the last data line of an SSE body.
func (h httpResult) jsonrpcMessage() []byte {
	if strings.HasPrefix(h.Header.Get("Content-Type"), "text/event-stream") {
		var last []byte
		for _, line := range bytes.Split(h.Body, []byte("\n")) {
			if d, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r"), []byte("data:")); ok {
				last = bytes.TrimSpace(d)
			}
		}
		return last
	}
	return h.Body
}

const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + protocolVersion +
	`","capabilities":{},"clientInfo":{"name":"vmcp-e2e-raw","version":"1"}}}`

// openSession initialises an MCP session at mcpURL with token, the way a
// client does (initialize, then notifications/initialized), and returns its
// id.
func openSession(t *testing.T, mcpURL, token string) string {
	t.Helper()
	res := rawReq{url: mcpURL, token: token, body: initializeBody}.do(t)
	if res.Status != http.StatusOK {
		t.Fatalf("initialize: status %d: %s", res.Status, res.Body)
	}
	sid := res.Header.Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatalf("initialize: no Mcp-Session-Id in the answer: %v", res.Header)
	}
	res = rawReq{url: mcpURL, token: token, session: sid, body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`}.do(t)
	if res.Status != http.StatusAccepted && res.Status != http.StatusOK {
		t.Fatalf("notifications/initialized: status %d: %s", res.Status, res.Body)
	}
	return sid
}

// echoCall is the body of a tools/call of the demo's echo tool (through
// vmcp: demo_echo) with text, used as a marker the counting proxy finds.
func echoCall(text string) string {
	b, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "id": 2, "method": "tools/call",
		"params": map[string]any{"name": "demo_echo", "arguments": map[string]any{"text": text}},
	})
	return string(b)
}

// challenge is a parsed "WWW-Authenticate: Bearer k=v, ..." header.
type challenge struct {
	Scheme string
	Params map[string]string
}

// parseChallenge parses one RFC 9110 challenge (auth-params only, as RFC
// 6750 uses them). It fails t on a malformed header.
func parseChallenge(t *testing.T, h string) challenge {
	t.Helper()
	c := challenge{Params: map[string]string{}}
	h = strings.TrimSpace(h)
	scheme, rest, _ := strings.Cut(h, " ")
	c.Scheme = scheme
	s := strings.TrimSpace(rest)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			t.Fatalf("WWW-Authenticate %q: expected name=value at %q", h, s)
		}
		name := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimLeft(s[eq+1:], " ")
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			if i >= len(s) {
				t.Fatalf("WWW-Authenticate %q: unterminated quoted string", h)
			}
			val, s = b.String(), s[i+1:]
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			val, s = strings.TrimSpace(s[:end]), s[end:]
		}
		if _, dup := c.Params[name]; dup {
			t.Fatalf("WWW-Authenticate %q: parameter %s given twice", h, name)
		}
		c.Params[name] = val
		s = strings.TrimSpace(s)
		if s != "" {
			if s[0] != ',' {
				t.Fatalf("WWW-Authenticate %q: expected a comma at %q", h, s)
			}
			s = strings.TrimSpace(s[1:])
		}
	}
	return c
}

// rpcError is a JSON-RPC error answer.
type rpcError struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   *struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

// decodeRPCError fails t unless res's body is a JSON-RPC error.
func decodeRPCError(t *testing.T, res httpResult) rpcError {
	t.Helper()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e rpcError
	if err := json.Unmarshal(res.Body, &e); err != nil || e.JSONRPC != "2.0" || e.Error == nil {
		t.Fatalf("body is not a JSON-RPC error (%v): %s", err, res.Body)
	}
	return e
}

// getJSON fetches url without credentials and decodes a 200 JSON answer.
func getJSON(t testing.TB, u string, v any) http.Header {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t, 10*time.Second), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", u, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: not JSON: %v: %s", u, err, b)
	}
	return resp.Header
}

// errNotFound marks a discovery document that is not there.
var errNotFound = errors.New("not found")

// getJSONOptional is getJSON that reports a 404 as errNotFound.
func getJSONOptional(t *testing.T, u string, v any) error {
	t.Helper()
	resp, err := noKeepAlive.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound {
		return errNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %s", u, resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}
