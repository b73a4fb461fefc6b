package auth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

const testMetadataURL = "https://vmcp.test/.well-known/oauth-protected-resource/mcp"

// recorder is an audit.Recorder that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) all() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.events...)
}

func TestOIDCStage(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	p := newIDP(t, keys.rsa1)
	now := time.Now()
	good := with(p.claims(now), map[string]any{"scope": "mcp:tools mcp:read"})

	scoped := p.oidcConfig()
	scoped.RequiredScopes = []string{"mcp:tools", "mcp:read"}
	unscoped := p.oidcConfig()

	cases := []struct {
		name       string
		cfg        config.OIDC
		target     string
		authz      []string // Authorization header values
		wantStatus int      // 0: next is called
		wantChall  string
		wantReason string
		wantOut    audit.Outcome
	}{
		{
			name: "no token", cfg: scoped, target: "/mcp",
			wantStatus: 401, wantChall: `Bearer resource_metadata="` + testMetadataURL + `", scope="mcp:tools mcp:read"`,
			wantReason: "no bearer token", wantOut: audit.OutcomeUnauthenticated,
		},
		{
			name: "no token, no scopes required", cfg: unscoped, target: "/mcp",
			wantStatus: 401, wantChall: `Bearer resource_metadata="` + testMetadataURL + `"`,
			wantReason: "no bearer token", wantOut: audit.OutcomeUnauthenticated,
		},
		{
			name: "other scheme", cfg: unscoped, target: "/mcp", authz: []string{"Basic YWxpY2U6c2VjcmV0"},
			wantStatus: 401, wantChall: `Bearer resource_metadata="` + testMetadataURL + `"`,
			wantReason: "no bearer token", wantOut: audit.OutcomeUnauthenticated,
		},
		{
			name: "token in the query string", cfg: unscoped, target: "/mcp?access_token=" + mint(t, keys.rsa1, "rsa-1", good),
			wantStatus: 401, wantChall: `Bearer error="invalid_request", error_description="access token in the query string is not accepted", resource_metadata="` + testMetadataURL + `"`,
			wantReason: "access token in the query string is not accepted", wantOut: audit.OutcomeUnauthenticated,
		},
		{
			name: "query token alongside a good header", cfg: unscoped, target: "/mcp?access_token=x", authz: []string{"Bearer " + mint(t, keys.rsa1, "rsa-1", good)},
			wantStatus: 401, wantReason: "access token in the query string is not accepted", wantOut: audit.OutcomeUnauthenticated,
		},
		{
			name: "two Authorization headers", cfg: unscoped, target: "/mcp", authz: []string{"Bearer a", "Bearer b"},
			wantStatus: 401, wantReason: "more than one Authorization header", wantOut: audit.OutcomeUnauthenticated,
		},
		{
			name: "empty bearer", cfg: unscoped, target: "/mcp", authz: []string{"Bearer "},
			wantStatus: 401, wantReason: "malformed Authorization header", wantOut: audit.OutcomeUnauthenticated,
		},
		{
			name: "invalid token", cfg: unscoped, target: "/mcp", authz: []string{"Bearer not-a-jwt"},
			wantStatus: 401, wantChall: `Bearer error="invalid_token", error_description="malformed token", resource_metadata="` + testMetadataURL + `"`,
			wantReason: "malformed token", wantOut: audit.OutcomeUnauthenticated,
		},
		{
			name: "expired token", cfg: unscoped, target: "/mcp",
			authz:      []string{"Bearer " + mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"exp": now.Add(-time.Hour).Unix()}))},
			wantStatus: 401, wantChall: `Bearer error="invalid_token", error_description="token expired", resource_metadata="` + testMetadataURL + `"`,
			wantReason: "token expired", wantOut: audit.OutcomeUnauthenticated,
		},
		{
			name: "missing scope", cfg: scoped, target: "/mcp",
			authz:      []string{"Bearer " + mint(t, keys.rsa1, "rsa-1", with(good, map[string]any{"scope": "mcp:read"}))},
			wantStatus: 403, wantChall: `Bearer error="insufficient_scope", scope="mcp:tools mcp:read", resource_metadata="` + testMetadataURL + `"`,
			wantReason: "missing required scope", wantOut: audit.OutcomeForbidden,
		},
		{name: "good token", cfg: scoped, target: "/mcp", authz: []string{"Bearer " + mint(t, keys.rsa1, "rsa-1", good)}},
		{name: "lower-case scheme", cfg: scoped, target: "/mcp", authz: []string{"bearer " + mint(t, keys.rsa1, "rsa-1", good)}},
		{name: "other query parameters", cfg: unscoped, target: "/mcp?x=1", authz: []string{"BEARER " + mint(t, keys.rsa1, "rsa-1", good)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, c.cfg, auth.VerifierOptions{})
			rec := &recorder{}
			stage, err := auth.New(config.IncomingAuth{Type: config.AuthOIDC, OIDC: &c.cfg}, v, rec, testMetadataURL)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			var (
				called bool
				id     auth.Identity
			)
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called = true
				id, _ = auth.IdentityFrom(r.Context())
				w.WriteHeader(http.StatusNoContent)
			})
			r := httptest.NewRequest(http.MethodPost, c.target, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
			r.RemoteAddr = "192.0.2.7:51000"
			for _, a := range c.authz {
				r.Header.Add("Authorization", a)
			}
			w := httptest.NewRecorder()
			stage(next).ServeHTTP(w, r)

			if c.wantStatus == 0 {
				if !called || w.Code != http.StatusNoContent {
					t.Fatalf("next called = %v, status %d (%s); want next", called, w.Code, w.Header().Get("WWW-Authenticate"))
				}
				if id.Issuer != p.issuer() || id.Subject != "alice" || id.Anonymous() || id.Claims["scope"] != "mcp:tools mcp:read" {
					t.Errorf("identity on the context = %+v", id)
				}
				if ev := rec.all(); len(ev) != 0 {
					t.Errorf("a passed request was recorded: %+v", ev)
				}
				return
			}
			if called {
				t.Fatal("next called for a refused request")
			}
			if w.Code != c.wantStatus {
				t.Errorf("status = %d, want %d", w.Code, c.wantStatus)
			}
			chall := w.Header().Get("WWW-Authenticate")
			if c.wantChall != "" && chall != c.wantChall {
				t.Errorf("WWW-Authenticate = %s\n                     want %s", chall, c.wantChall)
			}
			if !strings.Contains(chall, `resource_metadata="`+testMetadataURL+`"`) {
				t.Errorf("WWW-Authenticate %s has no resource_metadata", chall)
			}
			var body struct {
				JSONRPC string          `json:"jsonrpc"`
				ID      json.RawMessage `json:"id"`
				Error   struct {
					Code    int            `json:"code"`
					Message string         `json:"message"`
					Data    map[string]any `json:"data"`
				} `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if body.JSONRPC != "2.0" || string(body.ID) != "null" || body.Error.Code != auth.JSONRPCCode {
				t.Errorf("body = %s", w.Body)
			}
			for _, a := range c.authz {
				if tok := strings.TrimPrefix(a, "Bearer "); len(tok) > 8 && strings.Contains(w.Body.String()+chall, tok) {
					t.Error("the response echoes the token")
				}
			}
			ev := rec.all()
			if len(ev) != 1 {
				t.Fatalf("audit events = %+v, want one", ev)
			}
			e := ev[0]
			if e.Outcome != c.wantOut || e.Reason != c.wantReason || e.ClientAddr != "192.0.2.7:51000" || e.Time.IsZero() {
				t.Errorf("audit event = %+v, want outcome %s reason %q", e, c.wantOut, c.wantReason)
			}
			if c.wantOut == audit.OutcomeForbidden && e.Subject != "alice" {
				t.Errorf("forbidden event without the subject: %+v", e)
			}
		})
	}
}

func TestNewOIDCNeeds(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	p := newIDP(t, keys.rsa1)
	v := newVerifier(t, p.oidcConfig(), auth.VerifierOptions{})
	cfg := p.oidcConfig()
	in := config.IncomingAuth{Type: config.AuthOIDC, OIDC: &cfg}

	if stage, err := auth.New(in, nil, nil, testMetadataURL); err == nil || stage != nil {
		t.Error("New(oidc) without a verifier succeeded")
	}
	for _, u := range []string{"", "/.well-known/oauth-protected-resource", "::"} {
		if stage, err := auth.New(in, v, nil, u); err == nil || stage != nil {
			t.Errorf("New(oidc) with metadata URL %q succeeded", u)
		}
	}
	// A nil recorder is audit.Discard.
	stage, err := auth.New(in, v, nil, testMetadataURL)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	w := httptest.NewRecorder()
	stage(http.NotFoundHandler()).ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/mcp", nil))
	if w.Code != http.StatusUnauthorized {
		t.Errorf("status = %d", w.Code)
	}
}
