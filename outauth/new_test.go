package outauth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/outauth"
)

// TestNewBackend checks which credentials each type gives a backend: the
// credential of its calls, of its shared connection, and whether it is
// per user.
func TestNewBackend(t *testing.T) {
	t.Parallel()
	const (
		none     = ""
		hdr      = "header"
		cc       = "client_credentials"
		exchange = "token_exchange"
		pass     = "passthrough"
	)
	tests := []struct {
		name          string
		a             func(url string) config.BackendAuth
		calls, disc   string // which credential: none, hdr, cc, exchange, pass
		perUser       bool
		wantRequested map[string]int // grants requested by one Calls and one Discovery header
	}{
		{name: "zero value", a: func(string) config.BackendAuth { return config.BackendAuth{} }, calls: none, disc: none},
		{name: "header_injection", a: func(string) config.BackendAuth {
			return config.BackendAuth{Type: config.AuthHeaderInjection, HeaderName: "X-Api-Key", HeaderValueEnv: headerEnv}
		}, calls: hdr, disc: hdr},
		{name: "client_credentials", a: ccAuth, calls: cc, disc: cc,
			// Calls and Discovery share vmcp's one token.
			wantRequested: map[string]int{"client_credentials": 1}},
		{name: "token_exchange, discovery unset", a: exchangeAuth, calls: exchange, disc: none, perUser: true,
			wantRequested: map[string]int{"urn:ietf:params:oauth:grant-type:token-exchange": 1}},
		{name: "token_exchange, discovery none", a: func(u string) config.BackendAuth {
			a := exchangeAuth(u)
			a.Discovery = config.AuthNone
			return a
		}, calls: exchange, disc: none, perUser: true,
			wantRequested: map[string]int{"urn:ietf:params:oauth:grant-type:token-exchange": 1}},
		{name: "token_exchange, discovery client_credentials", a: func(u string) config.BackendAuth {
			a := exchangeAuth(u)
			a.Discovery = config.AuthClientCredentials
			return a
		}, calls: exchange, disc: cc, perUser: true,
			wantRequested: map[string]int{"urn:ietf:params:oauth:grant-type:token-exchange": 1, "client_credentials": 1}},
		{name: "token_exchange, discovery header_injection", a: func(u string) config.BackendAuth {
			a := exchangeAuth(u)
			a.Discovery = config.AuthHeaderInjection
			a.HeaderName, a.HeaderValueEnv = "X-Api-Key", headerEnv
			return a
		}, calls: exchange, disc: hdr, perUser: true,
			wantRequested: map[string]int{"urn:ietf:params:oauth:grant-type:token-exchange": 1}},
		{name: "passthrough, discovery unset", a: func(string) config.BackendAuth {
			return config.BackendAuth{Type: config.AuthPassthrough}
		}, calls: pass, disc: none, perUser: true},
		{name: "passthrough, discovery none", a: func(string) config.BackendAuth {
			return config.BackendAuth{Type: config.AuthPassthrough, Discovery: config.AuthNone}
		}, calls: pass, disc: none, perUser: true},
		{name: "passthrough, discovery client_credentials", a: func(u string) config.BackendAuth {
			a := ccAuth(u)
			a.Type, a.Discovery = config.AuthPassthrough, config.AuthClientCredentials
			return a
		}, calls: pass, disc: cc, perUser: true, wantRequested: map[string]int{"client_credentials": 1}},
		{name: "passthrough, discovery header_injection", a: func(string) config.BackendAuth {
			return config.BackendAuth{Type: config.AuthPassthrough, Discovery: config.AuthHeaderInjection,
				HeaderName: "X-Api-Key", HeaderValueEnv: headerEnv}
		}, calls: pass, disc: hdr, perUser: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newTokenServer(t, nil)
			b := mustNew(t, tc.a(srv.URL), outauth.Options{})
			if b.PerUser != tc.perUser {
				t.Errorf("PerUser = %v, want %v", b.PerUser, tc.perUser)
			}
			check := func(which string, c outauth.Credential, want string) {
				t.Helper()
				if want == none {
					if c != nil {
						t.Errorf("%s = %T, want nil", which, c)
					}
					return
				}
				if c == nil {
					t.Fatalf("%s = nil, want %s", which, want)
				}
				before := srv.requests()
				name, value := header(t, c, user("alice"))
				after := srv.requests()
				switch want {
				case hdr:
					if name != "X-Api-Key" || value != headerValue {
						t.Errorf("%s header = %q: %q, want X-Api-Key: %q", which, name, value, headerValue)
					}
					if len(after) != len(before) {
						t.Errorf("%s: header injection made a token request", which)
					}
				case pass:
					if name != "Authorization" || value != "Bearer "+callerToken("alice") {
						t.Errorf("%s header = %q: %q, want the caller's token", which, name, value)
					}
				case cc, exchange:
					grant := map[string]string{cc: "client_credentials", exchange: "urn:ietf:params:oauth:grant-type:token-exchange"}[want]
					switch {
					case len(after) == len(before)+1:
						if got := after[len(after)-1].Form.Get("grant_type"); got != grant {
							t.Errorf("%s: grant_type %q, want %q", which, got, grant)
						}
						if want := "Bearer " + issued(len(after)); name != "Authorization" || value != want {
							t.Errorf("%s header = %q: %q, want Authorization: %q", which, name, value, want)
						}
					case len(after) == len(before) && want == cc:
						// vmcp's own token, already obtained for the other credential.
						if name != "Authorization" || value != "Bearer "+issued(1) {
							t.Errorf("%s header = %q: %q, want the cached token", which, name, value)
						}
					default:
						t.Errorf("%s made %d token requests", which, len(after)-len(before))
					}
				}
			}
			check("Calls", b.Calls, tc.calls)
			check("Discovery", b.Discovery, tc.disc)
			got := srv.grants()
			if len(got) != len(tc.wantRequested) {
				t.Errorf("grants requested %v, want %v", got, tc.wantRequested)
			}
			for g, n := range tc.wantRequested {
				if got[g] != n {
					t.Errorf("grants requested %v, want %v", got, tc.wantRequested)
				}
			}
		})
	}
}

