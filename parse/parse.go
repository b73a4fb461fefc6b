// Package parse is the MCP parse stage: it reads the JSON-RPC body of a POST
// once, puts a *Parsed on the request context for every later stage, and
// answers malformed bodies with a JSON-RPC parse error. Nothing after it
// reads or decodes the body again except the MCP handler, which receives
// Parsed.Body.
package parse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/vmcp/vmcp/jsonrpc"
)

// Parsed is what later stages need to know about one JSON-RPC message.
type Parsed struct {
	// Method is the JSON-RPC method, e.g. tools/call; empty for responses.
	Method string
	// ID is the raw request id; nil for notifications and responses.
	ID json.RawMessage
	// ResourceID is the tool name for tools/call, the URI for
	// resources/read, the prompt name for prompts/get; else empty.
	ResourceID string
	// Arguments holds the raw arguments of tools/call and prompts/get.
	Arguments json.RawMessage
	// Cursor is the pagination cursor of a list request, if any.
	Cursor string
	// ProtocolVersion is the MCP-Protocol-Version header, or for
	// initialize the version the client asks for.
	ProtocolVersion string
	// MetaProtocolVersion is params._meta["io.modelcontextprotocol/protocolVersion"]:
	// the revision a request of the stateless revision (2026-07-28) says it
	// speaks. Empty when absent.
	MetaProtocolVersion string
	// Params is the params member as sent, a slice of Body, when
	// MetaProtocolVersion is set (the request may be relayed as it is);
	// nil otherwise.
	Params json.RawMessage
	// Optimizer names the optimizer tool a tools/call asks for when the
	// optimizer is on: FindToolName, or CallToolName, and then ResourceID
	// and Arguments are the tool_name and parameters of the catalogue tool
	// it calls. Empty otherwise.
	Optimizer string
	// Batch is true when the body is a JSON array; the other fields are
	// then empty and the MCP handler decides what to answer.
	Batch bool
	// Body is the request body as received.
	Body []byte
}

// The optimizer's two tools, as clients name them.
const (
	FindToolName = "find_tool"
	CallToolName = "call_tool"
)

// CallsTool reports whether the message calls a catalogue tool: a
// tools/call, directly or through the optimizer's call_tool. find_tool only
// searches, and is not a tool call in this sense.
func (p *Parsed) CallsTool() bool {
	return p.Method == "tools/call" && p.Optimizer != FindToolName
}

// Options configure the stage.
type Options struct {
	// Optimizer is true when find_tool and call_tool replace the tool
	// list; a call_tool is then resolved to the tool it calls.
	Optimizer bool
}

type ctxKey struct{}

// FromContext returns the Parsed message of the request, if it had one.
func FromContext(ctx context.Context) (*Parsed, bool) {
	p, ok := ctx.Value(ctxKey{}).(*Parsed)
	return p, ok
}

// NewContext returns ctx carrying p; for tests and embedders that build
// requests without the stage.
func NewContext(ctx context.Context, p *Parsed) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// wire is the part of a JSON-RPC message vmcp routes on.
type wire struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  struct {
		Name            string          `json:"name"`
		URI             string          `json:"uri"`
		Arguments       json.RawMessage `json:"arguments"`
		ProtocolVersion string          `json:"protocolVersion"`
		Cursor          string          `json:"cursor"`
		Meta            struct {
			ProtocolVersion string `json:"io.modelcontextprotocol/protocolVersion"`
		} `json:"_meta"`
	} `json:"params"`
}

// rawParams finds the params of a message that was decoded already.
type rawParams struct {
	Params span `json:"params"`
}

// span keeps the raw JSON of a value of body, a slice of it when the
// decoder hands one over (json.Unmarshal does), a copy otherwise, as the
// json.Unmarshaler contract asks.
type span struct {
	body []byte
	raw  []byte
}

func (s *span) UnmarshalJSON(data []byte) error {
	at := cap(s.body) - cap(data)
	if len(data) > 0 && at >= 0 && at+len(data) <= len(s.body) && &s.body[at] == &data[0] {
		s.raw = s.body[at : at+len(data)]
	} else {
		s.raw = bytes.Clone(data)
	}
	return nil
}

// defaultBodyReadTimeout bounds the reading of one POST body. The server
// sets only ReadHeaderTimeout: a ReadTimeout would also cut the long-lived
// GET streams. Without this bound a client that trickles its body would hold
// a goroutine and up to the body cap for as long as it likes.
const defaultBodyReadTimeout = 30 * time.Second

// bodyReadTimeout is the bound New uses; tests shorten it (and then must not
// run in parallel with tests that build the stage).
var bodyReadTimeout = defaultBodyReadTimeout

