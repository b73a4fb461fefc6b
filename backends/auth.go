package backends

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/outauth"
)

// credentials are a backend's outgoing auth as its requests use it. A
// static credential (header_injection) is a header baked into every
// request's headers; a dynamic one (client_credentials, token_exchange,
// passthrough) is resolved per request. Nothing from the MCP client's own
// request is ever added: these are the only credentials a backend sees.
type credentials struct {
	// calls is the credential of a client's requests (its calls and its
	// own backend session); discovery that of the shared connection.
	calls, discovery outauth.Credential
	// callsStatic and discoveryStatic are the static headers of each; nil
	// when the credential is dynamic or none.
	callsStatic, discoveryStatic map[string]string
	// perUser reports that calls carries the caller's credential.
	perUser bool
}

func newCredentials(name string, a config.BackendAuth, o outauth.Options) (credentials, error) {
	ob, err := outauth.New(name, a, o)
	if err != nil {
		return credentials{}, err
	}
	c := credentials{calls: ob.Calls, discovery: ob.Discovery, perUser: ob.PerUser}
	c.callsStatic = staticHeader(ob.Calls)
	c.discoveryStatic = staticHeader(ob.Discovery)
	return c, nil
}

// staticHeader returns the header of a credential that is the same for
// every request, or nil.
func staticHeader(c outauth.Credential) map[string]string {
	if name, value, ok := outauth.Static(c); ok {
		return map[string]string{name: value}
	}
	return nil
}

// dynamic reports whether a client's requests carry a credential resolved
// per request.
func (c *credentials) dynamic() bool { return c.calls != nil && c.callsStatic == nil }

// dynamicHeader is the credential header of dynamic credentials.
const dynamicHeader = "Authorization"

// callHeader returns the dynamic credential of a request made for caller.
// Its failure is an *outauth.Error, returned as it is.
func (c *credentials) callHeader(ctx context.Context, caller outauth.Caller) (string, error) {
	_, v, err := c.calls.Header(ctx, caller)
	return v, err
}

// headerFunc returns the per-request headers of an mcp-go transport whose
// requests carry cred (dynamic), for caller fallback when the request's
// context names none (a stream or a close mcp-go starts itself). A
// credential that cannot be had is left out: the request was made
// possible by a check that got one (authorized), so this is a token that
// expired meanwhile, and the backend's 401 says so.
func headerFunc(cred outauth.Credential, fallback func() outauth.Caller, log func(error, bool)) func(context.Context) map[string]string {
	return func(ctx context.Context) map[string]string {
		caller := outauth.CallerFrom(ctx)
		if caller.Subject == "" && fallback != nil {
			caller = fallback()
		}
		_, v, err := cred.Header(ctx, caller)
		if err != nil {
			log(err, caller.CachedOnly)
			return nil
		}
		return map[string]string{dynamicHeader: v}
	}
}

// authorize checks, before a client's request is made, that its caller's
// credential for b can be had (exchanging a token if needed), so that a
// refusal answers the client and reaches no backend. A client without an
// MCP session cannot have a per-user credential: its requests go on the
// shared connection, which never carries one.
func (b *backend) authorize(ctx context.Context, c Client) error {
	if !b.cred.dynamic() {
		return nil
	}
	if c.Session == "" && b.cred.perUser {
		return &outauth.Error{Backend: b.cfg.Name,
			Reason: "it authorizes each caller with their own credential, which travels only on the caller's own session; this request has none"}
	}
	_, err := b.cred.callHeader(ctx, outauth.CallerFrom(ctx))
	return err
}

// authorized returns h with the dynamic credential of the request ctx
// belongs to set (a copy; h is shared), or h itself when b has no dynamic
// credential, h carries one already, or ctx is a service request's.
func (b *backend) authorized(ctx context.Context, h http.Header) (http.Header, error) {
	if !b.cred.dynamic() || h[dynamicHeader] != nil || ctx.Value(serviceKey{}) != nil {
		return h, nil
	}
	return b.authorizedAs(ctx, h, outauth.CallerFrom(ctx))
}

// authorizedAs returns h with caller's dynamic credential set (a copy), or
// h itself when b has no dynamic credential.
func (b *backend) authorizedAs(ctx context.Context, h http.Header, caller outauth.Caller) (http.Header, error) {
	if !b.cred.dynamic() {
		return h, nil
	}
	v, err := b.cred.callHeader(ctx, caller)
	if err != nil {
		return nil, err
	}
	h = h.Clone()
	h[dynamicHeader] = []string{v}
	return h, nil
}

// serviceKey marks the context of a request vmcp makes about a backend for
// no client (a probe), which carries the shared connection's credential.
type serviceKey struct{}

// asService marks ctx as a service request's.
func asService(ctx context.Context) context.Context {
	return context.WithValue(ctx, serviceKey{}, true)
}

