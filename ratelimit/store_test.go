package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// storeEnv is what a contract case gets: a store, fresh keys, and time.
type storeEnv struct {
	store Store
	// key returns a key unique to the running subtest, in one hash tag.
	key func(name string) string
	// sleep lets d pass: the memory store's clock moves, Redis really waits.
	sleep func(d time.Duration)
	// slack is how far a measured wait may fall short of the exact one
	// (the time spent between the store's clock reads).
	slack time.Duration
}

func (e storeEnv) take(t *testing.T, buckets ...Bucket) Decision {
	t.Helper()
	d, err := e.store.Take(context.Background(), buckets)
	if err != nil {
		t.Fatalf("Take: %v", err)
	}
	return d
}

// wantWait checks a RetryAfter against the exact wait: never more, and at
// most slack less.
func (e storeEnv) wantWait(t *testing.T, got, exact time.Duration) {
	t.Helper()
	if got > exact || got < exact-e.slack {
		t.Fatalf("RetryAfter = %v, want %v (slack %v)", got, exact, e.slack)
	}
}

// storeCases is the contract every Store meets, run by TestStore against
// the memory and the Redis store.
var storeCases = []struct {
	name string
	run  func(t *testing.T, e storeEnv)
}{
	{"EmptyListIsAllowed", func(t *testing.T, e storeEnv) {
		if d := e.take(t); !d.Allowed || d.Rejected != nil {
			t.Fatalf("Take() = %+v, want allowed", d)
		}
	}},
	{"InvalidBucketIsAnError", func(t *testing.T, e storeEnv) {
		for _, b := range []Bucket{
			{Key: e.key("a"), Max: 0, Refill: time.Second},
			{Key: e.key("a"), Max: 1, Refill: 0},
			{Key: e.key("a"), Max: 1 << 40, Refill: time.Hour},
		} {
			if _, err := e.store.Take(context.Background(), []Bucket{b}); err == nil {
				t.Errorf("Take(%+v) succeeded, want an error", b)
			}
		}
	}},
	{"BurstThenReject", func(t *testing.T, e storeEnv) {
		b := Bucket{Key: e.key("b"), Max: 5, Refill: time.Hour}
		for i := range 5 {
			d := e.take(t, b)
			if !d.Allowed || d.Remaining != int64(4-i) || d.Rejected != nil || d.RetryAfter != 0 {
				t.Fatalf("take %d = %+v, want allowed with %d remaining", i, d, 4-i)
			}
		}
		d := e.take(t, b)
		if d.Allowed || !slices.Equal(d.Rejected, []int{0}) || d.Remaining != 0 {
			t.Fatalf("take 6 = %+v, want rejected by bucket 0", d)
		}
		e.wantWait(t, d.RetryAfter, time.Hour/5)
	}},
	{"RefillOverTime", func(t *testing.T, e storeEnv) {
		b := Bucket{Key: e.key("b"), Max: 2, Refill: 200 * time.Millisecond}
		e.take(t, b)
		e.take(t, b)
		d := e.take(t, b)
		if d.Allowed {
			t.Fatalf("third take = %+v, want rejected", d)
		}
		e.wantWait(t, d.RetryAfter, 100*time.Millisecond)
		e.sleep(d.RetryAfter)
		if d := e.take(t, b); !d.Allowed || d.Remaining != 0 {
			t.Fatalf("take after RetryAfter = %+v, want allowed with 0 remaining", d)
		}
		if d := e.take(t, b); d.Allowed {
			t.Fatalf("second take after RetryAfter = %+v, want rejected", d)
		}
		e.sleep(200 * time.Millisecond) // a full refill: the burst is back, and no more
		for i := range 2 {
			if d := e.take(t, b); !d.Allowed {
				t.Fatalf("take %d after a full refill = %+v, want allowed", i, d)
			}
		}
		if d := e.take(t, b); d.Allowed {
			t.Fatalf("take 3 after a full refill = %+v, want rejected", d)
		}
	}},
	{"RetryAfterIsTheRealWait", func(t *testing.T, e storeEnv) {
		b := Bucket{Key: e.key("b"), Max: 1, Refill: 400 * time.Millisecond}
		e.take(t, b)
		d := e.take(t, b)
		e.wantWait(t, d.RetryAfter, 400*time.Millisecond)
		e.sleep(200 * time.Millisecond)
		d = e.take(t, b)
		if d.Allowed {
			t.Fatalf("take halfway = %+v, want rejected", d)
		}
		if d.RetryAfter > 200*time.Millisecond || d.RetryAfter < 100*time.Millisecond {
			t.Fatalf("RetryAfter halfway = %v, want about 200ms", d.RetryAfter)
		}
		e.sleep(d.RetryAfter)
		if d := e.take(t, b); !d.Allowed {
			t.Fatalf("take after RetryAfter = %+v, want allowed", d)
		}
	}},
	{"RejectingBucketConsumesFromNone", func(t *testing.T, e storeEnv) {
		wide := Bucket{Key: e.key("wide"), Max: 3, Refill: time.Hour}
		narrow := Bucket{Key: e.key("narrow"), Max: 1, Refill: time.Hour}
		if d := e.take(t, wide, narrow); !d.Allowed || d.Remaining != 0 {
			t.Fatalf("first take = %+v, want allowed with 0 remaining (the narrow bucket's)", d)
		}
		for range 3 {
			if d := e.take(t, wide, narrow); d.Allowed || !slices.Equal(d.Rejected, []int{1}) {
				t.Fatalf("take = %+v, want rejected by bucket 1 only", d)
			}
		}
		if d := e.take(t, wide); !d.Allowed || d.Remaining != 1 {
			t.Fatalf("wide alone = %+v, want allowed with 1 remaining: rejected takes consume nothing", d)
		}
	}},
	{"RejectedListsEveryRejectingBucket", func(t *testing.T, e storeEnv) {
		slow := Bucket{Key: e.key("slow"), Max: 1, Refill: time.Hour}
		free := Bucket{Key: e.key("free"), Max: 5, Refill: time.Hour}
		fast := Bucket{Key: e.key("fast"), Max: 2, Refill: time.Minute}
		e.take(t, slow)
		e.take(t, fast)
		e.take(t, fast)
		d := e.take(t, slow, free, fast)
		if d.Allowed || !slices.Equal(d.Rejected, []int{0, 2}) || d.Remaining != 0 {
			t.Fatalf("take = %+v, want rejected by buckets 0 and 2", d)
		}
		e.wantWait(t, d.RetryAfter, time.Hour) // the longest wait of the rejecting buckets
		if d := e.take(t, free); !d.Allowed || d.Remaining != 4 {
			t.Fatalf("free alone = %+v, want allowed with 4 remaining", d)
		}
	}},
	{"ConcurrentTakesAdmitExactlyMax", func(t *testing.T, e storeEnv) {
		b := Bucket{Key: e.key("b"), Max: 100, Refill: time.Hour}
		if got := takeConcurrently(t, e, 64, 20, func(int) []Bucket { return []Bucket{b} }); got != 100 {
			t.Fatalf("%d of 1280 concurrent takes allowed, want exactly 100", got)
		}
	}},
	{"ConcurrentMultiBucketTakesAreAtomic", func(t *testing.T, e storeEnv) {
		// 8 users of 10 tokens share 50: exactly the shared 50 pass, however
		// the takes interleave, and no user passes more than 10.
		shared := Bucket{Key: e.key("shared"), Max: 50, Refill: time.Hour}
		var perUser [8]atomic.Int64
		got := takeConcurrently(t, e, 64, 20, func(g int) []Bucket {
			return []Bucket{shared, {Key: e.key(fmt.Sprint("user", g%8)), Max: 10, Refill: time.Hour}}
		}, func(g int) { perUser[g%8].Add(1) })
		if got != 50 {
			t.Fatalf("%d takes allowed, want exactly 50", got)
		}
		for u := range perUser {
			if n := perUser[u].Load(); n > 10 {
				t.Errorf("user %d: %d takes allowed, want at most 10", u, n)
			}
		}
	}},
}

