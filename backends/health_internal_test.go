package backends

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

func TestHealthStates(t *testing.T) {
	t.Parallel()
	fail := errors.New("down")
	tests := []struct {
		name                          string
		degradedAfter, unhealthyAfter int
		outcomes                      []error
		want                          []HealthState
	}{
		{"success resets the count", 1, 3,
			[]error{fail, fail, nil, fail, fail, fail},
			[]HealthState{HealthDegraded, HealthDegraded, HealthHealthy, HealthDegraded, HealthDegraded, HealthUnhealthy}},
		{"tolerates one failure", 2, 4,
			[]error{fail, nil, fail, fail, fail, fail},
			[]HealthState{HealthHealthy, HealthHealthy, HealthHealthy, HealthDegraded, HealthDegraded, HealthUnhealthy}},
		{"straight to unhealthy", 1, 1,
			[]error{fail, nil},
			[]HealthState{HealthUnhealthy, HealthHealthy}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHealth(tt.degradedAfter, tt.unhealthyAfter)
			prev := HealthHealthy
			for i, err := range tt.outcomes {
				got, changed := h.observe(err)
				if got != tt.want[i] || changed != (got != prev) {
					t.Fatalf("outcome %d (%v): state %s changed %v, want %s after %s", i, err, got, changed, tt.want[i], prev)
				}
				prev = got
			}
		})
	}
}

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestBreaker(t *testing.T) {
	t.Parallel()
	// Each step: advance the clock, then try a call; if it is let through,
	// report outcome. want is the breaker state after the step.
	type step struct {
		advance time.Duration
		allowed bool
		outcome string // "ok", "fail", "gone" (the caller gave up); "" for a call left in flight
		want    BreakerState
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"opens after the threshold and fails fast", []step{
			{0, true, "fail", BreakerClosed},
			{0, true, "fail", BreakerClosed},
			{0, true, "fail", BreakerOpen},
			{time.Second, false, "", BreakerOpen},
			{8 * time.Second, false, "", BreakerOpen},
		}},
		{"a success resets the count", []step{
			{0, true, "fail", BreakerClosed},
			{0, true, "fail", BreakerClosed},
			{0, true, "ok", BreakerClosed},
			{0, true, "fail", BreakerClosed},
			{0, true, "fail", BreakerClosed},
			{0, true, "fail", BreakerOpen},
		}},
		{"callers giving up count for nothing", []step{
			{0, true, "fail", BreakerClosed},
			{0, true, "gone", BreakerClosed},
			{0, true, "fail", BreakerClosed},
			{0, true, "fail", BreakerOpen},
		}},
		{"half-opens after openFor; a good probe closes", []step{
			{0, true, "fail", BreakerClosed},
			{0, true, "fail", BreakerClosed},
			{0, true, "fail", BreakerOpen},
			{10 * time.Second, true, "ok", BreakerClosed},
			{0, true, "fail", BreakerClosed},
		}},
		{"a failed probe opens again for openFor", []step{
			{0, true, "fail", BreakerClosed},
			{0, true, "fail", BreakerClosed},
			{0, true, "fail", BreakerOpen},
			{10 * time.Second, true, "fail", BreakerOpen},
			{9 * time.Second, false, "", BreakerOpen},
			{time.Second, true, "ok", BreakerClosed},
		}},
		{"one probe at a time", []step{
			{0, true, "fail", BreakerClosed},
			{0, true, "fail", BreakerClosed},
			{0, true, "fail", BreakerOpen},
			{10 * time.Second, true, "", BreakerHalfOpen},
			{0, false, "", BreakerHalfOpen},
		}},
		{"a probe whose caller gave up lets the next call probe", []step{
			{0, true, "fail", BreakerClosed},
			{0, true, "fail", BreakerClosed},
			{0, true, "fail", BreakerOpen},
			{10 * time.Second, true, "gone", BreakerHalfOpen},
			{0, true, "ok", BreakerClosed},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := &fakeClock{t: time.Unix(1000, 0)}
			b := newBreaker(BreakerConfig{FailureThreshold: 3, OpenFor: 10 * time.Second}, clock.now)
			for i, s := range tt.steps {
				clock.advance(s.advance)
				done, ok := b.allow()
				if ok != s.allowed {
					t.Fatalf("step %d: allowed = %v, want %v", i, ok, s.allowed)
				}
				if ok {
					switch s.outcome {
					case "ok":
						done(true, false)
					case "fail":
						done(true, true)
					case "gone":
						done(false, false)
					}
				}
				if got := b.snapshot(); got != s.want {
					t.Fatalf("step %d: state %q, want %q", i, got, s.want)
				}
			}
		})
	}
}

func TestBreakerDisabled(t *testing.T) {
	t.Parallel()
	b := newBreaker(BreakerConfig{OpenFor: time.Second}, nil)
	if b != nil {
		t.Fatalf("a zero threshold gives a breaker %+v, want none", b)
	}
	for range 100 {
		done, ok := b.allow()
		if !ok {
			t.Fatal("a disabled breaker refused a call")
		}
		done(true, true)
	}
	if s := b.snapshot(); s != "" {
		t.Errorf("disabled breaker state = %q, want empty", s)
	}
}

func TestCircuitOpenError(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("call: %w", &circuitOpenError{backend: "x"})
	if !errors.Is(err, ErrCircuitOpen) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("%v does not match ErrCircuitOpen and ErrUnavailable", err)
	}
	if got, want := (&circuitOpenError{backend: "x"}).Error(), `backend "x" is unavailable (circuit open)`; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

func TestCallOutcome(t *testing.T) {
	t.Parallel()
	live := context.Background()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	timedOut, cancel2 := context.WithTimeout(context.Background(), -time.Second)
	defer cancel2()
	tests := []struct {
		name             string
		ctx, callCtx     context.Context
		err              error
		observed, failed bool
	}{
		{"answer", live, live, nil, true, false},
		{"JSON-RPC error answer", live, live, mcp.ErrMethodNotFound, true, false},
		{"transport failure", live, live, transport.NewError(errors.New("connection refused")), true, true},
		{"session terminated", live, live, transport.ErrSessionTerminated, true, true},
		{"request timeout", live, timedOut, transport.NewError(context.DeadlineExceeded), true, true},
		{"caller gave up", gone, gone, transport.NewError(context.Canceled), false, false},
	}
	for _, tt := range tests {
		observed, failed := callOutcome(tt.ctx, tt.callCtx, tt.err)
		if observed != tt.observed || failed != tt.failed {
			t.Errorf("%s: observed %v failed %v, want %v %v", tt.name, observed, failed, tt.observed, tt.failed)
		}
	}
}
