// Package ratelimit is the rate-limit stage of the request path. It sits
// after MCP parse (it keys on the tool name) and before audit.
//
// Only tools/call is limited. Each call is checked against every applicable
// token bucket (shared, perUser, and the tool's own shared and perUser) in
// one Store.Take: the call passes only if every bucket has a token, and
// then takes one from each. A rejected call is answered 429 with
// Retry-After and a JSON-RPC error. While the store fails, calls are
// decided as rateLimiting.onStoreFailure says: by the same buckets in this
// replica's memory (local), let through (allow) or refused with 503
// (deny).
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
// checkTimeout. A check that takes longer is a store failure.
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
	// Logger receives the store outage warnings. nil: slog.Default().
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
	keys    *keyer
	store   Store
	timeout time.Duration
	rec     audit.Recorder
	circuit *circuit
	metrics *metrics
	now     func() time.Time
	// mode is rateLimiting.onStoreFailure; local is the store that
	// decides while the store fails in mode local, else nil.
	mode  string
	local Store
}

// modeWhileOpen says, for each rateLimiting.onStoreFailure, what happens to
// calls while the store fails.
var modeWhileOpen = map[string]string{
	config.StoreFailureLocal: "enforcing the same limits in this replica's memory",
	config.StoreFailureAllow: "letting calls through unchecked",
	config.StoreFailureDeny:  "refusing calls with 503",
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
	mode := cfg.OnStoreFailure
	if mode == "" {
		mode = config.StoreFailureLocal
	}
	if _, ok := modeWhileOpen[mode]; !ok {
		return nil, fmt.Errorf("onStoreFailure: must be local, allow or deny, got %q", mode)
	}
	l := &limiter{
		keys:    keys,
		store:   opts.Store,
		timeout: timeout,
		rec:     opts.Recorder,
		metrics: m,
		now:     now,
		mode:    mode,
	}
	if mode == config.StoreFailureLocal {
		l.local = NewMemoryStore(MemoryOptions{Now: now})
	}
	l.circuit = &circuit{log: opts.Logger, now: now, mode: mode, onOpen: m.outageBegan, onClose: m.outageEnded}
	return l, nil
}

// verdict is what check decided for a call.
type verdict int

const (
	pass        verdict = iota // the call goes on to next
	rejected                   // a bucket had no token: 429
	unavailable                // the store fails and onStoreFailure is deny: 503
)

func (l *limiter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := parse.FromContext(r.Context())
		if !ok || !p.CallsTool() || p.Denied { // a denied call spends no token
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
		switch d, v := l.check(r.Context(), pl.buckets[:pl.n]); v {
		case pass:
			next.ServeHTTP(w, r)
		case rejected:
			l.reject(w, r, p, id, d, pl.scopes[:pl.n])
		default:
			l.refuse(w, r, p, id, d)
		}
	})
}

// check asks the store, unless it is failing; then the call is decided as
// onStoreFailure says (without). On rejected and unavailable, d holds the
// wait to report.
func (l *limiter) check(ctx context.Context, buckets []Bucket) (d Decision, v verdict) {
	// The span "ratelimit.check", when the request is traced: a child of
	// its span, from that span's provider; untraced requests pay nothing.
	var fallback bool
	if parent := trace.SpanFromContext(ctx); parent.IsRecording() {
		var span trace.Span
		ctx, span = parent.TracerProvider().Tracer("github.com/vmcp/vmcp/ratelimit").Start(ctx, "ratelimit.check")
		defer func() {
			span.SetAttributes(attribute.Bool("vmcp.ratelimit.allowed", v == pass),
				attribute.Bool("vmcp.ratelimit.fail_open", v == pass && fallback && l.mode == config.StoreFailureAllow),
				attribute.Bool("vmcp.ratelimit.store_failing", fallback))
			span.End()
		}()
	}
	ask, probe := l.circuit.ask()
	if !ask {
		fallback = true
		return l.without(ctx, buckets)
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
		l.circuit.abandoned(probe)
		return d, pass
	case err != nil:
		l.circuit.failed(err, probe, start)
		fallback = true
		return l.without(ctx, buckets)
	}
	l.circuit.answered(probe)
	if d.Allowed && l.local != nil && l.local != l.store {
		// The local buckets follow what this replica let through, so that
		// when the store fails they start where it left them, not full.
		_, _ = l.local.Take(ctx, buckets)
	}
	return l.decided(ctx, d)
}

