package ratelimit

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// How the stage behaves while the store fails.
const (
	// warnEvery is the least time between two fail-open warnings; the
	// fail-open calls in between are counted in the next one.
	warnEvery = 10 * time.Second
	// failuresBeforeCooldown consecutive store failures start a cooldown.
	failuresBeforeCooldown = 3
	// cooldown is how long calls pass without asking the store once it
	// has failed failuresBeforeCooldown times in a row, instead of each
	// paying the check deadline.
	cooldown = 5 * time.Second
)

// failOpen tracks store failures: it rate-limits the warning and decides
// when to skip the store. After a cooldown the next calls ask the store
// again; one more failure starts another cooldown at once, the first
// success ends the episode. The success and no-cooldown paths take no
// lock.
type failOpen struct {
	log *slog.Logger
	now func() time.Time

	until   atomic.Int64 // end of the cooldown, Unix ns; 0: none
	failing atomic.Bool  // a failure since the last success
	quiet   atomic.Int64 // fail-open calls not reported by a warning yet

	mu          sync.Mutex // serialises failure and recovery
	consecutive int
	lastWarn    time.Time
}

func newFailOpen(log *slog.Logger, now func() time.Time) *failOpen {
	return &failOpen{log: log, now: now}
}

// coolingDown reports whether calls should pass without asking the store.
func (f *failOpen) coolingDown() bool {
	u := f.until.Load()
	return u != 0 && f.now().UnixNano() < u
}

// skipped counts a call let through during a cooldown.
func (f *failOpen) skipped() { f.quiet.Add(1) }

// failure records a failed check (the call is let through) and warns,
// at most once per warnEvery.
func (f *failOpen) failure(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing.Store(true)
	f.consecutive++
	now := f.now()
	var coolFor time.Duration
	if f.consecutive >= failuresBeforeCooldown {
		coolFor = cooldown
		f.until.Store(now.Add(cooldown).UnixNano())
	}
	if !f.lastWarn.IsZero() && now.Sub(f.lastWarn) < warnEvery {
		f.quiet.Add(1)
		return
	}
	f.lastWarn = now
	f.log.Warn("rate limit check failed; letting calls through (fail open)",
		"error", err,
		"consecutive_failures", f.consecutive,
		"suppressed", f.quiet.Swap(0),
		"skipping_store_for", coolFor)
}

// success records a check the store answered, ending a failure episode.
func (f *failOpen) success() {
	if !f.failing.Load() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.failing.Load() {
		return
	}
	f.failing.Store(false)
	f.until.Store(0)
	f.log.Info("rate limit store answers again; limits enforced", "after_failures", f.consecutive)
	f.consecutive = 0
}
