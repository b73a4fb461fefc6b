package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/jsonrpc"
	"github.com/vmcp/vmcp/outauth"
	"github.com/vmcp/vmcp/parse"
)

// mcpEndpoint serves the MCP endpoint. It checks the session once, then
// dispatches by (message kind, protocol generation) through one table
// (routes); whatever no entry takes goes to mcp-go's Streamable HTTP
// server, with the body the parse stage read.
type mcpEndpoint struct {
	mcp      *mcpserver.StreamableHTTPServer
	sessions *sessionIDs
	tools    *catalogueSync
	calls    *callRelay
	modern   *modernRelay
	relay    *relay
	// unknown answers a request as one naming what does not exist, with
	// name in the message (Server.answerUnknown).
	unknown func(w http.ResponseWriter, r *http.Request, p *parse.Parsed, name string)
	log     *slog.Logger
	// inflight counts requests other than the long-lived GET streams, so
	// Shutdown can drain them before it ends the sessions.
	inflight *atomic.Int64
	// table is routes, indexed once by newEndpoint.
	table map[routeKey][]handler
}

// generation is the protocol generation of a request.
type generation uint8

const (
	// sessionBased revisions (2024-11-05 to 2025-11-25) open a session
	// with initialize and name it in Mcp-Session-Id.
	sessionBased generation = iota + 1
	// stateless revisions (2026-07-28 on) carry everything per request.
	stateless
)

// Message kinds that are not JSON-RPC methods.
const (
	kindBatch    = "batch"    // a JSON array of messages
	kindResponse = "response" // a client's answer to a request of the server
)

// request is one request as the table sees it.
type request struct {
	r *http.Request
	// p is the parsed POST body; nil for GET and DELETE.
	p *parse.Parsed
	// kind is the JSON-RPC method, kindBatch or kindResponse; the HTTP
	// method for GET and DELETE.
	kind    string
	gen     generation
	session string
	// mcpCtx, when a handler sets it, is the context mcp-go serves the
	// request with.
	mcpCtx context.Context
	// done, when a handler sets it, runs once the request is served.
	done func()
	// created is the initialize refuseSession let in, whose session is
	// recorded before mcp-go's answer goes out.
	created *newSession
}

// handler serves a request and reports whether it did; one that did not
// leaves it to the next entry for its kind, and in the end to mcp-go.
type handler func(w http.ResponseWriter, q *request) bool

type routeKey struct {
	kind string
	gen  generation
}

// route is one entry of the dispatch table.
type route struct {
	kind  string
	gen   generation
	serve handler
}

