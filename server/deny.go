package server

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/jsonrpc"
	"github.com/vmcp/vmcp/parse"
)

// answerUnknown answers p as mcp-go answers a request that names what is
// not in the catalogue, with name in the message: the authz stage's
// denials (so a caller cannot tell a tool it may not use from one that
// does not exist) and names too long to look up. The answers are mcp-go's
// own (server_test checks them against mcp-go): the session-based
// revisions answer with HTTP 200, the stateless one with the status its
// error code maps to.
func (s *Server) answerUnknown(w http.ResponseWriter, r *http.Request, p *parse.Parsed, name string) {
	if len(p.ID) == 0 {
		w.WriteHeader(http.StatusAccepted) // a notification: mcp-go answers none
		return
	}
	id := canonicalID(p.ID)
	stateless := mcp.IsModernProtocol(p.ProtocolVersion) || mcp.IsModernProtocol(r.Header.Get("Mcp-Protocol-Version"))
	status := http.StatusOK
	if stateless {
		status = http.StatusBadRequest // -32602, as mcp-go maps it
	}
	switch {
	case p.Optimizer == parse.CallToolName && s.sync.optimizer != nil:
		res, err := json.Marshal(mcp.NewToolResultError(s.sync.optimizer.UnknownTool(r.Context(), name)))
		if err != nil {
			res = []byte(`{"content":[],"isError":true}`)
		}
		writeResult(w, id, res)
	case p.Method == "tools/call":
		writeError(w, status, id, jsonrpc.Error{Code: jsonrpc.CodeInvalidParams,
			Message: fmt.Sprintf("tool '%s' not found: tool not found", name)})
	case p.Method == "prompts/get":
		writeError(w, status, id, jsonrpc.Error{Code: jsonrpc.CodeInvalidParams,
			Message: fmt.Sprintf("prompt '%s' not found: prompt not found", name)})
	case p.Method == "resources/read":
		code := codeResourceNotFound
		if stateless {
			code = jsonrpc.CodeInvalidParams
		}
		writeError(w, status, id, jsonrpc.Error{Code: code,
			Message: fmt.Sprintf("handler not found for resource URI '%s': resource not found", name)})
	case p.Method == "resources/subscribe":
		writeResult(w, id, []byte(`{}`)) // mcp-go takes a subscription to any URI
	case p.Method == "completion/complete" && p.RefType == "ref/prompt":
		writeError(w, http.StatusOK, id, jsonrpc.Error{Code: jsonrpc.CodeInternalError,
			Message: fmt.Sprintf("prompt %q: not found", name)})
	case p.Method == "completion/complete":
		writeError(w, http.StatusOK, id, jsonrpc.Error{Code: jsonrpc.CodeInternalError,
			Message: fmt.Sprintf("resource template %q: not found", name)})
	default:
		writeError(w, http.StatusOK, id, jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "not found"})
	}
}

// writeResult writes a JSON-RPC result.
func writeResult(w http.ResponseWriter, id json.RawMessage, result []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":`))
	_, _ = w.Write(result)
	_, _ = w.Write([]byte("}\n"))
}

// writeError writes a JSON-RPC error as mcp-go writes one: encoded with a
// final newline, no Content-Length of its own.
func writeError(w http.ResponseWriter, status int, id json.RawMessage, e jsonrpc.Error) {
	body, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   jsonrpc.Error   `json:"error"`
	}{"2.0", id, e})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// canonicalID is a request id as mcp-go writes it back: decoded and
// encoded again (escapes resolved, large numbers as floats).
func canonicalID(raw json.RawMessage) json.RawMessage {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return raw
	}
	b, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return b
}
