package ratelimit

import (
	"context"
	"time"
)

// Bucket is one token bucket to check: Max tokens of burst, refilled
// continuously at Max per Refill.
type Bucket struct {
	// Key names the bucket in the store. Keys of one server share a Redis
	// Cluster hash tag.
	Key string
	// Max is the burst size, at least 1.
	Max int64
	// Refill is the time to refill an empty bucket completely, > 0.
	Refill time.Duration
}

// Decision is the outcome of one Take.
type Decision struct {
	// Allowed is true when every bucket had a token and one was taken
	// from each.
	Allowed bool
	// RetryAfter is, when not allowed, the wait until every rejecting
	// bucket has a token again.
	RetryAfter time.Duration
	// Rejected lists the indices (into the buckets passed to Take) of the
	// buckets that had no token; empty when allowed.
	Rejected []int
	// Remaining is the smallest token count left across the buckets after
	// the take (whole tokens).
	Remaining int64
}

// Store checks and takes tokens. Take checks every bucket and, only if all
// of them have a token, takes one from each, atomically: a call rejected by
// any bucket consumes from none.
type Store interface {
	Take(ctx context.Context, buckets []Bucket) (Decision, error)
}