// routes is the dispatch table, in the order entries are tried. It is the
// only place the endpoint's order is written; what it does not take,
// mcp-go serves (initialize, lists, ping, logging/setLevel, GET streams,
// DELETE, and everything the handlers below leave).
func (e *mcpEndpoint) routes() []route {
	return []route{
		{"initialize", sessionBased, e.refuseSession},               // session bounds (server.maxSessions, maxSessionsPerIdentity) before mcp-go opens one
		{http.MethodDelete, sessionBased, e.deleteSession},          // with a session store, ended on every replica, then here by mcp-go
		{http.MethodGet, sessionBased, e.listenBackends},            // with a session store, this replica holds the backends' streams for the client's
		{kindBatch, sessionBased, e.refuseBatch},                    // MCP dropped batches in 2025-06-18, and mcp-go takes none
		{kindBatch, stateless, e.refuseBatch},                       // and the stateless revision never had them
		{"tools/list", sessionBased, e.servedToolList},              // the catalogue's encoded list (per authorization outcome set): mcp-go would encode every tool per request
		{"resources/list", sessionBased, e.resourceList},            // with authorization, the caller's resources (mcp-go has no resource filter)
		{"resources/templates/list", sessionBased, e.resourceList},  // likewise
		{"resources/list", stateless, e.resourceList},               // likewise
		{"resources/templates/list", stateless, e.resourceList},     // likewise
		{"tools/call", sessionBased, e.unknownLongName},             // a name longer than any in the catalogue is answered cut, not echoed back whole
		{"prompts/get", sessionBased, e.unknownLongName},            // likewise
		{"resources/read", sessionBased, e.unknownLongName},         // likewise
		{"tools/call", sessionBased, e.answeredUnhealthy},           // a hidden backend's tool names its backend (call_tool too), before mcp-go says "not found"
		{"tools/call", sessionBased, e.calls.serve},                 // bytes on the caller's own backend session, every field and error code kept
		{"resources/read", sessionBased, e.calls.serve},             // likewise
		{"prompts/get", sessionBased, e.calls.serve},                // likewise
		{"completion/complete", sessionBased, e.calls.serve},        // likewise
		{kindResponse, sessionBased, e.calls.answerToBackend},       // an answer to a backend's request relayed during a call goes back to that backend
		{kindResponse, sessionBased, e.forwardResponse},             // with a session store, an answer to a request on the GET stream goes to the replica holding it
		{"notifications/cancelled", sessionBased, e.cancelCall},     // cancels a relayed call (mcp-go cancels the calls it serves)
		{"resources/subscribe", sessionBased, e.forwardSubscribe},   // the backend's refusal is the client's answer
		{"resources/unsubscribe", sessionBased, e.forwardSubscribe}, // likewise
		{"tools/call", stateless, e.unknownLongName},                // as above
		{"prompts/get", stateless, e.unknownLongName},               // likewise
		{"resources/read", stateless, e.unknownLongName},            // likewise
		{"tools/call", stateless, e.answeredUnhealthy},              // as above
		{"tools/call", stateless, e.modern.serve},                   // one stateless request to a backend that speaks the revision
		{"resources/read", stateless, e.modern.serve},               // likewise
		{"prompts/get", stateless, e.modern.serve},                  // likewise
	}
}

// index builds the lookup of routes.
func (e *mcpEndpoint) index() {
	e.table = make(map[routeKey][]handler)
	for _, rt := range e.routes() {
		k := routeKey{rt.kind, rt.gen}
		e.table[k] = append(e.table[k], rt.serve)
	}
}

func (e *mcpEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := &request{r: r, session: r.Header.Get(mcpserver.HeaderKeySessionID), kind: r.Method, gen: sessionBased}
	if p, ok := parse.FromContext(r.Context()); ok {
		q.p = p
		switch {
		case p.Batch:
			q.kind = kindBatch
		case p.Method == "":
			q.kind = kindResponse
		default:
			q.kind = p.Method
		}
	}
	if q.kind == "initialize" && q.session != "" {
		// An initialize opens a new session whatever the header says
		// (mcp-go issues a new id): it is bounded and bound like any.
		r.Header.Del(mcpserver.HeaderKeySessionID)
		q.session = ""
	}
	defer func() {
		if q.done != nil {
			q.done()
		}
	}()
	version := r.Header.Get(mcpserver.HeaderKeyProtocolVersion)
	if q.p != nil && q.p.ProtocolVersion != "" {
		version = q.p.ProtocolVersion
	}
	if mcp.IsModernProtocol(version) {
		q.gen = stateless
	}
	if !e.checkSession(w, q) {
		return
	}
	if r.Method != http.MethodGet {
		e.inflight.Add(1)
		defer e.inflight.Add(-1)
	}
	if q.session != "" && q.gen == sessionBased && r.Method != http.MethodDelete {
		// In use while it runs; a GET stream also ends with its session.
		var stop context.CancelFunc
		if r.Method == http.MethodGet {
			var ctx context.Context
			ctx, stop = context.WithCancel(r.Context())
			defer stop()
			q.r = r.WithContext(ctx)
		}
		release, ok := e.sessions.hold(q.session, stop)
		defer release()
		if !ok {
			jsonrpc.WriteError(w, http.StatusNotFound, q.id(), jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "unknown or ended session"})
			return
		}
	}
	if q.p != nil && q.p.Denied {
		// The authz stage refused it: answered here, after the checks
		// every request passes, as a name that does not exist.
		e.unknown(w, q.r, q.p, q.p.ResourceID)
		return
	}
	for _, serve := range e.table[routeKey{q.kind, q.gen}] {
		if serve(w, q) {
			return
		}
	}
	e.serveMCPGo(w, q)
}

