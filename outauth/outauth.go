// Package outauth obtains the credentials vmcp presents to its backends:
// a static header (header_injection), vmcp's own OAuth 2.0 access token
// (client_credentials), the caller's token exchanged for one scoped to the
// backend (RFC 8693 token_exchange), or the caller's token as it came
// (passthrough).
//
// Tokens from a token endpoint are cached until shortly before they
// expire: vmcp's own once per backend, exchanged ones per caller (issuer
// and subject) and backend, in a bounded cache. Concurrent requests for a
// token that is not cached share one request to the token endpoint; a
// failed one is not retried: the next call asks again. No token is ever
// logged, put in an error, or recorded in a metric.
package outauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

// Caller is who a backend request is made for.
type Caller struct {
	// Issuer and Subject name the caller; a per-user token is cached under
	// them.
	Issuer, Subject string
	// Token is the caller's validated incoming bearer token; "" for an
	// anonymous caller.
	Token auth.Token
	// CachedOnly marks a request vmcp makes on the caller's session by
	// itself (a stream it reopens, a session it ends): it may use a token
	// cached for the caller, never obtain one, so that nothing vmcp does on
	// its own asks the identity provider, let alone in a loop.
	CachedOnly bool
}

// CallerFrom returns the caller of the request ctx belongs to, as the auth
// stage identified it, or the one OnBehalf put on ctx; the zero Caller
// when there is none.
func CallerFrom(ctx context.Context) Caller {
	if id, ok := auth.IdentityFrom(ctx); ok {
		return Caller{Issuer: id.Issuer, Subject: id.Subject, Token: id.Token}
	}
	if c, ok := ctx.Value(onBehalfKey{}).(Caller); ok {
		return c
	}
	return Caller{}
}

type onBehalfKey struct{}

// OnBehalf returns ctx, a context of vmcp's own (no request's), carrying
// caller for the requests vmcp makes on the caller's session by itself:
// CallerFrom returns caller marked CachedOnly.
func OnBehalf(ctx context.Context, caller Caller) context.Context {
	if caller.Subject == "" {
		return ctx
	}
	caller.CachedOnly = true
	return context.WithValue(ctx, onBehalfKey{}, caller)
}

// Credential produces the credential header of backend requests.
type Credential interface {
	// Header returns the header to set on a request for caller: its name
	// and value. A failure is an *Error.
	Header(ctx context.Context, caller Caller) (name, value string, err error)
}

// Backend is one backend's outgoing credentials.
type Backend struct {
	// Calls is the credential of requests made for a client: its calls and
	// its own backend session. nil: none.
	Calls Credential
	// Discovery is the credential of the backend's shared connection
	// (discovery, health checks): a service identity or none, never a
	// caller's. nil: none.
	Discovery Credential
	// PerUser reports that Calls is the caller's (token_exchange,
	// passthrough): such a credential may travel only on that caller's own
	// backend session.
	PerUser bool
}

// Options are what New needs besides the configuration.
type Options struct {
	// HTTPClient carries token endpoint requests (redirects are not
	// followed). nil: a client of its own.
	HTTPClient *http.Client
	// Getenv resolves clientSecretEnv and headerValueEnv. nil:
	// os.LookupEnv.
	Getenv func(string) (string, bool)
	// ReadFile reads privateKeyFile. nil: os.ReadFile.
	ReadFile func(string) ([]byte, error)
	// Meter records token requests (vmcp_outauth_token_requests_total,
	// vmcp_outauth_token_request_duration_seconds). nil: none.
	Meter metric.Meter
	// Logger receives refused and failed token requests (never a token).
	// nil: slog.Default().
	Logger *slog.Logger
	// Timeout bounds one token request when the caller's context has no
	// earlier deadline. Zero: 30s.
	Timeout time.Duration
	// MaxCallers bounds the exchanged tokens cached per backend; beyond
	// it expired ones are dropped first, then any. Zero: 10000.
	MaxCallers int
	// now is the clock of token lifetimes; nil: time.Now. Tests set it.
	now func() time.Time
}

