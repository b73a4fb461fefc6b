package embeddings

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/internal/runes"
)

// Options are what New needs besides the configuration.
type Options struct {
	// HTTPClient carries requests to the service. nil: a client of its own.
	HTTPClient *http.Client
	// Getenv resolves apiKeyEnv. nil: os.LookupEnv.
	Getenv func(string) (string, bool)
	// Redis, when set, keeps every vector for all replicas and restarts,
	// under keys Prefix + the content's hash, for RedisTTL.
	Redis    redis.Cmdable
	Prefix   string
	RedisTTL time.Duration // zero: 30 days
	// MaxCached bounds the vectors kept in memory (beyond the current
	// catalogue's, which the optimizer holds). Zero: 20,000.
	MaxCached int
	// Meter records requests to the service
	// (vmcp_optimizer_embedding_requests_total,
	// vmcp_optimizer_embedding_request_duration_seconds). nil: none.
	Meter metric.Meter
	// Logger receives failures. nil: slog.Default().
	Logger *slog.Logger
}

// Service embeds tool texts and queries.
type Service struct {
	c           *client
	batch       int
	timeout     time.Duration // a query's
	batchTime   time.Duration // a batch of documents'
	queryPrefix string
	docPrefix   string
	keySalt     string // what a vector depends on besides the text

	vectors *lru.Cache[string, []float32] // by content key
	queries *lru.Cache[string, []float32] // by query text

	redis    redis.Cmdable
	prefix   string
	redisTTL time.Duration

	log      *slog.Logger
	requests metric.Int64Counter
	duration metric.Float64Histogram

	// size is the size of the vectors the service answered last (0: not
	// yet), which decides, when no size is configured, which cached
	// vectors are stale.
	size atomic.Int64
	// Queries stop asking a service that failed queryFailures times in a
	// row until pausedUntil (unix nanoseconds), so that a silent service
	// does not cost every find_tool its whole deadline.
	failures    atomic.Int32
	pausedUntil atomic.Int64
}

// ErrPaused is Query's error while queries are paused after failures.
var ErrPaused = errors.New("embedding service: queries paused after repeated failures")

// Query failures in a row that pause queries, and for how long.
const (
	queryFailures = 3
	queryPause    = 10 * time.Second
)

// maxQueryRunes bounds the text of a query that is embedded (and kept in
// the query cache): a search is a sentence or two.
const maxQueryRunes = 2000

// queryCacheSize is how many recent queries' vectors are kept: agents
// repeat and rephrase within a task.
const queryCacheSize = 1024

// redisTimeout bounds one Redis round trip; Redis trouble makes the
// vectors missing, not the search fail.
const redisTimeout = 2 * time.Second

