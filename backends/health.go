package backends

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// HealthState is how a backend has been answering lately, judged by its
// consecutive failures (see Options.DegradedAfter and UnhealthyAfter).
type HealthState string

// The health states. A backend starts healthy; any success makes it healthy
// again.
const (
	HealthHealthy   HealthState = "healthy"
	HealthDegraded  HealthState = "degraded"
	HealthUnhealthy HealthState = "unhealthy"
)

// BreakerState is the state of a backend's circuit breaker.
type BreakerState string

// The breaker states. A disabled breaker reports "".
const (
	// BreakerClosed lets every call through.
	BreakerClosed BreakerState = "closed"
	// BreakerOpen fails every call at once, naming the backend.
	BreakerOpen BreakerState = "open"
	// BreakerHalfOpen lets one call through as a probe: its success closes
	// the circuit, its failure opens it again.
	BreakerHalfOpen BreakerState = "half-open"
)

// ErrCircuitOpen is wrapped by the error of a call refused because the
// backend's circuit breaker is open; such errors also match ErrUnavailable.
var ErrCircuitOpen = errors.New("circuit open")

// circuitOpenError is the error of a call the breaker refused.
type circuitOpenError struct{ backend string }

func (e *circuitOpenError) Error() string {
	return fmt.Sprintf("backend %q is unavailable (circuit open)", e.backend)
}

func (e *circuitOpenError) Is(target error) bool {
	return target == ErrCircuitOpen || target == ErrUnavailable
}

// BreakerConfig tunes a backend's circuit breaker. In Options, the zero
// value takes config's default (see Options.Breaker).
type BreakerConfig struct {
	// FailureThreshold consecutive failed calls open the circuit. Zero or
	// negative: no breaker.
	FailureThreshold int
	// OpenFor is how long the circuit stays open before one probe call is
	// let through. Zero: config's health.breaker.openFor default.
	OpenFor time.Duration
}

// health counts a backend's consecutive failures and derives its state.
// Its thresholds are positive (New fills them from config's defaults).
type health struct {
	degradedAfter, unhealthyAfter int

	mu       sync.Mutex
	failures int
	state    HealthState
}

func newHealth(degradedAfter, unhealthyAfter int) *health {
	return &health{degradedAfter: degradedAfter, unhealthyAfter: unhealthyAfter, state: HealthHealthy}
}

// observe records one outcome (nil is a success) and reports whether the
// state changed.
func (h *health) observe(err error) (HealthState, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.failures = 0
	} else {
		h.failures++
	}
	s := HealthHealthy
	switch {
	case h.failures >= h.unhealthyAfter:
		s = HealthUnhealthy
	case h.failures >= h.degradedAfter:
		s = HealthDegraded
	}
	changed := s != h.state
	h.state = s
	return s, changed
}

func (h *health) snapshot() (HealthState, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state, h.failures
}

// breaker is a backend's circuit breaker. A nil *breaker is a disabled one:
// it lets every call through and records nothing, so the call path costs
// nothing extra when the breaker is off.
type breaker struct {
	threshold int
	openFor   time.Duration
	now       func() time.Time

	mu       sync.Mutex
	state    BreakerState
	failures int
	openedAt time.Time
	probing  bool // a half-open probe is in flight
}

// newBreaker returns nil (disabled) for a threshold of zero or less. now
// nil means time.Now.
func newBreaker(cfg BreakerConfig, now func() time.Time) *breaker {
	if cfg.FailureThreshold <= 0 {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	return &breaker{threshold: cfg.FailureThreshold, openFor: cfg.OpenFor, now: now, state: BreakerClosed}
}

// allow reports whether a call may go ahead. When it may, the caller must
// report the call's outcome with done: true for a failure, false for a
// success; observed false for a call whose outcome says nothing about the
// backend (the caller gave up).
func (b *breaker) allow() (done func(observed, failed bool), ok bool) {
	if b == nil {
		return func(bool, bool) {}, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.current() {
	case BreakerOpen:
		return nil, false
	case BreakerHalfOpen:
		if b.probing {
			return nil, false
		}
		b.probing = true
		return b.probeDone, true
	}
	return b.callDone, true
}

// current is the state, with an open circuit past openFor reported as
// half-open. b.mu must be held.
func (b *breaker) current() BreakerState {
	if b.state == BreakerOpen && !b.now().Before(b.openedAt.Add(b.openFor)) {
		b.state = BreakerHalfOpen
	}
	return b.state
}

func (b *breaker) callDone(observed, failed bool) {
	if !observed {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !failed {
		b.failures = 0
		return
	}
	b.failures++
	if b.state == BreakerClosed && b.failures >= b.threshold {
		b.open()
	}
}

func (b *breaker) probeDone(observed, failed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	switch {
	case !observed:
		// The caller gave up: the next call probes instead.
	case failed:
		b.open()
	default:
		b.state = BreakerClosed
		b.failures = 0
	}
}

func (b *breaker) open() {
	b.state = BreakerOpen
	b.openedAt = b.now()
	b.failures = 0
}

// snapshot returns the state, "" for a disabled breaker.
func (b *breaker) snapshot() BreakerState {
	if b == nil {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.current()
}

// callOutcome classifies the result of a call made under callCtx (derived
// from the caller's ctx with the request timeout). A transport failure or
// the request timeout is a failure. An answer, even an error answer, is a
// success. When the caller's own ctx ended first the call says nothing
// about the backend: observed is false.
func callOutcome(ctx, callCtx context.Context, err error) (observed, failed bool) {
	switch {
	case err == nil:
		return true, false
	case ctx.Err() != nil:
		return false, false
	case callCtx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		return true, true
	case isTransportFailure(callCtx, err):
		return true, true
	}
	return true, false
}
