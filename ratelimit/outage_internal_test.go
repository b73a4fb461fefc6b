package ratelimit

import (
	"errors"
	"log/slog"
	"testing"
	"time"
)

// TestOneSlowRoundTripOpensNothing: checks that were out together and fail
// together (one slow round trip to a healthy store) count as one failure;
// failures one after another open the circuit.
func TestOneSlowRoundTripOpensNothing(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	c := &circuit{log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }, onOpen: func() {}, onClose: func() {}}
	started := now
	now = now.Add(60 * time.Millisecond) // the round trip timed out
	for range 8 {
		c.failed(errors.New("timeout"), false, started)
	}
	if c.open.Load() {
		t.Fatal("one slow round trip failing eight checks opened the circuit")
	}
	for range failuresToOpen {
		started = now
		now = now.Add(60 * time.Millisecond)
		c.failed(errors.New("timeout"), false, started)
	}
	if !c.open.Load() {
		t.Fatal("failures one after another did not open the circuit")
	}
}
