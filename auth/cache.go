package auth

import (
	"sync"
	"time"
)

// evictionSample is how many entries a full cache looks at to choose the
// one to drop.
const evictionSample = 8

// tokenCache remembers verified tokens, keyed by the SHA-256 of the token,
// until their exp, so a repeated token costs a hash and a map lookup.
type tokenCache struct {
	max int

	mu sync.RWMutex
	m  map[[32]byte]cacheEntry
}

type cacheEntry struct {
	id  Identity
	exp time.Time
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, m: make(map[[32]byte]cacheEntry, min(max, 1024))}
}

// get returns the identity of a cached token that has not reached its exp
// at now. The clock skew never extends a cached entry: a token at or past
// exp is verified again in full.
func (c *tokenCache) get(key [32]byte, now time.Time) (Identity, bool) {
	c.mu.RLock()
	e, ok := c.m[key]
	c.mu.RUnlock()
	if !ok || !now.Before(e.exp) {
		return Identity{}, false
	}
	return e.id, true
}

// put caches id until exp. A full cache first drops, out of a small random
// sample of entries, every expired one, or else the one expiring soonest:
// O(1) per insert and close to dropping the least useful entry.
func (c *tokenCache) put(key [32]byte, id Identity, exp, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		c.evictLocked(now)
	}
	c.m[key] = cacheEntry{id: id, exp: exp}
}

func (c *tokenCache) evictLocked(now time.Time) {
	var (
		victim     [32]byte
		soonest    time.Time
		haveVictim bool
		dropped    bool
		seen       int
	)
	for k, e := range c.m { // map iteration starts at a random entry
		switch {
		case !now.Before(e.exp):
			delete(c.m, k)
			dropped = true
		case !haveVictim || e.exp.Before(soonest):
			victim, soonest, haveVictim = k, e.exp, true
		}
		if seen++; seen == evictionSample {
			break
		}
	}
	if !dropped && haveVictim {
		delete(c.m, victim)
	}
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