// New returns the Service of cfg. It fails, naming the key, when apiKeyEnv
// is not set; it connects to nothing.
func New(cfg config.Embeddings, o Options) (*Service, error) {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Getenv == nil {
		o.Getenv = os.LookupEnv
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Meter == nil {
		o.Meter = noop.NewMeterProvider().Meter("")
	}
	if o.MaxCached <= 0 {
		o.MaxCached = 20000
	}
	if o.RedisTTL <= 0 {
		o.RedisTTL = 30 * 24 * time.Hour
	}
	c := &client{url: strings.TrimRight(cfg.URL, "/") + "/embeddings", model: cfg.Model, dims: cfg.Dimensions, hc: o.HTTPClient}
	if cfg.APIKeyEnv != "" {
		v, ok := o.Getenv(cfg.APIKeyEnv)
		if !ok || v == "" {
			return nil, fmt.Errorf("apiKeyEnv: environment variable %s is not set", cfg.APIKeyEnv)
		}
		c.apiKey = v
	}
	vectors, err := lru.New[string, []float32](o.MaxCached)
	if err != nil {
		return nil, err
	}
	queries, err := lru.New[string, []float32](queryCacheSize)
	if err != nil {
		return nil, err
	}
	s := &Service{c: c, batch: cfg.BatchSize, timeout: cfg.Timeout.D(), batchTime: max(60*cfg.Timeout.D(), 30*time.Second),
		queryPrefix: cfg.QueryPrefix, docPrefix: cfg.DocumentPrefix,
		keySalt: cfg.Model + "\n" + strconv.Itoa(cfg.Dimensions) + "\n" + cfg.DocumentPrefix + "\n",
		vectors: vectors, queries: queries, redis: o.Redis, prefix: o.Prefix, redisTTL: o.RedisTTL, log: o.Logger}
	if s.batch <= 0 {
		s.batch = 64
	}
	if s.timeout <= 0 {
		s.timeout = 300 * time.Millisecond
	}
	if s.requests, err = o.Meter.Int64Counter("vmcp_optimizer_embedding_requests_total",
		metric.WithDescription("Requests to the embedding service, by kind (documents, query) and outcome (ok, error).")); err != nil {
		return nil, err
	}
	if s.duration, err = o.Meter.Float64Histogram("vmcp_optimizer_embedding_request_duration_seconds", metric.WithUnit("s"),
		metric.WithDescription("Time of requests to the embedding service, by kind (documents, query).")); err != nil {
		return nil, err
	}
	return s, nil
}

// key is the content key of a tool text: a vector depends on the text, the
// model, the dimensions and the document prefix.
func (s *Service) key(text string) string {
	h := sha256.New()
	h.Write([]byte(s.keySalt))
	h.Write([]byte(text))
	return hex.EncodeToString(h.Sum(nil))
}

// Documents returns the vectors of texts, in order: from memory, from
// Redis, or from the service in batches (each bounded, one request at a
// time), storing what it gets in both. progress is called (nil: not) with
// the number of texts that have a vector so far. On error the vectors got
// so far stay cached, so the next call resumes where this one stopped.
func (s *Service) Documents(ctx context.Context, texts []string, progress func(done int)) ([][]float32, error) {
	out := make([][]float32, len(texts))
	keys := make([]string, len(texts))
	var missing []int
	// Without a configured size, a cached vector of another size than the
	// service answered last is stale.
	size := s.c.dims
	if size == 0 {
		size = int(s.size.Load())
	}
	for i, t := range texts {
		keys[i] = s.key(t)
		if v, ok := s.vectors.Get(keys[i]); ok && (size == 0 || len(v) == size) {
			out[i] = v
		} else {
			missing = append(missing, i)
		}
	}
	redisUp := s.redis != nil
	if len(missing) > 0 && redisUp {
		missing, redisUp = s.fromRedis(ctx, keys, out, missing, size)
	}
	done := len(texts) - len(missing)
	if progress != nil {
		progress(done)
	}
	size, err := s.embedMissing(ctx, texts, keys, out, missing, redisUp, func(n int) {
		done += n
		if progress != nil {
			progress(done)
		}
	})
	if err != nil {
		return nil, err
	}
	if s.c.dims == 0 && !sameSize(out) {
		// No size configured, and the cache holds vectors of several
		// sizes (made with other settings under the same model name):
		// the service's answer now decides which are stale.
		if size == 0 {
			var err error
			if size, err = s.embedMissing(ctx, texts, keys, out, ofSize(out, leastCommonSize(out)), redisUp, func(int) {}); err != nil {
				return nil, err
			}
		}
		var stale []int
		for i, v := range out {
			if len(v) != size {
				stale = append(stale, i)
			}
		}
		s.log.Info("embedding again tool texts whose cached vectors have another size", "texts", len(stale), "size", size)
		if _, err := s.embedMissing(ctx, texts, keys, out, stale, redisUp, func(int) {}); err != nil {
			return nil, err
		}
		if !sameSize(out) {
			return nil, fmt.Errorf("%w: the service answers vectors of different sizes", ErrDimensions)
		}
	}
	return out, nil
}

// embedMissing gets the vectors of texts at idx from the service in
// batches, filling out and the caches (Redis while it works), calling got
// with each batch's size; it returns the size of the vectors the service
// answered (0: it was not asked).
func (s *Service) embedMissing(ctx context.Context, texts, keys []string, out [][]float32, idx []int, redisUp bool, got func(n int)) (int, error) {
	size := 0
	for start := 0; start < len(idx); start += s.batch {
		batch := idx[start:min(start+s.batch, len(idx))]
		in := make([]string, len(batch))
		for j, i := range batch {
			in[j] = s.docPrefix + texts[i]
		}
		vecs, err := s.embedBatch(ctx, in)
		if err != nil {
			return 0, err
		}
		if size == 0 {
			size = len(vecs[0])
		} else if len(vecs[0]) != size {
			return 0, fmt.Errorf("%w: got %d, want %d", ErrDimensions, len(vecs[0]), size)
		}
		for j, i := range batch {
			out[i] = vecs[j]
			s.vectors.Add(keys[i], vecs[j])
		}
		if redisUp {
			redisUp = s.toRedis(ctx, keys, out, batch)
		}
		got(len(batch))
	}
	return size, nil
}

// shortText is how much of a text the service refused is embedded
// instead: its start says what the tool is.
const shortText = 256

// embedBatch embeds in, one request bounded by the batch deadline. When
// the service refuses the input (a text too long for the model, say), it
// embeds the halves apart, and a single refused text by its start.
func (s *Service) embedBatch(ctx context.Context, in []string) ([][]float32, error) {
	bctx, cancel := context.WithTimeout(ctx, s.batchTime)
	vecs, err := s.call(bctx, "documents", in)
	cancel()
	if err == nil || !rejectsInput(err) {
		return vecs, err
	}
	if len(in) == 1 {
		short := runes.Cut(in[0], shortText)
		if short == in[0] {
			return nil, err
		}
		s.log.Info("embedding service refused a tool text; embedding its start", "error", err)
		return s.embedBatch(ctx, []string{short})
	}
	half := len(in) / 2
	first, err := s.embedBatch(ctx, in[:half])
	if err != nil {
		return nil, err
	}
	second, err := s.embedBatch(ctx, in[half:])
	if err != nil {
		return nil, err
	}
	return append(first, second...), nil
}

// leastCommonSize returns the least frequent size among vecs.
func leastCommonSize(vecs [][]float32) int {
	count := map[int]int{}
	for _, v := range vecs {
		count[len(v)]++
	}
	least := len(vecs[0])
	for size, n := range count {
		if n < count[least] || (n == count[least] && size < least) {
			least = size
		}
	}
	return least
}

// ofSize returns the indexes of vecs of the given size.
func ofSize(vecs [][]float32, size int) []int {
	var out []int
	for i, v := range vecs {
		if len(v) == size {
			out = append(out, i)
		}
	}
	return out
}

func sameSize(vecs [][]float32) bool {
	for _, v := range vecs {
		if len(v) != len(vecs[0]) {
			return false
		}
	}
	return true
}

// Query returns the vector of a search text (its first maxQueryRunes),
// from the recent queries or from the service within the query deadline.
// After queryFailures failures in a row it fails at once (ErrPaused) for
// queryPause.
func (s *Service) Query(ctx context.Context, text string) ([]float32, error) {
	text = runes.Cut(text, maxQueryRunes)
	if v, ok := s.queries.Get(text); ok {
		return v, nil
	}
	if time.Now().UnixNano() < s.pausedUntil.Load() {
		return nil, ErrPaused
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	vecs, err := s.call(ctx, "query", []string{s.queryPrefix + text})
	if err != nil {
		if ctx.Err() == nil || errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			// The service's failure (not the caller leaving).
			if s.failures.Add(1) >= queryFailures {
				s.failures.Store(0)
				s.pausedUntil.Store(time.Now().Add(queryPause).UnixNano())
				s.log.Warn("embedding service: queries paused after repeated failures; find_tool is lexical meanwhile",
					"pause", queryPause, "error", err)
			}
		}
		return nil, err
	}
	s.failures.Store(0)
	s.queries.Add(text, vecs[0])
	return vecs[0], nil
}

// call makes one request to the service and records it.
func (s *Service) call(ctx context.Context, kind string, in []string) ([][]float32, error) {
	start := time.Now()
	vecs, err := s.c.embed(ctx, in)
	outcome := "ok"
	if err != nil {
		outcome = "error"
	} else {
		s.size.Store(int64(len(vecs[0])))
	}
	mctx := context.WithoutCancel(ctx)
	s.requests.Add(mctx, 1, metric.WithAttributes(attribute.String("kind", kind), attribute.String("outcome", outcome)))
	s.duration.Record(mctx, time.Since(start).Seconds(), metric.WithAttributes(attribute.String("kind", kind)))
	return vecs, err
}

// redisChunk bounds the keys of one MGET.
const redisChunk = 256

// fromRedis fills out at the missing indexes from Redis with vectors of
// size (0: any), and returns the indexes still missing and whether Redis
// answered. Redis trouble leaves them missing.
func (s *Service) fromRedis(ctx context.Context, keys []string, out [][]float32, missing []int, size int) ([]int, bool) {
	var still []int
	for start := 0; start < len(missing); start += redisChunk {
		idx := missing[start:min(start+redisChunk, len(missing))]
		rkeys := make([]string, len(idx))
		for j, i := range idx {
			rkeys[j] = s.prefix + keys[i]
		}
		rctx, cancel := context.WithTimeout(ctx, redisTimeout)
		vals, err := s.redis.MGet(rctx, rkeys...).Result()
		cancel()
		if err != nil {
			s.log.Warn("read tool vectors from Redis; not using it for the rest of this catalogue", "error", err)
			return append(still, missing[start:]...), false
		}
		for j, i := range idx {
			str, ok := vals[j].(string)
			v, decoded := decode(str)
			if !ok || !decoded || (size > 0 && len(v) != size) || len(v) > MaxDimensions || !unitLength(v) {
				still = append(still, i)
				continue
			}
			out[i] = v
			s.vectors.Add(keys[i], v)
		}
	}
	return still, true
}

// toRedis stores the vectors of out at idx in Redis, best effort, and
// reports whether Redis took them.
func (s *Service) toRedis(ctx context.Context, keys []string, out [][]float32, idx []int) bool {
	if s.redis == nil {
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	pipe := s.redis.Pipeline()
	for _, i := range idx {
		pipe.Set(rctx, s.prefix+keys[i], encode(out[i]), s.redisTTL)
	}
	if _, err := pipe.Exec(rctx); err != nil {
		if !errors.Is(err, context.Canceled) {
			s.log.Warn("store tool vectors in Redis; not using it for the rest of this catalogue", "error", err)
		}
		return false
	}
	return true
}

// unitLength reports whether v is finite and of unit length, as every
// vector stored was: anything else in Redis is not one of them.
func unitLength(v []float32) bool {
	var sum float64
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
		sum += float64(x) * float64(x)
	}
	return math.Abs(sum-1) < 1e-3
}

// encode and decode store a vector as little-endian float32s.
func encode(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func decode(s string) ([]float32, bool) {
	if len(s) == 0 || len(s)%4 != 0 {
		return nil, false
	}
	v := make([]float32, len(s)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32([]byte(s[4*i : 4*i+4])))
	}
	return v, true
}