// takeConcurrently runs goroutines × perG takes of buckets(g) and returns
// how many were allowed, calling each onAllowed(g) for each.
func takeConcurrently(t *testing.T, e storeEnv, goroutines, perG int, buckets func(g int) []Bucket, onAllowed ...func(g int)) int64 {
	t.Helper()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			bs := buckets(g)
			for range perG {
				d, err := e.store.Take(context.Background(), bs)
				if err != nil {
					errs <- err
					return
				}
				if d.Allowed {
					allowed.Add(1)
					for _, f := range onAllowed {
						f(g)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Take: %v", err)
	}
	return allowed.Load()
}

// TestStore runs the contract against both stores:
// go test -run 'Store/(memory|redis)' ./ratelimit/
func TestStore(t *testing.T) {
	t.Parallel()
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		for _, c := range storeCases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				clock := newFakeClock()
				c.run(t, storeEnv{
					store: NewMemoryStore(MemoryOptions{Now: clock.Now}),
					key:   func(name string) string { return name },
					sleep: clock.Advance,
				})
			})
		}
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		store := newRedisStore(t, startRedis(t))
		for _, c := range storeCases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				prefix := "{" + t.Name() + "}:"
				c.run(t, storeEnv{
					store: store,
					key:   func(name string) string { return prefix + name },
					sleep: time.Sleep,
					slack: 100 * time.Millisecond,
				})
			})
		}
	})
}

