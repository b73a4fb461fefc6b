package auth

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"
)

func TestTokenCacheBoundAndEviction(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	key := func(i int) [32]byte { return sha256.Sum256(fmt.Appendf(nil, "token-%d", i)) }

	cases := []struct {
		name string
		// fill puts entries into a cache of size 4 before the probe.
		fill func(c *tokenCache)
		// kept are keys that must survive putting key(100).
		kept []int
	}{
		{
			name: "expired entries go first",
			fill: func(c *tokenCache) {
				c.put(key(1), Identity{Subject: "1"}, now.Add(time.Hour), now)
				c.put(key(2), Identity{Subject: "2"}, now.Add(-time.Second), now.Add(-time.Minute))
				c.put(key(3), Identity{Subject: "3"}, now.Add(time.Hour), now)
				c.put(key(4), Identity{Subject: "4"}, now.Add(time.Hour), now)
			},
			kept: []int{1, 3, 4},
		},
		{
			name: "else the one expiring soonest",
			fill: func(c *tokenCache) {
				c.put(key(1), Identity{Subject: "1"}, now.Add(time.Hour), now)
				c.put(key(2), Identity{Subject: "2"}, now.Add(time.Minute), now)
				c.put(key(3), Identity{Subject: "3"}, now.Add(time.Hour), now)
				c.put(key(4), Identity{Subject: "4"}, now.Add(time.Hour), now)
			},
			kept: []int{1, 3, 4},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cache := newTokenCache(4)
			c.fill(cache)
			cache.put(key(100), Identity{Subject: "100"}, now.Add(time.Hour), now)
			if n := cache.len(); n != 4 {
				t.Errorf("len = %d, want the bound 4", n)
			}
			for _, k := range append(c.kept, 100) {
				if id, ok := cache.get(key(k), now); !ok || id.Subject != fmt.Sprint(k) {
					t.Errorf("entry %d: %+v, %v", k, id, ok)
				}
			}
		})
	}

	t.Run("never past exp", func(t *testing.T) {
		t.Parallel()
		cache := newTokenCache(4)
		cache.put(key(1), Identity{Subject: "1"}, now.Add(time.Minute), now)
		if _, ok := cache.get(key(1), now.Add(time.Minute-time.Nanosecond)); !ok {
			t.Error("miss just before exp")
		}
		if _, ok := cache.get(key(1), now.Add(time.Minute)); ok {
			t.Error("hit at exp")
		}
	})

	t.Run("many inserts stay bounded", func(t *testing.T) {
		t.Parallel()
		cache := newTokenCache(100)
		for i := range 10_000 {
			cache.put(key(i), Identity{}, now.Add(time.Duration(i)*time.Second), now)
		}
		if n := cache.len(); n != 100 {
			t.Errorf("len = %d, want 100", n)
		}
	})
}
