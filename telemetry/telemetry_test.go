package telemetry

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vmcp/vmcp/config"
)

// TestDisabledStageCostsNothing: with nothing configured the stage is next
// itself, so requests pay nothing for it, and every request reaches next.
func TestDisabledStageCostsNothing(t *testing.T) {
	t.Parallel()
	mw, err := New(config.Telemetry{})
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
}

type countingHandler struct{ calls int }

func (c *countingHandler) ServeHTTP(http.ResponseWriter, *http.Request) { c.calls++ }
