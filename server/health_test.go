package server

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vmcp/vmcp/config"
)

// TestHealthChangeReturnsAtOnce: the server's OnHealthChange only signals;
// the catalogue is changed and installed on the server's own goroutine,
// which Shutdown stops.
func TestHealthChangeReturnsAtOnce(t *testing.T) {
	defer goleak.VerifyNone(t)
	cfg := testConfig(t, config.Backend{Name: "alpha", Transport: config.TransportStreamableHTTP, URL: "http://127.0.0.1:1/mcp"})
	srv, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	// Hidden, but healthy: the change shows it again and installs the new
	// catalogue, which waits for the sync held here.
	if _, changed, _ := srv.agg.Hide("alpha", true); !changed {
		t.Fatal("Hide did not change the catalogue")
	}
	srv.sync.mu.Lock()
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		for range 3 {
			srv.health.changed("alpha")
		}
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		srv.sync.mu.Unlock()
		t.Fatal("OnHealthChange waited for the catalogue to be installed")
	}
	srv.sync.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for srv.sync.installed.Load() != srv.agg.Catalogue() {
		if time.Now().After(deadline) {
			t.Fatal("the health change was not applied")
		}
		time.Sleep(time.Millisecond)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestHealthChangesCoalesce: changes that come while one is applied are
// applied after it, each backend once.
func TestHealthChangesCoalesce(t *testing.T) {
	defer goleak.VerifyNone(t)
	release := make(chan struct{})
	var mu sync.Mutex
	var applied []string
	h := watchHealth(func(name string) {
		if name == "first" {
			<-release
		}
		mu.Lock()
		applied = append(applied, name)
		mu.Unlock()
	})
	h.changed("first")
	// Wait until "first" is being applied, then signal during it.
	for {
		h.mu.Lock()
		n := len(h.pending)
		h.mu.Unlock()
		if n == 0 && len(h.wake) == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for _, name := range []string{"b", "a", "b", "a"} {
		h.changed(name)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := slices.Clone(applied)
		mu.Unlock()
		if len(got) == 3 {
			if want := []string{"first", "a", "b"}; !slices.Equal(got, want) {
				t.Errorf("applied %v, want %v", got, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("applied %v", got)
		}
		time.Sleep(time.Millisecond)
	}
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
}
