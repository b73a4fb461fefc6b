package auth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

// benchToken is a realistic access token: the registered claims plus a
// scope, client id and jti.
func benchToken(b *testing.B, p *idp, k signingKey) string {
	c := with(p.claims(time.Now()), map[string]any{
		"exp":       time.Now().Add(time.Hour).Unix(),
		"scope":     "openid mcp:tools mcp:read",
		"client_id": "vmcp-bench-client",
		"jti":       "0b1d4a5e-8f21-4c8e-9f2a-6c3f1e7d2b90",
	})
	return mint(b, k, k.kid, c)
}

func benchVerify(b *testing.B, k signingKey, cacheSize int) {
	p := newIDP(b, k)
	v := newVerifier(b, p.oidcConfig(), auth.VerifierOptions{CacheSize: cacheSize})
	tok := benchToken(b, p, k)
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCacheHit is the common path: a token seen before.
func BenchmarkVerifyCacheHit(b *testing.B) { benchVerify(b, testKeys().rsa1, 0) }

// BenchmarkVerifyColdRS256 is a full verification (the cache is off).
func BenchmarkVerifyColdRS256(b *testing.B) { benchVerify(b, testKeys().rsa1, -1) }

// BenchmarkVerifyColdES256 is a full verification (the cache is off).
func BenchmarkVerifyColdES256(b *testing.B) { benchVerify(b, testKeys().ec, -1) }

// benchRaw is the floor a cold verification is measured against: go-jose
// parsing the same token and checking its signature with the right key,
// nothing else.
func benchRaw(b *testing.B, k signingKey) {
	p := newIDP(b, k)
	tok := benchToken(b, p, k)
	algs := []jose.SignatureAlgorithm{k.alg}
	pub := k.priv.Public()
	b.ReportAllocs()
	for b.Loop() {
		jws, err := jose.ParseSignedCompact(tok, algs)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := jws.Verify(pub); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawSignatureRS256 is go-jose's parse and RS256 check alone.
func BenchmarkRawSignatureRS256(b *testing.B) { benchRaw(b, testKeys().rsa1) }

// BenchmarkRawSignatureES256 is go-jose's parse and ES256 check alone.
func BenchmarkRawSignatureES256(b *testing.B) { benchRaw(b, testKeys().ec) }

// BenchmarkStageCacheHit is the whole auth stage for a cached token:
// header parsing, verification, the identity on the context.
func BenchmarkStageCacheHit(b *testing.B) {
	k := testKeys().rsa1
	p := newIDP(b, k)
	cfg := p.oidcConfig()
	v := newVerifier(b, cfg, auth.VerifierOptions{})
	stage, err := auth.New(config.IncomingAuth{Type: config.AuthOIDC, OIDC: &cfg}, v, nil, testMetadataURL)
	if err != nil {
		b.Fatal(err)
	}
	h := stage(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+benchToken(b, p, k))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// BenchmarkVerifyCacheHitParallel is the cache hit under contention.
func BenchmarkVerifyCacheHitParallel(b *testing.B) {
	k := testKeys().rsa1
	p := newIDP(b, k)
	v := newVerifier(b, p.oidcConfig(), auth.VerifierOptions{})
	tok := benchToken(b, p, k)
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
