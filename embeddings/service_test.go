package embeddings_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/embeddings"
)

// progressLog records progress calls.
type progressLog struct {
	mu   sync.Mutex
	done []int
}

func (p *progressLog) f(done int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = append(p.done, done)
}

func (p *progressLog) get() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.done)
}

// checkProgress fails t unless the calls never decrease and end at n.
func checkProgress(t *testing.T, got []int, n int) {
	t.Helper()
	if len(got) == 0 || got[len(got)-1] != n {
		t.Fatalf("progress %v, want it to end at %d", got, n)
	}
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			t.Fatalf("progress %v goes back", got)
		}
	}
}

// TestDocumentsBatches: the missing texts go in batches of BatchSize, one
// request at a time, with the document prefix, and progress counts the
// texts that have a vector.
func TestDocumentsBatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		batch, n     int
		prefix       string
		wantSizes    []int
		wantProgress []int
	}{
		{"7 by 3", 3, 7, "", []int{3, 3, 1}, []int{0, 3, 6, 7}},
		{"6 by 3", 3, 6, "", []int{3, 3}, []int{0, 3, 6}},
		{"one batch", 64, 5, "", []int{5}, []int{0, 5}},
		{"default batch 64", 0, 130, "", []int{64, 64, 2}, []int{0, 64, 128, 130}},
		{"document prefix", 2, 3, "passage: ", []int{2, 1}, []int{0, 2, 3}},
		{"none", 3, 0, "", nil, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, nil)
			cfg := baseCfg(f)
			cfg.BatchSize, cfg.DocumentPrefix, cfg.QueryPrefix = tc.batch, tc.prefix, "query: "
			s := newService(t, cfg, embeddings.Options{})
			in := texts(tc.name, tc.n)
			var p progressLog
			got, err := s.Documents(context.Background(), in, p.f)
			if err != nil {
				t.Fatal(err)
			}
			checkVecs(t, got, prefixed(tc.prefix, in), defaultDims)
			var sizes []int
			var sent []string
			for _, c := range f.inputs() {
				sizes = append(sizes, len(c))
				sent = append(sent, c...)
			}
			if !slices.Equal(sizes, tc.wantSizes) {
				t.Errorf("batches of %v, want %v", sizes, tc.wantSizes)
			}
			if !slices.Equal(sent, prefixed(tc.prefix, in)) {
				t.Errorf("sent %q, want %q", sent, prefixed(tc.prefix, in))
			}
			if !slices.Equal(p.get(), tc.wantProgress) {
				t.Errorf("progress %v, want %v", p.get(), tc.wantProgress)
			}
			checkProgress(t, p.get(), tc.n)

			// The same texts again: all from memory, no request.
			before := len(f.requests())
			var p2 progressLog
			again, err := s.Documents(context.Background(), in, p2.f)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(f.requests()) - before; n != 0 {
				t.Errorf("%d requests for texts already embedded", n)
			}
			checkVecs(t, again, prefixed(tc.prefix, in), defaultDims)
			if !slices.Equal(p2.get(), []int{tc.n}) {
				t.Errorf("progress of a cached call %v, want [%d]", p2.get(), tc.n)
			}
		})
	}
}