// fakeClock is a MemoryStore clock that moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestRedisStoreTTLIsAtMostARefill(t *testing.T) {
	t.Parallel()
	client := startRedis(t)
	store := newRedisStore(t, client)
	ctx := context.Background()
	b := Bucket{Key: "{ttl}:b", Max: 3, Refill: 1500 * time.Millisecond}

	for i, want := range []time.Duration{500 * time.Millisecond, time.Second, 1500 * time.Millisecond} {
		if d, err := store.Take(ctx, []Bucket{b}); err != nil || !d.Allowed {
			t.Fatalf("take %d = %+v, %v; want allowed", i, d, err)
		}
		ttl, err := client.PTTL(ctx, b.Key).Result()
		if err != nil {
			t.Fatal(err)
		}
		// The TTL is the time to full, rounded up to ms.
		if ttl <= 0 || ttl > want || ttl < want-200*time.Millisecond {
			t.Fatalf("after take %d: PTTL = %v, want about %v (the time to full), never more", i, ttl, want)
		}
	}
	before, err := client.HGetAll(ctx, b.Key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if d, err := store.Take(ctx, []Bucket{b}); err != nil || d.Allowed {
		t.Fatalf("fourth take = %+v, %v; want rejected", d, err)
	}
	after, err := client.HGetAll(ctx, b.Key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("a rejected take wrote the bucket: %v, then %v", before, after)
	}
}

// A bucket is a hash of two decimal integers, s (scaled tokens) and t (µs,
// Redis TIME): the script passes numbers to HSET, and Redis must write them
// exactly, never in exponent form or rounded, so that versions of the
// script sharing one Redis read each other's buckets.
func TestRedisStoreBucketFormat(t *testing.T) {
	t.Parallel()
	client := startRedis(t)
	store := newRedisStore(t, client)
	ctx := context.Background()
	// Full is over 2^52 scaled tokens (21,300 × 213,000 s in µs), and one
	// token refills in 10 s, so the key (its TTL is the time to full) is
	// still there when it is read back.
	const refill = 213_000 * time.Second
	b := Bucket{Key: "{format}:b", Max: 21_300, Refill: refill}
	before := time.Now().UnixMicro()
	if d, err := store.Take(ctx, []Bucket{b}); err != nil || !d.Allowed || d.Remaining != b.Max-1 {
		t.Fatalf("Take = %+v, %v; want allowed with %d left", d, err, b.Max-1)
	}
	after := time.Now().UnixMicro()
	got, err := client.HGetAll(ctx, b.Key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("bucket hash = %v, want exactly the fields s and t", got)
	}
	// A fresh bucket is full; one token (the refill period in µs, scaled)
	// was taken.
	if want := strconv.FormatInt(21_300*refill.Microseconds()-refill.Microseconds(), 10); got["s"] != want {
		t.Fatalf("s = %q, want %q", got["s"], want)
	}
	ts, err := strconv.ParseInt(got["t"], 10, 64)
	if err != nil || ts < before-time.Second.Microseconds() || ts > after+time.Second.Microseconds() {
		t.Fatalf("t = %q, want Redis TIME in µs as a decimal integer, about %d", got["t"], before)
	}
}

