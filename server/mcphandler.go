package server

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/jsonrpc"
	"github.com/vmcp/vmcp/parse"
)

// mcpEndpoint hands a request to mcp-go's Streamable HTTP server. POST
// bodies come from the parse stage (already read and checked), so mcp-go
// neither reads the body again nor sees a stream the stages consumed. A
// plain tools/list on a live session is answered from the encoded catalogue.
type mcpEndpoint struct {
	mcp      *mcpserver.StreamableHTTPServer
	sessions *sessionIDs
	tools    *catalogueSync
	modern   *modernRelay // nil: stateless requests go to mcp-go too
	// relay forwards resources/(un)subscribe before mcp-go answers them;
	// nil: mcp-go's after-hooks do.
	relay *relay
	log   *slog.Logger
	// inflight counts requests other than the long-lived GET streams, so
	// Shutdown can drain them before it ends the sessions.
	inflight *atomic.Int64
}

func (e *mcpEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !e.knownSession(w, r) || !e.ownSession(w, r) {
		return
	}
	if r.Method != http.MethodGet {
		e.inflight.Add(1)
		defer e.inflight.Add(-1)
	}
	req := &mcpserver.HTTPRequest{Method: r.Method, URL: r.URL, Header: r.Header, Context: r.Context()}
	if p, ok := parse.FromContext(r.Context()); ok {
		if e.sessions.refuseNew(w, r, p, owner(r)) { // session bounds: sessions.go
			return
		}
		if e.servedToolList(w, r, p) || e.answeredUnhealthy(w, p) || e.modern.served(w, r, p) {
			return
		}
		if e.relay != nil {
			ctx, answered := e.relay.forwardSubscription(w, r, p)
			if answered {
				return
			}
			if ctx != nil {
				req.Context = ctx
			}
		}
		req.Body = p.Body
	}
	e.mcp.Handle(streamingWriter{w: w, rc: http.NewResponseController(w)}, req)
	if id := w.Header().Get(mcpserver.HeaderKeySessionID); id != "" && r.Header.Get(mcpserver.HeaderKeySessionID) == "" {
		// A session was just created: it belongs to whoever created it.
		e.sessions.bind(id, owner(r))
	}
}

// owner names the identity of a request for session binding: issuer and
// subject, so a refreshed token keeps its session.
func owner(r *http.Request) string {
	id, ok := auth.IdentityFrom(r.Context())
	if !ok {
		return ""
	}
	return id.Issuer + "\n" + id.Subject
}

// ownSession refuses a request that carries a session created by another
// identity.
func (e *mcpEndpoint) ownSession(w http.ResponseWriter, r *http.Request) bool {
	id := r.Header.Get(mcpserver.HeaderKeySessionID)
	if id == "" || e.sessions.usableBy(id, owner(r)) {
		return true
	}
	e.log.Warn("request on another identity's session refused", "session_prefix", id[:min(len(id), 20)])
	jsonrpc.WriteError(w, http.StatusForbidden, nil, jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "session belongs to another identity"})
	return false
}

// knownSession refuses GET and DELETE requests whose session vmcp did not
// issue or already ended: mcp-go would open a stream for a made-up id, or
// mint a new session for a GET without one. A missing id is 400, an
// unknown one 404 (the client starts a new session).
func (e *mcpEndpoint) knownSession(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodDelete {
		return true
	}
	if mcp.IsModernProtocol(r.Header.Get(mcpserver.HeaderKeyProtocolVersion)) {
		return true // sessionless revision: mcp-go answers per its rules
	}
	id := r.Header.Get(mcpserver.HeaderKeySessionID)
	switch {
	case id == "":
		jsonrpc.WriteError(w, http.StatusBadRequest, nil, jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "missing " + mcpserver.HeaderKeySessionID + " header"})
		return false
	case !e.sessions.valid(id):
		jsonrpc.WriteError(w, http.StatusNotFound, nil, jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "unknown or ended session"})
		return false
	}
	return true
}

// servedToolList answers tools/list from the encoded tool list when the
// answer is exactly what mcp-go would give: a request (not a batch) with no
// cursor, on a live session of a session-based protocol revision, with no
// MCP-Protocol-Version header or a supported one (mcp-go answers an
// unsupported one with 400). Anything else is left to mcp-go.
func (e *mcpEndpoint) servedToolList(w http.ResponseWriter, r *http.Request, p *parse.Parsed) bool {
	if p.Method != string(mcp.MethodToolsList) || p.Batch || p.ID == nil || p.Cursor != "" ||
		mcp.IsModernProtocol(p.ProtocolVersion) || !e.sessions.valid(r.Header.Get(mcpserver.HeaderKeySessionID)) {
		return false
	}
	// For tools/list, ProtocolVersion is the MCP-Protocol-Version header.
	if v := p.ProtocolVersion; v != "" && !mcp.IsValidProtocolVersion(v) {
		return false
	}
	list, err := e.tools.ToolListJSON()
	if err != nil {
		e.log.Error("encode tool list; answering through mcp-go", "error", err)
		return false
	}
	head := append(append([]byte(`{"jsonrpc":"2.0","id":`), p.ID...), `,"result":{"tools":`...)
	const tail = "}}\n"
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(head)+len(list)+len(tail)))
	// Three writes, no copy of the (possibly megabytes long) list.
	_, _ = w.Write(head)
	_, _ = w.Write(list)
	_, _ = io.WriteString(w, tail)
	return true
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

// isLoopback reports whether hostport (host, host:port or [v6]:port) is a
// loopback name: localhost or a loopback IP.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	return config.IsLoopbackHost(host)
}
