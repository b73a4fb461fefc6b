package auth

import (
	"bytes"
	"crypto"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// Fuzz targets for the text auth reads from clients (the Authorization
// header) and from the identity provider (the JWKS). Plain go test runs
// the seeds; docs/architecture.md ("Fuzzing") says how to run them longer.

// FuzzBearerToken: a token is returned only from one "Bearer" header,
// non-empty, without blanks, as the end of that header; it reads back the
// same when sent again; a header of another scheme is no token, and a
// token in the query string is always refused.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []struct{ header, query string }{
		{"Bearer abc.def.ghi", ""},
		{"bearer   abc", ""},
		{"BEARER abc", "x=1"},
		{"Bearer", ""},
		{"Bearer ", ""},
		{"Bearer a b", ""},
		{"Bearer a\tb", ""},
		{"  Bearer abc  ", ""},
		{"Basic dXNlcjpwYXNz", ""},
		{"Bearer abc", "access_token=abc"},
		{"", "access_token"},
		{"Bearerabc", ""},
		{"Bearer\tabc", ""},
		{"Bearer été", ""},
	} {
		f.Add(s.header, s.query, false)
	}
	f.Add("Bearer abc", "", true)
	f.Fuzz(func(t *testing.T, header, query string, twice bool) {
		r := &http.Request{URL: &url.URL{RawQuery: query}, Header: http.Header{}}
		if header != "" {
			r.Header.Add("Authorization", header)
			if twice {
				r.Header.Add("Authorization", header)
			}
		}
		token, e := bearerToken(r)
		if e != nil {
			if token != "" {
				t.Fatalf("error %v with token %q", e, token)
			}
			if e.Status != http.StatusUnauthorized || e.Code != codeInvalidRequest {
				t.Fatalf("error %+v, want 401 invalid_request", e)
			}
			return
		}
		if r.URL.Query().Has("access_token") {
			t.Fatalf("token %q accepted with access_token in the query %q", token, query)
		}
		if header != "" && twice {
			t.Fatalf("two Authorization headers accepted (token %q)", token)
		}
		scheme, _, _ := strings.Cut(strings.TrimSpace(header), " ")
		if token == "" {
			if strings.EqualFold(scheme, "Bearer") {
				t.Fatalf("header %q of scheme Bearer gave no token and no error", header)
			}
			return
		}
		if !strings.EqualFold(scheme, "Bearer") {
			t.Fatalf("token %q from a header of scheme %q", token, scheme)
		}
		if strings.ContainsAny(token, " \t") {
			t.Fatalf("token %q has blanks", token)
		}
		if !strings.HasSuffix(strings.TrimSpace(header), token) {
			t.Fatalf("token %q is not the end of header %q", token, header)
		}
		again := &http.Request{URL: &url.URL{}, Header: http.Header{"Authorization": {"Bearer " + token}}}
		if got, e := bearerToken(again); e != nil || got != token {
			t.Fatalf("token %q sent again reads %q, %v", token, got, e)
		}
	})
}

// FuzzJWKSParse: a key set parses to at least one valid public signing
// key, never a private, symmetric or encryption key, and the keys it keeps
// parse again to the same keys.
func FuzzJWKSParse(f *testing.F) {
	for _, s := range []string{
		`{"keys":[{"use":"sig","kty":"EC","kid":"ec1","crv":"P-256","alg":"ES256","x":"lUJtpnc4RkSGEN43OZevDLEsPgmRcDfxuDBhIrHm4bw","y":"ILtuVi26AUfNbhlMWct9q0Rsapih1nNayhssJRGAnMI"},{"kty":"OKP","kid":"ed1","crv":"Ed25519","alg":"EdDSA","x":"nM_wIrox-DF44JR2juL-7gkIYuLYrDC9TfZPEJGbwEk"}]}`,
		`{"keys":[{"use":"sig","kty":"OKP","kid":"edpriv","crv":"Ed25519","alg":"EdDSA","x":"nM_wIrox-DF44JR2juL-7gkIYuLYrDC9TfZPEJGbwEk","d":"4u2eC1EelbBGt_Fxw1boyXbJqIG1UvnbjVIsccWq7d8"},{"use":"enc","kty":"RSA","kid":"rsa-enc","alg":"RSA-OAEP","n":"3QtIjJC_B990iF0qhizN35iLKixXzQkj0ofKb4DPf19rVop_Y11Rxl3YhlEAwmDeYy-AMvHMjNZPsVX9bjN89T3iaCD19nHzp4PFT12cRIWgR7y2ZcXXmrbv_XdXSsH2BcKyA5XsGvvYlnGBaeJ7OnLuAu9w-QW7hwT2wOi7kec","e":"AQAB"},{"kty":"oct","kid":"oct","alg":"HS256","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}`,
		`{"keys":[{"use":"sig","kty":"RSA","kid":"rsa1","alg":"RS256","n":"3QtIjJC_B990iF0qhizN35iLKixXzQkj0ofKb4DPf19rVop_Y11Rxl3YhlEAwmDeYy-AMvHMjNZPsVX9bjN89T3iaCD19nHzp4PFT12cRIWgR7y2ZcXXmrbv_XdXSsH2BcKyA5XsGvvYlnGBaeJ7OnLuAu9w-QW7hwT2wOi7kec","e":"AQAB"}]}`,
		`{"keys":[]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`,
		`{"keys":[{"kty":"unknown"}]}`,
		`{"keys":null}`,
		`{"keys":{}}`,
		`[]`,
		`{`,
		``,
	} {
		f.Add([]byte(s))
	}
	ks := &keySet{url: "https://idp.example/jwks", logger: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, err := ks.parse(body)
		if err != nil {
			if keys != nil {
				t.Fatalf("error %v with %d keys", err, len(keys))
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("no error and no key")
		}
		for i, k := range keys {
			if !k.IsPublic() || !k.Valid() {
				t.Fatalf("key %d (kid %q) is not a valid public key", i, k.KeyID)
			}
			if k.Use != "" && k.Use != "sig" {
				t.Fatalf("key %d (kid %q) has use %q", i, k.KeyID, k.Use)
			}
		}
		again, err := json.Marshal(struct {
			Keys []jose.JSONWebKey `json:"keys"`
		}{keys})
		if err != nil {
			t.Fatalf("marshal the kept keys: %v", err)
		}
		back, err := ks.parse(again)
		if err != nil || len(back) != len(keys) {
			t.Fatalf("the kept keys parse again to %d keys, %v; want %d", len(back), err, len(keys))
		}
		for i := range keys {
			want, err1 := keys[i].Thumbprint(crypto.SHA256)
			got, err2 := back[i].Thumbprint(crypto.SHA256)
			if err1 != nil || err2 != nil || !bytes.Equal(got, want) ||
				back[i].KeyID != keys[i].KeyID || back[i].Algorithm != keys[i].Algorithm {
				t.Fatalf("key %d (kid %q) changed on a round trip (%v, %v)", i, keys[i].KeyID, err1, err2)
			}
		}
	})
}
