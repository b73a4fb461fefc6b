package outauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/vmcp/vmcp/config"
)

// Grants, as they are named in errors, logs and metrics.
const (
	grantClientCredentials = "client_credentials"
	grantTokenExchange     = "token_exchange"
)

// RFC 8693 and RFC 7523 identifiers.
const (
	grantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	assertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// maxTokenResponse bounds a token endpoint's answer that is read.
const maxTokenResponse = 1 << 20

// endpoint is vmcp's client at one token endpoint: it authenticates as
// clientID with a secret (HTTP Basic or form fields) or a signed RFC 7523
// assertion, and reads RFC 6749 answers.
type endpoint struct {
	backend  string
	url      string
	clientID string
	secret   string
	method   string      // config.ClientSecretBasic, ClientSecretPost or PrivateKeyJWT
	signer   jose.Signer // private_key_jwt
	hc       *http.Client
	timeout  time.Duration
	now      func() time.Time
	log      *slog.Logger
	requests metric.Int64Counter
	duration metric.Float64Histogram
}

func newEndpoint(backend string, a config.BackendAuth, o Options) (*endpoint, error) {
	e := &endpoint{backend: backend, url: a.TokenURL, clientID: a.ClientID, method: a.ClientAuthMethod,
		hc: o.HTTPClient, timeout: o.Timeout, now: o.now, log: o.Logger.With("backend", backend)}
	if a.PrivateKeyFile != "" {
		e.method = config.PrivateKeyJWT
		pemBytes, err := o.ReadFile(a.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("privateKeyFile: %w", err)
		}
		if e.signer, err = assertionSigner(pemBytes, a.PrivateKeyID); err != nil {
			return nil, fmt.Errorf("privateKeyFile: %s: %w", a.PrivateKeyFile, err)
		}
	} else {
		v, ok := o.Getenv(a.ClientSecretEnv)
		if !ok || v == "" {
			return nil, fmt.Errorf("clientSecretEnv: environment variable %s is not set", a.ClientSecretEnv)
		}
		e.secret = v
		if e.method == "" {
			e.method = config.ClientSecretBasic
		}
	}
	var err error
	if e.requests, err = o.Meter.Int64Counter("vmcp_outauth_token_requests_total",
		metric.WithDescription("Requests vmcp made to token endpoints for backend credentials, by backend, grant and outcome (ok, refused, unavailable).")); err != nil {
		return nil, err
	}
	if e.duration, err = o.Meter.Float64Histogram("vmcp_outauth_token_request_duration_seconds", metric.WithUnit("s"),
		metric.WithDescription("Time of token endpoint requests for backend credentials, by backend and grant.")); err != nil {
		return nil, err
	}
	return e, nil
}

// assertionSigner reads a PEM private key (PKCS #8, PKCS #1 or SEC 1) and
// returns the signer of client assertions with the algorithm its kind
// implies.
func assertionSigner(pemBytes []byte, kid string) (jose.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	if key, err = x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		if key, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
			if key, err = x509.ParseECPrivateKey(block.Bytes); err != nil {
				return nil, errors.New("not a PKCS #8, PKCS #1 or EC private key")
			}
		}
	}
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case *rsa.PrivateKey:
		alg = jose.RS256
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			alg = jose.ES256
		case elliptic.P384():
			alg = jose.ES384
		default:
			return nil, errors.New("EC key: only P-256 and P-384 are supported")
		}
	case ed25519.PrivateKey:
		alg = jose.EdDSA
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	return jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
}

// token is an access token from the endpoint.
type token struct {
	value   string
	expires time.Time // zero: the endpoint did not say
}

// request asks the endpoint for a token with grant (for errors and
// metrics) and form (the grant's parameters; client authentication is
// added here). It makes one request, bounded by ctx and e.timeout, and
// never retries. A failure is an *Error.
func (e *endpoint) request(ctx context.Context, grant string, form url.Values) (token, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	start := e.now()
	t, err := e.do(ctx, grant, form)
	outcome := "ok"
	if err != nil {
		var oe *Error
		errors.As(err, &oe)
		outcome = "refused"
		if oe.Unavailable {
			outcome = "unavailable"
		}
		e.log.Warn("token request failed", "grant", grant, "outcome", outcome, "code", oe.Code, "reason", oe.Reason, "cause", oe.err)
	}
	attrs := metric.WithAttributes(attribute.String("backend", e.backend), attribute.String("grant", grant))
	e.requests.Add(ctx, 1, attrs, metric.WithAttributes(attribute.String("outcome", outcome)))
	e.duration.Record(ctx, e.now().Sub(start).Seconds(), attrs)
	return t, err
}