// New builds the credentials of backend from its outgoing auth a (the
// zero value: none). It reads the secrets and keys a names, and fails,
// naming the key, when one is missing or unusable. It opens nothing: tokens
// are requested when first needed.
func New(backend string, a config.BackendAuth, o Options) (*Backend, error) {
	o = o.withDefaults()
	if a.Type == "" {
		return &Backend{}, nil
	}
	switch a.Type {
	case config.AuthHeaderInjection:
		h, err := newHeader(a, o)
		if err != nil {
			return nil, err
		}
		return &Backend{Calls: h, Discovery: h}, nil
	case config.AuthClientCredentials:
		cc, err := newClientCredentials(backend, a, o)
		if err != nil {
			return nil, err
		}
		return &Backend{Calls: cc, Discovery: cc}, nil
	case config.AuthTokenExchange, config.AuthPassthrough:
		b := &Backend{PerUser: true}
		var err error
		switch a.Discovery {
		case config.AuthClientCredentials:
			b.Discovery, err = newClientCredentials(backend, a, o)
		case config.AuthHeaderInjection:
			b.Discovery, err = newHeader(a, o)
		}
		if err != nil {
			return nil, err
		}
		if a.Type == config.AuthPassthrough {
			b.Calls = passthrough{backend: backend}
			return b, nil
		}
		if b.Calls, err = newExchange(backend, a, o); err != nil {
			return nil, err
		}
		return b, nil
	default:
		return nil, fmt.Errorf("type: unsupported %q", a.Type)
	}
}

func (o Options) withDefaults() Options {
	hc := &http.Client{}
	if o.HTTPClient != nil {
		c := *o.HTTPClient
		hc = &c
	}
	// A token endpoint's redirect is not followed: it would resend the
	// client's secret and the caller's token to wherever it points.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	o.HTTPClient = hc
	if o.Getenv == nil {
		o.Getenv = os.LookupEnv
	}
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	if o.Meter == nil {
		o.Meter = noop.NewMeterProvider().Meter("")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.MaxCallers <= 0 {
		o.MaxCallers = 10000
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o
}

// header is header_injection: one static header.
type header struct{ name, value string }

func newHeader(a config.BackendAuth, o Options) (header, error) {
	v, ok := o.Getenv(a.HeaderValueEnv)
	if !ok || v == "" {
		return header{}, fmt.Errorf("headerValueEnv: environment variable %s is not set", a.HeaderValueEnv)
	}
	if a.HeaderName == "" {
		return header{}, errors.New("headerName: empty")
	}
	return header{name: a.HeaderName, value: v}, nil
}

func (h header) Header(context.Context, Caller) (string, string, error) { return h.name, h.value, nil }

// passthrough sends the caller's own token.
type passthrough struct{ backend string }

func (p passthrough) Header(_ context.Context, c Caller) (string, string, error) {
	if c.Token == "" {
		return "", "", &Error{Backend: p.backend, Reason: "the caller has no token to pass through (anonymous)"}
	}
	return "Authorization", "Bearer " + string(c.Token), nil
}

// Error is a credential that could not be obtained for a backend. Its
// message names the backend and says why, from what the token endpoint
// answered; it never holds a token.
type Error struct {
	// Backend is the backend's configured name.
	Backend string
	// Grant is the OAuth grant that failed ("token_exchange",
	// "client_credentials"); "" when no request was made.
	Grant string
	// Code is the OAuth error code the token endpoint answered
	// (invalid_grant, ...); "" when it gave none.
	Code string
	// Reason says what happened, in words.
	Reason string
	// Unavailable reports that the token endpoint gave no usable answer
	// (unreachable, timed out, a 5xx, a malformed body), as opposed to a
	// refusal.
	Unavailable bool
	err         error
}

func (e *Error) Error() string {
	return fmt.Sprintf("backend %q could not be authorized: %s", e.Backend, e.Reason)
}

// Unwrap returns the cause, when there is one (a transport error).
func (e *Error) Unwrap() error { return e.err }

// Static returns the header of a credential that is the same for every
// request (header_injection), and false for any other.
func Static(c Credential) (name, value string, ok bool) {
	h, ok := c.(header)
	return h.name, h.value, ok
}
