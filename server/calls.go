package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/internal/sse"
	"github.com/vmcp/vmcp/jsonrpc"
	"github.com/vmcp/vmcp/parse"
	"github.com/vmcp/vmcp/router"
)

// callRelay relays tools/call, resources/read, prompts/get and
// completion/complete of the session-based revisions to the caller's own
// session with the backend that owns the name, as bytes
// (backends.Manager.Post): the name is replaced in place (the optimizer's
// call_tool unwrapped) and the id by one of vmcp's, unique on the
// backend session; the backend's answer comes back as it was, with only
// the client's id put back. An event stream is relayed event by event:
// notifications as they are, the backend's requests (sampling,
// elicitation, roots) under ids that name the backend (backendRequestID),
// so the client's answer can be sent back to it (answer).
//
// It takes nothing it cannot relay (stdio and SSE backends, names not in
// the catalogue, clients mcp-go does not know): those go to mcp-go.
type callRelay struct {
	router   *router.Router
	backends *backends.Manager
	clients  *clientRelay // the live client sessions and their capabilities
	log      *slog.Logger
	ids      atomic.Uint64
	// calls holds the cancel function of every call in flight, by client
	// session and client request id, for notifications/cancelled.
	calls sync.Map
}

// maxAnswerBytes bounds a backend's JSON answer, and one message of an
// event stream, that the relay holds while it puts the client's id back.
const maxAnswerBytes = 64 << 20

// serve relays the call and reports whether it did.
func (c *callRelay) serve(w http.ResponseWriter, q *request) bool {
	r, p := q.r, q.p
	if p.ID == nil || p.Optimizer == parse.FindToolName || (p.Optimizer == parse.CallToolName && p.ResourceID == "") {
		return false
	}
	session := q.session
	client, ok := c.clients.client(session)
	if !ok {
		return false
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	key := callKey(session, p.ID)
	c.calls.Store(key, cancel)
	defer c.calls.Delete(key)

	id := []byte(`"vmcp-` + strconv.FormatUint(c.ids.Add(1), 10) + `"`)
	resp, backend, err := c.router.Relay(ctx, sessionPoster{m: c.backends, client: client, id: id}, router.RawRequest{
		Method: p.Method, Name: p.ResourceID, RefType: p.RefType, Version: p.ProtocolVersion, Body: p.Body,
		NameJSON: p.Name, ID: p.ID, NewID: id, CallTool: p.Optimizer == parse.CallToolName, Arguments: p.Arguments, Meta: p.Meta,
	})
	switch {
	case errors.Is(err, router.ErrNotFound), errors.Is(err, router.ErrNotRelayed), errors.Is(err, backends.ErrNotRelayable):
		return false
	case err != nil:
		c.failed(ctx, w, r, p, err)
		return true
	}
	defer func() { _ = resp.Body.Close() }()
	a := answer{w: w, ctx: ctx, clientID: p.ID, backendID: id, backend: backend, log: c.log,
		resume: func(lastEventID string) (*http.Response, error) {
			// Under the call's own context: its requestTimeout, its end.
			return c.backends.Resume(resp.Request.Context(), client, backend, lastEventID)
		}}
	a.relay(resp)
	return true
}

// failed answers a call that got no answer from its backend, as mcp-go
// answers a failed handler: a JSON-RPC error naming the backend, HTTP 200.
func (c *callRelay) failed(ctx context.Context, w http.ResponseWriter, r *http.Request, p *parse.Parsed, err error) {
	if context.Cause(ctx) == errCancelledByClient {
		jsonrpc.WriteError(w, http.StatusOK, p.ID, jsonrpc.Error{Code: codeRequestCancelled, Message: "request cancelled"})
		return
	}
	if r.Context().Err() == nil {
		c.log.Warn("relay of a call failed", "method", p.Method, "name", parse.TruncateName(p.ResourceID), "error", err)
	}
	jsonrpc.WriteError(w, http.StatusOK, p.ID, jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: err.Error()})
}

// codeRequestCancelled answers a call the client cancelled before its
// backend answered (as mcp-go's client reports a cancelled request).
const codeRequestCancelled = -32800

var errCancelledByClient = errors.New("cancelled by the client (notifications/cancelled)")