func TestRedisStoreSurvivesScriptFlush(t *testing.T) {
	t.Parallel()
	client := startRedis(t)
	counting := &countingScripter{Scripter: client}
	store := newRedisStore(t, counting)
	ctx := context.Background()
	if err := store.Load(ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}

	// Flush the script cache while 64 callers take from one bucket: the
	// count stays exact and no take fails.
	b := []Bucket{{Key: "{flush}:b", Max: 500, Refill: time.Hour}}
	var allowed, taken atomic.Int64
	var wg sync.WaitGroup
	var flushOnce sync.Once
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			for range 20 {
				if taken.Add(1) == 640 {
					flushOnce.Do(func() {
						if err := client.ScriptFlush(ctx).Err(); err != nil {
							errs <- err
						}
					})
				}
				d, err := store.Take(ctx, b)
				if err != nil {
					errs <- err
					return
				}
				if d.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := allowed.Load(); got != 500 {
		t.Fatalf("%d of 1280 takes allowed, want exactly 500", got)
	}
	if counting.evals.Load() == 0 {
		t.Fatalf("no EVAL after SCRIPT FLUSH; want the NOSCRIPT fallback to run")
	}
	evals := counting.evals.Load()
	if _, err := store.Take(ctx, b); err != nil {
		t.Fatal(err)
	}
	if counting.evals.Load() != evals {
		t.Fatalf("EVAL after the fallback reloaded the script; want EVALSHA again")
	}
}

// countingScripter counts the EVALs that pass through it.
type countingScripter struct {
	Scripter
	evals, pipelines atomic.Int64
}

func (c *countingScripter) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	c.evals.Add(1)
	return c.Scripter.Eval(ctx, script, keys, args...)
}

// Pipelined counts the EVALs of batched Takes too, and the pipelines.
func (c *countingScripter) Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error) {
	c.pipelines.Add(1)
	return c.Scripter.Pipelined(ctx, func(p redis.Pipeliner) error {
		return fn(countingPipeliner{Pipeliner: p, c: c})
	})
}

type countingPipeliner struct {
	redis.Pipeliner
	c *countingScripter
}

func (p countingPipeliner) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	p.c.evals.Add(1)
	return p.Pipeliner.Eval(ctx, script, keys, args...)
}

