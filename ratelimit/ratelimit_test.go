package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/parse"
)

// TestDisabledStageCostsNothing: with nothing configured the stage is next
// itself, so requests pay nothing for it, and every request reaches next.
func TestDisabledStageCostsNothing(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]config.RateLimiting{
		"empty":                 {},
		"tool entry no buckets": {Tools: []config.ToolLimit{{Name: "t"}}, CheckTimeout: config.Duration(time.Second)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mw, err := New(cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			next := &countingHandler{}
			h := mw(next)
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/mcp", nil))
			if next.calls != 1 {
				t.Fatalf("next called %d times, want 1", next.calls)
			}
			if h != http.Handler(next) {
				t.Fatalf("stage wrapped next in %T; a disabled stage must return next unchanged", h)
			}
		})
	}
}

type countingHandler struct{ calls int }

func (c *countingHandler) ServeHTTP(http.ResponseWriter, *http.Request) { c.calls++ }

func TestNewRefusesIncompleteOptions(t *testing.T) {
	t.Parallel()
	cfg := config.RateLimiting{Shared: &config.Bucket{MaxTokens: 1, RefillPeriod: config.Duration(time.Second)}}
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no store", Options{ServerName: "gw"}, "no store"},
		{"no server name", Options{Store: &stageStore{}}, "server name is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(cfg, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := New(cfg, Options{ServerName: "gw", Store: &stageStore{}}); err != nil {
		t.Fatalf("New with store and name: %v", err)
	}
}

func TestDefaultCheckTimeout(t *testing.T) {
	t.Parallel()
	cfg := fullConfig()
	l, err := newLimiter(cfg, Options{ServerName: "gw", Store: &stageStore{}}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if l.timeout != 50*time.Millisecond {
		t.Fatalf("timeout = %v, want 50ms by default", l.timeout)
	}
	cfg.CheckTimeout = config.Duration(20 * time.Millisecond)
	if l, _ = newLimiter(cfg, Options{ServerName: "gw", Store: &stageStore{}}, time.Now); l.timeout != 20*time.Millisecond {
		t.Fatalf("timeout = %v, want the configured 20ms", l.timeout)
	}
}

// TestOnlyToolsCallIsLimited: everything but tools/call reaches next
// without a store check.
func TestOnlyToolsCallIsLimited(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		parsed *parse.Parsed // nil: no parsed message (GET, DELETE)
	}{
		{"initialize", &parse.Parsed{Method: "initialize", ID: json.RawMessage("1")}},
		{"tools/list", &parse.Parsed{Method: "tools/list", ID: json.RawMessage("2")}},
		{"notification", &parse.Parsed{Method: "notifications/initialized"}},
		{"prompts/get", &parse.Parsed{Method: "prompts/get", ID: json.RawMessage("3"), ResourceID: "github_create_pr"}},
		{"resources/read", &parse.Parsed{Method: "resources/read", ID: json.RawMessage("4"), ResourceID: "file:///x"}},
		{"response", &parse.Parsed{ID: json.RawMessage("5")}},
		{"batch", &parse.Parsed{Batch: true}},
		{"GET stream", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := &stageStore{take: reject(time.Second, 0)}
			s := newTestStage(t, fullConfig(), st)
			r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
			if tc.parsed == nil {
				r.Method = http.MethodGet
			} else {
				r = r.WithContext(parse.NewContext(r.Context(), tc.parsed))
			}
			w := s.serve(r)
			if s.next.calls() != 1 || w.Code != http.StatusOK {
				t.Fatalf("next calls = %d, status %d; want next called once", s.next.calls(), w.Code)
			}
			if n := len(st.calls()); n != 0 {
				t.Fatalf("store asked %d times, want 0", n)
			}
		})
	}
}

