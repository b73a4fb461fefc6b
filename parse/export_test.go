package parse

import (
	"testing"
	"time"
)

// SetBodyReadTimeout makes stages built by New during t use d as the body
// read timeout. t must not run in parallel: every New reads the setting.
func SetBodyReadTimeout(t testing.TB, d time.Duration) {
	t.Helper()
	old := bodyReadTimeout
	bodyReadTimeout = d
	t.Cleanup(func() { bodyReadTimeout = old })
}
