package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"time"
)

// MemoryOptions configures a MemoryStore. The zero value is ready to use.
type MemoryOptions struct {
	// MaxBuckets bounds the buckets held; 0 (or less): 100000. When full,
	// buckets that have refilled are dropped first, then those nearest to
	// full (a dropped bucket starts again full).
	MaxBuckets int
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// MemoryStore is a Store for one instance, with the same semantics as
// RedisStore: Take is atomic across its buckets, safe for concurrent use,
// and memory is bounded by MaxBuckets. Full buckets are swept on the way,
// without a goroutine. Keys of one Take should be distinct; a repeated key
// is taken from once.
type MemoryStore struct {
	now      func() time.Time
	base     time.Time
	seed     maphash.Seed
	shards   []memShard
	perShard int
}

var _ Store = (*MemoryStore)(nil)

// memShard holds the buckets whose keys hash to it, under its own lock.
type memShard struct {
	mu      sync.Mutex
	buckets map[string]memBucket
	takes   int // since the last sweep
	_       [40]byte
}

// memBucket is one bucket's state: tokens scaled by the refill period in ns
// (a token costs Refill ns, an empty bucket gains Max per ns), as of last
// (ns since the store's base), and full, the time it is full again.
type memBucket struct {
	scaled, last, full int64
}

// NewMemoryStore returns an empty store.
func NewMemoryStore(opts MemoryOptions) *MemoryStore {
	maxBuckets := opts.MaxBuckets
	if maxBuckets <= 0 {
		maxBuckets = 100000
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	// Up to 64 shards, each holding at least 256 buckets, so small bounds
	// stay exact.
	n := 1
	for n < 64 && maxBuckets/(2*n) >= 256 {
		n *= 2
	}
	m := &MemoryStore{
		now:      now,
		base:     now(),
		seed:     maphash.MakeSeed(),
		shards:   make([]memShard, n),
		perShard: maxBuckets / n,
	}
	for i := range m.shards {
		m.shards[i].buckets = make(map[string]memBucket)
	}
	return m
}

// Take checks every bucket and takes one token from each only if all have
// one. An empty list is allowed. It fails only for an invalid bucket.
func (m *MemoryStore) Take(_ context.Context, buckets []Bucket) (Decision, error) {
	if len(buckets) == 0 {
		return Decision{Allowed: true}, nil
	}
	for i, b := range buckets {
		if _, err := refillMicros(b); err != nil {
			return Decision{}, fmt.Errorf("ratelimit: memory take: bucket %d: %w", i, err)
		}
	}
	var idxBuf, lockBuf [8]int
	idx := idxBuf[:0]
	for _, b := range buckets {
		idx = append(idx, m.shardOf(b.Key))
	}
	locks := idx
	if len(idx) > 1 {
		locks = append(lockBuf[:0], idx...)
		slices.Sort(locks)
		locks = slices.Compact(locks)
	}
	now := int64(m.now().Sub(m.base))
	for _, i := range locks {
		m.shards[i].mu.Lock()
	}
	d := m.take(buckets, idx, now)
	for _, i := range locks {
		m.shards[i].mu.Unlock()
	}
	return d, nil
}

// take is Take under the locks of every bucket's shard; idx[i] is the shard
// of buckets[i].
func (m *MemoryStore) take(buckets []Bucket, idx []int, now int64) Decision {
	var buf [8]memBucket
	state := buf[:0]
	d := Decision{Allowed: true}
	for i, b := range buckets {
		st := refilled(m.shards[idx[i]].buckets, b, now)
		state = append(state, st)
		if cost := int64(b.Refill); st.scaled < cost {
			d.Allowed = false
			d.Rejected = append(d.Rejected, i)
			wait := time.Duration((cost - st.scaled + b.Max - 1) / b.Max)
			d.RetryAfter = max(d.RetryAfter, wait)
		}
	}
	if !d.Allowed {
		return d
	}
	d.Remaining = -1
	for i, b := range buckets {
		st := state[i]
		cost := int64(b.Refill)
		st.scaled -= cost
		st.full = st.last + (b.Max*cost-st.scaled+b.Max-1)/b.Max
		if left := st.scaled / cost; d.Remaining < 0 || left < d.Remaining {
			d.Remaining = left
		}
		m.store(&m.shards[idx[i]], b.Key, st, now)
	}
	return d
}

// refilled returns b's state at now: full if absent, else refilled since
// its last update. A clock that went backwards counts as no time passed.
func refilled(held map[string]memBucket, b Bucket, now int64) memBucket {
	cost := int64(b.Refill)
	full := b.Max * cost
	st, ok := held[b.Key]
	if !ok {
		return memBucket{scaled: full, last: now, full: now}
	}
	if now <= st.last {
		return st
	}
	if elapsed := now - st.last; elapsed >= cost {
		st.scaled = full
	} else if gain := elapsed * b.Max; gain >= full-st.scaled {
		st.scaled = full
	} else {
		st.scaled += gain
	}
	st.last = now
	return st
}

// store writes a bucket back into its shard, sweeping the shard every so
// often and making room when it is full.
func (m *MemoryStore) store(sh *memShard, key string, st memBucket, now int64) {
	sh.takes++
	if _, ok := sh.buckets[key]; !ok && len(sh.buckets) >= m.perShard {
		sh.sweep(now)
		if len(sh.buckets) >= m.perShard {
			sh.evict(max(1, m.perShard/16))
		}
	} else if sh.takes >= max(1024, len(sh.buckets)) {
		sh.sweep(now)
	}
	sh.buckets[key] = st
}

// sweep drops the buckets that are full again: an absent bucket is a full
// one. Its cost is paid back by at least as many takes since the last sweep.
func (sh *memShard) sweep(now int64) {
	sh.takes = 0
	for k, st := range sh.buckets {
		if st.full <= now {
			delete(sh.buckets, k)
		}
	}
}

// evict drops the n buckets nearest to full.
func (sh *memShard) evict(n int) {
	fulls := make([]int64, 0, len(sh.buckets))
	for _, st := range sh.buckets {
		fulls = append(fulls, st.full)
	}
	slices.Sort(fulls)
	limit := fulls[min(n, len(fulls))-1]
	for k, st := range sh.buckets {
		if n == 0 {
			return
		}
		if st.full <= limit {
			delete(sh.buckets, k)
			n--
		}
	}
}

// shardOf returns the index of key's shard.
func (m *MemoryStore) shardOf(key string) int {
	if len(m.shards) == 1 {
		return 0
	}
	return int(maphash.String(m.seed, key) & uint64(len(m.shards)-1))
}

// len returns the number of buckets held.
func (m *MemoryStore) len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.buckets)
		sh.mu.Unlock()
	}
	return n
}
