package server

import (
	"context"
	"fmt"

	"github.com/vmcp/vmcp/ratelimit"
)

// rateLimitStore opens the store rate limits are kept in: Redis when the
// config names one (s.redis, reached by Start), memory otherwise. nil
// when no bucket is configured.
func (s *Server) rateLimitStore(ctx context.Context) (ratelimit.Store, error) {
	if !s.cfg.RateLimiting.Configured() {
		return nil, nil
	}
	if s.redis == nil {
		return ratelimit.NewMemoryStore(ratelimit.MemoryOptions{}), nil
	}
	store := ratelimit.NewRedisStore(s.redis)
	s.closers = append(s.closers, store.Close)
	pctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	if err := store.Load(pctx); err != nil { // the first call then needs no fallback
		return nil, fmt.Errorf("redis %s: %w", s.cfg.Redis.Address, err)
	}
	return store, nil
}

// warnUnknownLimitedTools names rateLimiting.tools entries that are not in
// the catalogue: their limits apply only once a backend offers the tool.
func (s *Server) warnUnknownLimitedTools() {
	cat := s.agg.Catalogue()
	for i, t := range s.cfg.RateLimiting.Tools {
		if _, ok := cat.Tool(t.Name); !ok {
			s.log.Warn("rate-limited tool is not in the catalogue", "key", fmt.Sprintf("rateLimiting.tools[%d].name", i), "tool", t.Name)
		}
	}
}
