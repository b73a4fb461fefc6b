package parse_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vmcp/vmcp/jsonrpc"
	"github.com/vmcp/vmcp/parse"
)

// recorder is a next handler that records what reached it.
type recorder struct {
	called bool
	parsed *parse.Parsed
	ok     bool
	body   []byte
}

func (rec *recorder) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.called = true
		rec.parsed, rec.ok = parse.FromContext(r.Context())
		rec.body, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
}

// errorReply is a JSON-RPC error response as a client decodes it.
type errorReply struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

func decodeError(t *testing.T, body []byte) errorReply {
	t.Helper()
	var e errorReply
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("response is not a JSON-RPC error: %v\n%s", err, body)
	}
	if e.JSONRPC != "2.0" {
		t.Errorf("jsonrpc = %q, want 2.0", e.JSONRPC)
	}
	return e
}

func post(body string, header map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		r.Header.Set(k, v)
	}
	return r
}

func TestStagePassesParsedMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		header map[string]string
		want   parse.Parsed // Body is always the request body
	}{
		{
			name: "tools/call",
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github_create_pr","arguments":{"title":"x","draft":true}}}`,
			header: map[string]string{
				"MCP-Protocol-Version": "2025-11-25",
			},
			want: parse.Parsed{
				Method: "tools/call", ID: json.RawMessage(`1`), ResourceID: "github_create_pr",
				Arguments: json.RawMessage(`{"title":"x","draft":true}`), ProtocolVersion: "2025-11-25",
			},
		},
		{
			name: "tools/call with string id and no arguments",
			body: `{"jsonrpc":"2.0","id":"abc","method":"tools/call","params":{"name":"ping"}}`,
			want: parse.Parsed{Method: "tools/call", ID: json.RawMessage(`"abc"`), ResourceID: "ping"},
		},
		{
			name: "prompts/get",
			body: `{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"jira_summary","arguments":{"issue":"ENG-1"}}}`,
			want: parse.Parsed{
				Method: "prompts/get", ID: json.RawMessage(`2`), ResourceID: "jira_summary",
				Arguments: json.RawMessage(`{"issue":"ENG-1"}`),
			},
		},
		{
			name: "resources/read",
			body: `{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///srv/readme.md"}}`,
			want: parse.Parsed{Method: "resources/read", ID: json.RawMessage(`3`), ResourceID: "file:///srv/readme.md"},
		},
		{
			name: "resources/subscribe",
			body: `{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{"uri":"notes://a"}}`,
			want: parse.Parsed{Method: "resources/subscribe", ID: json.RawMessage(`4`), ResourceID: "notes://a"},
		},
		{
			name: "initialize takes the version from params over the header",
			body: `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`,
			header: map[string]string{
				"MCP-Protocol-Version": "2025-11-25",
			},
			want: parse.Parsed{Method: "initialize", ID: json.RawMessage(`0`), ProtocolVersion: "2025-06-18"},
		},
		{
			name:   "header version for other methods",
			body:   `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`,
			header: map[string]string{"MCP-Protocol-Version": "2025-11-25"},
			want:   parse.Parsed{Method: "tools/list", ID: json.RawMessage(`5`), ProtocolVersion: "2025-11-25"},
		},
		{
			name:   "stateless tools/call keeps its params and _meta version",
			body:   `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"t","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
			header: map[string]string{"MCP-Protocol-Version": "2026-07-28"},
			want: parse.Parsed{
				Method: "tools/call", ID: json.RawMessage(`9`), ResourceID: "t", Arguments: json.RawMessage(`{}`),
				ProtocolVersion: "2026-07-28", MetaProtocolVersion: "2026-07-28",
				Params: json.RawMessage(`{"name":"t","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}`),
			},
		},
		{
			name: "params without a _meta version are not kept",
			body: `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"t","_meta":{"progressToken":1}}}`,
			want: parse.Parsed{Method: "tools/call", ID: json.RawMessage(`9`), ResourceID: "t"},
		},
		{
			name: "notification has no id",
			body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			want: parse.Parsed{Method: "notifications/initialized"},
		},
		{
			name: "response from the client has no method",
			body: `{"jsonrpc":"2.0","id":9,"result":{}}`,
			want: parse.Parsed{ID: json.RawMessage(`9`)},
		},
		{
			name: "name of a method without a resource is ignored",
			body: `{"jsonrpc":"2.0","id":6,"method":"completion/complete","params":{"name":"x"}}`,
			want: parse.Parsed{Method: "completion/complete", ID: json.RawMessage(`6`)},
		},
		{
			name: "batch passes through",
			body: `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`,
			want: parse.Parsed{Batch: true},
		},
		{
			name: "leading whitespace",
			body: " \r\n\t{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
			want: parse.Parsed{Method: "ping", ID: json.RawMessage(`1`)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var next recorder
			w := httptest.NewRecorder()
			parse.New(parse.Options{})(next.handler()).ServeHTTP(w, post(tt.body, tt.header))

			if !next.called {
				t.Fatalf("next not called; status %d body %s", w.Code, w.Body)
			}
			if !next.ok {
				t.Fatal("no Parsed on the context")
			}
			p := next.parsed
			if p.Method != tt.want.Method {
				t.Errorf("Method = %q, want %q", p.Method, tt.want.Method)
			}
			if string(p.ID) != string(tt.want.ID) {
				t.Errorf("ID = %s, want %s", p.ID, tt.want.ID)
			}
			if tt.want.ID == nil && p.ID != nil {
				t.Errorf("ID = %q, want nil", p.ID)
			}
			if p.ResourceID != tt.want.ResourceID {
				t.Errorf("ResourceID = %q, want %q", p.ResourceID, tt.want.ResourceID)
			}
			if string(p.Arguments) != string(tt.want.Arguments) {
				t.Errorf("Arguments = %s, want %s", p.Arguments, tt.want.Arguments)
			}
			if p.ProtocolVersion != tt.want.ProtocolVersion {
				t.Errorf("ProtocolVersion = %q, want %q", p.ProtocolVersion, tt.want.ProtocolVersion)
			}
			if p.Batch != tt.want.Batch {
				t.Errorf("Batch = %v, want %v", p.Batch, tt.want.Batch)
			}
			if p.MetaProtocolVersion != tt.want.MetaProtocolVersion || (tt.want.Params != nil && string(p.Params) != string(tt.want.Params)) {
				t.Errorf("MetaProtocolVersion, Params = %q, %s; want %q, %s", p.MetaProtocolVersion, p.Params, tt.want.MetaProtocolVersion, tt.want.Params)
			}
			// The body is read once: the bytes travel in Parsed, the
			// request body that reaches next is empty.
			if string(p.Body) != tt.body {
				t.Errorf("Body = %q, want the request body %q", p.Body, tt.body)
			}
			if len(next.body) != 0 {
				t.Errorf("next read %q from r.Body, want nothing", next.body)
			}
		})
	}
}

func TestStageAnswersBadMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		body     string
		wantCode int
		wantID   string
	}{
		{name: "malformed JSON", body: `{"jsonrpc":"2.0","id":1,`, wantCode: jsonrpc.CodeParseError, wantID: "null"},
		{name: "not JSON", body: `hello`, wantCode: jsonrpc.CodeParseError, wantID: "null"},
		{name: "trailing garbage", body: `{"jsonrpc":"2.0","id":1,"method":"ping"} x`, wantCode: jsonrpc.CodeParseError, wantID: "null"},
		{name: "empty body", body: ``, wantCode: jsonrpc.CodeParseError, wantID: "null"},
		{name: "whitespace body", body: " \n\t ", wantCode: jsonrpc.CodeParseError, wantID: "null"},
		{name: "malformed batch", body: `[{"jsonrpc":"2.0"}`, wantCode: jsonrpc.CodeParseError, wantID: "null"},
		{name: "jsonrpc 1.0 echoes number id", body: `{"jsonrpc":"1.0","id":7,"method":"ping"}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "7"},
		{name: "missing jsonrpc echoes string id", body: `{"id":"q","method":"ping"}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: `"q"`},
		{name: "tool name of the wrong type", body: `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":42}}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "8"},
		{name: "params of the wrong type", body: `{"jsonrpc":"2.0","id":"p","method":"tools/call","params":"github_create_pr"}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: `"p"`},
		{name: "method of the wrong type", body: `{"jsonrpc":"2.0","id":10,"method":["tools/call"]}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "10"},
		{name: "jsonrpc of the wrong type", body: `{"jsonrpc":2,"id":11,"method":"ping"}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "11"},
		{name: "message is not an object", body: `"tools/call"`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "null"},
		{name: "null id", body: `{"jsonrpc":"2.0","id":null,"method":"tools/list"}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "null"},
		{name: "object id", body: `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "null"},
		{name: "array id", body: `{"jsonrpc":"2.0","id":[1],"method":"ping"}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "null"},
		{name: "boolean id", body: `{"jsonrpc":"2.0","id":true,"method":"ping"}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "null"},
		{name: "fraction id", body: `{"jsonrpc":"2.0","id":1.5,"method":"ping"}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "null"},
		{name: "exponent id", body: `{"jsonrpc":"2.0","id":1e3,"method":"ping"}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "null"},
		{name: "arguments not an object", body: `{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"t","arguments":[1]}}`, wantCode: jsonrpc.CodeInvalidParams, wantID: "12"},
		{name: "call_tool arguments not an object", body: `{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"call_tool","arguments":"weather_get"}}`, wantCode: jsonrpc.CodeInvalidParams, wantID: "13"},
		{name: "name twice in params", body: `{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"name":"a","name":"b"}}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "14"},
		{name: "id twice", body: `{"jsonrpc":"2.0","id":15,"id":16,"method":"ping"}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "null"},
		{name: "name in another case", body: `{"jsonrpc":"2.0","id":18,"method":"tools/call","params":{"name":"a_search","NAME":"secret"}}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "18"},
		{name: "params in another case", body: `{"jsonrpc":"2.0","id":19,"method":"tools/call","params":{"name":"a_search"},"Params":{"name":"secret"}}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "19"},
		{name: "params with a long s", body: "{\"jsonrpc\":\"2.0\",\"id\":20,\"method\":\"tools/call\",\"params\":{\"name\":\"a_search\"},\"param\u017f\":{\"name\":\"secret\"}}", wantCode: jsonrpc.CodeInvalidRequest, wantID: "20"},
		{name: "method in another case", body: `{"jsonrpc":"2.0","id":21,"method":"tools/call","Method":"resources/read","params":{"name":"a"}}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "21"},
		{name: "escaped key in another case", body: `{"jsonrpc":"2.0","id":22,"method":"tools/call","params":{"name":"a","\u004eame":"b"}}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "22"},
		{name: "completion ref name twice", body: `{"jsonrpc":"2.0","id":23,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a","name":"b"}}}`, wantCode: jsonrpc.CodeInvalidRequest, wantID: "23"},
		{name: "invalid escape", body: `{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"a\q"}}`, wantCode: jsonrpc.CodeParseError, wantID: "null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var next recorder
			w := httptest.NewRecorder()
			parse.New(parse.Options{})(next.handler()).ServeHTTP(w, post(tt.body, nil))

			if next.called {
				t.Fatal("next was called for a bad message")
			}
			if w.Code != http.StatusBadRequest {
				t.Errorf("status = %d, want 400", w.Code)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			e := decodeError(t, w.Body.Bytes())
			if e.Error.Code != tt.wantCode {
				t.Errorf("code = %d, want %d (%s)", e.Error.Code, tt.wantCode, e.Error.Message)
			}
			if string(e.ID) != tt.wantID {
				t.Errorf("id = %s, want %s", e.ID, tt.wantID)
			}
			if e.Error.Message == "" {
				t.Error("empty error message")
			}
		})
	}
}

