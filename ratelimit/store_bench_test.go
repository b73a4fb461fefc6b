package ratelimit

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// Run: go test -run '^$' -bench 'Store' -benchtime 3s ./ratelimit/

// benchBucket rarely runs dry, so the figures are of allowed checks.
func benchBucket(key string) Bucket {
	return Bucket{Key: key, Max: 1 << 30, Refill: time.Second}
}

// runParallel64 runs take from about 64 goroutines and reports checks/s.
// With distinct keys, each goroutine has its own bucket.
func runParallel64(b *testing.B, store Store, prefix string, distinct bool) {
	var next atomic.Int64
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		key := prefix + "same"
		if distinct {
			key = fmt.Sprint(prefix, next.Add(1))
		}
		buckets := []Bucket{benchBucket(key)}
		ctx := context.Background()
		for pb.Next() {
			if _, err := store.Take(ctx, buckets); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
}

func BenchmarkMemoryStoreTake(b *testing.B) {
	for _, distinct := range []bool{false, true} {
		b.Run(map[bool]string{false: "SameKey", true: "DistinctKeys"}[distinct], func(b *testing.B) {
			runParallel64(b, NewMemoryStore(MemoryOptions{}), "{m}:", distinct)
		})
	}
	b.Run("FourBuckets", func(b *testing.B) {
		store := NewMemoryStore(MemoryOptions{})
		var next atomic.Int64
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			user := fmt.Sprint("{m}:user", next.Add(1)%8)
			buckets := []Bucket{benchBucket("{m}:shared"), benchBucket(user),
				benchBucket("{m}:tool"), benchBucket(user + ":tool")}
			for pb.Next() {
				if _, err := store.Take(context.Background(), buckets); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
	})
}

func BenchmarkRedisStoreTake64(b *testing.B) {
	store := newRedisStore(b, startRedis(b))
	for _, distinct := range []bool{false, true} {
		b.Run(map[bool]string{false: "SameKey", true: "DistinctKeys"}[distinct], func(b *testing.B) {
			runParallel64(b, store, fmt.Sprintf("{b%d}:", b.N), distinct)
		})
	}
}

// BenchmarkRedisStoreTakeLatency times single checks one after another and
// reports their p50 and p99.
func BenchmarkRedisStoreTakeLatency(b *testing.B) {
	store := newRedisStore(b, startRedis(b))
	buckets := []Bucket{benchBucket("{lat}:b")}
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := store.Take(ctx, buckets); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
