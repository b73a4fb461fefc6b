// Package auth is the authentication stage: it turns each request's
// credentials into an Identity on the request context, or refuses it.
// Under OIDC, vmcp is an OAuth 2.1 resource server: a Verifier checks
// bearer access tokens against the provider's keys, and MetadataHandler
// serves the RFC 9728 document that tells a client where to get a token.
package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/config"
)

// Identity is who made a request.
type Identity struct {
	// Issuer is the token issuer, or AnonymousIssuer.
	Issuer string
	// Subject is the token subject, or AnonymousSubject.
	Subject string
	// Claims are the verified token claims; nil for anonymous requests.
	// The map is shared between requests with the same token: read only.
	Claims map[string]any
	// Token is the bearer token the request was authenticated with, for
	// outgoing auth that exchanges or passes it on; "" for anonymous
	// requests and outside a request.
	Token Token
}

// Token is a bearer token. It formats, logs and encodes as "[redacted]",
// so that printing an Identity shows no credential; string(t) is the token.
type Token string

const redacted = "[redacted]"

// String returns "[redacted]" (fmt's %v, %s, %q).
func (Token) String() string { return redacted }

// GoString returns "[redacted]" (fmt's %#v).
func (Token) GoString() string { return redacted }

// Format prints "[redacted]" whatever the verb (quoted for %q). (fmt's %p
// of a string is an error fmt prints itself, without asking the type: go
// vet reports it.)
func (Token) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		_, _ = io.WriteString(f, `"`+redacted+`"`)
		return
	}
	_, _ = io.WriteString(f, redacted)
}

// LogValue returns "[redacted]" (log/slog).
func (Token) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns "[redacted]" (encoding/json and other encoders).
func (Token) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// The identity given to every request under anonymous auth.
const (
	AnonymousIssuer  = "vmcp:anonymous"
	AnonymousSubject = "anonymous"
)

// Anonymous reports whether id is the anonymous identity.
func (id Identity) Anonymous() bool { return id.Issuer == AnonymousIssuer }

type ctxKey struct{}

// IdentityFrom returns the identity the auth stage put on ctx.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// JSONRPCCode is the JSON-RPC error code of a refusal by the auth stage
// (401 and 403). It lies in the implementation-defined server-error range
// and outside -32020..-32099, which protocol revision 2026-07-28 reserves.
// The error's data holds the OAuth error and error_description.
const JSONRPCCode = -32001

// New returns the auth stage for cfg.
//
// Anonymous auth gives every request the anonymous identity (config
// validation already confined it to loopback unless allowAnonymousNetwork
// is set); v and metadataURL are not used.
//
// OIDC auth needs v and metadataURL, the absolute URL of this server's
// protected resource metadata (see MetadataURL), which every challenge
// names. A request passes with the verified Identity on its context when it
// carries "Authorization: Bearer <token>" and v accepts the token;
// otherwise it is answered 401 (403 for a missing scope) with an RFC 6750
// WWW-Authenticate challenge and a JSON-RPC error (JSONRPCCode), the reason
// is logged (never the token) and recorded to rec (nil: audit.Discard).
// A token in the query string is refused. New opens nothing.
func New(cfg config.IncomingAuth, v *Verifier, rec audit.Recorder, metadataURL string) (func(http.Handler) http.Handler, error) {
	switch cfg.Type {
	case "", config.AuthAnonymous:
		anon := Identity{Issuer: AnonymousIssuer, Subject: AnonymousSubject}
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), anon)))
			})
		}, nil
	case config.AuthOIDC:
		if v == nil {
			return nil, errors.New("incomingAuth.type: oidc needs a token verifier")
		}
		if u, err := url.Parse(metadataURL); err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("incomingAuth.oidc: metadata URL %q is not an absolute URL", metadataURL)
		}
		if rec == nil {
			rec = audit.Discard
		}
		s := &oidcStage{v: v, rec: rec, metadataURL: quote(metadataURL)}
		if scopes := v.requiredScopes(); len(scopes) > 0 {
			s.scope = quote(strings.Join(scopes, " "))
		}
		return s.wrap, nil
	default:
		return nil, fmt.Errorf("incomingAuth.type: %q is not supported by this build", cfg.Type)
	}
}