// checkSession is the one session check, before the table: a request of a
// session-based revision must name a session vmcp issued and that has not
// ended (400 without one, 404 for an unknown one; initialize and a
// revision's batches excepted), and every request naming a session must
// come from the identity that opened it (403).
func (e *mcpEndpoint) checkSession(w http.ResponseWriter, q *request) bool {
	if q.gen == sessionBased && q.kind != "initialize" && q.kind != kindBatch {
		switch {
		case q.session == "":
			jsonrpc.WriteError(w, http.StatusBadRequest, q.id(), jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest,
				Message: "missing " + mcpserver.HeaderKeySessionID + " header: send initialize first"})
			return false
		}
		switch err := e.sessions.lookup(q.r.Context(), q.session); {
		case errors.Is(err, errStoreUnavailable):
			w.Header().Set("Retry-After", "1")
			jsonrpc.WriteError(w, http.StatusServiceUnavailable, q.id(), jsonrpc.Error{Code: jsonrpc.CodeInternalError,
				Message: "session store unavailable: cannot find this session now; retry later"})
			return false
		case err != nil:
			jsonrpc.WriteError(w, http.StatusNotFound, q.id(), jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "unknown or ended session"})
			return false
		}
	}
	if q.session != "" && !e.sessions.usableBy(q.session, owner(q.r)) {
		e.log.Warn("request on another identity's session refused", "session_prefix", prefix(q.session))
		jsonrpc.WriteError(w, http.StatusForbidden, q.id(), jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "session belongs to another identity"})
		return false
	}
	return true
}

// id is the request's id, nil when it has none.
func (q *request) id() []byte {
	if q.p == nil {
		return nil
	}
	return q.p.ID
}

// serveMCPGo hands the request to mcp-go, with the body the parse stage
// read, and binds a session it created to the identity that created it.
func (e *mcpEndpoint) serveMCPGo(w http.ResponseWriter, q *request) {
	ctx := q.r.Context()
	if q.mcpCtx != nil {
		ctx = q.mcpCtx
	}
	req := &mcpserver.HTTPRequest{Method: q.r.Method, URL: q.r.URL, Header: q.r.Header, Context: ctx}
	if q.p != nil {
		req.Body = q.p.Body
	}
	sw := &streamingWriter{w: w, rc: http.NewResponseController(w), id: q.id()}
	if n := q.created; n != nil {
		sw.beforeHeader = func() error {
			if id := w.Header().Get(mcpserver.HeaderKeySessionID); id != "" {
				return n.create(q.r.Context(), id)
			}
			return nil
		}
	}
	e.mcp.Handle(sw, req)
	sw.finish()
	if q.created != nil {
		q.created.abandon()
	}
	if id := w.Header().Get(mcpserver.HeaderKeySessionID); id != "" && q.session == "" {
		// A session was just created: it belongs to whoever created it.
		e.sessions.bind(id, owner(q.r))
	}
}

// owner names the identity of a request for session binding: issuer and
// subject, so a refreshed token keeps its session.
func owner(r *http.Request) string {
	id, ok := auth.IdentityFrom(r.Context())
	if !ok {
		return ""
	}
	return identityOwner(id)
}

// identityOwner is the owner string of a session id opens.
func identityOwner(id auth.Identity) string { return id.Issuer + "\n" + id.Subject }

// ownerCaller reverses owner: the caller a session's owner names, without
// a token (requests vmcp makes for it use its cached credential only).
func ownerCaller(owner string) outauth.Caller {
	issuer, subject, _ := strings.Cut(owner, "\n")
	return outauth.Caller{Issuer: issuer, Subject: subject}
}

