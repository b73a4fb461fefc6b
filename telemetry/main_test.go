package telemetry

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives the tests: the
// providers, exporters and their connections stop with Shutdown.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
