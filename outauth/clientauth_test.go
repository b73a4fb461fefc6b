package outauth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/outauth"
)

// TestClientSecretBasic checks RFC 6749 2.3.1: the client id and secret
// are form-encoded, then joined by ':' and Base64-encoded, so that a ':'
// or '%' in either survives.
func TestClientSecretBasic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, id, secret, method string
	}{
		{name: "plain, default method", id: "vmcp", secret: clientSecret},
		{name: "plain, explicit method", id: "vmcp", secret: clientSecret, method: config.ClientSecretBasic},
		{name: "colon and percent", id: "urn:vmcp:client%41", secret: "s3:cr%2Ft+/ =&"},
		{name: "non-ASCII", id: "vmcp-é", secret: "sé:crèt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newTokenServer(t, nil)
			a := ccAuth(srv.URL)
			a.ClientID, a.ClientAuthMethod = tc.id, tc.method
			b := mustNew(t, a, outauth.Options{Getenv: env(map[string]string{secretEnv: tc.secret})})
			header(t, b.Calls, user("alice"))
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != "POST" || r.ContentType != "application/x-www-form-urlencoded" {
				t.Errorf("request %s %q, want a form POST", r.Method, r.ContentType)
			}
			basic, ok := strings.CutPrefix(r.Authorization, "Basic ")
			if !ok {
				t.Fatalf("Authorization %q is not Basic", r.Authorization)
			}
			raw, err := base64.StdEncoding.DecodeString(basic)
			if err != nil {
				t.Fatalf("Basic credentials: %v", err)
			}
			encID, encSecret, ok := strings.Cut(string(raw), ":")
			if !ok {
				t.Fatalf("Basic credentials %q have no ':'", raw)
			}
			id, err1 := url.QueryUnescape(encID)
			secret, err2 := url.QueryUnescape(encSecret)
			if err1 != nil || err2 != nil || id != tc.id || secret != tc.secret {
				t.Errorf("Basic credentials %q decode to %q, %q (%v, %v), want %q, %q", raw, id, secret, err1, err2, tc.id, tc.secret)
			}
			for _, k := range []string{"client_id", "client_secret", "client_assertion", "client_assertion_type"} {
				if r.Form.Has(k) {
					t.Errorf("form has %s under client_secret_basic", k)
				}
			}
		})
	}
}

// TestClientSecretPost checks that client_secret_post sends the client id
// and secret as form fields and no Authorization header.
func TestClientSecretPost(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{config.AuthClientCredentials, config.AuthTokenExchange} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			srv := newTokenServer(t, nil)
			a := exchangeAuth(srv.URL)
			a.Type, a.ClientID, a.ClientAuthMethod = typ, "urn:vmcp:client%41", config.ClientSecretPost
			const secret = "s3:cr%2Ft+/ =&"
			b := mustNew(t, a, outauth.Options{Getenv: env(map[string]string{secretEnv: secret})})
			header(t, b.Calls, user("alice"))
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Authorization != "" {
				t.Errorf("Authorization %q under client_secret_post", r.Authorization)
			}
			if got := r.Form["client_id"]; len(got) != 1 || got[0] != a.ClientID {
				t.Errorf("client_id %q, want %q", got, a.ClientID)
			}
			if got := r.Form["client_secret"]; len(got) != 1 || got[0] != secret {
				t.Errorf("client_secret %q, want %q", got, secret)
			}
			if r.Form.Has("client_assertion") {
				t.Error("client_assertion under client_secret_post")
			}
		})
	}
}

// keyCase is a private key in one PEM encoding, and what verifies its
// signatures.
type keyCase struct {
	name string
	pem  []byte
	pub  crypto.PublicKey
	alg  jose.SignatureAlgorithm
}

// The keys are generated once per test binary: RSA generation is slow.
var testKeys = sync.OnceValue(func() []keyCase {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		panic(err)
	}
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			panic(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	sec1, err := x509.MarshalECPrivateKey(p256)
	if err != nil {
		panic(err)
	}
	return []keyCase{
		{name: "RSA PKCS#8", pem: pkcs8(rsaKey), pub: &rsaKey.PublicKey, alg: jose.RS256},
		{name: "RSA PKCS#1", pem: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
			pub: &rsaKey.PublicKey, alg: jose.RS256},
		{name: "P-256 PKCS#8", pem: pkcs8(p256), pub: &p256.PublicKey, alg: jose.ES256},
		{name: "P-256 SEC1", pem: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), pub: &p256.PublicKey, alg: jose.ES256},
		{name: "P-384 PKCS#8", pem: pkcs8(p384), pub: &p384.PublicKey, alg: jose.ES384},
		{name: "Ed25519 PKCS#8", pem: pkcs8(edKey), pub: edPub, alg: jose.EdDSA},
	}
})

