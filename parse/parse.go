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
	"strings"
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
	// resources/read and resources/(un)subscribe, the prompt name for
	// prompts/get, the prompt name or template URI a completion/complete
	// refers to; else empty.
	ResourceID string
	// Name is the JSON string ResourceID was read from when it is a name
	// (params.name, call_tool's tool_name, a completion's ref.name), as
	// written: a slice of Body, which the relay replaces in place.
	Name json.RawMessage
	// RefType is the ref.type of a completion/complete: ref/prompt or
	// ref/resource.
	RefType string
	// Arguments holds the raw arguments of tools/call and prompts/get (for
	// call_tool, the parameters of the tool it calls), a slice of Body.
	Arguments json.RawMessage
	// Meta is params._meta as written, a slice of Body; nil when absent.
	Meta json.RawMessage
	// Cursor is the pagination cursor of a list request, if any.
	Cursor string
	// ProtocolVersion is the MCP-Protocol-Version header, or for
	// initialize the version the client asks for.
	ProtocolVersion string
	// MetaProtocolVersion is params._meta["io.modelcontextprotocol/protocolVersion"]:
	// the revision a request of the stateless revision (2026-07-28) says it
	// speaks. Empty when absent.
	MetaProtocolVersion string
	// Params is the params member as sent, a slice of Body; nil when
	// absent.
	Params json.RawMessage
	// Optimizer names the optimizer tool a tools/call asks for when the
	// optimizer is on: FindToolName, or CallToolName, and then ResourceID
	// and Arguments are the tool_name and parameters of the catalogue tool
	// it calls. Empty otherwise.
	Optimizer string
	// Denied is set by the authz stage, the one stage after parse that
	// writes here, for a request its policy refuses: the rate limiter
	// takes no token for it, the audit stage leaves it to authz's own
	// record, and the endpoint answers it, after its session checks, as a
	// name that does not exist.
	Denied bool
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
	body, err := readAll(r.Body, r.ContentLength)
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{})
	}
	return body, err
}

// readAll reads r to its end into a buffer sized for n bytes when n is
// known (the Content-Length), so a large body is not copied while its
// buffer grows.
func readAll(r io.Reader, n int64) ([]byte, error) {
	if n <= 0 || n > 64<<20 {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, n+1) // +1: the read that finds the end
	for {
		m, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // more than announced: grow
		}
	}
}

// Parse reads body: the envelope, and of params only the members vmcp
// routes on. Nothing is decoded that vmcp would only pass on (arguments,
// results), but the whole body is checked to be well-formed JSON. On
// failure it returns the JSON-RPC error to answer with, and p.ID is the
// request id when it could be read.
func Parse(body []byte, opts Options) (*Parsed, *jsonrpc.Error) {
	p := &Parsed{Body: body}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return p, &jsonrpc.Error{Code: jsonrpc.CodeParseError, Message: "empty request body"}
	}
	switch trimmed[0] {
	case '[':
		if !json.Valid(trimmed) {
			return p, &jsonrpc.Error{Code: jsonrpc.CodeParseError, Message: "invalid JSON"}
		}
		p.Batch = true
		return p, nil
	case '{':
	default:
		if !json.Valid(trimmed) {
			return p, &jsonrpc.Error{Code: jsonrpc.CodeParseError, Message: "invalid JSON"}
		}
		return p, invalid("not a JSON object")
	}
	e, err := jsonrpc.ScanEnvelope(body)
	if errors.Is(err, jsonrpc.ErrDuplicateKey) {
		if e.ID != nil && validID(e.ID) {
			p.ID = e.ID
		}
		return p, invalid(strings.TrimPrefix(err.Error(), jsonrpc.ErrDuplicateKey.Error()+": "))
	}
	if err != nil {
		return p, &jsonrpc.Error{Code: jsonrpc.CodeParseError, Message: err.Error()}
	}
	if e.ID != nil {
		if !validID(e.ID) {
			return p, invalid(`"id" must be a string or an integer`)
		}
		p.ID = e.ID
	}
	if v, ok := str(e.JSONRPC); !ok || v != "2.0" {
		return p, invalid(`"jsonrpc" must be "2.0"`)
	}
	if e.Method != nil {
		m, ok := str(e.Method)
		if !ok {
			return p, invalid("method has the wrong type")
		}
		p.Method = m
	}
	if e.Params == nil {
		return p, nil
	}
	if e.Params[0] != '{' {
		return p, invalid("params has the wrong type")
	}
	p.Params = e.Params
	if perr := p.readParams(opts); perr != nil {
		return p, perr
	}
	return p, nil
}

// invalid is the error for a well-formed message that is no valid request.
func invalid(why string) *jsonrpc.Error {
	return &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "invalid JSON-RPC message: " + why}
}

// validID reports whether a request id is one MCP allows: a string or an
// integer (not null, a fraction, an exponent, a boolean, an array or an
// object).
func validID(id []byte) bool {
	switch c := id[0]; {
	case c == '"':
		return true
	case c == '-' || (c >= '0' && c <= '9'):
		return bytes.IndexAny(id, ".eE") < 0
	}
	return false
}

