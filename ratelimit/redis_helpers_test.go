package ratelimit

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/vmcp/vmcp/internal/redistest"
)

// startRedis starts a redis-server of tb's own on a free loopback port, with
// persistence off, and returns a client with room for 64 concurrent
// callers. Server and client stop in tb.Cleanup. Without redis-server on
// PATH the test is skipped (CI installs it).
func startRedis(tb testing.TB) *redis.Client {
	tb.Helper()
	client, _ := startRedisPID(tb)
	return client
}

// startRedisPID is startRedis that also returns the server's process id.
func startRedisPID(tb testing.TB) (*redis.Client, int) {
	tb.Helper()
	return redistest.Start(tb)
}

// newRedisStore returns a RedisStore on client, closed in tb.Cleanup
// (before a client from startRedis, registered earlier, is closed).
func newRedisStore(tb testing.TB, client Scripter) *RedisStore {
	store := NewRedisStore(client)
	tb.Cleanup(func() { store.Close() })
	return store
}
