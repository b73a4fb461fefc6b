// Package jsonrpc writes JSON-RPC 2.0 error responses for the HTTP stages
// that answer before the MCP handler does (413, 400, 401, 429, 500).
package jsonrpc

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Standard JSON-RPC error codes used by vmcp's own stages.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)

// Error is the error member of a JSON-RPC response.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   Error           `json:"error"`
}

var nullID = json.RawMessage("null")

// WriteError answers with HTTP status and a JSON-RPC error echoing id (the
// raw id of the request; nil or empty writes null, as JSON-RPC requires
// when the id could not be read).
func WriteError(w http.ResponseWriter, status int, id json.RawMessage, e Error) {
	if len(id) == 0 {
		id = nullID
	}
	body, err := json.Marshal(response{JSONRPC: "2.0", ID: id, Error: e})
	if err != nil {
		// Only Data can fail to marshal; drop it rather than answer nothing.
		e.Data = nil
		body, _ = json.Marshal(response{JSONRPC: "2.0", ID: id, Error: e})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