func TestAllowedCallReachesNext(t *testing.T) {
	t.Parallel()
	st := &stageStore{}
	s := newTestStage(t, fullConfig(), st)
	w := s.serve(toolCall("github_create_pr", "1", "2025-06-18", alice))
	if w.Code != http.StatusOK || s.next.calls() != 1 {
		t.Fatalf("status %d, next calls %d; want 200 and next called", w.Code, s.next.calls())
	}
	if got := s.next.lastParsed(); got == nil || got.ResourceID != "github_create_pr" {
		t.Fatalf("next saw parsed %+v; want the request's own context", got)
	}
	if len(st.calls()) != 1 {
		t.Fatalf("store asked %d times, want exactly one Take per call", len(st.calls()))
	}
	if len(s.audit.all()) != 0 {
		t.Fatalf("audit events %v for an allowed call; the audit stage records those", s.audit.all())
	}
	if got := s.decisions("all", "allowed"); got != 1 {
		t.Fatalf("allowed decisions = %d, want 1", got)
	}
	if got := s.histogramCount("vmcp_ratelimit_check_duration_seconds"); got != 1 {
		t.Fatalf("check duration samples = %d, want 1", got)
	}
}

// TestRejection: the 429 contract, for both protocol generations.
func TestRejection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		id         string // raw JSON id
		version    string
		retryAfter time.Duration
		rejected   []int
		wantCode   int
		wantSecs   int64
		wantScope  string
	}{
		{"numeric id 2025-06-18", "7", "2025-06-18", 1200 * time.Millisecond, []int{0}, -32029, 2, "shared"},
		{"string id no version", `"req-1"`, "", 100 * time.Millisecond, []int{1}, -32029, 1, "perUser"},
		{"last old revision", "8", "2025-11-25", 3 * time.Second, []int{2}, -32029, 3, "shared tool github_create_pr"},
		{"new revision", "9", "2026-07-28", 2*time.Second + time.Nanosecond, []int{3}, 429, 3, "perUser tool github_create_pr"},
		{"newer revision", `"x"`, "2027-01-01", 0, []int{0, 3}, 429, 1, "shared, perUser tool github_create_pr"},
		{"no rejected index", "10", "2025-06-18", time.Second, nil, -32029, 1, "all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := &stageStore{take: reject(tc.retryAfter, tc.rejected...)}
			s := newTestStage(t, fullConfig(), st)
			r := toolCall("github_create_pr", tc.id, tc.version, alice)
			r.RemoteAddr = "192.0.2.7:4321"
			w := s.serve(r)

			if s.next.calls() != 0 {
				t.Fatalf("next called %d times for a rejected call", s.next.calls())
			}
			if w.Code != http.StatusTooManyRequests {
				t.Fatalf("status %d, want 429", w.Code)
			}
			if got, want := w.Header().Get("Retry-After"), strconv.FormatInt(tc.wantSecs, 10); got != want {
				t.Fatalf("Retry-After %q, want %q", got, want)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			var body struct {
				JSONRPC string          `json:"jsonrpc"`
				ID      json.RawMessage `json:"id"`
				Error   struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
					Data    struct {
						RetryAfterSeconds int64  `json:"retryAfterSeconds"`
						Scope             string `json:"scope"`
					} `json:"data"`
				} `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %s: %v", w.Body, err)
			}
			if body.JSONRPC != "2.0" || string(body.ID) != tc.id {
				t.Fatalf("jsonrpc %q id %s, want 2.0 and %s", body.JSONRPC, body.ID, tc.id)
			}
			e := body.Error
			if e.Code != tc.wantCode || e.Message != "Rate limit exceeded" ||
				e.Data.RetryAfterSeconds != tc.wantSecs || e.Data.Scope != tc.wantScope {
				t.Fatalf("error %+v, want code %d, message %q, data {%d %q}",
					e, tc.wantCode, "Rate limit exceeded", tc.wantSecs, tc.wantScope)
			}

			events := s.audit.all()
			if len(events) != 1 {
				t.Fatalf("audit events %v, want one", events)
			}
			ev := events[0]
			ev.Time = time.Time{}
			want := audit.Event{
				Issuer: alice.Issuer, Subject: alice.Subject, ClientAddr: "192.0.2.7:4321",
				Method: "tools/call", Name: "github_create_pr", Outcome: audit.OutcomeRateLimited, Reason: tc.wantScope,
			}
			if ev != want {
				t.Fatalf("audit event %+v\nwant %+v", ev, want)
			}
			if got := s.decisions(tc.wantScope, "rejected"); got != 1 {
				t.Fatalf("rejected decisions for %q = %d, want 1", tc.wantScope, got)
			}
		})
	}
}

func TestErrorCode(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]int{
		"":           -32029,
		"2024-11-05": -32029,
		"2025-03-26": -32029,
		"2025-06-18": -32029,
		"2025-11-25": -32029,
		"2026-07-27": -32029,
		"2026-07-28": 429,
		"2026-12-01": 429,
		"2030-01-01": 429,
		"DRAFT-2026": -32029,
		"2026-7-28":  -32029,
	} {
		if got := errorCode(v); got != want {
			t.Errorf("errorCode(%q) = %d, want %d", v, got, want)
		}
	}
}

// TestStoreOutageEnforcesLimitsLocally walks one outage in the default
// mode (local): a failed check is decided by the same buckets in memory,
// five failures in a row open the circuit (logged once; the store is not
// asked), one probe per second asks it, and the first answer closes the
// circuit, so the store decides again.
func TestStoreOutageEnforcesLimitsLocally(t *testing.T) {
	t.Parallel()
	clk := &stageClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	down := errors.New("redis: connection refused")
	st := &stageStore{}
	st.setErr(down)
	s := newTestStageClock(t, fullConfig(), st, clk)

	call := func(step string, who auth.Identity, wantCode, wantStoreCalls int) {
		t.Helper()
		w := s.serve(toolCall("github_create_pr", "1", "", who))
		if w.Code != wantCode {
			t.Fatalf("%s: status %d %s, want %d", step, w.Code, w.Body, wantCode)
		}
		if got := len(st.calls()); got != wantStoreCalls {
			t.Fatalf("%s: store asked %d times in all, want %d", step, got, wantStoreCalls)
		}
	}

	// github_create_pr allows 2 calls per hour and user.
	call("failure 1", alice, http.StatusOK, 1)
	call("failure 2", alice, http.StatusOK, 2)
	call("failure 3: alice is over her limit in memory too", alice, http.StatusTooManyRequests, 3)
	if w := s.log.warnings(); len(w) != 0 {
		t.Fatalf("warnings before the circuit opened: %q", w)
	}
	call("failure 4", bob, http.StatusOK, 4)
	call("failure 5 opens the circuit", bob, http.StatusOK, 5)
	if w := s.log.warnings(); len(w) != 1 || !strings.Contains(w[0], "connection refused") || !strings.Contains(w[0], "memory") {
		t.Fatalf("warnings once the circuit opened: %q; want one naming the error and the local limits", w)
	}
	call("open: not asked, bob over his limit", bob, http.StatusTooManyRequests, 5)
	clk.advance(500 * time.Millisecond)
	call("open: still not asked", alice, http.StatusTooManyRequests, 5)
	clk.advance(600 * time.Millisecond)
	call("probe fails", alice, http.StatusTooManyRequests, 6)
	call("open again", alice, http.StatusTooManyRequests, 6)
	if w := s.log.warnings(); len(w) != 1 {
		t.Fatalf("warnings in one outage: %q; want one", w)
	}
	if got := s.total("vmcp_ratelimit_decided_without_store_total"); got != 9 {
		t.Fatalf("decided without the store: %d, want 9", got)
	}
	if got := s.total("vmcp_ratelimit_store_outages_total"); got != 1 {
		t.Fatalf("outages %d, want 1", got)
	}
	if got := s.total("vmcp_ratelimit_fail_open_total"); got != 0 {
		t.Fatalf("fail-open total %d, want 0: nothing passed unchecked", got)
	}

	// Redis answers again: the next probe closes the circuit, and the
	// store's own buckets decide from then on.
	st.setErr(nil)
	clk.advance(time.Second)
	call("probe answered", alice, http.StatusOK, 7)
	call("closed", alice, http.StatusOK, 8)
	if got := s.total("vmcp_ratelimit_store_failing"); got != 0 {
		t.Fatalf("store_failing %d after recovery, want 0", got)
	}
	if !s.log.has(slog.LevelInfo, "answers again") {
		t.Fatal("no log line when the store answered again")
	}
	if s.next.calls() != 6 {
		t.Fatalf("next called %d times, want 6", s.next.calls())
	}
}

// TestFailuresAmongAnswersKeepTheStore: failed or slow checks that are not
// five in a row switch nothing off: every call still asks the store, and a
// slow check that answers within the deadline counts as an answer.
func TestFailuresAmongAnswersKeepTheStore(t *testing.T) {
	t.Parallel()
	cfg := fullConfig()
	cfg.CheckTimeout = config.Duration(time.Second)
	var n atomic.Int64
	st := &stageStore{take: func(context.Context, []Bucket) (Decision, error) {
		switch n.Add(1) % 5 {
		case 0:
			time.Sleep(20 * time.Millisecond) // slow, answered
			return Decision{Allowed: true}, nil
		case 1, 2, 3:
			return Decision{}, context.DeadlineExceeded
		}
		return Decision{Allowed: true}, nil
	}}
	s := newTestStage(t, cfg, st)
	for i := range 20 {
		who := auth.Identity{Issuer: "https://idp.example", Subject: strconv.Itoa(i)}
		s.serve(toolCall("search", "1", "", who))
		if got := len(st.calls()); got != i+1 {
			t.Fatalf("call %d: store asked %d times, want every call", i+1, got)
		}
	}
	if w := s.log.warnings(); len(w) != 0 {
		t.Fatalf("warnings %q; want none: the store never failed five times in a row", w)
	}
}

// TestOnStoreFailureAllow lets calls through unchecked while the store
// fails, counting them as fail_open.
func TestOnStoreFailureAllow(t *testing.T) {
	t.Parallel()
	cfg := fullConfig()
	cfg.OnStoreFailure = config.StoreFailureAllow
	st := &stageStore{}
	st.setErr(errors.New("down"))
	s := newTestStage(t, cfg, st)
	for range 8 {
		if w := s.serve(toolCall("github_create_pr", "1", "", alice)); w.Code != http.StatusOK {
			t.Fatalf("status %d, want every call through", w.Code)
		}
	}
	if got := len(st.calls()); got != failuresToOpen {
		t.Fatalf("store asked %d times, want %d (then the circuit is open)", got, failuresToOpen)
	}
	if got, want := s.decisions("all", "fail_open"), int64(8); got != want {
		t.Fatalf("fail_open decisions %d, want %d", got, want)
	}
	if w := s.log.warnings(); len(w) != 1 || !strings.Contains(w[0], "unchecked") {
		t.Fatalf("warnings %q; want one saying calls pass unchecked", w)
	}
}

// TestOnStoreFailureDeny refuses calls while the store fails: 503 with
// Retry-After and a JSON-RPC error naming the reason; next is not called
// and the refusal is audited.
func TestOnStoreFailureDeny(t *testing.T) {
	t.Parallel()
	cfg := fullConfig()
	cfg.OnStoreFailure = config.StoreFailureDeny
	st := &stageStore{}
	st.setErr(errors.New("down"))
	s := newTestStage(t, cfg, st)
	w := s.serve(toolCall("github_create_pr", "7", "", alice))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("status %d Retry-After %q, want 503 and 1", w.Code, w.Header().Get("Retry-After"))
	}
	var body struct {
		ID    json.RawMessage `json:"id"`
		Error struct {
			Code int `json:"code"`
			Data struct {
				RetryAfterSeconds int64  `json:"retryAfterSeconds"`
				Reason            string `json:"reason"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if string(body.ID) != "7" || body.Error.Code != -32603 || body.Error.Data.Reason != "rate_limit_store_unavailable" || body.Error.Data.RetryAfterSeconds != 1 {
		t.Fatalf("body %s", w.Body)
	}
	if s.next.calls() != 0 {
		t.Fatal("a refused call reached next")
	}
	if ev := s.audit.all(); len(ev) != 1 || ev[0].Reason != "rate_limit_store_unavailable" {
		t.Fatalf("audit %+v", ev)
	}
	if got := s.decisions("all", "store_unavailable"); got != 1 {
		t.Fatalf("store_unavailable decisions %d, want 1", got)
	}
}

// TestSlowStorePassesWithinDeadline: a store that does not answer within
// checkTimeout costs the call about the deadline, then the local buckets
// let it pass.
func TestSlowStorePassesWithinDeadline(t *testing.T) {
	t.Parallel()
	cfg := fullConfig()
	cfg.CheckTimeout = config.Duration(30 * time.Millisecond)
	st := &stageStore{take: func(ctx context.Context, _ []Bucket) (Decision, error) {
		select {
		case <-ctx.Done():
			return Decision{}, ctx.Err()
		case <-time.After(10 * time.Second):
			return Decision{Allowed: true}, nil
		}
	}}
	s := newTestStageClock(t, cfg, st, nil)
	start := time.Now()
	w := s.serve(toolCall("github_create_pr", "1", "", alice))
	elapsed := time.Since(start)
	if w.Code != http.StatusOK || s.next.calls() != 1 {
		t.Fatalf("status %d, next calls %d; want the call to pass", w.Code, s.next.calls())
	}
	if elapsed < 30*time.Millisecond || elapsed > time.Second {
		t.Fatalf("call took %v; want about the 30ms deadline", elapsed)
	}
	if got := s.total("vmcp_ratelimit_decided_without_store_total"); got != 1 {
		t.Fatalf("decided without the store: %d, want 1", got)
	}
}

// TestClientGoneIsNotAStoreFailure: a request whose own context ends
// during the check passes on to next (which sees the cancellation) and
// does not count against the store.
func TestClientGoneIsNotAStoreFailure(t *testing.T) {
	t.Parallel()
	st := &stageStore{take: func(ctx context.Context, _ []Bucket) (Decision, error) {
		<-ctx.Done()
		return Decision{}, ctx.Err()
	}}
	cfg := fullConfig()
	cfg.CheckTimeout = config.Duration(10 * time.Second)
	s := newTestStageClock(t, cfg, st, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.serve(toolCall("github_create_pr", "1", "", alice).WithContext(ctx))
	if got := s.total("vmcp_ratelimit_decided_without_store_total"); got != 0 {
		t.Fatalf("decided without the store: %d, want 0", got)
	}
	if w := s.log.warnings(); len(w) != 0 {
		t.Fatalf("warnings %q for a client that went away", w)
	}
}

// BenchmarkStage is the stage's own cost on an allowed call with all four
// buckets, against a store that answers at once.
func BenchmarkStage(b *testing.B) {
	l, err := newLimiter(fullConfig(), Options{ServerName: "gw", Store: storeFunc(allowAll)}, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	h := l.wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := toolCall("github_create_pr", "1", "", alice)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.ServeHTTP(nil, r)
		}
	})
}

func allowAll(context.Context, []Bucket) (Decision, error) { return Decision{Allowed: true}, nil }

// storeFunc is a Store that is one function and records nothing.
type storeFunc func(context.Context, []Bucket) (Decision, error)

func (f storeFunc) Take(ctx context.Context, b []Bucket) (Decision, error) { return f(ctx, b) }

// --- helpers ---

var (
	alice = auth.Identity{Issuer: "https://idp.example", Subject: "alice"}
	bob   = auth.Identity{Issuer: "https://idp.example", Subject: "bob"}
)

// fullConfig has every kind of bucket: shared, perUser, and both buckets
// of github_create_pr; search has a shared bucket only.
func fullConfig() config.RateLimiting {
	b := func(n int, d time.Duration) *config.Bucket {
		return &config.Bucket{MaxTokens: n, RefillPeriod: config.Duration(d)}
	}
	return config.RateLimiting{
		Shared:  b(100, time.Minute),
		PerUser: b(20, time.Minute),
		Tools: []config.ToolLimit{
			{Name: "github_create_pr", Shared: b(10, time.Hour), PerUser: b(2, time.Hour)},
			{Name: "search", Shared: b(50, time.Second)},
		},
	}
}

// toolCall is a tools/call request as the parse and auth stages leave it.
func toolCall(tool, id, version string, who auth.Identity) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	ctx := parse.NewContext(r.Context(), &parse.Parsed{
		Method: "tools/call", ID: json.RawMessage(id), ResourceID: tool, ProtocolVersion: version,
	})
	return r.WithContext(auth.WithIdentity(ctx, who))
}

