package auth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

func TestMetadataURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ resource, want string }{
		{"https://h/mcp", "https://h/.well-known/oauth-protected-resource/mcp"},
		{"https://h.example.com:8443/mcp", "https://h.example.com:8443/.well-known/oauth-protected-resource/mcp"},
		{"http://127.0.0.1:4483/a/b", "http://127.0.0.1:4483/.well-known/oauth-protected-resource/a/b"},
		{"https://h", "https://h/.well-known/oauth-protected-resource"},
		{"https://h/", "https://h/.well-known/oauth-protected-resource"},
		{"https://h/mcp/", "https://h/.well-known/oauth-protected-resource/mcp/"},
		{"https://h/mcp?tenant=1", "https://h/.well-known/oauth-protected-resource/mcp?tenant=1"},
		{"https://h/a%20b", "https://h/.well-known/oauth-protected-resource/a%20b"},
		{"/mcp", ""},
		{"", ""},
		{"::", ""},
	} {
		if got := auth.MetadataURL(c.resource); got != c.want {
			t.Errorf("MetadataURL(%q) = %q, want %q", c.resource, got, c.want)
		}
	}
}

func TestMetadataPaths(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		path string
		want []string
	}{
		{"/mcp", []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"}},
		{"/v1/mcp", []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/v1/mcp"}},
		{"mcp", []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"}},
		{"/", []string{"/.well-known/oauth-protected-resource"}},
		{"", []string{"/.well-known/oauth-protected-resource"}},
	} {
		if got := auth.MetadataPaths(c.path); !slices.Equal(got, c.want) {
			t.Errorf("MetadataPaths(%q) = %q, want %q", c.path, got, c.want)
		}
	}
	// The suffixed path is the path of MetadataURL(resource).
	got := auth.MetadataPaths("/mcp")[1]
	if want := "https://h" + got; auth.MetadataURL("https://h/mcp") != want {
		t.Errorf("MetadataPaths and MetadataURL disagree: %s vs %s", got, auth.MetadataURL("https://h/mcp"))
	}
}

func TestMetadataHandler(t *testing.T) {
	t.Parallel()
	cfg := config.OIDC{
		Issuer:         "https://idp.example.com",
		Audience:       "https://vmcp.example.com/mcp",
		Resource:       "https://vmcp.example.com/mcp",
		RequiredScopes: []string{"mcp:tools"},
	}
	type doc struct {
		Resource               string   `json:"resource"`
		AuthorizationServers   []string `json:"authorization_servers"`
		ScopesSupported        []string `json:"scopes_supported"`
		BearerMethodsSupported []string `json:"bearer_methods_supported"`
	}
	cases := []struct {
		name    string
		cfg     config.OIDC
		servers []string
		want    doc
	}{
		{"issuer by default", cfg, nil, doc{cfg.Resource, []string{cfg.Issuer}, []string{"mcp:tools"}, []string{"header"}}},
		{"given servers", cfg, []string{"https://a.example.com", "https://b.example.com"}, doc{cfg.Resource, []string{"https://a.example.com", "https://b.example.com"}, []string{"mcp:tools"}, []string{"header"}}},
		{"no scopes", config.OIDC{Issuer: cfg.Issuer, Resource: cfg.Resource}, nil, doc{cfg.Resource, []string{cfg.Issuer}, nil, []string{"header"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := auth.MetadataHandler(c.cfg, c.servers)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.well-known/oauth-protected-resource/mcp", nil))
			if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Cache-Control") != "max-age=3600" {
				t.Errorf("GET: %d %v", w.Code, w.Header())
			}
			var got doc
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if got.Resource != c.want.Resource || !slices.Equal(got.AuthorizationServers, c.want.AuthorizationServers) ||
				!slices.Equal(got.ScopesSupported, c.want.ScopesSupported) || !slices.Equal(got.BearerMethodsSupported, c.want.BearerMethodsSupported) {
				t.Errorf("document = %+v, want %+v", got, c.want)
			}
		})
	}

	h := auth.MetadataHandler(cfg, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodHead, "/.well-known/oauth-protected-resource", nil))
	if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD: %d, %d body bytes, %v", w.Code, w.Body.Len(), w.Header())
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(m, "/.well-known/oauth-protected-resource", nil))
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d, Allow %q", m, w.Code, w.Header().Get("Allow"))
		}
	}
}