// cancel ends the relayed call that a client's notifications/cancelled
// names, and reports whether there was one.
func (c *callRelay) cancel(session string, p *parse.Parsed) bool {
	id := cancelledID(p.Params)
	if id == nil {
		return false
	}
	v, ok := c.calls.Load(callKey(session, id))
	if !ok {
		return false
	}
	v.(context.CancelCauseFunc)(errCancelledByClient)
	return true
}

// cancelledID returns the requestId of notifications/cancelled params (a
// slice of them), or nil when there is none or it is ambiguous.
func cancelledID(params []byte) []byte {
	if params == nil {
		return nil
	}
	var id [1][]byte
	if jsonrpc.Members(params, requestIDKey[:], id[:]) != nil {
		return nil
	}
	return id[0]
}

var requestIDKey = [1]string{"requestId"}

// callKey names a client's call in flight: its session and its id as the
// client wrote it.
func callKey(session string, id []byte) string { return session + "\x00" + string(id) }

// answerToBackend sends a client's response to a request a backend made
// during a relayed call (the id names the backend: backendRequestID) to
// that backend, and reports whether the response was one.
func (c *callRelay) answerToBackend(w http.ResponseWriter, q *request) bool {
	r, p := q.r, q.p
	backend, id, ok := parseBackendRequestID(p.ID)
	if !ok {
		return false
	}
	client, ok := c.clients.client(q.session)
	if !ok {
		return false
	}
	body := jsonrpc.Splice(p.Body, p.ID, id)
	if err := c.backends.Answer(r.Context(), client, backend, body); err != nil {
		c.log.Info("a client's answer to its backend was not taken", "backend", backend, "error", err)
		// Not accepted: an HTTP error, as the transport asks.
		jsonrpc.WriteError(w, http.StatusBadRequest, nil, jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: err.Error()})
		return true
	}
	w.WriteHeader(http.StatusAccepted)
	return true
}

// backendRequestID is the id a request of backend with id raw gets on its
// way to the client: a string that names the backend, so that the ids of
// two backends cannot collide and the answer needs no table to find its
// way back (any replica can route it).
func backendRequestID(backend string, raw []byte) []byte {
	enc := base64.RawURLEncoding
	out := make([]byte, 0, 8+enc.EncodedLen(len(backend))+enc.EncodedLen(len(raw)))
	out = append(out, `"vmcp/`...)
	out = enc.AppendEncode(out, []byte(backend))
	out = append(out, '/')
	out = enc.AppendEncode(out, raw)
	return append(out, '"')
}

// parseBackendRequestID reverses backendRequestID.
func parseBackendRequestID(id []byte) (backend string, raw []byte, ok bool) {
	s, found := bytes.CutPrefix(id, []byte(`"vmcp/`))
	if !found || len(s) < 2 || s[len(s)-1] != '"' {
		return "", nil, false
	}
	b64name, b64id, found := bytes.Cut(s[:len(s)-1], []byte("/"))
	if !found {
		return "", nil, false
	}
	name, err := base64.RawURLEncoding.DecodeString(string(b64name))
	if err != nil {
		return "", nil, false
	}
	raw, err = base64.RawURLEncoding.DecodeString(string(b64id))
	if err != nil || !isRequestID(raw) {
		// The id goes into the body sent to the backend: anything but one
		// id would let a client write its own message to the backend, past
		// the rate limits and the audit.
		return "", nil, false
	}
	return string(name), raw, true
}

// isRequestID reports whether raw is exactly one JSON-RPC request id: a
// string or an integer.
func isRequestID(raw []byte) bool {
	if len(raw) == 0 {
		return false
	}
	end, err := jsonrpc.SkipValue(raw, 0)
	if err != nil || end != len(raw) {
		return false
	}
	switch c := raw[0]; {
	case c == '"':
		return true
	case c == '-' || (c >= '0' && c <= '9'):
		return !bytes.ContainsAny(raw, ".eE")
	}
	return false
}

// sessionPoster posts a call on one client's backend sessions.
type sessionPoster struct {
	m      *backends.Manager
	client backends.Client
	id     []byte
}

func (s sessionPoster) Supports(_ context.Context, backend, _ string) bool {
	return s.m.Relayable(backend)
}

