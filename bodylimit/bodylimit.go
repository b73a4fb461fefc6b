// Package bodylimit is the body-limit stage: it refuses request bodies
// larger than a configured size with 413 and a JSON-RPC error, before
// anything reads them.
package bodylimit

import (
	"net/http"

	"github.com/vmcp/vmcp/jsonrpc"
)

// New returns the stage for bodies of at most maxBytes. A declared
// Content-Length over the limit is answered at once; a body that turns out
// longer while being read fails the read with *http.MaxBytesError, which
// the parse stage answers with the same 413.
func New(maxBytes int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > maxBytes {
				jsonrpc.WriteError(w, http.StatusRequestEntityTooLarge, nil, jsonrpc.Error{
					Code: jsonrpc.CodeInvalidRequest, Message: "request body too large",
					Data: map[string]int64{"maxBytes": maxBytes},
				})
				return
			}
			if r.Body != nil {
				r.Body = http.MaxBytesReader(w, r.Body, maxBytes)
			}
			next.ServeHTTP(w, r)
		})
	}
}
