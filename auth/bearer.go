package auth

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/jsonrpc"
)

// oidcStage is the auth stage under incomingAuth.type oidc.
type oidcStage struct {
	v   *Verifier
	rec audit.Recorder
	// metadataURL and scope are quoted once for the challenges; scope is
	// empty when no scope is required.
	metadataURL string
	scope       string
}

func (s *oidcStage) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, bad := bearerToken(r)
		if bad != nil {
			s.refuse(w, r, bad, Identity{})
			return
		}
		if token == "" {
			s.challenge(w, r)
			return
		}
		id, err := s.v.Verify(r.Context(), token)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				e = invalidToken("token rejected")
			}
			s.refuse(w, r, e, id)
			return
		}
		id.Token = Token(token) // id is a copy: the cached identity keeps none
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

// bearerToken returns the token of an "Authorization: Bearer" header (the
// scheme is case-insensitive), "" when the request carries no bearer
// token, or an invalid_request Error for a token sent some other way or a
// malformed header. Another scheme (Basic, say) counts as no token.
func bearerToken(r *http.Request) (string, *Error) {
	if strings.Contains(r.URL.RawQuery, "access_token") && r.URL.Query().Has("access_token") {
		return "", invalidRequest("access token in the query string is not accepted")
	}
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", invalidRequest("more than one Authorization header")
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", nil
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", invalidRequest("malformed Authorization header")
	}
	return token, nil
}

func invalidRequest(desc string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: codeInvalidRequest, Description: desc}
}

// challenge answers a request that brought no token: 401 and where to get
// one (RFC 9728 resource_metadata, RFC 6750 scope).
func (s *oidcStage) challenge(w http.ResponseWriter, r *http.Request) {
	const reason = "no bearer token"
	c := "Bearer resource_metadata=" + s.metadataURL
	if s.scope != "" {
		c += ", scope=" + s.scope
	}
	w.Header().Set("WWW-Authenticate", c)
	s.v.logger.DebugContext(r.Context(), "auth: request refused", "reason", reason, "remote", r.RemoteAddr)
	s.record(r, Identity{}, audit.OutcomeUnauthenticated, reason)
	jsonrpc.WriteError(w, http.StatusUnauthorized, nil, jsonrpc.Error{
		Code:    JSONRPCCode,
		Message: "Unauthorized",
		Data:    errorData{Description: "a bearer token is required"},
	})
}

// refuse answers a request whose token (or its absence of a proper one)
// was refused for e.
func (s *oidcStage) refuse(w http.ResponseWriter, r *http.Request, e *Error, id Identity) {
	var c string
	outcome, message := audit.OutcomeUnauthenticated, "Unauthorized"
	if e.Code == codeInsufficientScope {
		c = "Bearer error=" + quote(e.Code) + ", scope=" + s.scope + ", resource_metadata=" + s.metadataURL
		outcome, message = audit.OutcomeForbidden, "Forbidden"
	} else {
		c = "Bearer error=" + quote(e.Code) + ", error_description=" + quote(e.Description) +
			", resource_metadata=" + s.metadataURL
	}
	w.Header().Set("WWW-Authenticate", c)
	attrs := []any{"reason", e.Description, "error", e.Code, "remote", r.RemoteAddr}
	if id.Subject != "" {
		attrs = append(attrs, "iss", id.Issuer, "sub", id.Subject)
	}
	s.v.logger.Log(r.Context(), slog.LevelInfo, "auth: request refused", attrs...)
	s.record(r, id, outcome, e.Description)
	jsonrpc.WriteError(w, e.Status, nil, jsonrpc.Error{
		Code:    JSONRPCCode,
		Message: message,
		Data:    errorData{Error: e.Code, Description: e.Description},
	})
}

func (s *oidcStage) record(r *http.Request, id Identity, outcome audit.Outcome, reason string) {
	s.rec.Record(r.Context(), audit.Event{
		Time:       s.v.now(),
		Issuer:     id.Issuer,
		Subject:    id.Subject,
		ClientAddr: r.RemoteAddr,
		Outcome:    outcome,
		Reason:     reason,
	})
}

// errorData is the data member of the JSON-RPC error of a refusal.
type errorData struct {
	Error       string `json:"error,omitempty"`
	Description string `json:"error_description,omitempty"`
}

// quote returns s as an RFC 9110 quoted-string.
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}
