package ratelimit

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"
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
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// RedisStore is a Store whose buckets live in Redis, shared by every
// instance that uses the same Redis. Each Take is one EVALSHA of take.lua,
// which reads the clock with Redis TIME; a bucket is a hash with a TTL no
// longer than its time to full. The keys of one Take must hash to one
// Cluster slot (one hash tag) and should be distinct; a repeated key is taken
// from once.
//
// Concurrent Takes share round trips: a goroutine of the store sends the
// EVALSHAs queued while the previous round trip was out, or while it
// yielded to the goroutines ready to run (up to maxBatch), as one pipeline. Each EVALSHA still runs atomically on its own, so batching
// changes no outcome, only the cost: one write and one read per batch, in
// vmcp and in Redis, instead of per Take. Close stops that goroutine.
type RedisStore struct {
	client Scripter

	queue     chan *takeReq
	done      chan struct{} // closed by Close
	stopped   chan struct{} // closed when the batcher has returned
	startOnce sync.Once
	closeOnce sync.Once
}

var _ Store = (*RedisStore)(nil)

// maxBatch bounds the EVALSHAs of one pipeline.
const maxBatch = 64

// NewRedisStore returns a store that runs its script on client. It does no
// I/O; the caller owns client and closes it, after closing the store.
func NewRedisStore(client Scripter) *RedisStore {
	return &RedisStore{
		client:  client,
		queue:   make(chan *takeReq, 4*maxBatch),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
}

// Close stops the batching goroutine, waiting for it to return; a batch in
// flight finishes first. Takes after Close make their own round trip. Safe
// to call more than once; it never fails.
func (s *RedisStore) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.startOnce.Do(func() { close(s.stopped) }) // never started
	})
	<-s.stopped
	return nil
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
// back wrapped; the caller decides what a failed check means.
func (s *RedisStore) Take(ctx context.Context, buckets []Bucket) (Decision, error) {
	if len(buckets) == 0 {
		return Decision{Allowed: true}, nil
	}
	r := reqPool.Get().(*takeReq)
	r.ctx = ctx
	if err := r.fill(buckets); err != nil {
		r.release()
		return Decision{}, err
	}
	s.startOnce.Do(func() { go s.batch() })
	select {
	case <-s.done: // closed: no batcher to wait for
		d, err := s.takeDirect(ctx, r)
		r.release()
		return d, err
	case <-ctx.Done():
		r.release()
		return Decision{}, fmt.Errorf("ratelimit: redis take: %w", ctx.Err())
	case s.queue <- r:
	}
	select {
	case <-r.ready:
		d, err := takeResult(r.reply, r.err, len(buckets))
		r.release()
		return d, err
	case <-s.stopped:
		select {
		case <-r.ready:
			d, err := takeResult(r.reply, r.err, len(buckets))
			r.release()
			return d, err
		default:
			// Queued as Close came, after the batcher's last look: the
			// queue is read no more, and r stays in it, unreleased.
			return s.takeDirect(ctx, r)
		}
	case <-ctx.Done():
		// The batcher still owns r: it sends on the buffered r.ready and
		// drops it. r is not reused.
		return Decision{}, fmt.Errorf("ratelimit: redis take: %w", ctx.Err())
	}
}

// takeDirect runs r's EVALSHA in a round trip of its own, falling back to
// EVAL on NOSCRIPT.
func (s *RedisStore) takeDirect(ctx context.Context, r *takeReq) (Decision, error) {
	reply, err := s.client.EvalSha(ctx, takeSHA, r.keys, r.args...).Result()
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		reply, err = s.client.Eval(ctx, takeScript, r.keys, r.args...).Result()
	}
	return takeResult(reply, err, len(r.keys))
}

// takeReq is one queued Take: its KEYS and ARGV, its caller's ctx, and,
// once ready is sent on, the script's reply or the error.
type takeReq struct {
	ctx   context.Context
	keys  []string
	args  []any
	cmd   *redis.Cmd
	reply any
	err   error
	ready chan struct{} // buffered: the batcher never waits for the caller
}

var reqPool = sync.Pool{New: func() any { return &takeReq{ready: make(chan struct{}, 1)} }}

// batch is the batching goroutine: it takes what is queued, up to maxBatch,
// runs it as one round trip and answers each caller, until Close.
func (s *RedisStore) batch() {
	defer close(s.stopped)
	reqs := make([]*takeReq, 0, maxBatch)
	for {
		select {
		case <-s.done:
			s.drain()
			return
		case r := <-s.queue:
			reqs = append(reqs[:0], r)
		}
		// Let the goroutines that are ready to run go first: on a busy
		// host they are the callers about to queue a Take, which then
		// share this round trip, and a round trip costs far more CPU, in
		// vmcp and in Redis, than a script run. On an idle host nothing
		// else is ready and this returns at once.
		runtime.Gosched()
	more:
		for len(reqs) < maxBatch {
			select {
			case r := <-s.queue:
				reqs = append(reqs, r)
			default:
				break more
			}
		}
		s.run(reqs)
		clear(reqs)
	}
}