// without decides a call the store did not: by the local buckets, by
// letting it through, or by refusing it, per onStoreFailure.
func (l *limiter) without(ctx context.Context, buckets []Bucket) (Decision, verdict) {
	l.circuit.decidedWithout()
	l.metrics.decidedWithout(ctx, l.mode)
	switch l.mode {
	case config.StoreFailureDeny:
		l.metrics.unavailable(ctx)
		return Decision{RetryAfter: l.circuit.retryAfter()}, unavailable
	case config.StoreFailureLocal:
		if d, err := l.local.Take(ctx, buckets); err == nil {
			return l.decided(ctx, d)
		}
	}
	l.metrics.failedOpen(ctx)
	return Decision{}, pass
}

// decided counts and returns a store's decision.
func (l *limiter) decided(ctx context.Context, d Decision) (Decision, verdict) {
	if d.Allowed {
		l.metrics.allowed(ctx)
		return d, pass
	}
	return d, rejected
}

// record records a call the stage refused, with reason.
func (l *limiter) record(r *http.Request, p *parse.Parsed, id auth.Identity, reason string) {
	l.rec.Record(r.Context(), audit.Event{
		Time:       l.now(),
		Issuer:     id.Issuer,
		Subject:    id.Subject,
		ClientAddr: r.RemoteAddr,
		Method:     p.Method,
		Name:       parse.TruncateName(p.ResourceID),
		Via:        p.Optimizer,
		Outcome:    audit.OutcomeRateLimited,
		Reason:     reason,
	})
}

// reject answers a call the store refused, without calling next.
func (l *limiter) reject(w http.ResponseWriter, r *http.Request, p *parse.Parsed, id auth.Identity, d Decision, scopes []string) {
	scope := rejectedScope(d.Rejected, scopes)
	l.metrics.rejected(r.Context(), scope)
	secs := retryAfterSeconds(d.RetryAfter)
	l.record(r, p, id, scope)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	jsonrpc.WriteError(w, http.StatusTooManyRequests, p.ID, jsonrpc.Error{
		Code:    errorCode(p.ProtocolVersion),
		Message: "Rate limit exceeded",
		Data:    rejectionData{RetryAfterSeconds: secs, Scope: scope},
	})
}

// refuse answers a call that was not checked because the store fails and
// onStoreFailure is deny: 503, as the refusal is the server's trouble, not
// the caller's excess (429 would tell it to slow down and mislead its
// backoff), and it passes once the store answers, at the earliest with the
// next probe, which Retry-After names.
func (l *limiter) refuse(w http.ResponseWriter, r *http.Request, p *parse.Parsed, id auth.Identity, d Decision) {
	secs := retryAfterSeconds(d.RetryAfter)
	l.record(r, p, id, reasonStoreUnavailable)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	jsonrpc.WriteError(w, http.StatusServiceUnavailable, p.ID, jsonrpc.Error{
		Code:    jsonrpc.CodeInternalError,
		Message: "Rate limit store unavailable; calls are refused until it answers",
		Data:    unavailableData{RetryAfterSeconds: secs, Reason: reasonStoreUnavailable},
	})
}

// reasonStoreUnavailable names a refusal by onStoreFailure: deny, in the
// audit trail and the JSON-RPC error.
const reasonStoreUnavailable = "rate_limit_store_unavailable"

// unavailableData is the data member of the JSON-RPC error of a refusal.
type unavailableData struct {
	RetryAfterSeconds int64  `json:"retryAfterSeconds"`
	Reason            string `json:"reason"`
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