// stage is the stage under test with its fakes.
type stage struct {
	h      http.Handler
	next   *recordingNext
	audit  *auditLog
	log    *logSink
	reader *sdkmetric.ManualReader
	t      *testing.T
}

func newTestStage(t *testing.T, cfg config.RateLimiting, st Store) *stage {
	return newTestStageClock(t, cfg, st, nil)
}

// newTestStageClock builds the stage on clk (nil: the real clock), with
// every tool in the catalogue.
func newTestStageClock(t *testing.T, cfg config.RateLimiting, st Store, clk *stageClock) *stage {
	t.Helper()
	s := &stage{next: &recordingNext{}, audit: &auditLog{}, log: &logSink{}, reader: sdkmetric.NewManualReader(), t: t}
	now := time.Now
	if clk != nil {
		now = clk.now
	}
	l, err := newLimiter(cfg, Options{
		ServerName: "gw",
		Store:      st,
		Recorder:   s.audit,
		Logger:     slog.New(s.log),
		Meter:      sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.reader)).Meter("test"),
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	s.h = l.wrap(s.next)
	return s
}

func (s *stage) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, r)
	return w
}

func (s *stage) collect() metricdata.ResourceMetrics {
	s.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := s.reader.Collect(context.Background(), &rm); err != nil {
		s.t.Fatal(err)
	}
	return rm
}

