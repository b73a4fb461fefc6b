package auth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/vmcp/vmcp/config"
)

// wellKnownPRM is the RFC 9728 well-known path of protected resource
// metadata.
const wellKnownPRM = "/.well-known/oauth-protected-resource"

// MetadataPaths returns the paths at which MetadataHandler must be served,
// without auth: the plain well-known path and, for an MCP endpoint at
// mcpPath, the path-suffixed form RFC 9728 derives from the resource URI
// (MCP clients try both). A root mcpPath ("" or "/") gives the plain path
// alone.
func MetadataPaths(mcpPath string) []string {
	if mcpPath == "" || mcpPath == "/" {
		return []string{wellKnownPRM}
	}
	if !strings.HasPrefix(mcpPath, "/") {
		mcpPath = "/" + mcpPath
	}
	return []string{wellKnownPRM, wellKnownPRM + mcpPath}
}

// MetadataURL returns the RFC 9728 metadata URL of a resource URI: the
// well-known path inserted between the host and the resource's path, as in
// https://h/mcp → https://h/.well-known/oauth-protected-resource/mcp. It
// returns "" for a resource that is not an absolute URL.
func MetadataURL(resource string) string {
	u, err := url.Parse(resource)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	path := u.EscapedPath()
	if path == "/" {
		path = "" // RFC 9728 section 3.1: no terminating slash after the host
	}
	out := u.Scheme + "://" + u.Host + wellKnownPRM + path
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	return out
}

// metadata is the RFC 9728 protected resource metadata document.
type metadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
}

// MetadataHandler serves the RFC 9728 protected resource metadata of an
// OIDC-protected vmcp: resource (cfg.Resource, which the server must have
// filled in), authorization_servers (cfg.Issuer when authorizationServers
// is empty), scopes_supported (cfg.RequiredScopes) and
// bearer_methods_supported ["header"]. It answers GET and HEAD, with
// Cache-Control max-age=3600 and Access-Control-Allow-Origin * (the
// document is public, and browser-based MCP clients fetch it), and 405 to
// other methods. The document is encoded once, here.
func MetadataHandler(cfg config.OIDC, authorizationServers []string) http.Handler {
	servers := authorizationServers
	if len(servers) == 0 {
		servers = []string{cfg.Issuer}
	}
	body, _ := json.Marshal(metadata{ // strings only: cannot fail
		Resource:               cfg.Resource,
		AuthorizationServers:   servers,
		ScopesSupported:        cfg.RequiredScopes,
		BearerMethodsSupported: []string{"header"},
	})
	length := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", length)
		h.Set("Cache-Control", "max-age=3600")
		h.Set("Access-Control-Allow-Origin", "*")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	})
}
