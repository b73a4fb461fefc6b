package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/jsonrpc"
	"github.com/vmcp/vmcp/parse"
	"github.com/vmcp/vmcp/router"
)

// modernRelay answers tools/call, prompts/get and resources/read of the
// stateless protocol revision (2026-07-28) itself, before mcp-go, by
// relaying each to the backend that owns the name as a stateless request
// of its own (router.Relay, backends.Modern). The backend's answer reaches
// the client as the backend gave it: an input_required result, a JSON-RPC
// error with its code, data and HTTP status (-32021 with 400), progress and
// log notifications streamed before the result on the same response. mcp-go
// could not do that: its handlers turn every error into -32603, and a
// backend reached through vmcp's session-based connection never sees the
// client's per-request capabilities, input responses or request state.
//
// Anything it does not take (other methods, batches, requests whose
// headers disagree with their body, names not in the catalogue, backends
// that do not speak the revision) is left to mcp-go, which answers
// malformed requests per the revision's rules and serves the rest through
// the backend's session.
type modernRelay struct {
	router *router.Router
	poster router.Poster
	log    *slog.Logger
}

// served relays the request when it takes it (see modernRelay) and reports
// whether it did.
func (m *modernRelay) serve(w http.ResponseWriter, q *request) bool {
	r, p := q.r, q.p
	if p.ID == nil || p.Optimizer != "" {
		return false
	}
	// For the methods relayed, ProtocolVersion is the MCP-Protocol-Version
	// header (only initialize takes it from the body).
	version := p.ProtocolVersion
	if !mcp.IsModernProtocol(version) || !mcp.IsValidProtocolVersion(version) || r.Header.Get(mcp.HeaderLastEventID) != "" {
		return false
	}
	if p.MetaProtocolVersion != version || p.Params == nil ||
		mcp.ValidateStandardHeaders(r.Header.Get, version, mcp.MCPMethod(p.Method), p.Params) != nil {
		return false
	}
	if key := parse.DuplicateKey(p.Body); key != "" {
		// The body would go to the backend byte for byte: refuse what vmcp
		// and the backend could read differently.
		jsonrpc.WriteError(w, http.StatusBadRequest, p.ID, jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest,
			Message: fmt.Sprintf("invalid JSON-RPC message: key %q appears twice", key)})
		return true
	}
	resp, _, err := m.router.Relay(r.Context(), m.poster, router.RawRequest{
		Method: p.Method, Name: p.ResourceID, Version: version, Body: p.Body, NameJSON: p.Name, ID: p.ID, Header: r.Header,
	})
	switch {
	case errors.Is(err, router.ErrNotFound), errors.Is(err, router.ErrNotRelayed):
		return false
	case err != nil:
		if r.Context().Err() == nil {
			m.log.Warn("relay of a stateless request failed", "method", p.Method, "name", parse.TruncateName(p.ResourceID), "error", err)
		}
		// As mcp-go answers a failed handler: an internal error, HTTP 200.
		jsonrpc.WriteError(w, http.StatusOK, p.ID, jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: err.Error()})
		return true
	}
	defer func() { _ = resp.Body.Close() }()
	m.copyResponse(w, r, p, resp)
	return true
}

// copyResponse relays a backend's JSON or event-stream response with its
// status, flushing as the backend's bytes arrive. Anything else (a proxy's
// error page, an empty body) is answered with a JSON-RPC internal error.
func (m *modernRelay) copyResponse(w http.ResponseWriter, r *http.Request, p *parse.Parsed, resp *http.Response) {
	ct := resp.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	if mt != "application/json" && mt != "text/event-stream" {
		m.log.Warn("backend answered a stateless request without a JSON-RPC message", "method", p.Method, "name", parse.TruncateName(p.ResourceID),
			"status", resp.StatusCode, "content_type", ct)
		jsonrpc.WriteError(w, http.StatusOK, p.ID, jsonrpc.Error{Code: jsonrpc.CodeInternalError,
			Message: "backend answered HTTP " + http.StatusText(resp.StatusCode) + " without a JSON-RPC message"})
		return
	}
	w.Header().Set("Content-Type", ct)
	if mt == "text/event-stream" {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the client is gone; closing the body aborts the backend request
			}
			_ = rc.Flush()
		}
		if err != nil {
			if err != io.EOF && r.Context().Err() == nil {
				m.log.Warn("backend response to a stateless request broke off", "method", p.Method, "name", parse.TruncateName(p.ResourceID), "error", err)
			}
			return
		}
	}
}