// total sums every data point of counter name.
func (s *stage) total(name string) int64 {
	return s.sum(name, func(attribute.Set) bool { return true })
}

// decisions is vmcp_ratelimit_decisions_total{scope, outcome}.
func (s *stage) decisions(scope, outcome string) int64 {
	return s.sum("vmcp_ratelimit_decisions_total", func(a attribute.Set) bool {
		sc, _ := a.Value("scope")
		oc, _ := a.Value("outcome")
		return a.Len() == 2 && sc.AsString() == scope && oc.AsString() == outcome
	})
}

// sum adds the data points of counter name whose attributes match.
func (s *stage) sum(name string, match func(attribute.Set) bool) int64 {
	s.t.Helper()
	var n int64
	for _, sm := range s.collect().ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				s.t.Fatalf("%s is %T, want an int64 sum", name, m.Data)
			}
			for _, dp := range sum.DataPoints {
				if match(dp.Attributes) {
					n += dp.Value
				}
			}
		}
	}
	return n
}

func (s *stage) histogramCount(name string) uint64 {
	s.t.Helper()
	var n uint64
	for _, sm := range s.collect().ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == name {
				for _, dp := range h.DataPoints {
					n += dp.Count
				}
			}
		}
	}
	return n
}

// stageStore is a fake Store that records the buckets of every Take.
// take decides (nil: allow); err, when set, fails every Take first.
type stageStore struct {
	take func(context.Context, []Bucket) (Decision, error)

	mu   sync.Mutex
	got  [][]Bucket
	fail error
}

