// Package ratelimit is the rate-limit stage of the request path. It sits
// after MCP parse (it keys on the tool name) and before audit.
//
// Only tools/call is limited. Each call is checked against every applicable
// token bucket (shared, perUser, and the tool's own shared and perUser) in
// one Store.Take: the call passes only if every bucket has a token, and
// then takes one from each. A rejected call is answered 429 with
// Retry-After and a JSON-RPC error; a failing store lets calls through
// (fail open).
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/jsonrpc"
	"github.com/vmcp/vmcp/parse"
)

// defaultCheckTimeout bounds one Store.Take when the config sets no
// checkTimeout. A check that takes longer fails open.
const defaultCheckTimeout = 50 * time.Millisecond

// Options are the already-built dependencies of the stage. New opens
// nothing.
type Options struct {
	// ServerName is the config name of this vmcp; it is part of every key,
	// as the Redis Cluster hash tag that keeps one server's keys in one
	// slot. Required when any bucket is configured.
	ServerName string
	// Store checks and takes tokens. Required when any bucket is
	// configured; its Take must return once its context is done.
	Store Store
	// KnownTool reports whether name is a tool of the aggregated
	// catalogue. A tool not in it never gets a per-tool bucket, so unknown
	// names create no keys. nil: every name is known.
	KnownTool func(name string) bool
	// Recorder receives an audit event for every rejected call.
	// nil: audit.Discard.
	Recorder audit.Recorder
	// Logger receives the fail-open warnings. nil: slog.Default().
	Logger *slog.Logger
	// Meter creates the stage's instruments. nil: a no-op meter.
	Meter metric.Meter
}

// New returns the stage for cfg. With no buckets configured it returns
// next unchanged, at no cost per request. Otherwise opts.Store and
// opts.ServerName are required.
func New(cfg config.RateLimiting, opts Options) (func(http.Handler) http.Handler, error) {
	l, err := newLimiter(cfg, opts, time.Now)
	if err != nil {
		return nil, err
	}
	if l == nil {
		return func(next http.Handler) http.Handler { return next }, nil
	}
	return l.wrap, nil
}

// limiter is the enabled stage; one per server, shared by all requests.
type limiter struct {
	keys     *keyer
	store    Store
	timeout  time.Duration
	rec      audit.Recorder
	failOpen *failOpen
	metrics  *metrics
	now      func() time.Time
}

// newLimiter builds the stage with clock now; nil (and no error) when no
// bucket is configured.
func newLimiter(cfg config.RateLimiting, opts Options, now func() time.Time) (*limiter, error) {
	keys := newKeyer(cfg, opts.ServerName, opts.KnownTool)
	if keys == nil {
		return nil, nil
	}
	if opts.Store == nil {
		return nil, errors.New("buckets are configured but no store was given")
	}
	if opts.ServerName == "" {
		return nil, errors.New("buckets are configured but the server name is empty; it is the hash tag of every key")
	}
	if opts.Recorder == nil {
		opts.Recorder = audit.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Meter == nil {
		opts.Meter = noop.NewMeterProvider().Meter("")
	}
	m, err := newMetrics(opts.Meter)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	timeout := cfg.CheckTimeout.D()
	if timeout <= 0 {
		timeout = defaultCheckTimeout
	}
	return &limiter{
		keys:     keys,
		store:    opts.Store,
		timeout:  timeout,
		rec:      opts.Recorder,
		failOpen: newFailOpen(opts.Logger, now),
		metrics:  m,
		now:      now,
	}, nil
}

func (l *limiter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := parse.FromContext(r.Context())
		if !ok || !p.CallsTool() {
			next.ServeHTTP(w, r)
			return
		}
		id, ok := auth.IdentityFrom(r.Context())
		if !ok {
			id = auth.Identity{Issuer: auth.AnonymousIssuer, Subject: auth.AnonymousSubject}
		}
		pl := l.keys.plan(p.ResourceID, id)
		if pl.n == 0 {
			next.ServeHTTP(w, r)
			return
		}
		d, passed := l.check(r.Context(), pl.buckets[:pl.n])
		if passed {
			next.ServeHTTP(w, r)
			return
		}
		l.reject(w, r, p, id, d, pl.scopes[:pl.n])
	})
}