func (s sessionPoster) Post(ctx context.Context, backend, _ string, body []byte, _ http.Header) (*http.Response, error) {
	return s.m.Post(ctx, s.client, backend, s.id, body)
}

// answer relays one backend response to the client.
type answer struct {
	w http.ResponseWriter
	// ctx is the call's on vmcp's side: it ends when the client goes away
	// or cancels the call (errCancelledByClient).
	ctx                 context.Context
	clientID, backendID []byte
	backend             string
	log                 *slog.Logger
	// resume reopens the call's event stream from after an event id
	// (Manager.Resume); nil: no resuming.
	resume func(lastEventID string) (*http.Response, error)
}

// maxResumes bounds how often one call's event stream is reopened.
const maxResumes = 8

// gone reports whether the client no longer waits for the answer: it went
// away, or cancelled the call (then no answer is due).
func (a *answer) gone() bool { return a.ctx.Err() != nil }

// relay writes resp to the client: a JSON message with the client's id
// put back, an event stream event by event. Anything else (a proxy's error
// page, no body) is answered with a JSON-RPC error naming the backend.
func (a *answer) relay(resp *http.Response) {
	ct := resp.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	switch {
	case mt == "application/json" && resp.StatusCode != http.StatusNotFound:
		a.json(resp)
	case mt == "text/event-stream":
		a.events(resp)
	default:
		a.log.Warn("backend answered a call without a JSON-RPC message", "backend", a.backend, "status", resp.StatusCode, "content_type", ct)
		a.fail("backend " + strconv.Quote(a.backend) + " answered HTTP " + strconv.Itoa(resp.StatusCode) + " without a JSON-RPC message")
	}
}

func (a *answer) fail(msg string) {
	jsonrpc.WriteError(a.w, http.StatusOK, a.clientID, jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: msg})
}

// json relays a JSON answer: read whole (bounded), the id located without
// decoding the rest, written back in three pieces.
func (a *answer) json(resp *http.Response) {
	buf := getBuffer(resp.ContentLength)
	defer putBuffer(buf)
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxAnswerBytes+1)); err != nil {
		if a.gone() {
			return // nobody waits for it (a cancelled call gets no answer)
		}
		a.log.Warn("read a backend's answer", "backend", a.backend, "error", err)
		a.fail("backend " + strconv.Quote(a.backend) + ": answer broke off")
		return
	}
	msg := buf.Bytes()
	if len(msg) > maxAnswerBytes {
		a.fail("backend " + strconv.Quote(a.backend) + ": answer larger than " + strconv.Itoa(maxAnswerBytes) + " bytes")
		return
	}
	head, tail, ok := a.withClientID(msg)
	if !ok {
		a.log.Warn("backend answered a call with no valid JSON-RPC response", "backend", a.backend, "status", resp.StatusCode)
		a.fail("backend " + strconv.Quote(a.backend) + " answered with no valid JSON-RPC response")
		return
	}
	h := a.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(head)+len(a.clientID)+len(tail)))
	a.w.WriteHeader(resp.StatusCode)
	_, _ = a.w.Write(head)
	_, _ = a.w.Write(a.clientID)
	_, _ = a.w.Write(tail)
}

// withClientID splits the backend's response around its id, so that the
// client's id can be written between the two; ok is false for a message
// that is no response to the call. The id is vmcp's, unique on the
// backend session: a message with it answers the call, and what follows
// the id is not read (the client reads it).
func (a *answer) withClientID(msg []byte) (head, tail []byte, ok bool) {
	id, err := jsonrpc.FindID(msg)
	if err != nil || !bytes.Equal(id, a.backendID) {
		return nil, nil, false
	}
	at, _ := jsonrpc.OffsetIn(msg, id)
	return msg[:at], msg[at+len(id):], true
}

