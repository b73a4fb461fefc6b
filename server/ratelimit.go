package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/ratelimit"
)

// redisPingTimeout bounds reaching Redis at start-up.
const redisPingTimeout = 5 * time.Second

// rateLimitStore opens the store rate limits are kept in: Redis when the
// config names one (unreachable at start-up is an error naming the
// address; the client's close is registered), memory otherwise. nil when no
// bucket is configured.
func (s *Server) rateLimitStore(ctx context.Context) (ratelimit.Store, error) {
	if !s.cfg.RateLimiting.Configured() {
		return nil, nil
	}
	r := s.cfg.Redis
	if r == nil {
		return ratelimit.NewMemoryStore(ratelimit.MemoryOptions{}), nil
	}
	opts := &redis.Options{Addr: r.Address, Username: r.Username, DB: r.DB,
		// The limiter bounds each check by its own deadline; the client must not
		// retry behind its back.
		MaxRetries: -1,
	}
	if path, ok := strings.CutPrefix(r.Address, config.UnixSocketScheme); ok {
		opts.Network, opts.Addr = "unix", path
	}
	pw, err := redisPassword(r, s.opts.Getenv)
	if err != nil {
		return nil, err
	}
	opts.Password = pw
	if r.TLS {
		host, _, err := net.SplitHostPort(r.Address)
		if err != nil {
			host = r.Address
		}
		opts.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	client := redis.NewClient(opts)
	s.closers = append(s.closers, client.Close)
	pctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		return nil, fmt.Errorf("redis %s: %w", r.Address, err)
	}
	store := ratelimit.NewRedisStore(client)
	s.closers = append(s.closers, store.Close)
	if err := store.Load(pctx); err != nil { // the first call then needs no fallback
		return nil, fmt.Errorf("redis %s: %w", r.Address, err)
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
