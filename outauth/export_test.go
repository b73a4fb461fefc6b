package outauth

import "time"

// WithClock returns o with now as the clock of token lifetimes.
func WithClock(o Options, now func() time.Time) Options {
	o.now = now
	return o
}

// CachedCallers returns how many callers b's token exchange cache holds
// (entries being fetched included); b.Calls must be a token exchange.
func CachedCallers(b *Backend) int {
	x := b.Calls.(*exchange)
	x.cache.mu.Lock()
	defer x.cache.mu.Unlock()
	return len(x.cache.entries)
}

// WaitRenewals returns when none of b's credentials renews a token in the
// background.
func WaitRenewals(b *Backend) {
	for _, c := range []Credential{b.Calls, b.Discovery} {
		switch c := c.(type) {
		case *exchange:
			c.cache.Wait()
			if c.actor != nil {
				c.actor.cache.Wait()
			}
		case *clientCredentials:
			c.cache.Wait()
		}
	}
}