func TestStageAnswersOversizedBodyWith413(t *testing.T) {
	t.Parallel()
	const limit = 64
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + strings.Repeat("x", 2*limit) + `"}}`
	var next recorder
	h := parse.New(parse.Options{})(next.handler())
	w := httptest.NewRecorder()
	r := post(body, nil)
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	h.ServeHTTP(w, r)

	if next.called {
		t.Fatal("next was called for an oversized body")
	}
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 413", w.Code)
	}
	e := decodeError(t, w.Body.Bytes())
	if e.Error.Code != jsonrpc.CodeInvalidRequest {
		t.Errorf("code = %d, want %d", e.Error.Code, jsonrpc.CodeInvalidRequest)
	}
	if string(e.Error.Data) != `{"maxBytes":64}` {
		t.Errorf("data = %s, want the limit", e.Error.Data)
	}
}

// failingReader fails every read with a plain error.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestStageAnswersUnreadableBodyWith400(t *testing.T) {
	t.Parallel()
	var next recorder
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/mcp", failingReader{})
	parse.New(parse.Options{})(next.handler()).ServeHTTP(w, r)

	if next.called {
		t.Fatal("next was called for an unreadable body")
	}
	if w.Code != http.StatusBadRequest {
		t.Errorf("status = %d, want 400", w.Code)
	}
	if e := decodeError(t, w.Body.Bytes()); e.Error.Code != jsonrpc.CodeParseError {
		t.Errorf("code = %d, want %d", e.Error.Code, jsonrpc.CodeParseError)
	}
}

