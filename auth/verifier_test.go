package auth_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

// with returns base with the changes applied (nil deletes a claim).
func with(base map[string]any, changes map[string]any) map[string]any {
	out := make(map[string]any, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// unsigned returns a token with the given header and claims and signature.
func unsigned(header, claims map[string]any, sig []byte) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(header) + "." + enc(claims) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// hs256WithPublicKey is the key-confusion attack: HS256 with the provider's
// RSA public key (PEM, as a naive verifier would read it) as the secret.
func hs256WithPublicKey(t testing.TB, k signingKey, claims map[string]any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: jose.JSONWebKey{Key: secret, KeyID: k.kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tamper flips one character of the token's part (0 header, 1 payload,
// 2 signature).
func tamper(tok string, part int) string {
	parts := strings.Split(tok, ".")
	b := []byte(parts[part])
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	parts[part] = string(b)
	return strings.Join(parts, ".")
}

func TestVerify(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	p := newIDP(t, keys.rsa1, keys.ec)
	clk := newClock()
	now := clk.now()
	good := p.claims(now)

	type tc struct {
		name  string
		token string
		// cfg changes the verifier's config (nil: default).
		cfg      func(*config.OIDC)
		wantDesc string // "" means accepted
		want403  bool
	}
	cases := []tc{
		{name: "valid RS256", token: mint(t, keys.rsa1, "rsa-1", good)},
		{name: "valid ES256", token: mint(t, keys.ec, "ec-1", good)},
		{name: "valid without kid", token: mint(t, keys.rsa1, "", good)},
		{name: "aud array holding the audience", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"aud": []string{"other", testAudience}}))},
		{name: "expired", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"exp": now.Add(-time.Minute).Unix()})), wantDesc: "token expired"},
		{name: "expired within skew", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"exp": now.Add(-10 * time.Second).Unix()}))},
		{name: "expired with no skew", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"exp": now.Add(-1 * time.Second).Unix()})), cfg: func(c *config.OIDC) { c.ClockSkew = 0 }, wantDesc: "token expired"},
		{name: "no exp", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"exp": nil})), wantDesc: "token has no exp"},
		{name: "exp not a number", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"exp": "tomorrow"})), wantDesc: "malformed"},
		{name: "nbf in the future", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"nbf": now.Add(2 * time.Minute).Unix()})), wantDesc: "token not yet valid"},
		{name: "nbf within skew", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"nbf": now.Add(10 * time.Second).Unix()}))},
		{name: "iat in the future", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"iat": now.Add(2 * time.Minute).Unix()})), wantDesc: "token issued in the future"},
		{name: "wrong iss", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"iss": "https://evil.example.com"})), wantDesc: "wrong issuer"},
		{name: "iss with a trailing slash", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"iss": p.issuer() + "/"})), wantDesc: "wrong issuer"},
		{name: "wrong aud", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"aud": "https://other.example.com"})), wantDesc: "wrong audience"},
		{name: "no aud", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"aud": nil})), wantDesc: "wrong audience"},
		{name: "no sub", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"sub": nil})), wantDesc: "token has no sub"},
		{name: "alg none", token: unsigned(map[string]any{"alg": "none", "typ": "JWT"}, good, nil), wantDesc: "signing algorithm not allowed"},
		{name: "alg None", token: unsigned(map[string]any{"alg": "None", "kid": "rsa-1"}, good, nil), wantDesc: "signing algorithm not allowed"},
		{name: "HS256 signed with the RSA public key", token: hs256WithPublicKey(t, keys.rsa1, good), wantDesc: "signing algorithm not allowed"},
		{name: "HS256 even when listed", token: hs256WithPublicKey(t, keys.rsa1, good), cfg: func(c *config.OIDC) { c.AllowedAlgorithms = []string{"RS256", "HS256"} }, wantDesc: "signing algorithm not allowed"},
		{name: "ES256 outside the allow-list", token: mint(t, keys.ec, "ec-1", good), cfg: func(c *config.OIDC) { c.AllowedAlgorithms = []string{"RS256"} }, wantDesc: "signing algorithm not allowed"},
		{name: "RS256 header on an EC key's kid", token: mint(t, keys.rsa1, "ec-1", good), wantDesc: "unknown signing key"},
		{name: "unknown kid", token: mint(t, keys.rogue, "rogue", good), wantDesc: "unknown signing key"},
		{name: "known kid, other key", token: mint(t, keys.rogue, "rsa-1", good), wantDesc: "invalid signature"},
		{name: "tampered signature", token: tamper(mint(t, keys.rsa1, "rsa-1", good), 2), wantDesc: "invalid signature"},
		{name: "tampered payload", token: tamper(mint(t, keys.ec, "ec-1", good), 1), wantDesc: "invalid signature"},
		{name: "empty", token: "", wantDesc: "empty token"},
		{name: "not a JWT", token: "opaque-token", wantDesc: "malformed token"},
		{name: "two parts", token: "eyJhbGciOiJSUzI1NiJ9.e30", wantDesc: "malformed token"},
		{name: "four parts", token: mint(t, keys.rsa1, "rsa-1", good) + ".x", wantDesc: "malformed token"},
		{name: "header not base64", token: "!!!.e30.sig", wantDesc: "malformed token"},
		{name: "too large", token: strings.Repeat("a", 20<<10), wantDesc: "token too large"},
		{name: "scope claim", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"scope": "openid mcp:tools"})), cfg: func(c *config.OIDC) { c.RequiredScopes = []string{"mcp:tools"} }},
		{name: "scp array", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"scp": []string{"mcp:tools", "other"}})), cfg: func(c *config.OIDC) { c.RequiredScopes = []string{"mcp:tools"} }},
		{name: "scp string", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"scp": "mcp:tools"})), cfg: func(c *config.OIDC) { c.RequiredScopes = []string{"mcp:tools"} }},
		{name: "missing scope", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"scope": "openid"})), cfg: func(c *config.OIDC) { c.RequiredScopes = []string{"mcp:tools"} }, wantDesc: "missing required scope", want403: true},
		{name: "one of two scopes", token: mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"scope": "a"})), cfg: func(c *config.OIDC) { c.RequiredScopes = []string{"a", "b"} }, wantDesc: "missing required scope", want403: true},
		{name: "no scope claim", token: mint(t, keys.rsa1, "rsa-1", good), cfg: func(c *config.OIDC) { c.RequiredScopes = []string{"a"} }, wantDesc: "missing required scope", want403: true},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := p.oidcConfig()
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			v := newVerifier(t, cfg, auth.VerifierOptions{Now: clk.now})
			id, err := v.Verify(context.Background(), c.token)
			if c.wantDesc == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if id.Issuer != p.issuer() || id.Subject != "alice" || id.Claims["aud"] == nil {
					t.Errorf("identity = %+v", id)
				}
				return
			}
			var e *auth.Error
			if !errors.As(err, &e) {
				t.Fatalf("Verify error = %v (%T), want *auth.Error", err, err)
			}
			wantStatus, wantCode := http.StatusUnauthorized, "invalid_token"
			if c.want403 {
				wantStatus, wantCode = http.StatusForbidden, "insufficient_scope"
			}
			if e.Status != wantStatus || e.Code != wantCode || !strings.Contains(e.Description, c.wantDesc) {
				t.Errorf("error = %+v, want %d %s %q", e, wantStatus, wantCode, c.wantDesc)
			}
			if c.token != "" && strings.Contains(e.Error(), c.token) {
				t.Error("the error holds the token")
			}
			if c.want403 && id.Subject != "alice" {
				t.Errorf("insufficient_scope came without the identity: %+v", id)
			}
		})
	}
}