// str returns the text of a JSON string value.
func str(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	return jsonrpc.Key(v), true
}

// The members vmcp reads: of params, params._meta, a completion's ref and
// call_tool's arguments.
var (
	paramsKeys   = []string{"name", "uri", "arguments", "protocolVersion", "cursor", "_meta", "ref"}
	metaKeys     = []string{metaProtocolVersion}
	refKeys      = []string{"type", "name", "uri"}
	callToolKeys = []string{"tool_name", "parameters"}
)

// readParams reads the members of params vmcp routes on. A member vmcp
// reads that is ambiguous (twice, or in another case: jsonrpc.Members) is
// refused: vmcp and the backend could each take a different one.
func (p *Parsed) readParams(opts Options) *jsonrpc.Error {
	var m [7][]byte
	if perr := readMembers(p.Params, "params", paramsKeys, m[:]); perr != nil {
		return perr
	}
	name, uri, ref := m[0], m[1], m[6]
	p.Arguments, p.Meta = m[2], m[5]
	if v := m[3]; v != nil {
		s, ok := str(v)
		if !ok {
			return invalid("protocolVersion has the wrong type")
		}
		if p.Method == "initialize" {
			p.ProtocolVersion = s
		}
	}
	if m[4] != nil {
		p.Cursor, _ = str(m[4])
	}
	if p.Meta != nil && p.Meta[0] == '{' {
		if perr := p.readMeta(); perr != nil {
			return perr
		}
	}
	switch p.Method {
	case "tools/call", "prompts/get":
		if name != nil {
			v, ok := str(name)
			if !ok {
				return invalid("name has the wrong type")
			}
			p.ResourceID, p.Name = v, name
		}
		if p.Arguments != nil && p.Arguments[0] != '{' && !bytes.Equal(p.Arguments, []byte("null")) {
			return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "invalid params: arguments must be an object"}
		}
		if p.Method == "tools/call" && opts.Optimizer {
			return p.resolveOptimizer()
		}
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		if uri != nil {
			v, ok := str(uri)
			if !ok {
				return invalid("uri has the wrong type")
			}
			p.ResourceID = v
		}
	case "completion/complete":
		p.Arguments = nil
		if ref != nil && ref[0] == '{' {
			return p.readRef(ref)
		}
	default:
		p.Arguments = nil
	}
	return nil
}

// readMembers reads the members names of obj (at path, for the error) into
// out: a parse error for malformed JSON, an invalid request for an
// ambiguous member.
func readMembers(obj []byte, path string, names []string, out [][]byte) *jsonrpc.Error {
	err := jsonrpc.Members(obj, names, out)
	switch {
	case errors.Is(err, jsonrpc.ErrDuplicateKey):
		return invalid(strings.TrimPrefix(err.Error(), jsonrpc.ErrDuplicateKey.Error()+": ") + " in " + path)
	case err != nil:
		return &jsonrpc.Error{Code: jsonrpc.CodeParseError, Message: err.Error()}
	}
	return nil
}

// readMeta reads the protocol revision a request of the stateless revision
// names in params._meta.
func (p *Parsed) readMeta() *jsonrpc.Error {
	var m [1][]byte
	if perr := readMembers(p.Meta, "params._meta", metaKeys, m[:]); perr != nil {
		return perr
	}
	if m[0] != nil {
		p.MetaProtocolVersion, _ = str(m[0])
	}
	return nil
}

const metaProtocolVersion = "io.modelcontextprotocol/protocolVersion"

// readRef reads the reference of a completion/complete: a prompt's name
// (ResourceID and Name) or a resource template's URI (ResourceID).
func (p *Parsed) readRef(ref []byte) *jsonrpc.Error {
	var m [3][]byte
	if perr := readMembers(ref, "params.ref", refKeys, m[:]); perr != nil {
		return perr
	}
	t, _ := str(m[0])
	p.RefType = t
	switch t {
	case "ref/prompt":
		if v, ok := str(m[1]); ok {
			p.ResourceID, p.Name = v, m[1]
		}
	case "ref/resource":
		p.ResourceID, _ = str(m[2])
	}
	return nil
}

// resolveOptimizer marks a call of find_tool or call_tool and puts the tool
// a call_tool calls in ResourceID and Name, its parameters in Arguments, so
// later stages limit, audit and relay the real tool. A call_tool whose
// arguments are not an object with a string tool_name keeps an empty
// ResourceID: the call_tool handler answers it with a tool error.
func (p *Parsed) resolveOptimizer() *jsonrpc.Error {
	switch p.ResourceID {
	case FindToolName:
		p.Optimizer = FindToolName
	case CallToolName:
		p.Optimizer = CallToolName
		args := p.Arguments
		p.ResourceID, p.Name, p.Arguments = "", nil, nil
		if len(args) == 0 || args[0] != '{' {
			return nil
		}
		var m [2][]byte
		if perr := readMembers(args, "params.arguments", callToolKeys, m[:]); perr != nil {
			return perr
		}
		if v, ok := str(m[0]); ok {
			p.ResourceID, p.Name, p.Arguments = v, m[0], m[1]
		}
	}
	return nil
}
