package discovery_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/vmcp/vmcp/discovery"
)

// log records the order of events across the syncer and next.
type log struct {
	mu     sync.Mutex
	events []string
}

func (l *log) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *log) Sync() { l.add("sync") }

func TestSyncRunsBeforeNextOnEveryRequest(t *testing.T) {
	t.Parallel()
	var l log
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.add("next " + r.Method)
		w.WriteHeader(http.StatusNoContent)
	})
	h := discovery.New(&l)(next)
	for _, m := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(m, "/mcp", nil))
		if w.Code != http.StatusNoContent {
			t.Errorf("%s: status = %d, want next's 204", m, w.Code)
		}
	}
	want := []string{"sync", "next POST", "sync", "next GET", "sync", "next DELETE"}
	if len(l.events) != len(want) {
		t.Fatalf("events = %q, want %q", l.events, want)
	}
	for i := range want {
		if l.events[i] != want[i] {
			t.Fatalf("events = %q, want %q", l.events, want)
		}
	}
}

// panickingSyncer never returns normally from Sync. The stage answers
// nothing itself, so this is the only way it does not reach next: next must
// never run on a catalogue that was not synced.
type panickingSyncer struct{}

func (panickingSyncer) Sync() { panic("sync failed") }

func TestNextNotCalledWhenSyncDoesNotReturn(t *testing.T) {
	t.Parallel()
	called := false
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })
	func() {
		defer func() { _ = recover() }()
		discovery.New(panickingSyncer{})(next).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/mcp", nil))
	}()
	if called {
		t.Error("next ran although the catalogue was not synced")
	}
}

func TestConcurrentRequestsEachSync(t *testing.T) {
	t.Parallel()
	var l log
	h := discovery.New(&l)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	const n = 16
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/mcp", nil))
		}()
	}
	wg.Wait()
	if len(l.events) != n {
		t.Errorf("Sync ran %d times for %d requests", len(l.events), n)
	}
}