func TestUnknownKidRefetchesOnce(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	p := newIDP(t, keys.rsa1)
	clk := newClock()
	v := newVerifier(t, p.oidcConfig(), auth.VerifierOptions{Now: clk.now})
	start := p.jwksHits.Load()

	// 100 tokens naming keys the provider never published, at once.
	var wg sync.WaitGroup
	for i := range 100 {
		tok := mint(t, keys.rogue, fmt.Sprintf("bogus-%d", i), p.claims(clk.now()))
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), tok); err == nil {
				t.Error("a token of an unpublished key was accepted")
			}
		})
	}
	wg.Wait()
	if got := p.jwksHits.Load() - start; got != 1 {
		t.Errorf("100 unknown kids within the cooldown made %d JWKS fetches, want exactly 1", got)
	}

	// Once the cooldown has passed, a miss may refetch again.
	clk.advance(31 * time.Second)
	_, _ = v.Verify(context.Background(), mint(t, keys.rogue, "bogus-again", p.claims(clk.now())))
	if got := p.jwksHits.Load() - start; got != 2 {
		t.Errorf("a miss after the cooldown: %d fetches in all, want 2", got)
	}
}

func TestKeyRotationWithoutRestart(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	p := newIDP(t, keys.rsa1)
	clk := newClock()
	v := newVerifier(t, p.oidcConfig(), auth.VerifierOptions{Now: clk.now})
	ctx := context.Background()

	if _, err := v.Verify(ctx, mint(t, keys.rsa1, "rsa-1", p.claims(clk.now()))); err != nil {
		t.Fatalf("old key before rotation: %v", err)
	}
	p.setKeys(keys.rsa2) // the provider rotates: rsa-1 retired, rsa-2 current
	if _, err := v.Verify(ctx, mint(t, keys.rsa2, "rsa-2", p.claims(clk.now()))); err != nil {
		t.Fatalf("new key after rotation: %v", err)
	}
	claims := with(p.claims(clk.now()), map[string]any{"sub": "bob"})
	if _, err := v.Verify(ctx, mint(t, keys.rsa1, "rsa-1", claims)); err == nil {
		t.Error("a new token of the retired key was accepted after the rotation")
	}
}