// TestPrivateKeyJWT checks the RFC 7523 client assertion: signed by the
// configured key with the algorithm its kind implies, naming the client
// as issuer and subject and the token endpoint as audience, with a jti and
// a short expiry; fresh for each request.
func TestPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	for _, kc := range testKeys() {
		for _, kid := range []string{"", "key-2026"} {
			t.Run(kc.name+"/kid="+kid, func(t *testing.T) {
				t.Parallel()
				srv := newTokenServer(t, func(n int, _ tokenReq) answer { return tokenAnswer(issued(n), 3600) })
				a := exchangeAuth(srv.URL)
				a.ClientSecretEnv, a.PrivateKeyFile, a.PrivateKeyID = "", "/etc/vmcp/key.pem", kid
				a.ClientID = "vmcp-client"
				readFile := func(name string) ([]byte, error) {
					if name != a.PrivateKeyFile {
						return nil, errors.New("no such file")
					}
					return kc.pem, nil
				}
				b := mustNew(t, a, outauth.Options{ReadFile: readFile, Getenv: env(nil)})
				// Two callers: two requests, two assertions.
				start := time.Now()
				header(t, b.Calls, user("alice"))
				header(t, b.Calls, user("bob"))
				reqs := srv.requests()
				if len(reqs) != 2 {
					t.Fatalf("%d requests, want 2", len(reqs))
				}
				jtis := map[string]bool{}
				for _, r := range reqs {
					if r.Authorization != "" {
						t.Errorf("Authorization %q under private_key_jwt", r.Authorization)
					}
					if r.Form.Has("client_secret") {
						t.Error("client_secret under private_key_jwt")
					}
					if got := r.Form.Get("client_id"); got != a.ClientID {
						t.Errorf("client_id %q, want %q", got, a.ClientID)
					}
					if got := r.Form.Get("client_assertion_type"); got != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
						t.Errorf("client_assertion_type %q", got)
					}
					tok, err := jwt.ParseSigned(r.Form.Get("client_assertion"), []jose.SignatureAlgorithm{kc.alg})
					if err != nil {
						t.Fatalf("client assertion: %v", err)
					}
					if h := tok.Headers[0]; h.KeyID != kid || h.Algorithm != string(kc.alg) {
						t.Errorf("assertion header kid %q alg %q, want %q %q", h.KeyID, h.Algorithm, kid, kc.alg)
					}
					var c jwt.Claims
					if err := tok.Claims(kc.pub, &c); err != nil {
						t.Fatalf("assertion signature: %v", err)
					}
					if err := c.ValidateWithLeeway(jwt.Expected{Issuer: a.ClientID, Subject: a.ClientID,
						AnyAudience: jwt.Audience{srv.URL}, Time: time.Now()}, 0); err != nil {
						t.Errorf("assertion claims %+v: %v", c, err)
					}
					if len(c.Audience) != 1 {
						t.Errorf("assertion audience %q, want only the token endpoint", c.Audience)
					}
					if c.ID == "" || jtis[c.ID] {
						t.Errorf("assertion jti %q: empty or reused", c.ID)
					}
					jtis[c.ID] = true
					if c.Expiry == nil {
						t.Fatal("assertion has no exp")
					}
					if exp := c.Expiry.Time(); exp.Before(start) || exp.After(time.Now().Add(70*time.Second)) {
						t.Errorf("assertion exp %v, want within about a minute of now (%v)", exp, start)
					}
				}
			})
		}
	}
}

// TestPrivateKeyJWTWrongKey checks that the signature check above can
// fail: an assertion does not verify with another key.
func TestPrivateKeyJWTWrongKey(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	srv := newTokenServer(t, nil)
	a := ccAuth(srv.URL)
	a.ClientSecretEnv, a.PrivateKeyFile = "", "/k.pem"
	b := mustNew(t, a, outauth.Options{ReadFile: func(string) ([]byte, error) { return keys[2].pem, nil }})
	header(t, b.Calls, user("alice"))
	tok, err := jwt.ParseSigned(srv.requests()[0].Form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var c jwt.Claims
	if err := tok.Claims(&other.PublicKey, &c); err == nil {
		t.Error("the assertion verified with a key that did not sign it")
	}
}
