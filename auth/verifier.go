package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/vmcp/vmcp/config"
)

// Defaults of VerifierOptions.
const (
	defaultHTTPTimeout     = 10 * time.Second
	defaultRefreshInterval = 15 * time.Minute
	defaultRefreshCooldown = 30 * time.Second
	defaultCacheSize       = 10000
)

// maxTokenBytes refuses absurd tokens before any decoding.
const maxTokenBytes = 16 << 10

// defaultAlgorithms are the asymmetric JWS algorithms accepted when the
// configuration lists none.
var defaultAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// OAuth error codes (RFC 6750 section 3.1) carried by Error.Code.
const (
	codeInvalidToken      = "invalid_token"
	codeInsufficientScope = "insufficient_scope"
	codeInvalidRequest    = "invalid_request"
)

// Error is why a token was refused, in the terms of RFC 6750: the HTTP
// Status to answer (401, or 403 for a missing scope), the OAuth error Code
// (invalid_token, insufficient_scope or invalid_request) and a short
// Description that is safe to send to the client and to log: it never
// holds the token or anything copied from it.
type Error struct {
	Status      int
	Code        string
	Description string
}

// Error returns "code: description".
func (e *Error) Error() string { return e.Code + ": " + e.Description }

func invalidToken(desc string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: codeInvalidToken, Description: desc}
}

// VerifierOptions tunes a Verifier. The zero value is ready to use.
type VerifierOptions struct {
	// HTTPClient fetches the discovery document and the JWKS. Nil means a
	// client like http.DefaultClient with a 10s timeout.
	HTTPClient *http.Client
	// Logger receives refresh failures and refusals. Nil means slog.Default().
	Logger *slog.Logger
	// RefreshInterval is how often the JWKS is refetched in the background.
	// Zero means 15m.
	RefreshInterval time.Duration
	// RefreshCooldown is the least time between two JWKS fetches caused by
	// tokens naming an unknown key. Zero means 30s.
	RefreshCooldown time.Duration
	// CacheSize bounds the verified-token cache. Zero means 10000; a
	// negative size turns the cache off.
	CacheSize int
	// Now is the clock for exp, nbf, iat, the cache and the cooldown. Nil
	// means time.Now.
	Now func() time.Time
}

// Verifier checks bearer tokens issued by one OIDC provider for one
// audience. It is safe for concurrent use; Close stops its background
// refresh.
type Verifier struct {
	issuer   string
	audience string
	scopes   []string
	algs     map[string]bool
	skew     time.Duration
	now      func() time.Time
	logger   *slog.Logger

	idv   *oidc.IDTokenVerifier
	keys  *keySet
	cache *tokenCache // nil when disabled

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// NewVerifier builds a Verifier for cfg. Unless cfg.JWKSURL is set, it runs
// OIDC discovery on cfg.Issuer to find the JWKS; then it fetches the JWKS.
// Both happen here, bounded by ctx and the HTTP client's timeout, so an
// unreachable or misconfigured provider is a start-up error naming the URL.
// The background refresh it starts runs until Close, independent of ctx.
//
// cfg is used as given: config.Load has already filled its defaults
// (clockSkew 30s). HS* and none are refused even when listed in
// cfg.AllowedAlgorithms.
func NewVerifier(ctx context.Context, cfg config.OIDC, opts VerifierOptions) (*Verifier, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("oidc: issuer is required")
	}
	if cfg.Audience == "" {
		return nil, errors.New("oidc: audience is required")
	}
	algs, err := allowedAlgorithms(cfg.AllowedAlgorithms)
	if err != nil {
		return nil, err
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: defaultHTTPTimeout}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	interval := cmp(opts.RefreshInterval, defaultRefreshInterval)
	cooldown := cmp(opts.RefreshCooldown, defaultRefreshCooldown)

	jwksURL := cfg.JWKSURL
	if jwksURL == "" {
		jwksURL, err = discoverJWKS(ctx, client, cfg.Issuer)
		if err != nil {
			return nil, err
		}
	}

	base, stop := context.WithCancel(context.Background())
	joseAlgs := make([]jose.SignatureAlgorithm, len(algs))
	algSet := make(map[string]bool, len(algs))
	for i, a := range algs {
		joseAlgs[i] = jose.SignatureAlgorithm(a)
		algSet[a] = true
	}
	ks := &keySet{
		url: jwksURL, client: client, logger: logger, algs: joseAlgs,
		cooldown: cooldown, now: now, base: base,
	}
	if err := ks.fetchAndStore(ctx); err != nil {
		stop()
		return nil, fmt.Errorf("oidc: fetching the JWKS of issuer %q from %s: %w", cfg.Issuer, jwksURL, err)
	}

	v := &Verifier{
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		scopes:   slices.Clone(cfg.RequiredScopes),
		algs:     algSet,
		skew:     cfg.ClockSkew.D(),
		now:      now,
		logger:   logger,
		keys:     ks,
		idv: oidc.NewVerifier(cfg.Issuer, ks, &oidc.Config{
			ClientID:             cfg.Audience,
			SupportedSigningAlgs: algs,
			// exp and nbf are checked below with the configured skew;
			// go-oidc allows none on exp and a fixed 5m on nbf.
			SkipExpiryCheck: true,
		}),
		stop: stop,
		done: make(chan struct{}),
	}
	if size := cmp(opts.CacheSize, defaultCacheSize); size > 0 {
		v.cache = newTokenCache(size)
	}
	go v.refreshLoop(base, interval)
	return v, nil
}

