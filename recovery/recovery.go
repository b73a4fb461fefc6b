// Package recovery is the outermost stage: a panic in any later stage or
// handler is logged with its stack and answered with a JSON-RPC internal
// error instead of dropping the connection.
package recovery

import (
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/vmcp/vmcp/jsonrpc"
)

// New returns the stage; log nil means slog.Default().
func New(log *slog.Logger) func(http.Handler) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(v) // the server's own signal to abort; let it through
				}
				log.Error("panic serving request", "panic", v, "method", r.Method, "path", r.URL.Path, "stack", string(debug.Stack()))
				// If the handler already wrote headers this write is lost,
				// which is all that can be done.
				jsonrpc.WriteError(w, http.StatusInternalServerError, nil, jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error"})
			}()
			next.ServeHTTP(w, r)
		})
	}
}