// refuseSession refuses an initialize over the session bounds
// (sessionIDs.refuseNew).
func (e *mcpEndpoint) refuseSession(w http.ResponseWriter, q *request) bool {
	refused, n := e.sessions.refuseNew(w, q.r, q.p, owner(q.r))
	if n != nil {
		q.created = n
		q.done = n.done // the place is reserved until mcp-go has answered and the session is bound
	}
	return refused
}

// deleteSession ends, with a session store, the session a client's DELETE
// names on every replica and its backend sessions; mcp-go then ends it
// here.
func (e *mcpEndpoint) deleteSession(w http.ResponseWriter, q *request) bool {
	if err := e.sessions.deleteStored(q.r.Context(), q.session); err != nil {
		w.Header().Set("Retry-After", "1")
		jsonrpc.WriteError(w, http.StatusServiceUnavailable, nil, jsonrpc.Error{Code: jsonrpc.CodeInternalError,
			Message: "session store unavailable: the session could not be ended on every replica; retry"})
		return true
	}
	return false
}

// forwardResponse hands, with a session store, a client's answer to a
// request mcp-go sent it (sampling, elicitation, roots a backend asked
// through mcp-go: on the GET stream, or on the POST stream of a call to a
// stdio backend) to mcp-go here first; when nothing here waits for it, it
// is published for the replica where mcp-go does.
func (e *mcpEndpoint) forwardResponse(w http.ResponseWriter, q *request) bool {
	if e.sessions.store == nil {
		return false
	}
	local := &captured{h: http.Header{}}
	e.serveMCPGo(local, q)
	if local.code < 300 {
		w.WriteHeader(http.StatusAccepted)
		return true
	}
	if len(q.p.Body) > maxForwardedBytes {
		jsonrpc.WriteError(w, http.StatusRequestEntityTooLarge, nil, jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest,
			Message: "answer too large to forward to the replica waiting for it"})
		return true
	}
	ctx, cancel := context.WithTimeout(q.r.Context(), storeTimeout)
	defer cancel()
	if err := e.sessions.store.rs.Forward(ctx, q.session, q.p.Body); err != nil {
		e.log.Warn("forward a client's answer to the replica waiting for it", "error", err)
		jsonrpc.WriteError(w, http.StatusServiceUnavailable, nil, jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: errStoreUnavailable.Error()})
		return true
	}
	w.WriteHeader(http.StatusAccepted)
	return true
}

// maxForwardedBytes bounds a client's answer published for another
// replica: every replica receives it.
const maxForwardedBytes = 256 << 10

// listenBackends holds, with a session store and for as long as the
// client's GET stream is open here, the GET streams of its backend
// sessions, so what backends send it outside its calls reaches this
// replica, which writes it to that stream.
func (e *mcpEndpoint) listenBackends(_ http.ResponseWriter, q *request) bool {
	if e.sessions.store != nil {
		if c, ok := e.relay.clients.client(q.session); ok {
			e.calls.backends.Listen(q.r.Context(), c)
		}
	}
	return false
}

// refuseBatch answers a JSON-RPC batch: revisions from 2025-06-18 on
// have none, and vmcp (like mcp-go, which would call it invalid JSON) does
// not take the batches 2025-03-26 allowed.
func (e *mcpEndpoint) refuseBatch(w http.ResponseWriter, q *request) bool {
	msg := "vmcp does not take JSON-RPC batches: send one message per request"
	if v := q.r.Header.Get(mcpserver.HeaderKeyProtocolVersion); v >= "2025-06-18" {
		msg = "JSON-RPC batches are not supported at protocol revision " + v
	}
	jsonrpc.WriteError(w, http.StatusBadRequest, nil, jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: msg})
	return true
}

// unknownLongName answers a request for a name longer than
// parse.MaxNameBytes that is not in the catalogue as a name that does not
// exist, with the name cut: a client's megabyte-long name is not echoed
// back. call_tool's handler cuts its own.
func (e *mcpEndpoint) unknownLongName(w http.ResponseWriter, q *request) bool {
	p := q.p
	if len(p.ResourceID) <= parse.MaxNameBytes || p.Optimizer != "" {
		return false
	}
	if _, ok := e.tools.agg.Catalogue().Route(p.Method, p.ResourceID); ok {
		return false
	}
	e.unknown(w, q.r, p, parse.TruncateName(p.ResourceID))
	return true
}

