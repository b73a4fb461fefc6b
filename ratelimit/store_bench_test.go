package ratelimit

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
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
	client, pid := startRedisPID(b)
	store := newRedisStore(b, client)
	for _, distinct := range []bool{false, true} {
		b.Run(map[bool]string{false: "SameKey", true: "DistinctKeys"}[distinct], func(b *testing.B) {
			cpu := startCPU(pid)
			runParallel64(b, store, fmt.Sprintf("{b%d}:", b.N), distinct)
			cpu.report(b)
		})
	}
}

// BenchmarkRedisStoreTakeLatency times single checks one after another and
// reports their p50 and p99.
func BenchmarkRedisStoreTakeLatency(b *testing.B) {
	client, pid := startRedisPID(b)
	store := newRedisStore(b, client)
	buckets := []Bucket{benchBucket("{lat}:b")}
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	cpu := startCPU(pid)
	for range b.N {
		start := time.Now()
		if _, err := store.Take(ctx, buckets); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	cpu.report(b)
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// cpuMeter measures the CPU time of this process (the store and its
// client, plus the benchmark's own loop) and of redis-server during a
// benchmark, as µs per op: on a small machine both compete for the same
// cores, so together they bound the checks a vmcp host can afford.
type cpuMeter struct {
	pid         int
	self, redis time.Duration
	ok          bool
}

func startCPU(redisPID int) cpuMeter {
	self, ok1 := selfCPU()
	redis, ok2 := pidCPU(redisPID)
	return cpuMeter{pid: redisPID, self: self, redis: redis, ok: ok1 && ok2}
}

// report adds client-cpu-µs/op and redis-cpu-µs/op to b's results (Linux
// only: the server's time comes from /proc, at clock-tick resolution).
func (m cpuMeter) report(b *testing.B) {
	self, ok1 := selfCPU()
	redis, ok2 := pidCPU(m.pid)
	if !m.ok || !ok1 || !ok2 || b.N == 0 {
		return
	}
	b.ReportMetric(float64((self-m.self).Nanoseconds())/1e3/float64(b.N), "client-cpu-µs/op")
	b.ReportMetric(float64((redis-m.redis).Nanoseconds())/1e3/float64(b.N), "redis-cpu-µs/op")
}

// selfCPU is this process's user plus system time.
func selfCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

// pidCPU is process pid's user plus system time from /proc (clock ticks,
// assumed 100 per second).
func pidCPU(pid int) (time.Duration, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) <= 12 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+s) * 10 * time.Millisecond, true
}

// BenchmarkRedisStoreUnderLoad models vmcp on a busy host: 16 callers each
// do about 100µs of CPU work, then a check, in a closed loop, with
// GOMAXPROCS cores shared with redis-server. Compare its ns/op and CPU per
// op with the NoCheck case (the same work without checks): their ratio is
// the throughput a check leaves, the figure issue 4 asks about for
// tools/call.
func BenchmarkRedisStoreUnderLoad(b *testing.B) {
	client, pid := startRedisPID(b)
	store := newRedisStore(b, client)
	for _, check := range []bool{false, true} {
		b.Run(map[bool]string{false: "NoCheck", true: "Check"}[check], func(b *testing.B) {
			buckets := []Bucket{benchBucket(fmt.Sprintf("{load%d}:b", b.N))}
			var sink atomic.Uint64
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			cpu := startCPU(pid)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					sink.Add(burn(burnWork))
					if !check {
						continue
					}
					if _, err := store.Take(ctx, buckets); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			cpu.report(b)
		})
	}
}

// burnWork is the loop count of a caller's work between checks: about
// 100µs of CPU on the development machine (see NoCheck's client-cpu-µs/op).
// Fixed, not calibrated, so runs compare.
const burnWork = 100_000

// burn spends CPU and returns a value the compiler cannot drop.
func burn(n int) uint64 {
	x := uint64(1)
	for i := range n {
		x = x*6364136223846793005 + uint64(i)
	}
	return x
}