func (e *endpoint) do(ctx context.Context, grant string, form url.Values) (token, error) {
	form = cloneForm(form)
	header := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Accept": {"application/json"}}
	switch e.method {
	case config.ClientSecretPost:
		form.Set("client_id", e.clientID)
		form.Set("client_secret", e.secret)
	case config.PrivateKeyJWT:
		assertion, err := e.assertion()
		if err != nil {
			return token{}, &Error{Backend: e.backend, Grant: grant, Reason: "could not sign the client assertion", err: err}
		}
		form.Set("client_id", e.clientID)
		form.Set("client_assertion_type", assertionTypeJWTBearer)
		form.Set("client_assertion", assertion)
	default:
		// RFC 6749 2.3.1: both are form-encoded before Basic encoding.
		header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString(
			[]byte(url.QueryEscape(e.clientID)+":"+url.QueryEscape(e.secret))))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, strings.NewReader(form.Encode()))
	if err != nil {
		return token{}, &Error{Backend: e.backend, Grant: grant, Reason: "bad token endpoint URL", Unavailable: true, err: err}
	}
	req.Header = header
	resp, err := e.hc.Do(req)
	if err != nil {
		reason := "the identity provider did not answer"
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			reason = "the identity provider did not answer in time"
		case ctx.Err() != nil:
			reason = "the request ended before the identity provider answered"
		}
		// The transport error may name internal addresses: logged, kept as
		// the cause, not put in the message.
		return token{}, &Error{Backend: e.backend, Grant: grant, Reason: reason + " (" + grant + ")", Unavailable: true, err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return token{}, &Error{Backend: e.backend, Grant: grant, Reason: "the identity provider's answer was cut off (" + grant + ")", Unavailable: true, err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return token{}, e.refusal(grant, resp, body, form)
	}
	return e.parse(grant, body)
}

// asError returns err as an *Error: as it is when it is one, else (a call
// that stopped waiting for another's request) one naming the backend.
func (e *endpoint) asError(grant string, err error) error {
	var oe *Error
	if err == nil || errors.As(err, &oe) {
		return err
	}
	return &Error{Backend: e.backend, Grant: grant, Unavailable: true, err: err,
		Reason: "the request ended while waiting for the " + strings.ReplaceAll(grant, "_", " ")}
}

// refusal is the error of a token endpoint's non-200 answer: an OAuth
// error (RFC 6749 5.2) is a refusal; anything else says the endpoint is
// unavailable.
// Nothing of what was sent (form) is repeated in it.
func (e *endpoint) refusal(grant string, resp *http.Response, body []byte, form url.Values) error {
	var oe struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode < 500 && (mt == "application/json" || mt == "") && json.Unmarshal(body, &oe) == nil && oe.Error != "" {
		code := printable(oe.Error, 64)
		reason := "the identity provider refused the " + strings.ReplaceAll(grant, "_", " ") + " (" + code
		if d := printable(scrub(oe.Description, form), 200); d != "" {
			reason += ": " + d
		}
		return &Error{Backend: e.backend, Grant: grant, Code: code, Reason: reason + ")"}
	}
	return &Error{Backend: e.backend, Grant: grant, Unavailable: true,
		Reason: fmt.Sprintf("the identity provider answered HTTP %d to the %s", resp.StatusCode, strings.ReplaceAll(grant, "_", " "))}
}

// parse reads a successful token response (RFC 6749 5.1, RFC 8693 2.2.1).
func (e *endpoint) parse(grant string, body []byte) (token, error) {
	var r struct {
		AccessToken string          `json:"access_token"`
		TokenType   string          `json:"token_type"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.AccessToken == "" {
		return token{}, &Error{Backend: e.backend, Grant: grant, Unavailable: true,
			Reason: "the identity provider's answer holds no access_token (" + grant + ")"}
	}
	if tt := r.TokenType; tt != "" && !strings.EqualFold(tt, "bearer") && !strings.EqualFold(tt, "N_A") {
		return token{}, &Error{Backend: e.backend, Grant: grant, Unavailable: true,
			Reason: "the identity provider issued a token of type " + strconv.Quote(printable(tt, 32)) + ", not Bearer (" + grant + ")"}
	}
	t := token{value: r.AccessToken}
	if secs, ok := expiresIn(r.ExpiresIn); ok {
		t.expires = e.now().Add(time.Duration(secs) * time.Second)
	} else if exp, ok := jwtExpiry(r.AccessToken); ok {
		t.expires = exp
	}
	return t, nil
}

// expiresIn reads expires_in, a number of seconds (some servers send a
// string).
func expiresIn(raw json.RawMessage) (int64, bool) {
	s := strings.Trim(string(raw), `"`)
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 || n > 1e9 {
		return 0, false
	}
	return int64(n), true
}

// jwtExpiry reads the exp claim of a token that is a JWT, without
// verifying it: it says only how long to keep the token.
func jwtExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var c struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return time.Time{}, false
	}
	exp, err := c.Exp.Float64()
	if err != nil || exp <= 0 {
		return time.Time{}, false
	}
	return time.Unix(int64(exp), 0), true
}

// assertion signs a fresh RFC 7523 client assertion for this endpoint.
func (e *endpoint) assertion() (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	now := e.now()
	return jwt.Signed(e.signer).Claims(jwt.Claims{
		Issuer: e.clientID, Subject: e.clientID, Audience: jwt.Audience{e.url}, ID: hex.EncodeToString(jti[:]),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)),
		Expiry: jwt.NewNumericDate(now.Add(time.Minute)),
	}).Serialize()
}

// secretFields are the form fields whose values are credentials.
var secretFields = []string{"subject_token", "actor_token", "client_secret", "client_assertion"}

// scrub replaces in s every credential of form, which a provider's error
// description might quote.
func scrub(s string, form url.Values) string {
	for _, k := range secretFields {
		if v := form.Get(k); len(v) >= 8 {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

func cloneForm(f url.Values) url.Values {
	out := make(url.Values, len(f)+3)
	for k, v := range f {
		out[k] = v
	}
	return out
}

// printable returns s cut to max runes with control characters dropped, for
// text from an identity provider that goes into an error message.
func printable(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == max {
			b.WriteString("…")
			break
		}
		if unicode.IsPrint(r) {
			b.WriteRune(r)
			n++
		}
	}
	return b.String()
}