func TestPeriodicRefresh(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	p := newIDP(t, keys.rsa1)
	v := newVerifier(t, p.oidcConfig(), auth.VerifierOptions{RefreshInterval: 5 * time.Millisecond})

	p.setKeys(keys.rsa1, keys.ec)
	deadline := time.Now().Add(5 * time.Second)
	for p.jwksHits.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// The new key arrived through the periodic refresh: verifying with it
	// needs no fetch.
	before := p.jwksHits.Load()
	p.down.Store(true)
	if _, err := v.Verify(context.Background(), mint(t, keys.ec, "ec-1", p.claims(time.Now()))); err != nil {
		t.Fatalf("key published before a periodic refresh: %v", err)
	}

	_ = v.Close()
	_ = v.Close() // safe twice
	// A fetch cancelled by Close may still reach the server just after.
	time.Sleep(20 * time.Millisecond)
	after := p.jwksHits.Load()
	time.Sleep(50 * time.Millisecond)
	if got := p.jwksHits.Load(); got != after {
		t.Errorf("JWKS fetched %d times after Close", got-after)
	}
	if after < before {
		t.Fatal("impossible")
	}
}

func TestProviderDownKeepsKeys(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	p := newIDP(t, keys.rsa1, keys.ec)
	v := newVerifier(t, p.oidcConfig(), auth.VerifierOptions{RefreshInterval: 5 * time.Millisecond, CacheSize: -1})
	p.down.Store(true)
	start := p.jwksHits.Load()
	deadline := time.Now().Add(5 * time.Second)
	for p.jwksHits.Load() < start+2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // let refreshes fail
	}
	ctx := context.Background()
	for _, k := range []signingKey{keys.rsa1, keys.ec} {
		if _, err := v.Verify(ctx, mint(t, k, k.kid, p.claims(time.Now()))); err != nil {
			t.Errorf("%s with the provider down: %v", k.kid, err)
		}
	}
	var e *auth.Error
	if _, err := v.Verify(ctx, mint(t, keys.rogue, "rogue", p.claims(time.Now()))); !errors.As(err, &e) || e.Description != "unknown signing key" {
		t.Errorf("unknown kid with the provider down: %v", err)
	}
}

