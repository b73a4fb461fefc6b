package ratelimit

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// How the stage notices that the store is failing and that it is back.
const (
	// failuresToOpen consecutive failed checks (errors, or no answer
	// within checkTimeout), each started after the previous one failed,
	// open the circuit: the store is failing. One slow or failed check
	// among answered ones opens nothing, nor do the checks of one slow
	// round trip, however many.
	failuresToOpen = 5
	// probeEvery is, while the circuit is open, the time between two calls
	// that ask the store (one at a time); the first answer closes it.
	probeEvery = time.Second
)

// circuit tracks the store's health for the whole stage. Closed, every
// call asks the store; failuresToOpen failures in a row open it. Open,
// calls are decided without the store, except one probe per probeEvery,
// and any answer closes it again. An outage is logged once when the
// circuit opens and once when it closes. The closed path takes no lock.
type circuit struct {
	log     *slog.Logger
	now     func() time.Time
	mode    string       // config.StoreFailure*, for the log
	onOpen  func()       // metrics: an outage began
	onClose func()       // metrics: it ended
	failing atomic.Bool  // a failure since the last answer
	open    atomic.Bool  // the store is not asked, but for probes
	mu      sync.Mutex   // serialises failures, probes and recovery
	streak  int          // consecutive failures, overlapping ones as one
	last    time.Time    // when the last failure counted in streak ended
	since   time.Time    // when the circuit opened
	next    time.Time    // earliest next probe while open
	probing bool         // a probe is out
	without atomic.Int64 // calls decided without the store this outage
}

// ask reports whether a call should ask the store; probe is true for the
// one call that tests an open circuit, which must end with answered,
// failed or abandoned.
func (c *circuit) ask() (ask, probe bool) {
	if !c.open.Load() {
		return true, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.open.Load() {
		return true, false
	}
	if c.probing || c.now().Before(c.next) {
		return false, false
	}
	c.probing = true
	return true, true
}

// decidedWithout counts a call decided without the store.
func (c *circuit) decidedWithout() { c.without.Add(1) }

// retryAfter is the time until the next probe may ask the store.
func (c *circuit) retryAfter() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.next.Sub(c.now())
}

// answered records a check the store answered, slow or not: the
// failure streak ends and an open circuit closes.
func (c *circuit) answered(probe bool) {
	if !c.failing.Load() && !probe {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failing.Store(false)
	c.streak = 0
	if probe {
		c.probing = false
	}
	if !c.open.Load() {
		return
	}
	c.open.Store(false)
	c.onClose()
	c.log.Info("rate limit store answers again; limits are kept in it",
		"outage", c.now().Sub(c.since).Round(time.Millisecond), "calls_decided_without_store", c.without.Swap(0))
}

// failed records a failed check that started at started; the
// failuresToOpen-th in a row opens the circuit and logs the outage, and a
// failed probe keeps it open. Checks that were out together (they share a
// round trip to the store) count as one: a single slow round trip that
// fails every check waiting on it does not switch a healthy store off.
func (c *circuit) failed(err error, probe bool, started time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failing.Store(true)
	now := c.now()
	if c.streak == 0 || !started.Before(c.last) {
		c.streak++
		c.last = now
	}
	if probe {
		c.probing = false
	}
	c.next = now.Add(probeEvery)
	if c.open.Load() || c.streak < failuresToOpen {
		return
	}
	c.open.Store(true)
	c.since = now
	c.onOpen()
	c.log.Warn("rate limit store is failing; "+modeWhileOpen[c.mode]+" until it answers",
		"error", err, "consecutive_failures", c.streak, "on_store_failure", c.mode)
}

// abandoned releases a probe that ended without a verdict on the store
// (the client went away).
func (c *circuit) abandoned(probe bool) {
	if !probe {
		return
	}
	c.mu.Lock()
	c.probing = false
	c.mu.Unlock()
}