func TestRedisStoreReplies(t *testing.T) {
	t.Parallel()
	rejected := []any{int64(1500), int64(1)}
	for _, c := range []struct {
		name    string
		evalSha *redis.Cmd
		eval    *redis.Cmd
		want    Decision
		wantErr string
	}{
		{name: "Rejected", evalSha: redis.NewCmdResult(rejected, nil),
			want: Decision{RetryAfter: 1500 * time.Microsecond, Rejected: []int{1}}},
		{name: "RejectedByBoth", evalSha: redis.NewCmdResult([]any{int64(3), int64(0), int64(1)}, nil),
			want: Decision{RetryAfter: 3 * time.Microsecond, Rejected: []int{0, 1}}},
		{name: "Allowed", evalSha: redis.NewCmdResult(int64(7), nil),
			want: Decision{Allowed: true, Remaining: 7}},
		{name: "AllowedNoneLeft", evalSha: redis.NewCmdResult(int64(0), nil),
			want: Decision{Allowed: true}},
		{name: "NoScriptFallsBackToEval", evalSha: redis.NewCmdResult(nil, redis.ErrNoScript),
			eval: redis.NewCmdResult(rejected, nil),
			want: Decision{RetryAfter: 1500 * time.Microsecond, Rejected: []int{1}}},
		{name: "ErrorIsWrapped", evalSha: redis.NewCmdResult(nil, context.DeadlineExceeded),
			wantErr: "ratelimit: redis take: context deadline exceeded"},
		{name: "NotAnIntegerOrArray", evalSha: redis.NewCmdResult("OK", nil), wantErr: "reply is string"},
		{name: "NegativeRemaining", evalSha: redis.NewCmdResult(int64(-1), nil), wantErr: "negative remaining -1"},
		{name: "RejectedWithoutIndex", evalSha: redis.NewCmdResult([]any{int64(5)}, nil), wantErr: "1 elements"},
		{name: "RetryNotAnInteger", evalSha: redis.NewCmdResult([]any{"5", int64(0)}, nil),
			wantErr: "retry-after is 5 (string)"},
		{name: "RetryNotPositive", evalSha: redis.NewCmdResult([]any{int64(0), int64(0)}, nil),
			wantErr: "retry-after is 0 (int64)"},
		{name: "IndexNotAnInteger", evalSha: redis.NewCmdResult([]any{int64(5), "0"}, nil),
			wantErr: "index 0 (string)"},
		{name: "IndexOutOfRange", evalSha: redis.NewCmdResult([]any{int64(5), int64(2)}, nil),
			wantErr: "index 2 (int64) out of range [0,2)"},
		{name: "IndexNegative", evalSha: redis.NewCmdResult([]any{int64(5), int64(-1)}, nil),
			wantErr: "index -1 (int64) out of range"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fake := &fakeScripter{evalSha: c.evalSha, eval: c.eval}
			d, err := newRedisStore(t, fake).Take(context.Background(), []Bucket{
				{Key: "{f}:a", Max: 1, Refill: time.Second}, {Key: "{f}:b", Max: 1, Refill: time.Second},
			})
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.HasPrefix(err.Error(), "ratelimit: redis take: ") {
					t.Fatalf("Take = %+v, %v; want an error containing %q", d, err, c.wantErr)
				}
				if c.name == "ErrorIsWrapped" && !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("error %v does not wrap context.DeadlineExceeded", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != c.want.Allowed || d.RetryAfter != c.want.RetryAfter ||
				d.Remaining != c.want.Remaining || !slices.Equal(d.Rejected, c.want.Rejected) {
				t.Fatalf("Take = %+v, want %+v", d, c.want)
			}
			if wantEvals := map[bool]int{true: 1, false: 0}[c.eval != nil]; fake.evals != wantEvals {
				t.Fatalf("%d EVALs, want %d", fake.evals, wantEvals)
			}
		})
	}
}

// fakeScripter answers EVALSHA and EVAL with canned replies and checks the
// arguments: two buckets of max 1, refill 1s (10^6 µs).
type fakeScripter struct {
	evalSha, eval *redis.Cmd
	evals         int
}

func (f *fakeScripter) EvalSha(_ context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	if sha != takeSHA || len(keys) != 2 || fmt.Sprint(args...) != "1 1000000 1 1000000" {
		return redis.NewCmdResult(nil, fmt.Errorf("fake: unexpected EVALSHA %s %v %v", sha, keys, args))
	}
	return f.evalSha
}

func (f *fakeScripter) Eval(_ context.Context, script string, keys []string, args ...any) *redis.Cmd {
	f.evals++
	if script != takeScript || f.eval == nil {
		return redis.NewCmdResult(nil, errors.New("fake: unexpected EVAL"))
	}
	return f.eval
}

func (f *fakeScripter) ScriptLoad(context.Context, string) *redis.StringCmd {
	return redis.NewStringResult(takeSHA, nil)
}

// Pipelined runs fn's EVALSHAs and EVALs on f, one after another.
func (f *fakeScripter) Pipelined(_ context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error) {
	return nil, fn(fakePipeliner{f: f})
}

// fakePipeliner has only the commands RedisStore sends; any other panics.
type fakePipeliner struct {
	redis.Pipeliner
	f *fakeScripter
}

func (p fakePipeliner) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	return p.f.EvalSha(ctx, sha, keys, args...)
}

func (p fakePipeliner) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.f.Eval(ctx, script, keys, args...)
}