// drain answers, with a round trip each, the Takes queued when Close came.
func (s *RedisStore) drain() {
	for {
		select {
		case r := <-s.queue:
			s.run([]*takeReq{r})
		default:
			return
		}
	}
}

// run sends the EVALSHAs of reqs, skipping callers that stopped waiting,
// and answers each. One Take goes alone, more as one pipeline; those that
// got NOSCRIPT are sent again as EVAL.
func (s *RedisStore) run(reqs []*takeReq) {
	live := reqs[:0]
	for _, r := range reqs {
		if r.ctx.Err() != nil {
			r.answer(nil, r.ctx.Err())
			continue
		}
		live = append(live, r)
	}
	switch len(live) {
	case 0:
		return
	case 1:
		r := live[0]
		reply, err := s.client.EvalSha(r.ctx, takeSHA, r.keys, r.args...).Result()
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			reply, err = s.client.Eval(r.ctx, takeScript, r.keys, r.args...).Result()
		}
		r.answer(reply, err)
		return
	}
	ctx, cancel := batchContext(live)
	defer cancel()
	s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range live {
			r.cmd = p.EvalSha(ctx, takeSHA, r.keys, r.args...)
		}
		return nil
	})
	noScript := 0
	for _, r := range live {
		if redis.HasErrorPrefix(r.cmd.Err(), "NOSCRIPT") {
			live[noScript] = r
			noScript++
			continue
		}
		r.answer(r.cmd.Result())
	}
	if noScript == 0 {
		return
	}
	s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range live[:noScript] {
			r.cmd = p.Eval(ctx, takeScript, r.keys, r.args...)
		}
		return nil
	})
	for _, r := range live[:noScript] {
		r.answer(r.cmd.Result())
	}
}

// batchContext is the context of one pipeline: no deadline if a caller has
// none, else the latest of the callers' deadlines, so that no caller is cut
// short by another's. A caller whose own deadline passes first stops
// waiting on its own.
func batchContext(reqs []*takeReq) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, r := range reqs {
		d, ok := r.ctx.Deadline()
		if !ok {
			return context.Background(), func() {}
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.Background(), latest)
}

// answer hands r its outcome. After it, r belongs to its caller again (or
// to nobody, if the caller stopped waiting).
func (r *takeReq) answer(reply any, err error) {
	r.reply, r.err, r.cmd = reply, err, nil
	r.ready <- struct{}{}
}

// fill checks buckets and sets r's keys and args from them.
func (r *takeReq) fill(buckets []Bucket) error {
	r.keys, r.args = r.keys[:0], r.args[:0]
	for i, b := range buckets {
		refill, err := refillMicros(b)
		if err != nil {
			return fmt.Errorf("ratelimit: redis take: bucket %d: %w", i, err)
		}
		r.keys = append(r.keys, b.Key)
		r.args = append(r.args, b.Max, refill)
	}
	return nil
}

// release clears r (so the pool holds no keys or replies) and returns it to
// the pool. Only the caller releases r, once it has r back.
func (r *takeReq) release() {
	clear(r.keys)
	clear(r.args)
	r.ctx, r.reply, r.err, r.cmd = nil, nil, nil, nil
	if cap(r.keys) > maxBatch {
		return // an unusually long Take; do not keep its slices
	}
	reqPool.Put(r)
}

// takeResult turns the script's reply, or the error, into Take's result.
func takeResult(reply any, err error, n int) (Decision, error) {
	if err != nil {
		return Decision{}, fmt.Errorf("ratelimit: redis take: %w", err)
	}
	d, err := parseTakeReply(reply, n)
	if err != nil {
		return Decision{}, fmt.Errorf("ratelimit: redis take: %w", err)
	}
	return d, nil
}

// parseTakeReply reads take.lua's reply for a Take of n buckets, checking
// its shape: when allowed, an integer, the whole tokens left; when
// rejected, an array {retry_after_us, rejected indices...}.
func parseTakeReply(reply any, n int) (Decision, error) {
	switch v := reply.(type) {
	case int64:
		if v < 0 {
			return Decision{}, fmt.Errorf("reply: negative remaining %d", v)
		}
		return Decision{Allowed: true, Remaining: v}, nil
	case []any:
		if len(v) < 2 {
			return Decision{}, fmt.Errorf("rejection has %d elements, want at least 2", len(v))
		}
		retry, ok := v[0].(int64)
		if !ok || retry < 1 {
			return Decision{}, fmt.Errorf("rejection: retry-after is %v (%T), want a positive integer", v[0], v[0])
		}
		d := Decision{RetryAfter: time.Duration(retry) * time.Microsecond, Rejected: make([]int, 0, len(v)-1)}
		for _, e := range v[1:] {
			i, ok := e.(int64)
			if !ok || i < 0 || i >= int64(n) {
				return Decision{}, fmt.Errorf("rejection: rejected index %v (%T) out of range [0,%d)", e, e, n)
			}
			d.Rejected = append(d.Rejected, int(i))
		}
		return d, nil
	}
	return Decision{}, fmt.Errorf("reply is %T, want an integer or an array", reply)
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
