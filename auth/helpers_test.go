package auth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

// testAudience is the audience every test verifier expects.
const testAudience = "https://vmcp.test/mcp"

// signingKey is a provider key: its private half signs test tokens, its
// public half is served in the JWKS.
type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func (k signingKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// The keys are generated once per test binary: RSA generation is slow.
var testKeys = sync.OnceValue(func() (keys struct{ rsa1, rsa2, ec, rogue signingKey }) {
	gen := func(bits int) *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		return k
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	keys.rsa1 = signingKey{kid: "rsa-1", alg: jose.RS256, priv: gen(2048)}
	keys.rsa2 = signingKey{kid: "rsa-2", alg: jose.RS256, priv: gen(2048)}
	keys.ec = signingKey{kid: "ec-1", alg: jose.ES256, priv: ec}
	keys.rogue = signingKey{kid: "rogue", alg: jose.RS256, priv: gen(2048)}
	return keys
})

// mint signs claims with k, naming kid in the header ("" for none).
func mint(t testing.TB, k signingKey, kid string, claims map[string]any) string {
	t.Helper()
	key := jose.JSONWebKey{Key: k.priv, KeyID: kid}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatalf("signer: %v", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("claims: %v", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return tok
}

// idp is an OIDC provider in miniature: a discovery document and a JWKS
// whose keys a test can change, and which it can take down.
type idp struct {
	srv      *httptest.Server
	mu       sync.Mutex
	keys     []jose.JSONWebKey
	down     atomic.Bool
	jwksHits atomic.Int64
}

func newIDP(t testing.TB, keys ...signingKey) *idp {
	t.Helper()
	p := &idp{}
	p.setKeys(keys...)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                 p.srv.URL,
			"jwks_uri":               p.srv.URL + "/jwks",
			"authorization_endpoint": p.srv.URL + "/auth",
			"token_endpoint":         p.srv.URL + "/token",
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		p.jwksHits.Add(1)
		if p.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		p.mu.Lock()
		set := jose.JSONWebKeySet{Keys: p.keys}
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) setKeys(keys ...signingKey) {
	jwks := make([]jose.JSONWebKey, len(keys))
	for i, k := range keys {
		jwks[i] = k.jwk()
	}
	p.mu.Lock()
	p.keys = jwks
	p.mu.Unlock()
}

func (p *idp) issuer() string { return p.srv.URL }

// claims returns valid claims for p at now, for the test audience.
func (p *idp) claims(now time.Time) map[string]any {
	return map[string]any{
		"iss": p.issuer(),
		"aud": testAudience,
		"sub": "alice",
		"iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(),
	}
}

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.set(time.Now().Truncate(time.Second))
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// oidcConfig is the config of a verifier for p, with the default skew.
func (p *idp) oidcConfig() config.OIDC {
	return config.OIDC{
		Issuer:    p.issuer(),
		Audience:  testAudience,
		Resource:  testAudience,
		ClockSkew: config.Duration(30 * time.Second),
	}
}

// newVerifier builds a verifier for cfg, closed when the test ends.
func newVerifier(t testing.TB, cfg config.OIDC, opts auth.VerifierOptions) *auth.Verifier {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	v, err := auth.NewVerifier(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}