// events relays an event stream: each event's message is written as the
// backend sent it (the call's response with the client's id, the
// backend's requests under backendRequestID), flushed at once, until the
// call's response has passed.
func (a *answer) events(resp *http.Response) {
	h := a.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	a.w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(a.w)
	_ = rc.Flush()
	sc := sse.NewScanner(bufio.NewReaderSize(resp.Body, 32<<10), maxAnswerBytes)
	resumes := 0
	for {
		data, err := sc.Next()
		if err == io.EOF && sc.LastID != "" && a.resume != nil && resumes < maxResumes && !a.gone() {
			// The backend ended the stream before the answer, after an
			// event with an id: it expects the stream to be resumed.
			resumes++
			if sc.Retry > 0 {
				select {
				case <-time.After(sc.Retry):
				case <-a.ctx.Done():
				}
			}
			next, rerr := a.resume(sc.LastID)
			if rerr == nil && next.StatusCode == http.StatusOK {
				defer func() { _ = next.Body.Close() }()
				sc.Reset(next.Body)
				continue
			}
			if rerr == nil {
				_ = next.Body.Close()
				rerr = errors.New("HTTP " + next.Status)
			}
			err = rerr
		}
		if err != nil {
			if !a.gone() {
				if err != io.EOF {
					a.log.Warn("backend's event stream broke off", "backend", a.backend, "error", err)
				}
				a.event(rc, errorMessage(a.clientID, "backend "+strconv.Quote(a.backend)+" ended the call without an answer"), nil, nil)
			}
			return
		}
		e, err := jsonrpc.ScanEnvelope(data)
		if err == nil && bytes.IndexByte(data, '\n') >= 0 {
			// Valid JSON has a raw line end only between tokens, and the
			// event is written as one data line.
			data = bytes.ReplaceAll(data, []byte("\n"), []byte(" "))
			e, err = jsonrpc.ScanEnvelope(data)
		}
		switch {
		case err != nil:
			a.log.Warn("backend sent an event that is no JSON-RPC message", "backend", a.backend, "error", err)
		case e.Method != nil && e.ID != nil: // the backend asks the client
			a.event(rc, data, e.ID, backendRequestID(a.backend, e.ID))
		case e.Method != nil: // a notification
			if msg := a.notification(data, e); msg != nil {
				a.event(rc, msg, nil, nil)
			}
		case bytes.Equal(e.ID, a.backendID):
			a.event(rc, data, e.ID, a.clientID)
			return
		default:
			a.log.Debug("backend sent a response that answers nothing of this call", "backend", a.backend)
		}
	}
}

// notification returns what the client gets of a backend's notification
// sent during its call: progress, log messages, resource updates and the
// rest as they are; the backend's notifications/cancelled of one of its
// requests under the id the client knows it by; nothing of a
// list_changed, which is about the backend's own lists (vmcp rediscovers
// the backend and tells its clients about the aggregated lists).
func (a *answer) notification(data []byte, e jsonrpc.Envelope) []byte {
	method, _ := strconv.Unquote(string(e.Method))
	switch {
	case strings.HasSuffix(method, "/list_changed"):
		return nil
	case method == string(mcp.MethodNotificationCancelled):
		if id := cancelledID(e.Params); id != nil {
			return jsonrpc.Splice(data, id, backendRequestID(a.backend, id))
		}
	}
	return data
}

// event writes one message as an SSE event and flushes it; with part set
// (a slice of msg), with part replaced by with, written around it rather
// than copied.
func (a *answer) event(rc *http.ResponseController, msg, part, with []byte) {
	_, _ = io.WriteString(a.w, "event: message\ndata: ")
	if at, ok := jsonrpc.OffsetIn(msg, part); ok {
		_, _ = a.w.Write(msg[:at])
		_, _ = a.w.Write(with)
		msg = msg[at+len(part):]
	}
	_, _ = a.w.Write(msg)
	_, _ = io.WriteString(a.w, "\n\n")
	_ = rc.Flush()
}

// errorMessage is a JSON-RPC internal error answering id.
func errorMessage(id []byte, msg string) []byte {
	q, _ := json.Marshal(msg)
	return []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"error":{"code":-32603,"message":` + string(q) + `}}`)
}

// bufferPool holds the buffers JSON answers are read into.
var bufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer(size int64) *bytes.Buffer {
	b := bufferPool.Get().(*bytes.Buffer)
	if size > 0 && size <= maxAnswerBytes {
		b.Grow(int(size) + bytes.MinRead)
	}
	return b
}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > 1<<20 {
		return // keep the pool small; a rare large answer is not kept
	}
	b.Reset()
	bufferPool.Put(b)
}