// serviceHeader returns h with the shared connection's dynamic credential
// set (a copy), or h itself when that credential is static or none.
func (b *backend) serviceHeader(ctx context.Context, h http.Header) (http.Header, error) {
	if b.cred.discovery == nil || b.cred.discoveryStatic != nil {
		return h, nil
	}
	_, v, err := b.cred.discovery.Header(ctx, outauth.Caller{})
	if err != nil {
		return nil, err
	}
	h = h.Clone()
	h[dynamicHeader] = []string{v}
	return h, nil
}

// sessionAuth is the dynamic credential state of one client's session
// with a backend: its caller (for requests vmcp makes on the session by
// itself) and the session's headers with the last credential set, reused
// while the credential stays the same.
type sessionAuth struct {
	caller atomic.Pointer[outauth.Caller]
	header atomic.Pointer[authedHeader]
}

type authedHeader struct {
	value string
	h     http.Header
}

// remember records caller as the session's, unless it is recorded.
func (s *sessionAuth) remember(caller outauth.Caller) {
	if caller.Subject == "" {
		return
	}
	if old := s.caller.Load(); old != nil && *old == caller {
		return
	}
	c := caller // allocated here only, not on every call
	s.caller.Store(&c)
}

// last returns the session's last caller, marked CachedOnly: a request
// vmcp makes on the session by itself may use the caller's cached
// credential, never obtain one (so a stream mcp-go reopens by itself
// cannot make vmcp ask the identity provider in a loop).
func (s *sessionAuth) last() outauth.Caller {
	if c := s.caller.Load(); c != nil {
		caller := *c
		caller.CachedOnly = true
		return caller
	}
	return outauth.Caller{}
}

// requestHeader returns the headers of a request for the caller of ctx on
// client session cc: cc.header, with the caller's credential when b's is
// dynamic.
func (cc *clientConn) requestHeader(ctx context.Context) (http.Header, error) {
	b := cc.b
	if !b.cred.dynamic() {
		return cc.header, nil
	}
	caller := outauth.CallerFrom(ctx)
	if caller.Subject == "" {
		caller = cc.auth.last()
	} else {
		cc.auth.remember(caller)
	}
	v, err := b.cred.callHeader(ctx, caller)
	if err != nil {
		return nil, err
	}
	if a := cc.auth.header.Load(); a != nil && a.value == v {
		return a.h, nil
	}
	h := cc.header.Clone()
	h[dynamicHeader] = []string{v}
	cc.auth.header.Store(&authedHeader{value: v, h: h})
	return h, nil
}

// isCredentialError reports whether err is a credential that could not be
// had, which says so itself (also when the provider was too slow).
func isCredentialError(err error) bool {
	var e *outauth.Error
	return errors.As(err, &e)
}

// credentialTransport sets a connection's credential on every request an
// mcp-go transport sends through it to the backend's origin: its static
// headers, and those of fn for the request's context. A request a redirect
// sent elsewhere gets none.
type credentialTransport struct {
	base         http.RoundTripper
	scheme, host string // the backend's origin
	static       map[string]string
	fn           func(context.Context) map[string]string
}

func (t *credentialTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.EqualFold(req.URL.Scheme, t.scheme) || !strings.EqualFold(req.URL.Host, t.host) {
		return t.base.RoundTrip(req)
	}
	r := req.Clone(req.Context()) // a RoundTripper leaves req as it is
	for k, v := range t.static {
		r.Header.Set(k, v)
	}
	if t.fn != nil {
		for k, v := range t.fn(req.Context()) {
			r.Header.Set(k, v)
		}
	}
	return t.base.RoundTrip(r)
}

// withCredential returns hc sending every request to the origin of
// backendURL with the static headers and those fn returns (nil: none), or
// hc itself when there are none.
func withCredential(hc *http.Client, backendURL string, static map[string]string, fn func(context.Context) map[string]string) *http.Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	if len(static) == 0 && fn == nil {
		return hc
	}
	c := *hc
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	u, err := url.Parse(backendURL)
	if err != nil {
		return hc // validated by config: not reached
	}
	c.Transport = &credentialTransport{base: base, scheme: u.Scheme, host: u.Host, static: static, fn: fn}
	return &c
}

// discoveryHeaderFunc returns the per-request credential of b's shared
// connection, or nil when it has none or a static one.
func (b *backend) discoveryHeaderFunc() func(context.Context) map[string]string {
	if b.cred.discovery == nil || b.cred.discoveryStatic != nil {
		return nil
	}
	return headerFunc(b.cred.discovery, nil, b.logCredentialError)
}

// logCredentialError logs a credential a request went without: at debug
// level for a request vmcp makes by itself (a stream mcp-go reopens every
// second would repeat it).
func (b *backend) logCredentialError(err error, byItself bool) {
	level := slog.LevelWarn
	if byItself {
		level = slog.LevelDebug
	}
	b.log.Log(context.Background(), level, "a request to the backend goes without its credential", "error", err)
}
