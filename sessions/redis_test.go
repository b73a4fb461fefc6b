package sessions

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vmcp/vmcp/internal/redistest"
)

// newStore returns a store on a redis-server of the test's own, with a
// clock the test moves.
func newStore(t *testing.T, ttl time.Duration) (*Redis, *time.Time) {
	t.Helper()
	rdb, _ := redistest.Start(t)
	s := NewRedis(rdb, "t", ttl)
	now := time.Now()
	s.now = func() time.Time { return now }
	return s, &now
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

// open admits and creates one session of owner.
func open(t *testing.T, s *Redis, id, owner string, lim Limits) Admission {
	t.Helper()
	a, err := s.Admit(ctx(t), owner, lim)
	if err != nil {
		t.Fatalf("admit %s: %v", id, err)
	}
	if err := s.Create(ctx(t), a, id, Record{Owner: owner, ProtocolVersion: "2025-06-18",
		Capabilities: []byte(`{"sampling":{}}`)}); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return a
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, time.Hour)
	open(t, s, "a", "alice", Limits{Max: 10})
	if _, err := s.SetBackend(ctx(t), "a", "docs", []byte(`{"id":"b1"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLogLevel(ctx(t), "a", "debug"); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(ctx(t), "a", "docs", "file:///x", true); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(ctx(t), "a", "docs", "file:///y", true); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(ctx(t), "a", "docs", "file:///y", false); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Get(ctx(t), "a")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Owner != "alice" || rec.ProtocolVersion != "2025-06-18" || string(rec.Capabilities) != `{"sampling":{}}` ||
		rec.LogLevel != "debug" || string(rec.Backends["docs"]) != `{"id":"b1"}` ||
		!slices.Equal(rec.Subscriptions["docs"], []string{"file:///x"}) {
		t.Fatalf("record = %+v", rec)
	}
	if _, err := s.Get(ctx(t), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.SetLogLevel(ctx(t), "nope", "debug"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetLogLevel(unknown) = %v, want ErrNotFound", err)
	}
}

// TestBackendSessionFirstWins: two replicas open a backend session for the
// same client at once; both end up using the first one recorded, and a
// replacement after a 404 happens once.
func TestBackendSessionFirstWins(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, time.Hour)
	open(t, s, "a", "alice", Limits{Max: 10})
	got1, err := s.SetBackend(ctx(t), "a", "docs", []byte("one"))
	if err != nil || string(got1) != "one" {
		t.Fatalf("first SetBackend = %q, %v", got1, err)
	}
	got2, err := s.SetBackend(ctx(t), "a", "docs", []byte("two"))
	if err != nil || string(got2) != "one" {
		t.Fatalf("second SetBackend = %q, %v; want the first one kept", got2, err)
	}
	// Two replicas saw "one" fail with 404: only the first replaces it.
	r1, _ := s.ReplaceBackend(ctx(t), "a", "docs", []byte("one"), []byte("three"))
	r2, _ := s.ReplaceBackend(ctx(t), "a", "docs", []byte("one"), []byte("four"))
	if string(r1) != "three" || string(r2) != "three" {
		t.Fatalf("replacements = %q, %q; want both three", r1, r2)
	}
	if cur, _ := s.ReplaceBackend(ctx(t), "a", "docs", []byte("three"), nil); cur != nil {
		t.Fatalf("forget = %q, want nil", cur)
	}
	if _, err := s.SetBackend(ctx(t), "gone", "docs", []byte("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetBackend on an unknown session = %v, want ErrNotFound", err)
	}
}

func TestAdmitBounds(t *testing.T) {
	t.Parallel()
	s, now := newStore(t, time.Hour)
	lim := Limits{Max: 3, PerOwner: 2, EvictableAfter: 10 * time.Second}
	open(t, s, "a1", "alice", lim)
	open(t, s, "a2", "alice", lim)

	// alice's third session: both of hers were used just now.
	_, err := s.Admit(ctx(t), "alice", lim)
	var refused *RefusedError
	if !errors.As(err, &refused) || !refused.Owner || refused.RetryAfter < time.Second {
		t.Fatalf("third session of alice: %v, want refused for the owner with a retry", err)
	}

	// 11 s later a1 and a2 may be ended; a2 was touched, so a1 goes.
	*now = now.Add(11 * time.Second)
	if gone, err := s.Touch(ctx(t), []string{"a2"}); err != nil || len(gone) != 0 {
		t.Fatalf("touch = %v, %v", gone, err)
	}
	a := open(t, s, "a3", "alice", lim)
	if a.Evicted != "a1" || a.EvictedRecord.Owner != "alice" {
		t.Fatalf("evicted %q (%+v), want a1", a.Evicted, a.EvictedRecord)
	}
	if _, err := s.Get(ctx(t), "a1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("evicted session still there: %v", err)
	}

	// The anonymous identity has no per-owner bound, but the total holds:
	// a2, a3 and one more make three.
	open(t, s, "n1", "anonymous", Limits{Max: 3})
	if _, err := s.Admit(ctx(t), "anonymous", Limits{Max: 3}); !errors.As(err, &refused) || refused.Owner {
		t.Fatalf("fourth session: %v, want refused at the total", err)
	}
	// A reservation holds room until released.
	if _, _, err := s.Delete(ctx(t), "n1"); err != nil {
		t.Fatal(err)
	}
	r, err := s.Admit(ctx(t), "anonymous", Limits{Max: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admit(ctx(t), "anonymous", Limits{Max: 3}); err == nil {
		t.Fatal("admitted past a reservation")
	}
	if err := s.Release(ctx(t), r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admit(ctx(t), "anonymous", Limits{Max: 3}); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

// TestAdmitConcurrent: initializes racing on several replicas never pass
// the bounds together.
func TestAdmitConcurrent(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, time.Hour)
	lim := Limits{Max: 5, PerOwner: 100}
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for range 40 {
		wg.Go(func() {
			if _, err := s.Admit(context.Background(), "bob", lim); err == nil {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if admitted != 5 {
		t.Fatalf("admitted %d of 40 at max 5", admitted)
	}
}

func TestExpiryAndSweep(t *testing.T) {
	t.Parallel()
	s, now := newStore(t, time.Minute)
	open(t, s, "a", "alice", Limits{Max: 10, PerOwner: 5})
	open(t, s, "b", "alice", Limits{Max: 10, PerOwner: 5})
	if _, err := s.SetBackend(ctx(t), "a", "docs", []byte("bs")); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(40 * time.Second)
	if gone, err := s.Touch(ctx(t), []string{"b", "zzz"}); err != nil || !slices.Equal(gone, []string{"zzz"}) {
		t.Fatalf("touch = %v, %v; want zzz gone", gone, err)
	}
	*now = now.Add(30 * time.Second) // a: 70 s unused; b: 30 s
	if _, err := s.Get(ctx(t), "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired session: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx(t), "b"); err != nil {
		t.Fatalf("touched session: %v", err)
	}
	ended, err := s.Sweep(ctx(t), 100)
	if err != nil || len(ended) != 1 || ended[0].ID != "a" || string(ended[0].Record.Backends["docs"]) != "bs" {
		t.Fatalf("sweep = %+v, %v; want a with its backend session", ended, err)
	}
	if again, _ := s.Sweep(ctx(t), 100); len(again) != 0 {
		t.Fatalf("second sweep = %+v, want nothing", again)
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, time.Hour)
	events := make(chan Event, 100)
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // owned by the test: ends with cancel
		defer close(done)
		s.Watch(wctx, func(e Event) {
			select { // fn must not block
			case events <- e:
			default:
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	open(t, s, "a", "alice", Limits{Max: 10})
	// The subscription may not be up yet: repeat until an event arrives.
	deadline := time.After(5 * time.Second)
	for got := false; !got; {
		_ = s.SetLogLevel(ctx(t), "a", "info")
		select {
		case e := <-events:
			if e.Kind != EventChanged || e.ID != "a" {
				t.Fatalf("event %+v", e)
			}
			got = true
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("no event")
		}
	}
	for len(events) > 0 {
		<-events
	}
	if _, ok, err := s.Delete(ctx(t), "a"); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	for {
		select {
		case e := <-events:
			if e.Kind == EventChanged {
				continue
			}
			if e.Kind != EventEnded || e.ID != "a" {
				t.Fatalf("event %+v, want a ended", e)
			}
			return
		case <-time.After(5 * time.Second):
			t.Fatal("no end event")
		}
	}
}
