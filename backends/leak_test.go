package backends_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vmcp/vmcp/config"
)

// TestCloseLeavesNoGoroutines is not parallel, so that no other test's
// goroutines come and go while it looks.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	sh := startHTTPBackend(t, "s", config.TransportStreamableHTTP, nil)
	sse := startHTTPBackend(t, "e", config.TransportSSE, nil)
	// The backend servers stay up throughout: what they run before the
	// Manager exists is theirs. Everything started after it (client
	// transports, streams, idle keep-alive connections and the server
	// goroutines that serve them, stdio pipes) must be gone after Close.
	ignore := goleak.IgnoreCurrent()

	var ch changes
	opts := testOptions(&ch)
	opts.HTTPClient = nil                     // the Manager's own pooled transport
	opts.PingInterval = 20 * time.Millisecond // pings run during the test
	m := startManager(t, []config.Backend{
		sh.config("s", config.TransportStreamableHTTP),
		sse.config("e", config.TransportSSE),
		stdioConfig(t, "c"),
	}, config.OutgoingAuth{}, opts)
	for _, name := range m.Names() {
		s := session(t, m, name)
		call(t, s, "echo", nil)
		if _, err := s.Discover(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	goleak.VerifyNone(t, ignore)
}