func cmp[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func allowedAlgorithms(listed []string) ([]string, error) {
	if len(listed) == 0 {
		return defaultAlgorithms, nil
	}
	var algs []string
	for _, a := range listed {
		if strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS") {
			continue
		}
		algs = append(algs, a)
	}
	if len(algs) == 0 {
		return nil, errors.New("oidc: allowedAlgorithms has no public-key algorithm")
	}
	return algs, nil
}

// discoverJWKS reads the provider's OIDC discovery document through go-oidc
// (which also checks that it names cfg.Issuer exactly) and returns jwks_uri.
func discoverJWKS(ctx context.Context, client *http.Client, issuer string) (string, error) {
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, client), issuer)
	if err != nil {
		return "", fmt.Errorf("oidc: discovery for issuer %q: %w", issuer, err)
	}
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil || doc.JWKSURI == "" {
		return "", fmt.Errorf("oidc: discovery for issuer %q: the document has no jwks_uri", issuer)
	}
	return doc.JWKSURI, nil
}

// refreshLoop refetches the JWKS every interval until Close. A failed
// refresh keeps the keys held.
func (v *Verifier) refreshLoop(ctx context.Context, interval time.Duration) {
	defer close(v.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := v.keys.refresh(); err != nil && ctx.Err() == nil {
				v.logger.Warn("oidc: periodic JWKS refresh failed; keeping the keys held",
					"url", v.keys.url, "err", err)
			}
		}
	}
}

// Close stops the background JWKS refresh and waits for it. It is safe to
// call more than once; Verify keeps working with the keys held.
func (v *Verifier) Close() error {
	v.closeOnce.Do(func() {
		v.stop()
		<-v.done
		v.keys.close()
	})
	return nil
}

// Issuer returns the issuer this Verifier accepts tokens from, as
// configured (the value to advertise in authorization_servers).
func (v *Verifier) Issuer() string { return v.issuer }

// requiredScopes returns the scopes every token must carry.
func (v *Verifier) requiredScopes() []string { return v.scopes }

type verifyStateKey struct{}

// verifyState lets the key set tell Verify what it saw, so a refusal can
// say why without matching go-oidc's error strings.
type verifyState struct {
	sigErr  error  // why the signature check failed
	payload []byte // the payload, once its signature checked out
}

// Verify checks rawToken (the bearer token, without "Bearer ") and returns
// the identity it carries. Every refusal is an *Error: 403
// insufficient_scope when a required scope is missing (the identity is
// returned along with it, for the audit trail), 401 invalid_token
// otherwise. A token verified before and not yet at its exp is answered
// from the cache without any signature check.
//
// The returned Identity's Claims map is shared with the cache and other
// requests: read it, never modify it.
func (v *Verifier) Verify(ctx context.Context, rawToken string) (Identity, error) {
	now := v.now()
	if rawToken == "" {
		return Identity{}, invalidToken("empty token")
	}
	if len(rawToken) > maxTokenBytes {
		return Identity{}, invalidToken("token too large")
	}
	var key [32]byte
	if v.cache != nil {
		// Hash the string's bytes in place: a copy would be the hot
		// path's one allocation. sha256 only reads them.
		key = sha256.Sum256(unsafe.Slice(unsafe.StringData(rawToken), len(rawToken)))
		if id, ok := v.cache.get(key, now); ok {
			return id, nil
		}
	}
	ctx, span := startVerify(ctx)
	id, err := v.verifySigned(ctx, rawToken, key, now)
	endVerify(span, err)
	return id, err
}

