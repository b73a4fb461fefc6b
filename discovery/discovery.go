// Package discovery is the discovery stage: it makes sure the MCP handler
// serves the current aggregated catalogue before the request reaches it.
package discovery

import "net/http"

// Syncer installs the current catalogue into the MCP handler if it is not
// installed yet. Sync must be cheap when nothing changed.
type Syncer interface {
	Sync()
}

// New returns the stage. The catalogue is normally installed as soon as a
// backend reports a change; the stage closes the window between a change
// and that install, so no request is answered from a stale catalogue.
func New(s Syncer) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.Sync()
			next.ServeHTTP(w, r)
		})
	}
}