func TestMemoryStoreIsBounded(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	m := NewMemoryStore(MemoryOptions{MaxBuckets: 4, Now: clock.Now})
	ctx := context.Background()
	take := func(key string) Decision {
		t.Helper()
		d, err := m.Take(ctx, []Bucket{{Key: key, Max: 1, Refill: time.Hour}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// Drain 4 buckets a minute apart: "a" is nearest to full.
	for _, k := range []string{"a", "b", "c", "d"} {
		take(k)
		clock.Advance(time.Minute)
	}
	take("e") // full: evicts "a", the nearest to full
	if n := m.len(); n != 4 {
		t.Fatalf("%d buckets held, want 4", n)
	}
	if d := take("b"); d.Allowed {
		t.Fatalf("b = %+v, want still rejected: eviction takes the bucket nearest to full", d)
	}
	if d := take("a"); !d.Allowed {
		t.Fatalf("a = %+v, want allowed: evicted, it starts again full", d)
	}
	for i := range 100 {
		take(fmt.Sprint("flood", i))
	}
	if n := m.len(); n > 4 {
		t.Fatalf("%d buckets held after a flood of keys, want at most 4", n)
	}
}

func TestMemoryStoreSweepsFullBuckets(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	m := NewMemoryStore(MemoryOptions{Now: clock.Now})
	ctx := context.Background()
	for i := range 5000 {
		if _, err := m.Take(ctx, []Bucket{{Key: fmt.Sprint("k", i), Max: 2, Refill: time.Second}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.len(); n != 5000 {
		t.Fatalf("%d buckets held, want 5000", n)
	}
	clock.Advance(time.Second) // every bucket is full again: the same as absent
	// Takes on other keys, a few thousand per shard, sweep every shard
	// (8192 keys: over 64 shards, none gets too few to reach a sweep).
	for i := range 256 * 1024 {
		if _, err := m.Take(ctx, []Bucket{{Key: fmt.Sprint("s", i%8192), Max: 1 << 30, Refill: time.Second}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range m.shards {
		for k := range m.shards[i].buckets {
			if strings.HasPrefix(k, "k") {
				t.Fatalf("bucket %q held after it refilled, want it swept", k)
			}
		}
	}
}

func TestMemoryStoreClockGoingBackGrantsNothing(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	m := NewMemoryStore(MemoryOptions{Now: clock.Now})
	b := []Bucket{{Key: "b", Max: 2, Refill: time.Minute}}
	ctx := context.Background()
	m.Take(ctx, b)
	clock.Advance(-time.Hour)
	m.Take(ctx, b)
	clock.Advance(time.Hour + 10*time.Second) // back to 10s after the first take
	d, err := m.Take(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed {
		t.Fatalf("take = %+v, want rejected: the bucket refilled only a third of a token", d)
	}
	if d.RetryAfter != 20*time.Second {
		t.Fatalf("RetryAfter = %v, want 20s", d.RetryAfter)
	}
}

// batchers counts the running batching goroutines of RedisStores.
func batchers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "ratelimit.(*RedisStore).batch(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// Not parallel: it counts every store's goroutines.
func TestRedisStoreCloseLeavesNoGoroutine(t *testing.T) {
	client := startRedis(t)
	before := batchers()
	store := NewRedisStore(client)
	ctx := context.Background()
	b := []Bucket{{Key: "{close}:b", Max: 1 << 20, Refill: time.Hour}}
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 10 {
				if _, err := store.Take(ctx, b); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got := batchers(); got != before+1 {
		t.Fatalf("%d batching goroutines while in use, want %d", got, before+1)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil { // twice is fine
		t.Fatal(err)
	}
	if got := batchers(); got != before {
		t.Fatalf("%d batching goroutines after Close, want %d", got, before)
	}
	// After Close a Take still works, with a round trip of its own.
	if d, err := store.Take(ctx, b); err != nil || !d.Allowed {
		t.Fatalf("Take after Close = %+v, %v; want allowed", d, err)
	}
	if got := batchers(); got != before {
		t.Fatalf("Take after Close started a goroutine: %d, want %d", got, before)
	}
	// Closed before any Take: nothing was started, Close returns at once.
	if err := NewRedisStore(client).Close(); err != nil {
		t.Fatal(err)
	}
}

// Concurrent Takes share pipelines, and the counts stay exact.
func TestRedisStoreBatches(t *testing.T) {
	t.Parallel()
	counting := &countingScripter{Scripter: startRedis(t)}
	store := newRedisStore(t, counting)
	b := Bucket{Key: "{batch}:b", Max: 1000, Refill: time.Hour}
	got := takeConcurrently(t, storeEnv{store: store}, 64, 40, func(int) []Bucket { return []Bucket{b} })
	if got != 1000 {
		t.Fatalf("%d of 2560 takes allowed, want exactly 1000", got)
	}
	if counting.pipelines.Load() == 0 {
		t.Fatalf("64 concurrent callers never shared a pipeline")
	}
}

// roundTripCounter counts the round trips of a RedisStore: lone EVALSHAs
// and pipelines.
type roundTripCounter struct {
	Scripter
	singles, pipelines atomic.Int64
}

func (c *roundTripCounter) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	c.singles.Add(1)
	return c.Scripter.EvalSha(ctx, sha, keys, args...)
}

func (c *roundTripCounter) Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error) {
	c.pipelines.Add(1)
	return c.Scripter.Pipelined(ctx, fn)
}

// Callers that are ready to run when the batcher wakes share its round
// trip: on one busy P, 8 callers released together make one pipeline, not
// a lone EVALSHA for the first and a pipeline for the rest. (The race
// detector shuffles the scheduler's queues, hence trials and a majority.)
// Not parallel: it sets GOMAXPROCS.
func TestRedisStoreBatchesReadyCallers(t *testing.T) {
	counter := &roundTripCounter{Scripter: startRedis(t)}
	store := newRedisStore(t, counter)
	ctx := context.Background()
	b := []Bucket{{Key: "{ready}:b", Max: 1 << 20, Refill: time.Hour}}
	if _, err := store.Take(ctx, b); err != nil { // starts the batcher, loads the script
		t.Fatal(err)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const trials, callers = 10, 8
	shared := 0
	for range trials {
		counter.singles.Store(0)
		counter.pipelines.Store(0)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				<-start
				if _, err := store.Take(ctx, b); err != nil {
					t.Error(err)
				}
			})
		}
		time.Sleep(10 * time.Millisecond) // every caller waits on start
		close(start)
		wg.Wait()
		if counter.singles.Load() == 0 && counter.pipelines.Load() == 1 {
			shared++
		}
	}
	if shared < trials-2 {
		t.Fatalf("%d callers ready together shared one round trip in %d of %d trials, want at least %d", callers, shared, trials, trials-2)
	}
}

// blockingScripter holds every EVALSHA until release is closed.
type blockingScripter struct {
	Scripter
	release chan struct{}
}

func (b *blockingScripter) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	<-b.release
	return b.Scripter.EvalSha(ctx, sha, keys, args...)
}

func (b *blockingScripter) Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error) {
	<-b.release
	return b.Scripter.Pipelined(ctx, fn)
}

// A caller whose ctx ends stops waiting, with ctx's error, though the batch
// it is queued behind is stuck; the store works on once Redis answers.
func TestRedisStoreTakeHonoursDeadline(t *testing.T) {
	t.Parallel()
	blocking := &blockingScripter{Scripter: startRedis(t), release: make(chan struct{})}
	store := newRedisStore(t, blocking)
	b := []Bucket{{Key: "{deadline}:b", Max: 100, Refill: time.Hour}}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := store.Take(ctx, b)
			if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "ratelimit: redis take: ") {
				t.Errorf("Take = %v, want a wrapped context.DeadlineExceeded", err)
			}
			if waited := time.Since(start); waited > time.Second {
				t.Errorf("Take returned after %v, want about 50ms", waited)
			}
		})
	}
	wg.Wait()
	close(blocking.release)
	d, err := store.Take(context.Background(), b)
	if err != nil || !d.Allowed {
		t.Fatalf("Take after Redis answers again = %+v, %v; want allowed", d, err)
	}
}