func TestStageLeavesOtherMethodsAlone(t *testing.T) {
	t.Parallel()
	for _, method := range []string{http.MethodGet, http.MethodDelete, http.MethodOptions} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			var next recorder
			w := httptest.NewRecorder()
			// A body that would not parse proves the stage did not read it.
			r := httptest.NewRequest(method, "/mcp", strings.NewReader("not json"))
			parse.New(parse.Options{})(next.handler()).ServeHTTP(w, r)

			if !next.called {
				t.Fatalf("next not called; status %d", w.Code)
			}
			if next.ok {
				t.Errorf("%s got a Parsed: %+v", method, next.parsed)
			}
			if string(next.body) != "not json" {
				t.Errorf("next read %q, want the untouched body", next.body)
			}
		})
	}
}

func TestFromContext(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if p, ok := parse.FromContext(r.Context()); ok || p != nil {
		t.Errorf("FromContext(bare) = %v, %v; want nil, false", p, ok)
	}
	want := &parse.Parsed{Method: "tools/call", ResourceID: "t"}
	got, ok := parse.FromContext(parse.NewContext(r.Context(), want))
	if !ok || got != want {
		t.Errorf("FromContext(NewContext(p)) = %v, %v; want p, true", got, ok)
	}
}

// Params is a slice of Body, not a copy: the router renames a relayed
// request's params in place in the body.
func TestParseParamsAreASliceOfTheBody(t *testing.T) {
	t.Parallel()
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`)
	p, perr := parse.Parse(body, parse.Options{})
	if perr != nil {
		t.Fatal(perr.Message)
	}
	at := bytes.Index(body, []byte(`{"name"`))
	if len(p.Params) == 0 || &p.Params[0] != &body[at] || len(p.Params) != len(body)-at-1 {
		t.Errorf("Params = %s, want the slice of the body from %d", p.Params, at)
	}
}

func TestParseKeepsBodyAndIDOnError(t *testing.T) {
	t.Parallel()
	body := []byte(`{"jsonrpc":"1.0","id":"keep","method":"ping"}`)
	p, perr := parse.Parse(body, parse.Options{})
	if perr == nil {
		t.Fatal("Parse accepted jsonrpc 1.0")
	}
	if p == nil || string(p.ID) != `"keep"` || !bytes.Equal(p.Body, body) {
		t.Errorf("Parse = %+v; want the id and the body", p)
	}
}

// A client that sends part of its body and stalls is answered with 408 once
// the body read timeout passes, instead of holding the handler forever. Not
// parallel: it shortens the timeout.
func TestStageTimesOutATrickledBody(t *testing.T) {
	const timeout = 200 * time.Millisecond
	parse.SetBodyReadTimeout(t, timeout)
	var next recorder
	srv := httptest.NewServer(parse.New(parse.Options{})(next.handler()))
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Content-Length 100, then only 10 bytes, then nothing.
	start := time.Now()
	if _, err := io.WriteString(conn, "POST /mcp HTTP/1.1\r\nHost: vmcp\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\""); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response to a stalled body: %v", err)
	}
	defer resp.Body.Close()
	elapsed := time.Since(start)
	body, _ := io.ReadAll(resp.Body)

	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status = %d, want 408; body %s", resp.StatusCode, body)
	}
	if elapsed < timeout || elapsed > timeout+5*time.Second {
		t.Errorf("answered after %v, want just after the %v timeout", elapsed, timeout)
	}
	e := decodeError(t, body)
	if e.Error.Code != jsonrpc.CodeInvalidRequest || e.Error.Message != "request body read timed out" {
		t.Errorf("error = %d %q, want -32600 \"request body read timed out\"", e.Error.Code, e.Error.Message)
	}
	if next.called {
		t.Error("next was called for a body that never arrived")
	}
}

// The read deadline covers the body only: a handler that runs longer than
// the timeout after the body was read keeps its request context. Not
// parallel: it shortens the timeout.
func TestStageClearsTheReadDeadlineAfterTheBody(t *testing.T) {
	const timeout = 100 * time.Millisecond
	parse.SetBodyReadTimeout(t, timeout)
	const body = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}`
	tests := []struct {
		name string
		// before runs ahead of the stage, as an earlier stage would.
		before func(http.Handler) http.Handler
	}{
		{
			// net/http clears the deadline itself when the body hits EOF
			// and its background read starts.
			name:   "stage reads the body",
			before: func(h http.Handler) http.Handler { return h },
		},
		{
			// Here net/http's background read is already waiting when the
			// stage sets the deadline; only the stage's reset stops it
			// from timing out and cancelling the request.
			name: "body read to EOF before the stage",
			before: func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					b, err := io.ReadAll(r.Body)
					if err != nil {
						t.Errorf("earlier stage: %v", err)
					}
					r.Body = io.NopCloser(bytes.NewReader(b))
					h.ServeHTTP(w, r)
				})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctxErr := make(chan error, 1)
			slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
					ctxErr <- context.Cause(r.Context())
				case <-time.After(5 * timeout):
					ctxErr <- nil
				}
				w.WriteHeader(http.StatusNoContent)
			})
			srv := httptest.NewServer(tt.before(parse.New(parse.Options{})(slow)))
			defer srv.Close()

			resp, err := srv.Client().Post(srv.URL+"/mcp", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Errorf("status = %d, want 204", resp.StatusCode)
			}
			if err := <-ctxErr; err != nil {
				t.Errorf("request context ended while the handler ran: %v", err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		``,
		`{}`,
		`[]`,
		`null`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{}}}`,
		`{"jsonrpc":"2.0","id":"x","method":"resources/read","params":{"uri":"file:///a"}}`,
		`{"jsonrpc":"2.0","method":"initialize","params":{"protocolVersion":"2025-11-25"}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}`,
		"\xff\xfe{",
	} {
		f.Add([]byte(s))
	}
	valid := map[int]bool{jsonrpc.CodeParseError: true, jsonrpc.CodeInvalidRequest: true, jsonrpc.CodeInvalidParams: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, perr := parse.Parse(body, parse.Options{})
		if p == nil {
			t.Fatal("Parse returned a nil *Parsed")
		}
		if !bytes.Equal(p.Body, body) {
			t.Fatalf("Body = %q, want the input", p.Body)
		}
		if perr != nil {
			if !valid[perr.Code] {
				t.Fatalf("error code %d is neither parse error nor invalid request", perr.Code)
			}
			if perr.Message == "" {
				t.Fatal("empty error message")
			}
		}
		if p.ID != nil && !json.Valid(p.ID) {
			t.Fatalf("ID %q is not valid JSON; echoing it would corrupt the response", p.ID)
		}
		if perr == nil && !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}

		// The stage answers every input without panicking, and either
		// passes it on or writes a JSON-RPC error.
		var next recorder
		w := httptest.NewRecorder()
		parse.New(parse.Options{})(next.handler()).ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/mcp", bytes.NewReader(body)))
		if next.called == (perr != nil) {
			t.Fatalf("next called = %v with parse error %v", next.called, perr)
		}
		if !next.called && !json.Valid(w.Body.Bytes()) {
			t.Fatalf("error response is not JSON: %s", w.Body)
		}
	})
}

// With the optimizer on, a call_tool is parsed as a call of the tool it
// names, so rate limits and audit see the real tool; find_tool is marked
// and is not a tool call. With it off, both are ordinary tool names.
func TestParseResolvesOptimizerTools(t *testing.T) {
	t.Parallel()
	call := func(args string) []byte {
		return []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"call_tool","arguments":` + args + `}}`)
	}
	find := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"find_tool","arguments":{"tool_description":"weather"}}}`)
	tests := []struct {
		name      string
		body      []byte
		optimizer bool
		want      parse.Parsed
		callsTool bool
	}{
		{"call_tool resolved", call(`{"tool_name":"weather_get","parameters":{"city":"Oslo"}}`), true,
			parse.Parsed{ResourceID: "weather_get", Arguments: json.RawMessage(`{"city":"Oslo"}`), Optimizer: parse.CallToolName}, true},
		{"call_tool without parameters", call(`{"tool_name":"notes_list"}`), true,
			parse.Parsed{ResourceID: "notes_list", Optimizer: parse.CallToolName}, true},
		{"call_tool with a non-string tool_name", call(`{"tool_name":7,"parameters":{"a":1}}`), true,
			parse.Parsed{Optimizer: parse.CallToolName}, true},
		{"find_tool is not a tool call", find, true,
			parse.Parsed{ResourceID: parse.FindToolName, Arguments: json.RawMessage(`{"tool_description":"weather"}`), Optimizer: parse.FindToolName}, false},
		{"optimizer off: call_tool is a backend's tool", call(`{"tool_name":"weather_get"}`), false,
			parse.Parsed{ResourceID: parse.CallToolName, Arguments: json.RawMessage(`{"tool_name":"weather_get"}`)}, true},
		{"optimizer off: find_tool is a backend's tool", find, false,
			parse.Parsed{ResourceID: parse.FindToolName, Arguments: json.RawMessage(`{"tool_description":"weather"}`)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, perr := parse.Parse(tt.body, parse.Options{Optimizer: tt.optimizer})
			if perr != nil {
				t.Fatalf("Parse: %v", perr)
			}
			if p.ResourceID != tt.want.ResourceID || string(p.Arguments) != string(tt.want.Arguments) || p.Optimizer != tt.want.Optimizer {
				t.Errorf("Parse = {ResourceID: %q, Arguments: %s, Optimizer: %q}; want {%q, %s, %q}",
					p.ResourceID, p.Arguments, p.Optimizer, tt.want.ResourceID, tt.want.Arguments, tt.want.Optimizer)
			}
			if got := p.CallsTool(); got != tt.callsTool {
				t.Errorf("CallsTool() = %v; want %v", got, tt.callsTool)
			}
		})
	}
}