// New returns the parse stage. Only POST bodies are read; other methods
// pass through without a Parsed. Reading a body takes at most
// defaultBodyReadTimeout; a body not received by then is answered with 408.
func New(opts Options) func(http.Handler) http.Handler {
	timeout := bodyReadTimeout
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				next.ServeHTTP(w, r)
				return
			}
			body, err := readBody(w, r, timeout)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					jsonrpc.WriteError(w, http.StatusRequestTimeout, nil, jsonrpc.Error{
						Code: jsonrpc.CodeInvalidRequest, Message: "request body read timed out",
					})
					return
				}
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					jsonrpc.WriteError(w, http.StatusRequestEntityTooLarge, nil, jsonrpc.Error{
						Code: jsonrpc.CodeInvalidRequest, Message: "request body too large",
						Data: map[string]int64{"maxBytes": tooBig.Limit},
					})
					return
				}
				jsonrpc.WriteError(w, http.StatusBadRequest, nil, jsonrpc.Error{Code: jsonrpc.CodeParseError, Message: "read request body: " + err.Error()})
				return
			}
			p, perr := Parse(body, opts)
			if perr != nil {
				jsonrpc.WriteError(w, http.StatusBadRequest, p.ID, *perr)
				return
			}
			if p.ProtocolVersion == "" {
				p.ProtocolVersion = r.Header.Get("MCP-Protocol-Version")
			}
			r.Body = http.NoBody
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
		})
	}
}

// readBody reads the whole body under a connection read deadline of
// timeout, then clears the deadline. Clearing it matters: once the body is
// read, net/http keeps a background read on the connection (to notice a
// client going away), and that read hitting a stale deadline would cancel
// the request context of a long tool call. net/http clears the deadline
// when it starts that read at the body's end, but when the read was already
// running (the body was consumed before this stage) the deadline set here
// applies to it. Zero is what the server itself leaves after the headers,
// since it sets no ReadTimeout. After a failed read the deadline stays: the
// connection is not reused, and net/http's discarding of an unread rest of
// the body then cannot block.
//
// Errors setting the deadline are ignored: ErrNotSupported comes from
// writers that are not a connection (httptest.ResponseRecorder), and
// anything else means the connection is closed, which the read reports.
func readBody(w http.ResponseWriter, r *http.Request, timeout time.Duration) ([]byte, error) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(timeout))
	body, err := io.ReadAll(r.Body)
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{})
	}
	return body, err
}

// Parse decodes body. On failure it returns the JSON-RPC error to answer
// with, and p.ID is the request id when it could be read.
func Parse(body []byte, opts Options) (*Parsed, *jsonrpc.Error) {
	p := &Parsed{Body: body}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return p, &jsonrpc.Error{Code: jsonrpc.CodeParseError, Message: "empty request body"}
	}
	if trimmed[0] == '[' {
		if !json.Valid(trimmed) {
			return p, &jsonrpc.Error{Code: jsonrpc.CodeParseError, Message: "invalid JSON"}
		}
		p.Batch = true
		return p, nil
	}
	var m wire
	err := json.Unmarshal(body, &m)
	var typeErr *json.UnmarshalTypeError
	if err != nil && !errors.As(err, &typeErr) {
		return p, &jsonrpc.Error{Code: jsonrpc.CodeParseError, Message: "invalid JSON: " + err.Error()}
	}
	// After a type error Unmarshal has still decoded the other fields, so
	// the id is known and the error can be matched to its request.
	if len(m.ID) > 0 && !bytes.Equal(m.ID, []byte("null")) {
		p.ID = m.ID
	}
	if typeErr != nil {
		if typeErr.Field == "" {
			return p, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "invalid JSON-RPC message: not a JSON object"}
		}
		return p, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "invalid JSON-RPC message: " + typeErr.Field + " has the wrong type"}
	}
	if m.JSONRPC != "2.0" {
		return p, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: `invalid JSON-RPC message: "jsonrpc" must be "2.0"`}
	}
	p.Method = m.Method
	p.Cursor = m.Params.Cursor
	if v := m.Params.Meta.ProtocolVersion; v != "" {
		// A stateless request may be relayed to its backend as it is, with
		// its params renamed: keep them, at a second pass over the body
		// that requests of the session-based revisions never pay.
		p.MetaProtocolVersion = v
		r := rawParams{Params: span{body: body}}
		if json.Unmarshal(body, &r) == nil {
			p.Params = r.Params.raw
		}
	}
	switch m.Method {
	case "tools/call":
		p.ResourceID, p.Arguments = m.Params.Name, m.Params.Arguments
		if opts.Optimizer {
			p.resolveOptimizer()
		}
	case "prompts/get":
		p.ResourceID, p.Arguments = m.Params.Name, m.Params.Arguments
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		p.ResourceID = m.Params.URI
	case "initialize":
		p.ProtocolVersion = m.Params.ProtocolVersion
	}
	return p, nil
}

// resolveOptimizer marks a call of find_tool or call_tool and puts the tool
// a call_tool calls in ResourceID, its parameters in Arguments, so later
// stages limit and audit the real tool. A call_tool whose arguments are not
// an object with a string tool_name keeps an empty ResourceID: the call_tool
// handler answers it with a tool error.
func (p *Parsed) resolveOptimizer() {
	switch p.ResourceID {
	case FindToolName:
		p.Optimizer = FindToolName
	case CallToolName:
		p.Optimizer = CallToolName
		var inner struct {
			ToolName   string          `json:"tool_name"`
			Parameters json.RawMessage `json:"parameters"`
		}
		if json.Unmarshal(p.Arguments, &inner) != nil {
			inner.ToolName, inner.Parameters = "", nil
		}
		p.ResourceID, p.Arguments = inner.ToolName, inner.Parameters
	}
}