// TestDocumentsNilProgress: progress may be nil.
func TestDocumentsNilProgress(t *testing.T) {
	t.Parallel()
	f := newFake(t, nil)
	cfg := baseCfg(f)
	cfg.BatchSize = 2
	s := newService(t, cfg, embeddings.Options{})
	in := texts("nil", 3)
	got, err := s.Documents(context.Background(), in, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkVecs(t, got, in, defaultDims)
}

// TestDocumentsChangedText: only a text that changed is embedded again, and
// the cache key is the text (not its position, nor the other texts).
func TestDocumentsChangedText(t *testing.T) {
	t.Parallel()
	f := newFake(t, nil)
	cfg := baseCfg(f)
	cfg.DocumentPrefix = "passage: "
	s := newService(t, cfg, embeddings.Options{})
	ctx := context.Background()
	if _, err := s.Documents(ctx, []string{"a", "b", "c"}, nil); err != nil {
		t.Fatal(err)
	}
	in := []string{"c", "b2", "a", "new"}
	got, err := s.Documents(ctx, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkVecs(t, got, prefixed("passage: ", in), defaultDims)
	reqs := f.inputs()
	if len(reqs) != 2 || !slices.Equal(reqs[1], []string{"passage: b2", "passage: new"}) {
		t.Fatalf("requests %q; want the second for b2 and new only", reqs)
	}
	// A subset of what is cached: no request.
	if _, err := s.Documents(ctx, []string{"b2", "a"}, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(f.requests()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

// TestDocumentsErrorResumes: an error mid-way is returned, and the vectors
// got before it stay cached: the next call asks only for the rest.
func TestDocumentsErrorResumes(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	failing.Store(true)
	f := newFake(t, func(n int, c call, w http.ResponseWriter, _ *http.Request) {
		if n == 1 && failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"message":"overloaded"}}`))
			return
		}
		answerVectors(w, c)
	})
	cfg := baseCfg(f)
	cfg.BatchSize = 2
	s := newService(t, cfg, embeddings.Options{})
	in := texts("resume", 5)
	var p progressLog
	got, err := s.Documents(context.Background(), in, p.f)
	if err == nil || got != nil {
		t.Fatalf("Documents = %v, %v; want an error", got, err)
	}
	if !slices.Equal(p.get(), []int{0, 2}) {
		t.Errorf("progress %v, want [0 2]", p.get())
	}
	var p2 progressLog
	got, err = s.Documents(context.Background(), in, p2.f)
	if err != nil {
		t.Fatal(err)
	}
	checkVecs(t, got, in, defaultDims)
	want := [][]string{in[0:2], in[2:4], in[2:4], in[4:5]}
	if reqs := f.inputs(); !slices.EqualFunc(reqs, want, slices.Equal) {
		t.Fatalf("requests %q, want %q", reqs, want)
	}
	if !slices.Equal(p2.get(), []int{2, 4, 5}) {
		t.Errorf("progress of the resumed call %v, want [2 4 5]", p2.get())
	}
}

// TestDocumentsMemoryBound: MaxCached bounds the vectors in memory; the
// least recently used are embedded again.
func TestDocumentsMemoryBound(t *testing.T) {
	t.Parallel()
	f := newFake(t, nil)
	s := newService(t, baseCfg(f), embeddings.Options{MaxCached: 2})
	ctx := context.Background()
	if _, err := s.Documents(ctx, []string{"a", "b", "c"}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.Documents(ctx, []string{"a", "b", "c"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkVecs(t, got, []string{"a", "b", "c"}, defaultDims)
	if reqs := f.inputs(); len(reqs) != 2 || !slices.Equal(reqs[1], []string{"a"}) {
		t.Fatalf("requests %q; want the second for a only", reqs)
	}
}

// deadlines is a transport that records how long each request's context
// has left, then sends it.
type deadlines struct {
	mu   sync.Mutex
	left []time.Duration // -1: no deadline
}

func (d *deadlines) RoundTrip(r *http.Request) (*http.Response, error) {
	left := time.Duration(-1)
	if dl, ok := r.Context().Deadline(); ok {
		left = time.Until(dl)
	}
	d.mu.Lock()
	d.left = append(d.left, left)
	d.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (d *deadlines) get() []time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.left)
}

// TestDeadlines: every request has a deadline: a query cfg.Timeout
// (default 300ms), a batch of documents max(60 × cfg.Timeout, 30s). (A
// hanging service is not waited out for 30s here; see
// TestDocumentsHangingService for the caller's context.)
func TestDeadlines(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name              string
		timeout           time.Duration
		wantQuery, wantDo time.Duration
	}{
		{"50ms", 50 * time.Millisecond, 50 * time.Millisecond, 30 * time.Second},
		{"default", 0, 300 * time.Millisecond, 30 * time.Second},
		{"2s", 2 * time.Second, 2 * time.Second, 120 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, nil)
			var d deadlines
			cfg := baseCfg(f)
			cfg.Timeout, cfg.BatchSize = config.Duration(tc.timeout), 2
			s := newService(t, cfg, embeddings.Options{HTTPClient: &http.Client{Transport: &d}})
			if _, err := s.Documents(context.Background(), texts("dl", 3), nil); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Query(context.Background(), "q"); err != nil {
				t.Fatal(err)
			}
			left := d.get()
			if len(left) != 3 {
				t.Fatalf("%d requests, want 3", len(left))
			}
			for i, want := range []time.Duration{tc.wantDo, tc.wantDo, tc.wantQuery} {
				// Allow for the time to get there (slow under -race).
				if left[i] > want || left[i] < want-want/2 {
					t.Errorf("request %d had %v left, want about %v", i, left[i], want)
				}
			}
		})
	}
}

// TestDocumentsHangingService: a service that never answers is given up
// when the caller's context ends, with the vectors got so far cached.
func TestDocumentsHangingService(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(n int, c call, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			hang(w, r)
			return
		}
		answerVectors(w, c)
	})
	cfg := baseCfg(f)
	cfg.BatchSize, cfg.Timeout = 2, config.Duration(10*time.Millisecond)
	s := newService(t, cfg, embeddings.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	in := texts("hang", 3)
	_, err := s.Documents(ctx, in, nil)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want one wrapping context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
	// Cancelled rather than timed out.
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel2)
	_, err = s.Documents(ctx2, in, nil) // request 2 answers: only the hanging batch was missing
	if err != nil {
		t.Fatalf("resumed call: %v", err)
	}
	if reqs := f.inputs(); len(reqs) != 3 || !slices.Equal(reqs[2], in[2:]) {
		t.Fatalf("requests %q", reqs)
	}
}

// TestQuery: the query prefix is sent, a query is cached by its text, and
// an error is not cached.
func TestQuery(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	f := newFake(t, func(n int, c call, w http.ResponseWriter, _ *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		answerVectors(w, c)
	})
	cfg := baseCfg(f)
	cfg.QueryPrefix, cfg.DocumentPrefix, cfg.Dimensions = "query: ", "passage: ", 6
	s := newService(t, cfg, embeddings.Options{})
	ctx := context.Background()
	v, err := s.Query(ctx, "find weather")
	if err != nil {
		t.Fatal(err)
	}
	if !sameVec(v, want("query: find weather", 6)) {
		t.Fatalf("vector %v", v)
	}
	if v2, err := s.Query(ctx, "find weather"); err != nil || !sameVec(v2, v) {
		t.Fatalf("second Query = %v, %v", v2, err)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1 (the second from the cache)", len(reqs))
	}
	if c := reqs[0]; !slices.Equal(c.Input, []string{"query: find weather"}) || c.Dimensions != 6 || c.Model != "m1" {
		t.Fatalf("request %+v", c)
	}
	// The same text as a document: not the query's vector, not its cache.
	docs, err := s.Documents(ctx, []string{"find weather"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !sameVec(docs[0], want("passage: find weather", 6)) {
		t.Fatalf("document vector %v", docs[0])
	}
	fail.Store(true)
	if _, err := s.Query(ctx, "other"); err == nil {
		t.Fatal("no error from a failing service")
	}
	fail.Store(false)
	if _, err := s.Query(ctx, "other"); err != nil {
		t.Fatalf("after the failure: %v", err)
	}
	if n := len(f.requests()); n != 4 {
		t.Fatalf("%d requests, want 4 (a failed query is asked again)", n)
	}
}

// TestQueryDeadline: a slow service fails a query at cfg.Timeout with an
// error wrapping context.DeadlineExceeded, whether it is slow to answer or
// to finish the answer.
func TestQueryDeadline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		respond func(w http.ResponseWriter, r *http.Request)
	}{
		{"no answer", hang},
		{"slow body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"data":[`))
			w.(http.Flusher).Flush()
			hang(w, r)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, func(_ int, _ call, w http.ResponseWriter, r *http.Request) { tc.respond(w, r) })
			cfg := baseCfg(f)
			cfg.Timeout = config.Duration(50 * time.Millisecond)
			s := newService(t, cfg, embeddings.Options{})
			start := time.Now()
			_, err := s.Query(context.Background(), "slow")
			d := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v, want one wrapping context.DeadlineExceeded", err)
			}
			if d > time.Second {
				t.Errorf("took %v with a 50ms timeout", d)
			}
		})
	}
}

