package ratelimit

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// scopeAll is the scope label of decisions that concern every bucket of
// a call (allowed, fail open).
const scopeAll = "all"

// metrics are the stage's instruments:
//
//	vmcp_ratelimit_decisions_total{scope, outcome=allowed|rejected|fail_open|store_unavailable}
//	vmcp_ratelimit_check_duration_seconds
//	vmcp_ratelimit_fail_open_total
//	vmcp_ratelimit_store_outages_total          times the store was found failing
//	vmcp_ratelimit_store_failing                1 while it is, else 0
//	vmcp_ratelimit_decided_without_store_total{on_store_failure=local|allow|deny}
//
// Calls decided by the local buckets while the store fails count as allowed
// or rejected. Scope labels are bounded: "all", or the scopes of rejecting buckets,
// which name only configured tools that are in the catalogue.
type metrics struct {
	decisions metric.Int64Counter
	duration  metric.Float64Histogram
	failOpen  metric.Int64Counter
	outages   metric.Int64Counter
	failing   metric.Int64UpDownCounter
	without   metric.Int64Counter

	allowedAttrs, failOpenAttrs, unavailableAttrs metric.AddOption
}

func newMetrics(m metric.Meter) (*metrics, error) {
	decisions, err := m.Int64Counter("vmcp_ratelimit_decisions_total",
		metric.WithDescription("Rate-limit decisions on tools/call, by scope and outcome."))
	if err != nil {
		return nil, err
	}
	duration, err := m.Float64Histogram("vmcp_ratelimit_check_duration_seconds",
		metric.WithDescription("Duration of one rate-limit store check."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25))
	if err != nil {
		return nil, err
	}
	failOpen, err := m.Int64Counter("vmcp_ratelimit_fail_open_total",
		metric.WithDescription("tools/call requests let through unchecked because the rate-limit store failed (rateLimiting.onStoreFailure: allow)."))
	if err != nil {
		return nil, err
	}
	outages, err := m.Int64Counter("vmcp_ratelimit_store_outages_total",
		metric.WithDescription("Times the rate-limit store was found failing (consecutive failed checks)."))
	if err != nil {
		return nil, err
	}
	failing, err := m.Int64UpDownCounter("vmcp_ratelimit_store_failing",
		metric.WithDescription("1 while the rate-limit store is failing and calls are decided without it, else 0."))
	if err != nil {
		return nil, err
	}
	without, err := m.Int64Counter("vmcp_ratelimit_decided_without_store_total",
		metric.WithDescription("tools/call requests decided without the rate-limit store because it failed, by rateLimiting.onStoreFailure."))
	if err != nil {
		return nil, err
	}
	return &metrics{
		decisions:        decisions,
		duration:         duration,
		failOpen:         failOpen,
		outages:          outages,
		failing:          failing,
		without:          without,
		allowedAttrs:     decisionAttrs(scopeAll, "allowed"),
		failOpenAttrs:    decisionAttrs(scopeAll, "fail_open"),
		unavailableAttrs: decisionAttrs(scopeAll, "store_unavailable"),
	}, nil
}

func decisionAttrs(scope, outcome string) metric.AddOption {
	return metric.WithAttributeSet(attribute.NewSet(
		attribute.String("scope", scope), attribute.String("outcome", outcome)))
}

func (m *metrics) allowed(ctx context.Context) { m.decisions.Add(ctx, 1, m.allowedAttrs) }

func (m *metrics) rejected(ctx context.Context, scope string) {
	m.decisions.Add(ctx, 1, decisionAttrs(scope, "rejected"))
}

func (m *metrics) failedOpen(ctx context.Context) {
	m.decisions.Add(ctx, 1, m.failOpenAttrs)
	m.failOpen.Add(ctx, 1)
}

func (m *metrics) checked(ctx context.Context, d time.Duration) {
	m.duration.Record(ctx, d.Seconds())
}

func (m *metrics) unavailable(ctx context.Context) { m.decisions.Add(ctx, 1, m.unavailableAttrs) }

func (m *metrics) decidedWithout(ctx context.Context, mode string) {
	m.without.Add(ctx, 1, metric.WithAttributes(attribute.String("on_store_failure", mode)))
}

func (m *metrics) outageBegan() {
	m.outages.Add(context.Background(), 1)
	m.failing.Add(context.Background(), 1)
}

func (m *metrics) outageEnded() { m.failing.Add(context.Background(), -1) }
