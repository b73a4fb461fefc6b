package ratelimit

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/vmcp/vmcp/config"
)

// TestRedisOutageKeepsLimits stops a real redis-server mid-test (SIGSTOP:
// it neither answers nor refuses, the worst case for the check deadline):
// the stage keeps enforcing the bucket in memory, logs the outage once,
// and once Redis is resumed it goes back to Redis's own bucket, which
// kept its state through the outage.
func TestRedisOutageKeepsLimits(t *testing.T) {
	t.Parallel()
	client, pid := startRedisPID(t)
	cfg := config.RateLimiting{
		Shared:       &config.Bucket{MaxTokens: 3, RefillPeriod: config.Duration(time.Hour)},
		CheckTimeout: config.Duration(50 * time.Millisecond),
	}
	redis := &answerCounter{inner: newRedisStore(t, client)}
	log := &logSink{}
	reader := sdkmetric.NewManualReader()
	l, err := newLimiter(cfg, Options{
		ServerName: "outage",
		Store:      redis,
		Logger:     slog.New(log),
		Meter:      sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"),
	}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	s := &stage{h: l.wrap(&recordingNext{}), log: log, reader: reader, t: t}
	call := func(step string, want int) {
		t.Helper()
		if w := s.serve(toolCall("search", "1", "", alice)); w.Code != want {
			t.Fatalf("%s: status %d, want %d", step, w.Code, want)
		}
	}

	call("redis 1", http.StatusOK)
	call("redis 2", http.StatusOK)

	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	// The bucket in memory has followed what Redis let through: one call
	// of the three is left, then 429, whether the circuit has opened yet
	// or not. The limit holds across the outage.
	call("memory 1", http.StatusOK)
	for i := range 6 {
		call("memory over the limit "+string(rune('a'+i)), http.StatusTooManyRequests)
	}
	if w := log.warnings(); len(w) != 1 {
		t.Fatalf("warnings during the outage: %q; want one", w)
	}
	if got := s.total("vmcp_ratelimit_store_failing"); got != 1 {
		t.Fatalf("store_failing %d during the outage, want 1", got)
	}

	resume()
	time.Sleep(probeEvery + 100*time.Millisecond)
	// The next probe reaches Redis, which decides from then on.
	deadline := time.Now().Add(5 * time.Second)
	for {
		before := redis.answers.Load()
		s.serve(toolCall("search", "1", "", alice))
		if redis.answers.Load() > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no call reached Redis within 5s of it answering")
		}
		time.Sleep(probeEvery / 4)
	}
	before := redis.answers.Load()
	// Redis's bucket is empty: two calls answered before the outage, and
	// checks that timed out during it may still have run once it resumed.
	call("redis again, empty", http.StatusTooManyRequests)
	if redis.answers.Load() != before+1 {
		t.Fatal("the call after recovery was not decided by Redis")
	}
	if got := s.total("vmcp_ratelimit_store_failing"); got != 0 {
		t.Fatalf("store_failing %d after Redis answered, want 0", got)
	}
	if !log.has(slog.LevelInfo, "answers again") {
		t.Fatal("no log line when Redis answered again")
	}
}

// answerCounter counts the Takes its store answered.
type answerCounter struct {
	inner   Store
	answers atomic.Int64
}

func (a *answerCounter) Take(ctx context.Context, b []Bucket) (Decision, error) {
	d, err := a.inner.Take(ctx, b)
	if err == nil {
		a.answers.Add(1)
	}
	return d, err
}
