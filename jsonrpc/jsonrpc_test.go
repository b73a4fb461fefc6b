package jsonrpc_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/vmcp/vmcp/jsonrpc"
)

// reply is a JSON-RPC error response as a client decodes it.
type reply struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   int
		id       json.RawMessage
		err      jsonrpc.Error
		wantID   string
		wantData string // "" means the data member must be absent
	}{
		{
			name:   "number id",
			status: http.StatusBadRequest,
			id:     json.RawMessage(`7`),
			err:    jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "bad"},
			wantID: `7`,
		},
		{
			name:   "string id",
			status: http.StatusTooManyRequests,
			id:     json.RawMessage(`"req-1"`),
			err:    jsonrpc.Error{Code: -32029, Message: "slow down"},
			wantID: `"req-1"`,
		},
		{
			name:   "nil id is null",
			status: http.StatusRequestEntityTooLarge,
			err:    jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "too large"},
			wantID: `null`,
		},
		{
			name:   "empty id is null",
			status: http.StatusBadRequest,
			id:     json.RawMessage{},
			err:    jsonrpc.Error{Code: jsonrpc.CodeParseError, Message: "parse"},
			wantID: `null`,
		},
		{
			name:     "data included",
			status:   http.StatusTooManyRequests,
			id:       json.RawMessage(`1`),
			err:      jsonrpc.Error{Code: -32029, Message: "rate limited", Data: map[string]int{"retryAfterSeconds": 3}},
			wantID:   `1`,
			wantData: `{"retryAfterSeconds":3}`,
		},
		{
			name:   "unmarshalable data is dropped",
			status: http.StatusInternalServerError,
			id:     json.RawMessage(`"x"`),
			err:    jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error", Data: map[string]any{"f": func() {}}},
			wantID: `"x"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			jsonrpc.WriteError(rec, tt.status, tt.id, tt.err)

			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d", rec.Code, tt.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(rec.Body.Len()) {
				t.Errorf("Content-Length = %q, body has %d bytes", cl, rec.Body.Len())
			}
			var got reply
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body is not JSON: %v\n%s", err, rec.Body)
			}
			if got.JSONRPC != "2.0" {
				t.Errorf("jsonrpc = %q, want 2.0", got.JSONRPC)
			}
			if string(got.ID) != tt.wantID {
				t.Errorf("id = %s, want %s", got.ID, tt.wantID)
			}
			if got.Error.Code != tt.err.Code || got.Error.Message != tt.err.Message {
				t.Errorf("error = %d %q, want %d %q", got.Error.Code, got.Error.Message, tt.err.Code, tt.err.Message)
			}
			if string(got.Error.Data) != tt.wantData {
				t.Errorf("data = %s, want %q", got.Error.Data, tt.wantData)
			}
		})
	}
}

func TestWriteErrorIDIsEchoedVerbatim(t *testing.T) {
	t.Parallel()
	// A client matches the response by the exact id it sent, so large or
	// fractional numbers must not be re-encoded.
	for _, id := range []string{`12345678901234567890`, `1.5`, `"a\"b"`, `-0`} {
		rec := httptest.NewRecorder()
		jsonrpc.WriteError(rec, http.StatusBadRequest, json.RawMessage(id), jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "m"})
		var got reply
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("id %s: body is not JSON: %v", id, err)
		}
		if string(got.ID) != id {
			t.Errorf("id = %s, want %s", got.ID, id)
		}
	}
}

func ExampleWriteError() {
	rec := httptest.NewRecorder()
	jsonrpc.WriteError(rec, http.StatusBadRequest, json.RawMessage(`3`), jsonrpc.Error{
		Code: jsonrpc.CodeInvalidRequest, Message: "invalid request",
	})
	fmt.Println(rec.Code, rec.Body.String())
	// Output: 400 {"jsonrpc":"2.0","id":3,"error":{"code":-32600,"message":"invalid request"}}
}
