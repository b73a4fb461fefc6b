package server

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/parse"
)

// mcpHandler hands a request to mcp-go's Streamable HTTP server. POST bodies
// come from the parse stage (already read and checked), so mcp-go neither
// reads the body again nor sees a stream the stages consumed.
func mcpHandler(h *mcpserver.StreamableHTTPServer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rejectDNSRebinding(w, r) {
			return
		}
		req := &mcpserver.HTTPRequest{Method: r.Method, URL: r.URL, Header: r.Header, Context: r.Context()}
		if p, ok := parse.FromContext(r.Context()); ok {
			req.Body = p.Body
		}
		h.Handle(streamingWriter{w: w, rc: http.NewResponseController(w)}, req)
	})
}

// streamingWriter adapts an http.ResponseWriter to mcp-go's writer. The
// response controller reaches Flush through any wrapping writers.
type streamingWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (s streamingWriter) Header() http.Header         { return s.w.Header() }
func (s streamingWriter) WriteHeader(code int)        { s.w.WriteHeader(code) }
func (s streamingWriter) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s streamingWriter) Flush()                      { _ = s.rc.Flush() }
func (s streamingWriter) CanStream() bool             { return true }

// rejectDNSRebinding refuses a request that reached a loopback listener with
// a Host that is not loopback: a web page that rebinds its own name to
// 127.0.0.1 must not drive a local vmcp from a browser.
func rejectDNSRebinding(w http.ResponseWriter, r *http.Request) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || local == nil {
		return false
	}
	if isLoopback(local.String()) && !isLoopback(r.Host) {
		http.Error(w, fmt.Sprintf("forbidden: Host %q is not a loopback name", r.Host), http.StatusForbidden)
		return true
	}
	return false
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.Trim(hostport, "[]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
