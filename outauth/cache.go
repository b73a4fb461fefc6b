package outauth

import (
	"context"
	"errors"
	"sync"
	"time"
)

// callerKey names a cached token: the caller's issuer and subject (both
// empty for vmcp's own token).
type callerKey struct{ issuer, subject string }

// tokenCache holds tokens until shortly before they expire. A token that
// is missing or due for renewal is fetched by one caller while the others
// wait for it (or, during a renewal, keep using the token that is still
// valid). A failed fetch is not remembered: the next request fetches
// again.
type tokenCache struct {
	mu      sync.Mutex
	entries map[callerKey]*cacheEntry
	max     int
	now     func() time.Time
	// renewing counts the renewals running in the background; each ends
	// within the endpoint's timeout.
	renewing sync.WaitGroup
}

type cacheEntry struct {
	value    string    // the header value ("Bearer ..."); "" until first fetched
	renew    time.Time // when to fetch a new one
	expires  time.Time // when value stops being sent
	inFlight *fetch
}

// fetch is one request for a token; done is closed when value or err is
// set.
type fetch struct {
	done  chan struct{}
	value string
	err   error
	// abandoned reports that err is the fetching caller's own context
	// ending, which says nothing to the callers waiting for it.
	abandoned bool
}

// defaultLifetime is how long a token whose lifetime the endpoint did not
// say (no expires_in, not a JWT with exp) is used.
const defaultLifetime = 5 * time.Minute

// maxRenewEarly is how long before it expires a token is renewed, at most;
// a short-lived token is renewed when a fifth of its lifetime is left.
const maxRenewEarly = 30 * time.Second

// renewRetry is how long after a failed renewal the next call tries again,
// while the current token is still valid.
const renewRetry = 5 * time.Second

func newTokenCache(max int, now func() time.Time) *tokenCache {
	return &tokenCache{entries: make(map[callerKey]*cacheEntry), max: max, now: now}
}

// fresh returns the cached header value for k when it is not due for
// renewal: the path of nearly every call, which builds no fetch.
func (c *tokenCache) fresh(k callerKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[k]; e != nil && e.value != "" && c.now().Before(e.renew) {
		return e.value, true
	}
	return "", false
}

// valid returns the cached header value for k while it has not expired,
// due for renewal or not, and fetches nothing: for requests vmcp makes on
// a caller's session by itself, which have no token of the caller's to
// exchange.
func (c *tokenCache) valid(k callerKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[k]; e != nil && e.value != "" && c.now().Before(e.expires) {
		return e.value, true
	}
	return "", false
}

// get returns the cached header value for k, or fetches one with fetch
// (under ctx, on this goroutine) when there is none to use. A token due
// for renewal but still valid is returned at once, and renewed in the
// background (wait: Wait), so no call waits for a renewal.
func (c *tokenCache) get(ctx context.Context, k callerKey, fetchToken func(context.Context) (token, error)) (string, error) {
	for {
		c.mu.Lock()
		now := c.now()
		e := c.entries[k]
		if e != nil && e.value != "" && now.Before(e.expires) {
			v := e.value
			if !now.Before(e.renew) && e.inFlight == nil {
				f := &fetch{done: make(chan struct{})}
				e.inFlight = f
				c.renewing.Add(1)
				go func() {
					defer c.renewing.Done()
					// Not the call's context: the renewal serves every
					// later call. The endpoint bounds it (Options.Timeout).
					rctx := context.WithoutCancel(ctx)
					t, err := fetchToken(rctx)
					c.finish(rctx, k, e, f, t, err)
				}()
			}
			c.mu.Unlock()
			return v, nil
		}
		if e != nil && e.inFlight != nil {
			f := e.inFlight
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return "", ctx.Err() // made an *Error by the credential
			}
			if f.abandoned && ctx.Err() == nil {
				continue // its caller gave up; this one asks itself
			}
			return f.value, f.err
		}
		if e == nil {
			c.makeRoomLocked(now)
			if len(c.entries) >= c.max {
				// Full of fetches in flight: this one is not kept.
				c.mu.Unlock()
				t, err := fetchToken(ctx)
				if err != nil {
					return "", err
				}
				return "Bearer " + t.value, nil
			}
			e = &cacheEntry{}
			c.entries[k] = e
		}
		f := &fetch{done: make(chan struct{})}
		e.inFlight = f
		c.mu.Unlock()
		t, err := fetchToken(ctx)
		c.finish(ctx, k, e, f, t, err)
		return f.value, f.err
	}
}

// finish records the outcome of f, the fetch of entry e of k under ctx,
// and wakes its waiters.
func (c *tokenCache) finish(ctx context.Context, k callerKey, e *cacheEntry, f *fetch, t token, err error) {
	c.mu.Lock()
	e.inFlight = nil
	now := c.now()
	switch {
	case err == nil:
		f.value = "Bearer " + t.value
		e.value = f.value
		e.expires, e.renew = lifetime(now, t.expires)
	case e.value != "" && now.Before(e.expires):
		// A renewal failed: the current token serves until it expires,
		// and a renewal is tried again after renewRetry (when a call
		// comes, never in a loop).
		f.value = e.value
		e.renew = now.Add(renewRetry)
		if e.renew.After(e.expires) {
			e.renew = e.expires
		}
	default:
		f.err = err
		f.abandoned = ctx.Err() != nil && errors.Is(err, ctx.Err())
		if c.entries[k] == e {
			delete(c.entries, k)
		}
	}
	c.mu.Unlock()
	close(f.done)
}

// Wait returns when no renewal runs in the background.
func (c *tokenCache) Wait() { c.renewing.Wait() }

// lifetime returns when a token obtained at now that expires at exp (zero:
// unknown) expires and when to renew it.
func lifetime(now, exp time.Time) (expires, renew time.Time) {
	if exp.IsZero() {
		exp = now.Add(defaultLifetime)
	}
	early := min(exp.Sub(now)/5, maxRenewEarly)
	return exp, exp.Add(-max(early, 0))
}

// makeRoomLocked keeps the cache under its bound before an entry is added:
// it drops the expired entries, then, if that is not enough, any entries
// not being fetched, down to seven eighths of the bound, so that a full
// cache is not scanned on every insertion.
func (c *tokenCache) makeRoomLocked(now time.Time) {
	if len(c.entries) < c.max {
		return
	}
	for k, e := range c.entries {
		if e.inFlight == nil && !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	target := c.max - c.max/8
	for k, e := range c.entries {
		if len(c.entries) < max(target, 1) {
			break
		}
		if e.inFlight == nil {
			delete(c.entries, k)
		}
	}
}