// TestNewErrors checks that a missing or unusable secret, header or key is
// an error naming the configuration key, and that New makes no request.
func TestNewErrors(t *testing.T) {
	t.Parallel()
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p521DER, err := x509.MarshalPKCS8PrivateKey(p521)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"/keys/garbage.pem": []byte("this is not a key\n"),
		"/keys/badder.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("garbage DER")}),
		"/keys/p521.pem":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p521DER}),
	}
	readFile := func(name string) ([]byte, error) {
		if b, ok := files[name]; ok {
			return b, nil
		}
		return nil, errors.New("open " + name + ": permission denied")
	}
	withKey := func(a config.BackendAuth, file string) config.BackendAuth {
		a.ClientSecretEnv, a.PrivateKeyFile = "", file
		return a
	}
	tests := []struct {
		name string
		a    func(url string) config.BackendAuth
		env  map[string]string
		want []string // substrings of the error
	}{
		{name: "client_credentials without its secret", a: ccAuth,
			want: []string{"clientSecretEnv: environment variable " + secretEnv + " is not set"}},
		{name: "client_credentials with an empty secret", a: ccAuth, env: map[string]string{secretEnv: ""},
			want: []string{"clientSecretEnv: environment variable " + secretEnv + " is not set"}},
		{name: "token_exchange without its secret", a: exchangeAuth,
			want: []string{"clientSecretEnv: environment variable " + secretEnv + " is not set"}},
		{name: "passthrough with discovery client_credentials without its secret", a: func(u string) config.BackendAuth {
			a := ccAuth(u)
			a.Type, a.Discovery = config.AuthPassthrough, config.AuthClientCredentials
			return a
		}, want: []string{"clientSecretEnv: environment variable " + secretEnv + " is not set"}},
		{name: "header_injection without its value", a: func(string) config.BackendAuth {
			return config.BackendAuth{Type: config.AuthHeaderInjection, HeaderName: "X-Api-Key", HeaderValueEnv: headerEnv}
		}, want: []string{"headerValueEnv: environment variable " + headerEnv + " is not set"}},
		{name: "header_injection with an empty value", a: func(string) config.BackendAuth {
			return config.BackendAuth{Type: config.AuthHeaderInjection, HeaderName: "X-Api-Key", HeaderValueEnv: headerEnv}
		}, env: map[string]string{headerEnv: ""}, want: []string{"headerValueEnv: environment variable " + headerEnv + " is not set"}},
		{name: "header_injection without a header name", a: func(string) config.BackendAuth {
			return config.BackendAuth{Type: config.AuthHeaderInjection, HeaderValueEnv: headerEnv}
		}, env: map[string]string{headerEnv: headerValue}, want: []string{"headerName"}},
		{name: "token_exchange with discovery header_injection without its value", a: func(u string) config.BackendAuth {
			a := exchangeAuth(u)
			a.Discovery, a.HeaderName, a.HeaderValueEnv = config.AuthHeaderInjection, "X-Api-Key", headerEnv
			return a
		}, env: map[string]string{secretEnv: clientSecret},
			want: []string{"headerValueEnv: environment variable " + headerEnv + " is not set"}},
		{name: "unreadable privateKeyFile", a: func(u string) config.BackendAuth { return withKey(ccAuth(u), "/keys/missing.pem") },
			want: []string{"privateKeyFile", "/keys/missing.pem", "permission denied"}},
		{name: "privateKeyFile not PEM", a: func(u string) config.BackendAuth { return withKey(exchangeAuth(u), "/keys/garbage.pem") },
			want: []string{"privateKeyFile", "/keys/garbage.pem"}},
		{name: "privateKeyFile PEM of garbage", a: func(u string) config.BackendAuth { return withKey(ccAuth(u), "/keys/badder.pem") },
			want: []string{"privateKeyFile", "/keys/badder.pem"}},
		{name: "privateKeyFile on an unsupported curve", a: func(u string) config.BackendAuth { return withKey(ccAuth(u), "/keys/p521.pem") },
			want: []string{"privateKeyFile", "/keys/p521.pem"}},
		{name: "unsupported type", a: func(string) config.BackendAuth { return config.BackendAuth{Type: "kerberos"} },
			want: []string{"type", "kerberos"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newTokenServer(t, nil)
			b, err := outauth.New(backendName, tc.a(srv.URL), outauth.Options{Getenv: env(tc.env), ReadFile: readFile})
			if err == nil {
				t.Fatalf("New = %+v, want an error", b)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			noSecrets(t, "error", err.Error(), clientSecret, headerValue)
			if n := srv.count(); n != 0 {
				t.Errorf("New made %d token requests", n)
			}
		})
	}
}