// check asks the store, unless the fail-open cooldown is on. It reports
// whether the call may pass; on false, d is the store's rejection.
func (l *limiter) check(ctx context.Context, buckets []Bucket) (d Decision, passed bool) {
	// The span "ratelimit.check", when the request is traced: a child of
	// its span, from that span's provider; untraced requests pay nothing.
	if parent := trace.SpanFromContext(ctx); parent.IsRecording() {
		var span trace.Span
		ctx, span = parent.TracerProvider().Tracer("github.com/vmcp/vmcp/ratelimit").Start(ctx, "ratelimit.check")
		defer func() {
			span.SetAttributes(attribute.Bool("vmcp.ratelimit.allowed", passed), attribute.Bool("vmcp.ratelimit.fail_open", passed && !d.Allowed))
			span.End()
		}()
	}
	if l.failOpen.coolingDown() {
		l.failOpen.skipped()
		l.metrics.failedOpen(ctx)
		return d, true
	}
	start := l.now()
	tctx, cancel := context.WithTimeout(ctx, l.timeout)
	d, err := l.store.Take(tctx, buckets)
	cancel()
	l.metrics.checked(ctx, l.now().Sub(start))
	switch {
	case err != nil && ctx.Err() != nil:
		// The client went away; not the store's fault. next sees the
		// cancelled context.
		return d, true
	case err != nil:
		l.failOpen.failure(err)
		l.metrics.failedOpen(ctx)
		return d, true
	}
	l.failOpen.success()
	if d.Allowed {
		l.metrics.allowed(ctx)
		return d, true
	}
	return d, false
}

// reject answers a call the store refused, without calling next.
func (l *limiter) reject(w http.ResponseWriter, r *http.Request, p *parse.Parsed, id auth.Identity, d Decision, scopes []string) {
	scope := rejectedScope(d.Rejected, scopes)
	l.metrics.rejected(r.Context(), scope)
	secs := retryAfterSeconds(d.RetryAfter)
	l.rec.Record(r.Context(), audit.Event{
		Time:       l.now(),
		Issuer:     id.Issuer,
		Subject:    id.Subject,
		ClientAddr: r.RemoteAddr,
		Method:     p.Method,
		Name:       p.ResourceID,
		Via:        p.Optimizer,
		Outcome:    audit.OutcomeRateLimited,
		Reason:     scope,
	})
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	jsonrpc.WriteError(w, http.StatusTooManyRequests, p.ID, jsonrpc.Error{
		Code:    errorCode(p.ProtocolVersion),
		Message: "Rate limit exceeded",
		Data:    rejectionData{RetryAfterSeconds: secs, Scope: scope},
	})
}

// rejectionData is the data member of the JSON-RPC error of a rejection.
type rejectionData struct {
	RetryAfterSeconds int64  `json:"retryAfterSeconds"`
	Scope             string `json:"scope"`
}

// retryAfterSeconds is d in whole seconds, rounded up, at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	s := int64(math.Ceil(d.Seconds()))
	return max(s, 1)
}

// The JSON-RPC error codes of a rejection, by protocol revision.
const (
	// codeRateLimitedLegacy is the code for protocol revisions up to
	// 2025-11-25, and for requests that name no revision.
	codeRateLimitedLegacy = -32029
	// codeRateLimited is the code from revision 2026-07-28 on, which
	// reserves -32020..-32099 for the protocol.
	codeRateLimited = 429
)

// firstRevisionWith429 is the first protocol revision whose rate-limit
// error code is codeRateLimited.
const firstRevisionWith429 = "2026-07-28"

// errorCode returns the JSON-RPC error code of a rejection for the
// request's MCP protocol revision (a YYYY-MM-DD date; "" when the request
// named none): codeRateLimited from 2026-07-28 on, else
// codeRateLimitedLegacy. A version that is not a date is treated as old.
func errorCode(protocolVersion string) int {
	if isDate(protocolVersion) && protocolVersion >= firstRevisionWith429 {
		return codeRateLimited
	}
	return codeRateLimitedLegacy
}

// isDate reports whether v has the shape YYYY-MM-DD, so that dates compare
// correctly as strings.
func isDate(v string) bool {
	if len(v) != len("2006-01-02") {
		return false
	}
	for i := range len(v) {
		switch i {
		case 4, 7:
			if v[i] != '-' {
				return false
			}
		default:
			if v[i] < '0' || v[i] > '9' {
				return false
			}
		}
	}
	return true
}
