package auth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

func TestAnonymousPutsTheAnonymousIdentity(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{"", config.AuthAnonymous} {
		t.Run("type="+typ, func(t *testing.T) {
			t.Parallel()
			stage, err := auth.New(config.IncomingAuth{Type: typ}, nil, nil, "")
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			var (
				called bool
				id     auth.Identity
				ok     bool
			)
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called = true
				id, ok = auth.IdentityFrom(r.Context())
				w.WriteHeader(http.StatusNoContent)
			})
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			r.Header.Set("Authorization", "Bearer whatever")
			stage(next).ServeHTTP(w, r)

			if !called {
				t.Fatalf("next not called; status %d", w.Code)
			}
			if w.Code != http.StatusNoContent {
				t.Errorf("status = %d, want next's 204", w.Code)
			}
			if !ok {
				t.Fatal("no identity on the context")
			}
			want := auth.Identity{Issuer: auth.AnonymousIssuer, Subject: auth.AnonymousSubject}
			if id.Issuer != want.Issuer || id.Subject != want.Subject || id.Claims != nil {
				t.Errorf("identity = %+v, want %+v", id, want)
			}
			if !id.Anonymous() {
				t.Error("Anonymous() = false for the anonymous identity")
			}
		})
	}
}

func TestUnsupportedTypesAreRefused(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{"basic", "OIDC"} {
		stage, err := auth.New(config.IncomingAuth{Type: typ, OIDC: &config.OIDC{Issuer: "https://idp.example.com"}}, nil, nil, "")
		if err == nil {
			t.Errorf("type %q: New succeeded; a build that cannot verify tokens must not let requests through", typ)
		}
		if stage != nil {
			t.Errorf("type %q: New returned a stage along with its error", typ)
		}
		if err != nil && !strings.Contains(err.Error(), typ) {
			t.Errorf("type %q: error %q does not name the type", typ, err)
		}
	}
}

func TestIdentityFrom(t *testing.T) {
	t.Parallel()
	id, ok := auth.IdentityFrom(context.Background())
	if ok || id.Issuer != "" || id.Subject != "" || id.Claims != nil {
		t.Errorf("IdentityFrom(bare) = %+v, %v; want zero, false", id, ok)
	}

	want := auth.Identity{Issuer: "https://idp.example.com", Subject: "alice", Claims: map[string]any{"scope": "mcp"}}
	got, ok := auth.IdentityFrom(auth.WithIdentity(context.Background(), want))
	if !ok || got.Issuer != want.Issuer || got.Subject != want.Subject || got.Claims["scope"] != "mcp" {
		t.Errorf("IdentityFrom(WithIdentity(alice)) = %+v, %v", got, ok)
	}
	if got.Anonymous() {
		t.Error("Anonymous() = true for a token identity")
	}
}