// verifySigned is Verify past the cache: the signature and claims checks,
// and the cache entry of a token that passes them.
func (v *Verifier) verifySigned(ctx context.Context, rawToken string, key [32]byte, now time.Time) (Identity, error) {
	// go-oidc parses the token with the allowed algorithms only, so none
	// and HS* never reach a key.
	st := &verifyState{}
	tok, err := v.idv.Verify(context.WithValue(ctx, verifyStateKey{}, st), rawToken)
	if err != nil {
		return Identity{}, v.explain(rawToken, st)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Identity{}, invalidToken("malformed claims")
	}

	exp, ok, err := numericDate(claims, "exp")
	switch {
	case err != nil:
		return Identity{}, invalidToken("malformed exp")
	case !ok:
		return Identity{}, invalidToken("token has no exp")
	case !now.Before(exp.Add(v.skew)):
		return Identity{}, invalidToken("token expired")
	}
	if nbf, ok, err := numericDate(claims, "nbf"); err != nil {
		return Identity{}, invalidToken("malformed nbf")
	} else if ok && now.Add(v.skew).Before(nbf) {
		return Identity{}, invalidToken("token not yet valid")
	}
	if iat, ok, err := numericDate(claims, "iat"); err != nil {
		return Identity{}, invalidToken("malformed iat")
	} else if ok && now.Add(v.skew).Before(iat) {
		return Identity{}, invalidToken("token issued in the future")
	}
	if tok.Subject == "" {
		return Identity{}, invalidToken("token has no sub")
	}

	id := Identity{Issuer: tok.Issuer, Subject: tok.Subject, Claims: claims}
	if missing := missingScopes(claims, v.scopes); len(missing) > 0 {
		return id, &Error{
			Status:      http.StatusForbidden,
			Code:        codeInsufficientScope,
			Description: "missing required scope",
		}
	}
	if v.cache != nil && now.Before(exp) {
		v.cache.put(key, id, exp, now)
	}
	return id, nil
}

// explain turns a go-oidc refusal into an Error, from what the key set saw
// and, when the signature was good, from the claims go-oidc checks.
func (v *Verifier) explain(rawToken string, st *verifyState) *Error {
	if errors.Is(st.sigErr, errUnknownKey) || errors.Is(st.sigErr, errBadSignature) {
		return invalidToken(st.sigErr.Error())
	}
	if st.payload == nil {
		if alg, err := headerAlg(rawToken); err == nil && !v.algs[alg] {
			return invalidToken("signing algorithm not allowed")
		}
		return invalidToken("malformed token")
	}
	var c struct {
		Iss string          `json:"iss"`
		Aud json.RawMessage `json:"aud"`
	}
	if err := json.Unmarshal(st.payload, &c); err != nil {
		return invalidToken("malformed claims")
	}
	if c.Iss != v.issuer {
		return invalidToken("wrong issuer")
	}
	var one string
	var many []string
	switch {
	case len(c.Aud) == 0:
	case json.Unmarshal(c.Aud, &one) == nil:
		many = []string{one}
	case json.Unmarshal(c.Aud, &many) != nil:
		return invalidToken("malformed aud")
	}
	if !slices.Contains(many, v.audience) {
		return invalidToken("wrong audience")
	}
	return invalidToken("malformed claims")
}

// headerAlg returns the alg of a compact JWS's protected header, refusing
// anything that is not three base64url parts.
func headerAlg(raw string) (string, error) {
	head, rest, ok := strings.Cut(raw, ".")
	if !ok || strings.Count(rest, ".") != 1 {
		return "", errMalformed
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return "", errMalformed
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return "", errMalformed
	}
	return h.Alg, nil
}

// numericDate reads a JWT NumericDate claim (seconds since the epoch,
// possibly fractional). ok is false when the claim is absent.
func numericDate(claims map[string]any, name string) (t time.Time, ok bool, err error) {
	raw, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	f, isNum := raw.(float64)
	if !isNum || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e15 {
		return time.Time{}, true, fmt.Errorf("%s is not a NumericDate", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// missingScopes returns the required scopes the token lacks. Scopes come
// from "scope" (a space-separated string, RFC 9068) and "scp" (a string or
// an array of strings, as Entra and Okta issue them).
func missingScopes(claims map[string]any, required []string) []string {
	if len(required) == 0 {
		return nil
	}
	have := map[string]bool{}
	for _, name := range []string{"scope", "scp"} {
		switch s := claims[name].(type) {
		case string:
			for _, f := range strings.Fields(s) {
				have[f] = true
			}
		case []any:
			for _, e := range s {
				if str, ok := e.(string); ok {
					have[str] = true
				}
			}
		}
	}
	var missing []string
	for _, r := range required {
		if !have[r] {
			missing = append(missing, r)
		}
	}
	return missing
}
