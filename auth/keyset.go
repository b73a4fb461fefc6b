package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// maxJWKSBytes caps a JWKS response; real key sets are a few KiB.
const maxJWKSBytes = 1 << 20

// Reasons a signature check fails, told apart so the client gets a short,
// accurate error_description.
var (
	errUnknownKey   = errors.New("unknown signing key")
	errBadSignature = errors.New("invalid signature")
	errMalformed    = errors.New("malformed token")
)

// keySet is the oidc.KeySet of a Verifier: the provider's JWKS, fetched at
// start, refetched on an unknown kid at most once per cooldown (concurrent
// misses share one fetch), and refreshed periodically by the Verifier. A
// failed fetch keeps the keys already held.
type keySet struct {
	url      string
	client   *http.Client
	logger   *slog.Logger
	algs     []jose.SignatureAlgorithm
	cooldown time.Duration
	now      func() time.Time
	// base bounds every fetch; the Verifier cancels it on Close.
	base context.Context

	keys atomic.Pointer[[]jose.JSONWebKey]

	mu       sync.Mutex
	inflight chan struct{} // closed when the running fetch ends; nil when none runs
	lastMiss time.Time     // start of the last fetch caused by an unknown kid
	closed   bool          // no fetch starts after close
	wg       sync.WaitGroup

	// Counters for tests: signature checks attempted and JWKS fetches made.
	verifications atomic.Int64
	fetches       atomic.Int64
}

var _ oidc.KeySet = (*keySet)(nil)

// VerifySignature checks the signature of a compact JWS against the held
// keys and returns its payload. It implements oidc.KeySet.
func (ks *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	payload, err := ks.verify(ctx, raw)
	if st, ok := ctx.Value(verifyStateKey{}).(*verifyState); ok {
		st.sigErr, st.payload = err, payload
	}
	return payload, err
}

func (ks *keySet) verify(ctx context.Context, raw string) ([]byte, error) {
	ks.verifications.Add(1)
	jws, err := jose.ParseSignedCompact(raw, ks.algs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, errMalformed
	}
	h := jws.Signatures[0].Header
	alg := jose.SignatureAlgorithm(h.Algorithm)
	cands := candidates(*ks.keys.Load(), h.KeyID, alg)
	if len(cands) == 0 {
		ks.refetch(ctx)
		cands = candidates(*ks.keys.Load(), h.KeyID, alg)
	}
	if len(cands) == 0 {
		return nil, errUnknownKey
	}
	for _, k := range cands {
		if payload, err := jws.Verify(k.Key); err == nil {
			return payload, nil
		}
	}
	return nil, errBadSignature
}

// candidates returns the keys that may have made a signature with kid and
// alg: same kid (any key when the token names none), a signing key, of the
// key type alg needs, and whose own alg (when it states one) is alg.
func candidates(keys []jose.JSONWebKey, kid string, alg jose.SignatureAlgorithm) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range keys {
		if kid != "" && k.KeyID != kid {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != string(alg) {
			continue
		}
		if fitsAlg(k.Key, alg) {
			out = append(out, k)
		}
	}
	return out
}

func fitsAlg(key any, alg jose.SignatureAlgorithm) bool {
	switch key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(string(alg), "RS") || strings.HasPrefix(string(alg), "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(string(alg), "ES")
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}

// refetch fetches the JWKS after a key miss, unless a miss already caused a
// fetch less than a cooldown ago. A miss while a fetch runs waits for that
// fetch instead of starting another. The fetch runs on its own goroutine
// under the key set's context, so a caller that gives up (its request was
// cancelled) does not abort the fetch other callers wait for.
func (ks *keySet) refetch(ctx context.Context) {
	ks.mu.Lock()
	done := ks.inflight
	if done == nil {
		now := ks.now()
		if ks.closed || (!ks.lastMiss.IsZero() && now.Sub(ks.lastMiss) < ks.cooldown) {
			ks.mu.Unlock()
			return
		}
		ks.lastMiss = now
		done = make(chan struct{})
		ks.inflight = done
		ks.wg.Add(1)
		go func() {
			defer ks.wg.Done()
			if err := ks.run(done); err != nil {
				ks.logger.Warn("oidc: JWKS refetch after an unknown key failed; keeping the keys held",
					"url", ks.url, "err", err)
			}
		}()
	}
	ks.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// refresh fetches the JWKS now (the periodic refresh), or waits for a
// fetch already running. It reports the fetch's error.
func (ks *keySet) refresh() error {
	ks.mu.Lock()
	if done := ks.inflight; done != nil {
		ks.mu.Unlock()
		<-done
		return nil
	}
	done := make(chan struct{})
	ks.inflight = done
	ks.mu.Unlock()
	return ks.run(done)
}

// run fetches and stores the JWKS, then marks the fetch done.
func (ks *keySet) run(done chan struct{}) error {
	err := ks.fetchAndStore(ks.base)
	ks.mu.Lock()
	ks.inflight = nil
	ks.mu.Unlock()
	close(done)
	return err
}

// close stops new fetches and waits for a running one (its context, base,
// is cancelled by the Verifier first).
func (ks *keySet) close() {
	ks.mu.Lock()
	ks.closed = true
	ks.mu.Unlock()
	ks.wg.Wait()
}

// fetchAndStore fetches the JWKS and, if it holds a usable key, replaces
// the held keys with it.
func (ks *keySet) fetchAndStore(ctx context.Context) error {
	keys, err := ks.fetch(ctx)
	if err != nil {
		return err
	}
	ks.keys.Store(&keys)
	return nil
}

func (ks *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ks.fetches.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("key set larger than %d bytes", maxJWKSBytes)
	}
	return ks.parse(body)
}

// parse reads a JWKS, keeping the public signing keys it understands; a
// key it cannot read (an unknown kty, an encryption key) is skipped, not
// fatal, since providers publish keys for other uses too.
func (ks *keySet) parse(body []byte) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decoding key set: %w", err)
	}
	var keys []jose.JSONWebKey
	for i, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			ks.logger.Debug("oidc: skipping a JWKS key vmcp cannot read", "url", ks.url, "index", i, "err", err)
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !k.IsPublic() {
			// A private or symmetric key has no place in a JWKS; never
			// verify with one.
			continue
		}
		if !k.Valid() {
			// Parsed but unusable (an RSA key with an empty modulus, say).
			ks.logger.Debug("oidc: skipping an invalid JWKS key", "url", ks.url, "index", i, "kid", k.KeyID)
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("key set has no usable signing key")
	}
	return keys, nil
}