func TestCache(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	p := newIDP(t, keys.rsa1)
	clk := newClock()
	v := newVerifier(t, p.oidcConfig(), auth.VerifierOptions{Now: clk.now})
	ctx := context.Background()
	tok := mint(t, keys.rsa1, "rsa-1", p.claims(clk.now())) // exp in 5m, skew 30s

	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("first Verify: %v", err)
	}
	checks, fetches := auth.SignatureChecks(v), p.jwksHits.Load()
	for range 10 {
		id, err := v.Verify(ctx, tok)
		if err != nil || id.Subject != "alice" {
			t.Fatalf("cached Verify: %+v, %v", id, err)
		}
	}
	if got := auth.SignatureChecks(v) - checks; got != 0 {
		t.Errorf("cache hits ran %d signature checks, want 0", got)
	}
	if got := p.jwksHits.Load() - fetches; got != 0 {
		t.Errorf("cache hits fetched the JWKS %d times", got)
	}

	// Past exp but within the skew: the cache does not answer, a full
	// verification does (and accepts).
	clk.advance(5*time.Minute + 10*time.Second)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Errorf("within the skew after exp: %v", err)
	}
	if got := auth.SignatureChecks(v) - checks; got != 1 {
		t.Errorf("after exp: %d signature checks, want 1 (the cache must not answer past exp)", got)
	}
	// Past exp and the skew: refused, though it was cached.
	clk.advance(time.Minute)
	if _, err := v.Verify(ctx, tok); err == nil {
		t.Error("a cached token past exp was accepted")
	}
}

func TestCacheDisabled(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	p := newIDP(t, keys.rsa1)
	v := newVerifier(t, p.oidcConfig(), auth.VerifierOptions{CacheSize: -1})
	tok := mint(t, keys.rsa1, "rsa-1", p.claims(time.Now()))
	for range 3 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if got := auth.SignatureChecks(v); got != 3 {
		t.Errorf("signature checks = %d, want 3 with the cache off", got)
	}
}

func TestJWKSURLWithoutDiscovery(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	p := newIDP(t, keys.ec)
	// An issuer with no discovery document: only jwksUrl can work.
	cfg := p.oidcConfig()
	cfg.Issuer = "https://no-discovery.example.com"
	cfg.JWKSURL = p.srv.URL + "/jwks"
	v := newVerifier(t, cfg, auth.VerifierOptions{})
	if v.Issuer() != cfg.Issuer {
		t.Errorf("Issuer() = %q", v.Issuer())
	}
	claims := with(p.claims(time.Now()), map[string]any{"iss": cfg.Issuer})
	if _, err := v.Verify(context.Background(), mint(t, keys.ec, "ec-1", claims)); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestNewVerifierErrors(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	p := newIDP(t, keys.rsa1)
	downIDP := newIDP(t, keys.rsa1)
	downIDP.down.Store(true)
	emptyIDP := newIDP(t)

	cases := []struct {
		name string
		cfg  func(*config.OIDC)
		want string
	}{
		{"no issuer", func(c *config.OIDC) { c.Issuer = "" }, "issuer"},
		{"no audience", func(c *config.OIDC) { c.Audience = "" }, "audience"},
		{"only symmetric algorithms", func(c *config.OIDC) { c.AllowedAlgorithms = []string{"HS256", "none"} }, "allowedAlgorithms"},
		{"issuer unreachable", func(c *config.OIDC) { c.Issuer = "http://127.0.0.1:1" }, `"http://127.0.0.1:1"`},
		{"issuer mismatch", func(c *config.OIDC) { c.Issuer = p.issuer() + "/" }, p.issuer()},
		{"provider down", func(c *config.OIDC) { c.Issuer = downIDP.issuer() }, downIDP.issuer()},
		{"jwks unreachable", func(c *config.OIDC) { c.JWKSURL = "http://127.0.0.1:1/jwks" }, "http://127.0.0.1:1/jwks"},
		{"jwks empty", func(c *config.OIDC) { c.Issuer = emptyIDP.issuer() }, emptyIDP.srv.URL + "/jwks"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := p.oidcConfig()
			c.cfg(&cfg)
			v, err := auth.NewVerifier(context.Background(), cfg, auth.VerifierOptions{})
			if err == nil {
				_ = v.Close()
				t.Fatal("NewVerifier succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}
