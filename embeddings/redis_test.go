package embeddings_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/embeddings"
	"github.com/vmcp/vmcp/internal/redistest"
)

// redisKey is the key of text's vector under cfg: Prefix + the hex
// SHA-256 of the model, the dimensions, the document prefix and the text.
func redisKey(prefix string, cfg config.Embeddings, text string) string {
	h := sha256.Sum256([]byte(cfg.Model + "\n" + strconv.Itoa(cfg.Dimensions) + "\n" + cfg.DocumentPrefix + "\n" + text))
	return prefix + hex.EncodeToString(h[:])
}

// encodeVec is v as Redis holds it: little-endian float32s.
func encodeVec(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func decodeVec(t *testing.T, b []byte) []float32 {
	t.Helper()
	if len(b)%4 != 0 {
		t.Fatalf("a stored vector of %d bytes", len(b))
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// TestRedisStores: the vectors are stored under Prefix + content key with
// the TTL, and another Service (empty memory) on the same Redis takes them
// from there without a request, also after an error mid-way.
func TestRedisStores(t *testing.T) {
	t.Parallel()
	rdb, _ := redistest.Start(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		ttl     time.Duration
		wantTTL time.Duration
	}{
		{"ttl 1h", time.Hour, time.Hour},
		{"default ttl", 0, 30 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prefix := "t:{" + tc.name + "}:emb:"
			f := newFake(t, nil)
			cfg := baseCfg(f)
			cfg.BatchSize, cfg.DocumentPrefix = 2, "passage: "
			o := embeddings.Options{Redis: rdb, Prefix: prefix, RedisTTL: tc.ttl}
			in := texts(tc.name, 3)
			got, err := newService(t, cfg, o).Documents(ctx, in, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, text := range in {
				key := redisKey(prefix, cfg, text)
				raw, err := rdb.Get(ctx, key).Bytes()
				if err != nil {
					t.Fatalf("GET %s: %v", key, err)
				}
				if v := decodeVec(t, raw); !slices.Equal(v, got[i]) {
					t.Fatalf("stored %v, returned %v", v, got[i])
				}
				ttl, err := rdb.TTL(ctx, key).Result()
				if err != nil || ttl <= 0 || ttl > tc.wantTTL || ttl < tc.wantTTL-time.Minute {
					t.Fatalf("TTL of %s = %v (%v), want about %v", key, ttl, err, tc.wantTTL)
				}
			}
			if n, _ := rdb.Keys(ctx, prefix+"*").Result(); len(n) != 3 {
				t.Fatalf("keys %q, want 3", n)
			}

			// A second replica: all from Redis.
			var p progressLog
			again, err := newService(t, cfg, o).Documents(ctx, in, p.f)
			if err != nil {
				t.Fatal(err)
			}
			checkVecs(t, again, prefixed("passage: ", in), defaultDims)
			if n := len(f.requests()); n != 2 {
				t.Fatalf("%d requests, want 2 (the second Service's from Redis)", n)
			}
			if !slices.Equal(p.get(), []int{3}) {
				t.Errorf("progress %v, want [3]", p.get())
			}
		})
	}
}

// TestRedisResumesAfterError: the batches embedded before an error are in
// Redis: another Service asks only for the rest.
func TestRedisResumesAfterError(t *testing.T) {
	t.Parallel()
	rdb, _ := redistest.Start(t)
	f := newFake(t, func(n int, c call, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		answerVectors(w, c)
	})
	cfg := baseCfg(f)
	cfg.BatchSize = 2
	o := embeddings.Options{Redis: rdb, Prefix: "r:"}
	in := texts("resume", 5)
	if _, err := newService(t, cfg, o).Documents(context.Background(), in, nil); err == nil {
		t.Fatal("no error")
	}
	got, err := newService(t, cfg, o).Documents(context.Background(), in, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkVecs(t, got, in, defaultDims)
	want := [][]string{in[0:2], in[2:4], in[2:4], in[4:5]}
	if reqs := f.inputs(); !slices.EqualFunc(reqs, want, slices.Equal) {
		t.Fatalf("requests %q, want %q", reqs, want)
	}
}

// TestRedisKey: what a stored vector depends on (model, dimensions,
// document prefix, Options.Prefix) and what it does not.
func TestRedisKey(t *testing.T) {
	t.Parallel()
	rdb, _ := redistest.Start(t)
	for _, tc := range []struct {
		name      string
		change    func(c *config.Embeddings, o *embeddings.Options)
		wantReuse bool
	}{
		{"same", func(*config.Embeddings, *embeddings.Options) {}, true},
		{"other query prefix, batch, timeout, key", func(c *config.Embeddings, _ *embeddings.Options) {
			c.QueryPrefix, c.BatchSize, c.Timeout, c.APIKeyEnv = "query: ", 1, config.Duration(time.Second), "K"
		}, true},
		{"other model", func(c *config.Embeddings, _ *embeddings.Options) { c.Model = "m2" }, false},
		{"other dimensions", func(c *config.Embeddings, _ *embeddings.Options) { c.Dimensions = 4 }, false},
		{"other document prefix", func(c *config.Embeddings, _ *embeddings.Options) { c.DocumentPrefix = "passage: " }, false},
		{"no document prefix", func(c *config.Embeddings, _ *embeddings.Options) { c.DocumentPrefix = "" }, false},
		{"other redis prefix", func(_ *config.Embeddings, o *embeddings.Options) { o.Prefix += "x:" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, nil)
			cfg := baseCfg(f)
			cfg.DocumentPrefix = "doc: "
			o := embeddings.Options{Redis: rdb, Prefix: "k:{" + tc.name + "}:", Getenv: env(map[string]string{"K": "v"})}
			in := []string{"a", "b"}
			if _, err := newService(t, cfg, o).Documents(context.Background(), in, nil); err != nil {
				t.Fatal(err)
			}
			tc.change(&cfg, &o)
			got, err := newService(t, cfg, o).Documents(context.Background(), in, nil)
			if err != nil {
				t.Fatal(err)
			}
			dims := cfg.Dimensions
			if dims == 0 {
				dims = defaultDims
			}
			checkVecs(t, got, prefixed(cfg.DocumentPrefix, in), dims)
			reused := len(f.requests()) == 1
			if reused != tc.wantReuse {
				t.Fatalf("%d requests; reuse %v, want %v", len(f.requests()), reused, tc.wantReuse)
			}
		})
	}
}

// TestRedisCorrupt: a stored value that is not a vector of the expected
// size is ignored, embedded again and replaced.
func TestRedisCorrupt(t *testing.T) {
	t.Parallel()
	rdb, _ := redistest.Start(t)
	for _, tc := range []struct {
		name  string
		dims  int
		value []byte
	}{
		{"5 bytes", 0, []byte("abcde")},
		{"5 bytes, dimensions set", 4, []byte("abcde")},
		{"empty", 0, []byte{}},
		{"3 bytes", 4, []byte{1, 2, 3}},
		{"wrong dimensions", 4, encodeVec(unit([]float32{1, 2}))},
		{"too long", 4, encodeVec(unit([]float32{1, 2, 3, 4, 5}))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, nil)
			cfg := baseCfg(f)
			cfg.Dimensions = tc.dims
			dims := max(tc.dims, defaultDims)
			prefix := "c:{" + tc.name + "}:"
			ctx := context.Background()
			key := redisKey(prefix, cfg, "b")
			if err := rdb.Set(ctx, key, tc.value, time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			// "a" is good in Redis.
			if err := rdb.Set(ctx, redisKey(prefix, cfg, "a"), encodeVec(want("a", dims)), time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			s := newService(t, cfg, embeddings.Options{Redis: rdb, Prefix: prefix})
			got, err := s.Documents(ctx, []string{"a", "b"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkVecs(t, got, []string{"a", "b"}, dims)
			if reqs := f.inputs(); len(reqs) != 1 || !slices.Equal(reqs[0], []string{"b"}) {
				t.Fatalf("requests %q, want one for b", reqs)
			}
			raw, err := rdb.Get(ctx, key).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if v := decodeVec(t, raw); !sameVec(v, want("b", dims)) {
				t.Fatalf("Redis still holds %v", v)
			}
		})
	}
}

// TestRedisImplausibleValue: a stored value of the right length that the
// service could never have answered (not finite, not of unit length, or,
// without configured dimensions, of another size than the other vectors)
// should not be served as a vector either.
func TestRedisImplausibleValue(t *testing.T) {
	t.Parallel()
	rdb, _ := redistest.Start(t)
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name  string
		dims  int
		value []float32
	}{
		{"NaN", 4, []float32{nan, nan, nan, nan}},
		{"zero", 4, []float32{0, 0, 0, 0}},
		{"not unit length", 4, []float32{3, 4, 5, 6}},
		{"other size, no dimensions configured", 0, unit([]float32{1, 2})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, nil)
			cfg := baseCfg(f)
			cfg.Dimensions = tc.dims
			prefix := "i:{" + tc.name + "}:"
			ctx := context.Background()
			if err := rdb.Set(ctx, redisKey(prefix, cfg, "b"), encodeVec(tc.value), time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			s := newService(t, cfg, embeddings.Options{Redis: rdb, Prefix: prefix})
			got, err := s.Documents(ctx, []string{"a", "b"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !sameVec(got[1], want("b", defaultDims)) {
				t.Errorf("BUG: the stored %v is served as the vector of b (dims %d, a has %d); fromRedis checks only the length (and the size when dimensions are configured)",
					got[1], len(got[1]), len(got[0]))
			}
		})
	}
}

// prodClient is a client to addr with the options vmcp's server uses
// (server/redis.go): no retries, default timeouts.
func prodClient(t *testing.T, addr string) redis.Cmdable {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRedisDown: with Redis unreachable, refusing or not answering,
// Documents still works through the service, each Redis round trip
// (one MGET, one SET pipeline per batch) bounded by its 2s.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		redis   func(t *testing.T) redis.Cmdable
		maxTime time.Duration
	}{
		{"closed port", func(t *testing.T) redis.Cmdable {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			return prodClient(t, addr)
		}, 4500 * time.Millisecond},
		{"killed", func(t *testing.T) redis.Cmdable {
			rdb, pid := redistest.Start(t)
			c := prodClient(t, rdb.Options().Addr)
			if err := c.Ping(context.Background()).Err(); err != nil { // a pooled connection
				t.Fatal(err)
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			return c
		}, 4500 * time.Millisecond},
		// Accepts connections and never answers (a stopped or partitioned
		// Redis): MGET and the SET pipeline each wait out their bound.
		{"never answers", func(t *testing.T) redis.Cmdable {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			var conns []net.Conn
			go func() {
				defer close(done)
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					conns = append(conns, c)
				}
			}()
			t.Cleanup(func() {
				l.Close()
				<-done
				for _, c := range conns {
					c.Close()
				}
			})
			return prodClient(t, l.Addr().String())
		}, 4500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, nil)
			s := newService(t, baseCfg(f), embeddings.Options{Redis: tc.redis(t), Prefix: "d:"})
			in := texts("down", 3)
			start := time.Now()
			var p progressLog
			got, err := s.Documents(context.Background(), in, p.f)
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > tc.maxTime {
				t.Errorf("BUG: Documents took %v with Redis down; MGET and SET are each to be bounded by redisTimeout (2s), but a go-redis client without ContextTimeoutEnabled (as server/redis.go builds it) ignores the context's deadline for socket reads and waits ReadTimeout (5s)", d)
			}
			checkVecs(t, got, in, defaultDims)
			checkProgress(t, p.get(), 3)
			if _, err := s.Query(context.Background(), "q"); err != nil {
				t.Fatal(err)
			}
			// Memory still serves them.
			if _, err := s.Documents(context.Background(), in, nil); err != nil {
				t.Fatal(err)
			}
			if n := len(f.requests()); n != 2 {
				t.Fatalf("%d requests, want 2", n)
			}
		})
	}
}