// TestQueryCacheSize: the recent queries kept are at most 1024.
func TestQueryCacheSize(t *testing.T) {
	t.Parallel()
	f := newFake(t, nil)
	s := newService(t, baseCfg(f), embeddings.Options{})
	ctx := context.Background()
	for i := range 1100 {
		if _, err := s.Query(ctx, "q"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.requests()); n != 1100 {
		t.Fatalf("%d requests for 1100 queries", n)
	}
	// The last 1024 (q76 to q1099) are kept; q0 to q75 are not.
	for _, q := range []string{"q1099", "q76"} {
		if _, err := s.Query(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.requests()); n != 1100 {
		t.Fatalf("recent queries asked again: %d requests", n)
	}
	if _, err := s.Query(ctx, "q0"); err != nil {
		t.Fatal(err)
	}
	if n := len(f.requests()); n != 1101 {
		t.Fatalf("%d requests; the first query should have been asked again", n)
	}
}

// TestConcurrentUse: Documents and Query are safe to call at once (run
// with -race).
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	f := newFake(t, nil)
	cfg := baseCfg(f)
	cfg.BatchSize = 3
	s := newService(t, cfg, embeddings.Options{MaxCached: 8})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Go(func() {
			in := texts("c"+strconv.Itoa(g%3), 10)
			got, err := s.Documents(context.Background(), in, nil)
			if err == nil && !sameVec(got[3], want(in[3], defaultDims)) {
				err = fmt.Errorf("vector of %q wrong", in[3])
			}
			if err != nil {
				errs <- err
			}
			if _, err := s.Query(context.Background(), "q"+strconv.Itoa(g%2)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestMetrics: vmcp_optimizer_embedding_requests_total counts requests
// (not cache hits) by kind and outcome, and the duration histogram by kind.
func TestMetrics(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	f := newFake(t, func(n int, c call, w http.ResponseWriter, _ *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		answerVectors(w, c)
	})
	reader := sdkmetric.NewManualReader()
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	cfg := baseCfg(f)
	cfg.BatchSize = 2
	s := newService(t, cfg, embeddings.Options{Meter: meter})
	ctx := context.Background()
	if _, err := s.Documents(ctx, texts("m", 5), nil); err != nil { // 3 ok
		t.Fatal(err)
	}
	if _, err := s.Documents(ctx, texts("m", 5), nil); err != nil { // cached
		t.Fatal(err)
	}
	for range 2 { // 1 ok, then cached
		if _, err := s.Query(ctx, "q"); err != nil {
			t.Fatal(err)
		}
	}
	fail.Store(true)
	if _, err := s.Documents(ctx, texts("other", 3), nil); err == nil { // 1 error: stops at the first batch
		t.Fatal("no error")
	}
	for range 2 { // 2 errors
		if _, err := s.Query(ctx, "q2"); err == nil {
			t.Fatal("no error")
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	durations := map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case "vmcp_optimizer_embedding_requests_total":
				sum, ok := m.Data.(metricdata.Sum[int64])
				if !ok || !sum.IsMonotonic {
					t.Fatalf("%s is %T", m.Name, m.Data)
				}
				for _, dp := range sum.DataPoints {
					kind, _ := dp.Attributes.Value("kind")
					outcome, _ := dp.Attributes.Value("outcome")
					counts[kind.AsString()+"/"+outcome.AsString()] += dp.Value
				}
			case "vmcp_optimizer_embedding_request_duration_seconds":
				h, ok := m.Data.(metricdata.Histogram[float64])
				if !ok {
					t.Fatalf("%s is %T", m.Name, m.Data)
				}
				if m.Unit != "s" {
					t.Errorf("%s unit %q", m.Name, m.Unit)
				}
				for _, dp := range h.DataPoints {
					kind, _ := dp.Attributes.Value("kind")
					durations[kind.AsString()] += dp.Count
				}
			}
		}
	}
	wantCounts := map[string]int64{"documents/ok": 3, "documents/error": 1, "query/ok": 1, "query/error": 2}
	if fmt.Sprint(counts) != fmt.Sprint(wantCounts) {
		t.Errorf("requests_total %v, want %v", counts, wantCounts)
	}
	wantDur := map[string]uint64{"documents": 4, "query": 3}
	if fmt.Sprint(durations) != fmt.Sprint(wantDur) {
		t.Errorf("request_duration_seconds counts %v, want %v", durations, wantDur)
	}
}
