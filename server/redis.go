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
)

// redisPingTimeout bounds reaching Redis at start-up.
const redisPingTimeout = 5 * time.Second

// redisClient builds the one Redis client of the server (rate limits and
// sessions share its pool) for the redis block, without connecting; its
// close is registered. nil without a redis block.
func (s *Server) redisClient() (*redis.Client, error) {
	r := s.cfg.Redis
	if r == nil {
		return nil, nil
	}
	opts := &redis.Options{Addr: r.Address, Username: r.Username, DB: r.DB,
		// Every use bounds its round trip by its own deadline (which the
		// client honours on the socket, not only while it waits for a
		// connection); it must not retry behind its back.
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
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
	return client, nil
}

// pingRedis checks at start-up that Redis answers: unreachable is an error
// naming the address.
func (s *Server) pingRedis(ctx context.Context) error {
	if s.redis == nil || !s.cfg.RateLimiting.Configured() && s.cfg.Sessions.Store != config.SessionStoreRedis {
		return nil // not used
	}
	pctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	if err := s.redis.Ping(pctx).Err(); err != nil {
		return fmt.Errorf("redis %s: %w", s.cfg.Redis.Address, err)
	}
	if st := s.sessions.store; st != nil {
		if err := st.rs.SyncClock(pctx); err != nil {
			return fmt.Errorf("redis %s: %w", s.cfg.Redis.Address, err)
		}
	}
	return nil
}