// codeResourceNotFound is MCP's error code for a resource that does not
// exist.
const codeResourceNotFound = -32002

// cancelCall cancels the relayed call a client's notifications/cancelled
// names; any other goes to mcp-go, which cancels the calls it serves.
func (e *mcpEndpoint) cancelCall(w http.ResponseWriter, q *request) bool {
	if !e.calls.cancel(q.session, q.p) {
		return false
	}
	w.WriteHeader(http.StatusAccepted)
	return true
}

// forwardSubscribe forwards resources/(un)subscribe to the backend before
// mcp-go answers it (relay.forwardSubscription).
func (e *mcpEndpoint) forwardSubscribe(w http.ResponseWriter, q *request) bool {
	ctx, answered := e.relay.forwardSubscription(w, q.r, q.p)
	if ctx != nil {
		q.mcpCtx = ctx
	}
	return answered
}

// servedToolList answers tools/list from the encoded tool list when the
// answer is exactly what mcp-go would give: a request with no cursor, with
// no MCP-Protocol-Version header or a supported one (mcp-go answers an
// unsupported one with 400). Anything else is left to mcp-go.
func (e *mcpEndpoint) servedToolList(w http.ResponseWriter, q *request) bool {
	p := q.p
	if p.ID == nil || p.Cursor != "" {
		return false
	}
	// For tools/list, ProtocolVersion is the MCP-Protocol-Version header.
	if v := p.ProtocolVersion; v != "" && !mcp.IsValidProtocolVersion(v) {
		return false
	}
	list, err := e.tools.callerToolList(q.r.Context())
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
// response controller reaches Flush through any wrapping writers. A
// plain-text error of mcp-go's (a bad content type, an unknown session on
// a path vmcp leaves to it) is held and written by finish as a JSON-RPC
// error with the same status and text, so every error vmcp answers is
// JSON-RPC.
type streamingWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	id []byte // the request's id, for an error answer
	// code and text are mcp-go's plain-text error, when it wrote one.
	code int
	text []byte
	// beforeHeader, when set, runs before a successful answer's header
	// goes out; its error replaces the answer with a 503.
	beforeHeader func() error
	// textDone is set when text is final: what mcp-go writes is dropped.
	textDone bool
}

func (s *streamingWriter) Header() http.Header { return s.w.Header() }

func (s *streamingWriter) WriteHeader(code int) {
	h := s.w.Header()
	if code >= 400 && strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		s.code = code
		h.Del("X-Content-Type-Options")
		return
	}
	if f := s.beforeHeader; f != nil && code < 400 {
		s.beforeHeader = nil
		if err := f(); err != nil {
			h.Del(mcpserver.HeaderKeySessionID)
			s.code, s.text = http.StatusServiceUnavailable, []byte(err.Error()+": cannot open a session now; retry later")
			s.textDone = true // mcp-go's answer is dropped
			return
		}
	}
	s.w.WriteHeader(code)
}

func (s *streamingWriter) Write(p []byte) (int, error) {
	if s.code != 0 {
		if len(s.text) < 1024 && !s.textDone {
			s.text = append(s.text, p[:min(len(p), 1024-len(s.text))]...)
		}
		return len(p), nil
	}
	return s.w.Write(p)
}

func (s *streamingWriter) Flush() {
	if s.code == 0 {
		_ = s.rc.Flush()
	}
}

func (s *streamingWriter) CanStream() bool { return true }

// finish writes the JSON-RPC error of a plain-text one mcp-go answered.
func (s *streamingWriter) finish() {
	if s.code == 0 {
		return
	}
	code := jsonrpc.CodeInvalidRequest
	if s.code >= 500 {
		code = jsonrpc.CodeInternalError
	}
	jsonrpc.WriteError(s.w, s.code, s.id, jsonrpc.Error{Code: code, Message: strings.TrimSpace(string(s.text))})
}
