package embeddings_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vmcp/vmcp/embeddings"
)

// TestTinyVectorNormalised: a vector of tiny values becomes a finite unit
// vector (its inverse norm overflows float32).
func TestTinyVectorNormalised(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(_ int, c call, w http.ResponseWriter, _ *http.Request) {
		writeData(w, []item{{Index: 0, Embedding: []float32{1e-40, 0, 1e-41}}})
	})
	v, err := newService(t, baseCfg(f), embeddings.Options{}).Documents(context.Background(), []string{"x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range v[0] {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			t.Fatalf("vector %v", v[0])
		}
	}
	if n := norm(v[0]); math.Abs(n-1) > 1e-3 {
		t.Errorf("norm %v", n)
	}
}

// TestQueryBounded: a query is embedded (and cached) by its first 2,000
// characters.
func TestQueryBounded(t *testing.T) {
	t.Parallel()
	f := newFake(t, nil)
	s := newService(t, baseCfg(f), embeddings.Options{})
	long := strings.Repeat("ü", 5000)
	if _, err := s.Query(context.Background(), long); err != nil {
		t.Fatal(err)
	}
	in := f.inputs()
	if len(in) != 1 || utf8.RuneCountInString(in[0][0]) != 2000 {
		t.Fatalf("sent %d runes", utf8.RuneCountInString(in[0][0]))
	}
	if _, err := s.Query(context.Background(), long+" more"); err != nil || len(f.inputs()) != 1 {
		t.Errorf("the same first 2,000 characters asked again (%d requests, %v)", len(f.inputs()), err)
	}
}

// TestQueriesPause: after three failures in a row, queries fail at once
// for a while instead of costing each search the deadline.
func TestQueriesPause(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(_ int, _ call, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":{"message":"down"}}`, http.StatusServiceUnavailable)
	})
	s := newService(t, baseCfg(f), embeddings.Options{})
	for i := range 3 {
		if _, err := s.Query(context.Background(), "q"+string(rune('a'+i))); err == nil || errors.Is(err, embeddings.ErrPaused) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if _, err := s.Query(context.Background(), "qz"); !errors.Is(err, embeddings.ErrPaused) {
		t.Errorf("after three failures: %v, want ErrPaused", err)
	}
	if n := len(f.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

// TestRefusedInputSplit: a batch the service refuses (a text too long for
// the model) is embedded in halves, and the refused text by its start.
func TestRefusedInputSplit(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(_ int, c call, w http.ResponseWriter, _ *http.Request) {
		for _, in := range c.Input {
			if len([]rune(in)) > 256 {
				http.Error(w, `{"error":{"message":"input too long"}}`, http.StatusBadRequest)
				return
			}
		}
		answerVectors(w, c)
	})
	cfg := baseCfg(f)
	cfg.BatchSize = 4
	in := []string{"a", "b", strings.Repeat("long ", 100), "d"}
	got, err := newService(t, cfg, embeddings.Options{}).Documents(context.Background(), in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !sameVec(got[0], want("a", defaultDims)) || !sameVec(got[3], want("d", defaultDims)) {
		t.Errorf("the accepted texts' vectors are wrong")
	}
	if !sameVec(got[2], want(strings.Repeat("long ", 100)[:256], defaultDims)) {
		t.Errorf("the refused text was not embedded by its start")
	}
}
