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

// get returns the cached header value for k, or fetches one with fetch
// (under ctx, on this goroutine) when there is none to use.
func (c *tokenCache) get(ctx context.Context, k callerKey, fetchToken func(context.Context) (token, error)) (string, error) {
	for {
		c.mu.Lock()
		now := c.now()
		e := c.entries[k]
		if e != nil && e.value != "" && now.Before(e.renew) {
			v := e.value
			c.mu.Unlock()
			return v, nil
		}
		if e != nil && e.inFlight != nil {
			if e.value != "" && now.Before(e.expires) {
				// Being renewed; the current one is still good.
				v := e.value
				c.mu.Unlock()
				return v, nil
			}
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
		c.mu.Lock()
		e.inFlight = nil
		now = c.now()
		switch {
		case err == nil:
			f.value = "Bearer " + t.value
			e.value = f.value
			e.expires, e.renew = lifetime(now, t.expires)
		case e.value != "" && now.Before(e.expires):
			// A renewal failed: the current token serves until it
			// expires, and a renewal is tried again after renewRetry
			// (by a call, never in a loop).
			f.value = e.value
			e.renew = now.Add(renewRetry)
			if e.renew.After(e.expires) {
				e.renew = e.expires
			}
		default:
			f.err = err
			f.abandoned = ctx.Err() != nil && errors.Is(err, ctx.Err())
			delete(c.entries, k)
		}
		c.mu.Unlock()
		close(f.done)
		return f.value, f.err
	}
}

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