var _ Store = (*stageStore)(nil)

func (s *stageStore) Take(ctx context.Context, buckets []Bucket) (Decision, error) {
	s.mu.Lock()
	s.got = append(s.got, append([]Bucket(nil), buckets...))
	fail := s.fail
	s.mu.Unlock()
	if fail != nil {
		return Decision{}, fail
	}
	if s.take == nil {
		return Decision{Allowed: true, Remaining: 1}, nil
	}
	return s.take(ctx, buckets)
}

func (s *stageStore) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

func (s *stageStore) calls() [][]Bucket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]Bucket(nil), s.got...)
}

// reject returns a take that refuses with retryAfter, naming rejected.
func reject(retryAfter time.Duration, rejected ...int) func(context.Context, []Bucket) (Decision, error) {
	return func(context.Context, []Bucket) (Decision, error) {
		return Decision{RetryAfter: retryAfter, Rejected: rejected}, nil
	}
}

// recordingNext is next: it counts calls and keeps the last Parsed seen.
type recordingNext struct {
	mu     sync.Mutex
	n      int
	parsed *parse.Parsed
}

func (h *recordingNext) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, _ := parse.FromContext(r.Context())
	h.mu.Lock()
	h.n++
	h.parsed = p
	h.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (h *recordingNext) calls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

func (h *recordingNext) lastParsed() *parse.Parsed {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.parsed
}

type auditLog struct {
	mu     sync.Mutex
	events []audit.Event
}

func (a *auditLog) Record(_ context.Context, e audit.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, e)
}

func (a *auditLog) all() []audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Event(nil), a.events...)
}

// logSink is a slog.Handler keeping every record as text.
type logSink struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logSink) WithGroup(string) slog.Handler            { return l }

func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}

// has reports whether a record of level contains text.
func (l *logSink) has(level slog.Level, text string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if r.Level == level && strings.Contains(r.Message, text) {
			return true
		}
	}
	return false
}

// warnings returns the warning records as "message k=v k=v".
func (l *logSink) warnings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if r.Level != slog.LevelWarn {
			continue
		}
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.String())
			return true
		})
		out = append(out, b.String())
	}
	return out
}

// stageClock is a settable clock.
type stageClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stageClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stageClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
