package ratelimit

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// takeScript checks and takes every bucket of one Take in one round trip.
//
//go:embed take.lua
var takeScript string

// takeSHA is the script's SHA1, the EVALSHA handle.
var takeSHA = func() string {
	sum := sha1.Sum([]byte(takeScript))
	return hex.EncodeToString(sum[:])
}()

// Scripter is the part of a go-redis client that RedisStore uses.
// *redis.Client, *redis.ClusterClient and *redis.Ring satisfy it.
type Scripter interface {
	EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd
	Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd
	ScriptLoad(ctx context.Context, script string) *redis.StringCmd
}

// RedisStore is a Store whose buckets live in Redis, shared by every
// instance that uses the same Redis. Each Take is one EVALSHA of take.lua,
// which reads the clock with Redis TIME; a bucket is a hash with a TTL no
// longer than its time to full. The keys of one Take must hash to one
// Cluster slot (one hash tag) and should be distinct; a repeated key is taken
// from once.
type RedisStore struct {
	client Scripter
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a store that runs its script on client. It does no
// I/O; the caller owns client and closes it.
func NewRedisStore(client Scripter) *RedisStore {
	return &RedisStore{client: client}
}

// Load loads the script into the server's script cache, so it doubles as a
// start-up check that Redis is reachable. Take works without it: on NOSCRIPT
// it falls back to EVAL, which loads the script.
func (s *RedisStore) Load(ctx context.Context) error {
	sha, err := s.client.ScriptLoad(ctx, takeScript).Result()
	if err != nil {
		return fmt.Errorf("ratelimit: redis load script: %w", err)
	}
	if sha != takeSHA {
		return fmt.Errorf("ratelimit: redis load script: server returned SHA1 %q, want %q", sha, takeSHA)
	}
	return nil
}

// Take checks every bucket and takes one token from each only if all have
// one, in one round trip. An empty list is allowed without I/O. Errors (an
// invalid bucket, Redis trouble, ctx's deadline, an unexpected reply) come
// back wrapped; the caller decides whether to fail open.
func (s *RedisStore) Take(ctx context.Context, buckets []Bucket) (Decision, error) {
	if len(buckets) == 0 {
		return Decision{Allowed: true}, nil
	}
	keys := make([]string, len(buckets))
	args := make([]any, 0, 2*len(buckets))
	for i, b := range buckets {
		refill, err := refillMicros(b)
		if err != nil {
			return Decision{}, fmt.Errorf("ratelimit: redis take: bucket %d: %w", i, err)
		}
		keys[i] = b.Key
		args = append(args, b.Max, refill)
	}
	reply, err := s.client.EvalSha(ctx, takeSHA, keys, args...).Result()
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		reply, err = s.client.Eval(ctx, takeScript, keys, args...).Result()
	}
	if err != nil {
		return Decision{}, fmt.Errorf("ratelimit: redis take: %w", err)
	}
	d, err := parseTakeReply(reply, len(buckets))
	if err != nil {
		return Decision{}, fmt.Errorf("ratelimit: redis take: %w", err)
	}
	return d, nil
}

// parseTakeReply reads take.lua's reply {allowed, retry_after_us, remaining,
// rejected...} for a Take of n buckets, checking its shape.
func parseTakeReply(reply any, n int) (Decision, error) {
	arr, ok := reply.([]any)
	if !ok {
		return Decision{}, fmt.Errorf("reply is %T, want an array", reply)
	}
	if len(arr) < 3 {
		return Decision{}, fmt.Errorf("reply has %d elements, want at least 3", len(arr))
	}
	ints := make([]int64, len(arr))
	for i, v := range arr {
		x, ok := v.(int64)
		if !ok {
			return Decision{}, fmt.Errorf("reply element %d is %T, want an integer", i, v)
		}
		ints[i] = x
	}
	allowed, retry, remaining, rejected := ints[0], ints[1], ints[2], ints[3:]
	switch {
	case allowed != 0 && allowed != 1:
		return Decision{}, fmt.Errorf("reply: allowed is %d, want 0 or 1", allowed)
	case retry < 0 || remaining < 0:
		return Decision{}, fmt.Errorf("reply: negative retry-after %d or remaining %d", retry, remaining)
	case (allowed == 1) != (len(rejected) == 0):
		return Decision{}, fmt.Errorf("reply: allowed=%d with %d rejected buckets", allowed, len(rejected))
	}
	d := Decision{Allowed: allowed == 1, RetryAfter: time.Duration(retry) * time.Microsecond, Remaining: remaining}
	for _, i := range rejected {
		if i < 0 || i >= int64(n) {
			return Decision{}, fmt.Errorf("reply: rejected index %d out of range [0,%d)", i, n)
		}
		d.Rejected = append(d.Rejected, int(i))
	}
	return d, nil
}

// maxScaled bounds Max × refill-in-µs, the scaled size of a full bucket, so
// the script's arithmetic stays exact in Lua's doubles (and the memory
// store's, in int64 nanoseconds).
const maxScaled = 1 << 53

// refillMicros checks b and returns its refill period in µs, rounded up.
func refillMicros(b Bucket) (int64, error) {
	if b.Max < 1 {
		return 0, fmt.Errorf("key %q: max %d, want at least 1", b.Key, b.Max)
	}
	if b.Refill <= 0 {
		return 0, fmt.Errorf("key %q: refill %v, want > 0", b.Key, b.Refill)
	}
	us := int64((b.Refill + time.Microsecond - 1) / time.Microsecond)
	if b.Max > maxScaled/us {
		return 0, fmt.Errorf("key %q: %w", b.Key, errBucketTooLarge)
	}
	return us, nil
}

// errBucketTooLarge: Max × Refill (in µs) must stay under 2^53 (e.g. at
// most 100,000 tokens per day, 2,500,000 per hour).
var errBucketTooLarge = errors.New("max × refill (µs) exceeds 2^53")
