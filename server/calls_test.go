package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/internal/sse"
)

// rawBackend is an MCP server written without any SDK: a few lines of
// streamable HTTP that answer exactly what the test says, so that what
// vmcp changes on the way is visible byte for byte.
type rawBackend struct {
	*httptest.Server
	mu    sync.Mutex
	calls []rawCall // the tools/call requests it got
	// inits counts initialize requests; with hangInits, every one after
	// the first (the shared connection's) hangs until the client gives up.
	inits     atomic.Int32
	hangInits bool
	// cancelled counts notifications/cancelled.
	cancelled atomic.Int32
	// failInits answers every initialize after the first with 500.
	failInits bool
	// resumeID is the id of the call the "resume" tool left unanswered,
	// answered on a GET with Last-Event-ID.
	resumeID atomic.Pointer[string]
}

type rawCall struct {
	body             string
	session, version string
}

// rawAnswers are the answers of rawBackend's tools, by tool name, with
// %s where the request id goes.
var rawAnswers = map[string]string{
	// The id after the error, and an error with data.
	"fail": `{"jsonrpc":"2.0","error":{"code":-32602,"message":"bad field: x","data":{"field":"x","why":["a",1.50]}},"id":%s}`,
	// Every kind of field, known or not, in a result.
	"extra": `{"result":{"content":[{"type":"text","text":"hi \"there\"","annotations":{"audience":["user"],"priority":0.5}}],"structuredContent":{"k":1},"_meta":{"m":true},"x-unknown":{"a":[1,2.50]},"isError":false},"jsonrpc":"2.0","id":%s}`,
}

func newRawBackend(t *testing.T) *rawBackend {
	t.Helper()
	b := &rawBackend{}
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.Close)
	return b
}

func (b *rawBackend) serve(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodDelete:
		return
	case http.MethodPost:
	case http.MethodGet:
		id := b.resumeID.Load()
		if r.Header.Get("Last-Event-ID") != "e1" || id == nil {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: e2\ndata: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[],\"resumed\":true}}\n\n", *id)
		return
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			Name            string `json:"name"`
			ProtocolVersion string `json:"protocolVersion"`
			Meta            struct {
				ProgressToken json.RawMessage `json:"progressToken"`
			} `json:"_meta"`
		} `json:"params"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	reply := func(format string, args ...any) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, format, args...)
	}
	switch msg.Method {
	case "initialize":
		if b.inits.Add(1) > 1 && b.hangInits {
			<-r.Context().Done()
			return
		}
		if b.inits.Load() > 1 && b.failInits {
			http.Error(w, "initialize failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Mcp-Session-Id", "raw-session-1")
		reply(`{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":%q,"capabilities":{"tools":{}},"serverInfo":{"name":"raw","version":"0"}}}`,
			msg.ID, msg.Params.ProtocolVersion)
	case "notifications/cancelled":
		b.cancelled.Add(1)
		w.WriteHeader(http.StatusAccepted)
	case "":
		w.WriteHeader(http.StatusAccepted)
	case "tools/list":
		reply(`{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"fail","inputSchema":{"type":"object"}},{"name":"extra","inputSchema":{"type":"object"}},{"name":"stream","inputSchema":{"type":"object"}},{"name":"hang","inputSchema":{"type":"object"}},{"name":"resume","inputSchema":{"type":"object"}},{"name":"pretty","inputSchema":{"type":"object"}}]}}`, msg.ID)
	case "tools/call":
		b.mu.Lock()
		b.calls = append(b.calls, rawCall{body: string(body), session: r.Header.Get("Mcp-Session-Id"), version: r.Header.Get("Mcp-Protocol-Version")})
		b.mu.Unlock()
		switch msg.Params.Name {
		case "hang":
			<-r.Context().Done()
			return
		case "resume": // a progress event with an id, then the stream ends
			id := string(msg.ID)
			b.resumeID.Store(&id)
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "id: e1\nretry: 10\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n")
			return
		case "pretty": // the result over several data lines
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "data: {\"jsonrpc\": \"2.0\",\ndata:  \"id\": %s,\ndata:  \"result\": {\"content\": []}}\n\n", msg.ID)
			return
		}
		if answer, ok := rawAnswers[msg.Params.Name]; ok {
			reply(answer, msg.ID)
			return
		}
		// stream: a progress notification, a list_changed, then the result.
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":%s,\"progress\":1,\"total\":2}}\n\n", msg.Params.Meta.ProgressToken)
		fmt.Fprint(w, ": a comment\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n")
		fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[],\"x\":1}}\n\n", msg.ID)
	default:
		if len(msg.ID) > 0 {
			reply(`{"jsonrpc":"2.0","id":%s,"result":{}}`, msg.ID)
		}
	}
}

// rawClient speaks MCP to vmcp over plain HTTP.
type rawClient struct {
	t       *testing.T
	url     string
	session string
}

func (c *rawClient) post(body string) *http.Response {
	c.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, c.url, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	if c.session != "" {
		req.Header.Set("Mcp-Session-Id", c.session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp
}

func (c *rawClient) initialize() {
	c.t.Helper()
	resp := c.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}`)
	_ = resp.Body.Close()
	c.session = resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || c.session == "" {
		c.t.Fatalf("initialize: %s, session %q", resp.Status, c.session)
	}
	_ = c.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`).Body.Close()
}

// call sends a tools/call and returns the messages of its answer.
func (c *rawClient) call(body string) (contentType string, msgs []string) {
	c.t.Helper()
	resp := c.post(body)
	defer resp.Body.Close()
	contentType = resp.Header.Get("Content-Type")
	if !strings.HasPrefix(contentType, "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		return contentType, []string{string(b)}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			msgs = append(msgs, d)
		}
	}
	return contentType, msgs
}

func startRawVMCP(t *testing.T, b *rawBackend, optimizer bool, edit ...func(*config.Backend)) *rawClient {
	t.Helper()
	cfg := testConfig(t, config.Backend{Name: "raw", Transport: config.TransportStreamableHTTP, URL: b.URL})
	for _, f := range edit {
		f(&cfg.Backends[0])
	}
	cfg.Optimizer.Enabled = optimizer
	srv := startServer(t, cfg)
	c := &rawClient{t: t, url: "http://" + srv.Addr().String() + "/mcp"}
	c.initialize()
	return c
}

// TestCallsReachTheClientUnchanged: whatever a backend answers reaches the
// client as the backend wrote it, but for the id: an error's code, message
// and data, a result's every field; and the backend gets the client's
// request as the client wrote it, but for the name and the id, on the
// client's own backend session.
func TestCallsReachTheClientUnchanged(t *testing.T) {
	t.Parallel()
	b := newRawBackend(t)
	for _, optimizer := range []bool{false, true} {
		t.Run(fmt.Sprintf("optimizer=%v", optimizer), func(t *testing.T) {
			c := startRawVMCP(t, b, optimizer)
			for _, tool := range []string{"fail", "extra"} {
				args := `{"s":"<&>","n":1.50,"deep":{"a":[true,null]}}`
				body := `{"jsonrpc":"2.0","id":"c-7","method":"tools/call","params":{"name":"raw_` + tool + `","arguments":` + args + `}}`
				if optimizer {
					body = `{"jsonrpc":"2.0","id":"c-7","method":"tools/call","params":{"name":"call_tool","arguments":{"tool_name":"raw_` + tool + `","parameters":` + args + `}}}`
				}
				ct, msgs := c.call(body)
				want := fmt.Sprintf(rawAnswers[tool], `"c-7"`)
				if ct != "application/json" || len(msgs) != 1 || msgs[0] != want {
					t.Errorf("%s: %s %q\nwant %s", tool, ct, msgs, want)
				}
				b.mu.Lock()
				last := b.calls[len(b.calls)-1]
				b.mu.Unlock()
				var got struct {
					ID     string          `json:"id"`
					Params json.RawMessage `json:"params"`
				}
				if err := json.Unmarshal([]byte(last.body), &got); err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(got.ID, "vmcp-") || string(got.Params) != `{"name":"`+tool+`","arguments":`+args+`}` {
					t.Errorf("%s: the backend got %s", tool, last.body)
				}
				if last.session != "raw-session-1" || last.version != "2025-11-25" {
					t.Errorf("%s: the backend got session %q, version %q", tool, last.session, last.version)
				}
			}
		})
	}
}

// TestCallsRelayEventStreams: an event stream is relayed event by event:
// the progress notification with the client's token, the result with the
// client's id; the backend's list_changed stays with vmcp.
func TestCallsRelayEventStreams(t *testing.T) {
	t.Parallel()
	c := startRawVMCP(t, newRawBackend(t), false)
	ct, msgs := c.call(`{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"raw_stream","arguments":{},"_meta":{"progressToken":"tok"}}}`)
	want := []string{
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":1,"total":2}}`,
		`{"jsonrpc":"2.0","id":41,"result":{"content":[],"x":1}}`,
	}
	if !strings.HasPrefix(ct, "text/event-stream") || strings.Join(msgs, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %s:\n%s\nwant\n%s", ct, strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
}

func TestBackendRequestIDs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ backend, id string }{{"github", `0`}, {"a/b", `"x/y\""`}, {"é", `-12`}} {
		enc := backendRequestID(tc.backend, []byte(tc.id))
		if !json.Valid(enc) {
			t.Errorf("%s %s: %s is not JSON", tc.backend, tc.id, enc)
		}
		backend, raw, ok := parseBackendRequestID(enc)
		if !ok || backend != tc.backend || string(raw) != tc.id {
			t.Errorf("%s %s: round trip gave %q %s %v", tc.backend, tc.id, backend, raw, ok)
		}
	}
	injected := string(backendRequestID("github", []byte(`1,"method":"tools/call","params":{"name":"x"}`)))
	for _, bad := range []string{`1`, `"vmcp/"`, `"vmcp/!!/x"`, `"other"`, injected, string(backendRequestID("github", []byte(`1.5`))), string(backendRequestID("github", []byte(` 1`)))} {
		if _, _, ok := parseBackendRequestID([]byte(bad)); ok {
			t.Errorf("%s parsed as a backend request id", bad)
		}
	}
}

// TestCallsEndWithinTheRequestTimeout: a call fails within its backend's
// requestTimeout whatever holds it up, the backend's answer or the opening
// of the client's session with it (bounded by connectTimeout before), and
// the backend is told the call is cancelled.
func TestCallsEndWithinTheRequestTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name      string
		hangInits bool
		tool      string
	}{
		{"the backend does not answer", false, "raw_hang"},
		{"the backend does not open the session", true, "raw_extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newRawBackend(t)
			b.hangInits = tc.hangInits
			c := startRawVMCP(t, b, false, func(be *config.Backend) {
				be.RequestTimeout = config.Duration(timeout)
				be.ConnectTimeout = config.Duration(20 * time.Second)
			})
			start := time.Now()
			_, msgs := c.call(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tc.tool + `","arguments":{}}}`)
			took := time.Since(start)
			if len(msgs) != 1 || !strings.Contains(msgs[0], `"error"`) || !strings.Contains(msgs[0], "requestTimeout") {
				t.Errorf("answer %q (after %v), want an error naming the timeout", msgs, took)
			}
			// The margin covers a loaded machine; before, these took
			// requestTimeout + 2 s and connectTimeout.
			if took > timeout+1500*time.Millisecond {
				t.Errorf("the call took %v, want about %v", took, timeout)
			}
			if !tc.hangInits {
				deadline := time.Now().Add(5 * time.Second)
				for b.cancelled.Load() == 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if b.cancelled.Load() == 0 {
					t.Error("the backend was not told the call was cancelled")
				}
			}
		})
	}
}

// TestErrorsAreJSONRPC: what mcp-go answers as a plain-text HTTP error
// reaches the client as a JSON-RPC error with the same status.
func TestErrorsAreJSONRPC(t *testing.T) {
	t.Parallel()
	c := startRawVMCP(t, newRawBackend(t), false)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, c.url, strings.NewReader(`{"jsonrpc":"2.0","id":5,"method":"ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/html")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", c.session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var msg struct {
		ID    json.RawMessage `json:"id"`
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/json" ||
		json.Unmarshal(body, &msg) != nil || string(msg.ID) != "5" || msg.Error.Code != -32600 || !strings.Contains(msg.Error.Message, "content type") {
		t.Errorf("answer %d %s %s, want 400 with a JSON-RPC error", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// TestBatchesAreRefusedClearly: a JSON-RPC batch gets an invalid-request
// error that says batches are not taken, at every revision (mcp-go called
// it invalid JSON).
func TestBatchesAreRefusedClearly(t *testing.T) {
	t.Parallel()
	c := startRawVMCP(t, newRawBackend(t), false)
	for _, v := range []string{"", "2025-03-26", "2025-11-25", "2026-07-28"} {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, c.url,
			strings.NewReader(`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", c.session)
		if v != "" {
			req.Header.Set("Mcp-Protocol-Version", v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":-32600`) || !strings.Contains(string(body), "batches") {
			t.Errorf("version %q: %d %s, want 400 -32600 naming batches", v, resp.StatusCode, body)
		}
	}
}

// TestSessionChecks: one check before the table: a session-based request
// other than initialize without a session id is 400, with an unknown one
// 404, both JSON-RPC errors echoing the id.
func TestSessionChecks(t *testing.T) {
	t.Parallel()
	c := startRawVMCP(t, newRawBackend(t), false)
	for _, tc := range []struct {
		session string
		status  int
	}{{"", http.StatusBadRequest}, {"mcp-session-made-up", http.StatusNotFound}} {
		other := &rawClient{t: t, url: c.url, session: tc.session}
		resp := other.post(`{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"raw_extra","arguments":{}}}`)
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" ||
			!strings.Contains(string(body), `"id":8`) || !strings.Contains(string(body), `"code":-32600`) {
			t.Errorf("session %q: %d %s, want %d with a JSON-RPC error", tc.session, resp.StatusCode, body, tc.status)
		}
	}
}

// TestDeleteEndsTheGETStream: a session's open GET stream ends with the
// session (DELETE here); mcp-go alone kept it open.
func TestDeleteEndsTheGETStream(t *testing.T) {
	t.Parallel()
	c := startRawVMCP(t, newRawBackend(t), false)
	get, err := http.NewRequestWithContext(context.Background(), http.MethodGet, c.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	get.Header.Set("Accept", "text/event-stream")
	get.Header.Set("Mcp-Session-Id", c.session)
	get.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	resp, err := http.DefaultClient.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET stream: %s", resp.Status)
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		_, _ = io.Copy(io.Discard, resp.Body)
	}()
	del, err := http.NewRequestWithContext(context.Background(), http.MethodDelete, c.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	del.Header.Set("Mcp-Session-Id", c.session)
	del.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	dresp, err := http.DefaultClient.Do(del)
	if err != nil {
		t.Fatal(err)
	}
	_ = dresp.Body.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the GET stream stayed open after its session was deleted")
	}
}

// TestEventScanner: events are read whatever their line ends, with data
// over several lines joined, comments and other fields skipped, and data
// lines longer than the reader's buffer read whole.
func TestEventScanner(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 100)
	stream := ": comment\r\nevent: message\r\nid: 1\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n" +
		"data: " + long + "\n\n" +
		"retry: 10\n\n" +
		"data: last"
	sc := sse.NewScanner(bufio.NewReaderSize(strings.NewReader(stream), 16), maxAnswerBytes)
	var got []string
	for {
		data, err := sc.Next()
		if err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
		got = append(got, string(data))
	}
	want := []string{"{\"a\":\n1}", long, "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events %q, want %q", got, want)
	}
}

// TestCallsResumeAndJoinEventStreams: a stream the backend ends after an
// event with an id, before the answer, is resumed with GET and
// Last-Event-ID; an event whose data spans several lines reaches the
// client as one data line (a client's SSE parser would drop the others).
func TestCallsResumeAndJoinEventStreams(t *testing.T) {
	t.Parallel()
	c := startRawVMCP(t, newRawBackend(t), false)
	_, msgs := c.call(`{"jsonrpc":"2.0","id":51,"method":"tools/call","params":{"name":"raw_resume","arguments":{}}}`)
	want := []string{
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`,
		`{"jsonrpc":"2.0","id":51,"result":{"content":[],"resumed":true}}`,
	}
	if strings.Join(msgs, "\n") != strings.Join(want, "\n") {
		t.Errorf("resumed call: got\n%s\nwant\n%s", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
	_, msgs = c.call(`{"jsonrpc":"2.0","id":52,"method":"tools/call","params":{"name":"raw_pretty","arguments":{}}}`)
	var got struct {
		ID     int             `json:"id"`
		Result json.RawMessage `json:"result"`
	}
	if len(msgs) != 1 || json.Unmarshal([]byte(msgs[0]), &got) != nil || got.ID != 52 || got.Result == nil {
		t.Errorf("multi-line event: got %q, want one message answering 52", msgs)
	}
}

// TestSessionOpenErrorsAreNotTimeouts: a backend that refuses the client's
// session is reported as that, at once, not as a timeout.
func TestSessionOpenErrorsAreNotTimeouts(t *testing.T) {
	t.Parallel()
	b := newRawBackend(t)
	b.failInits = true
	c := startRawVMCP(t, b, false)
	_, msgs := c.call(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"raw_extra","arguments":{}}}`)
	if len(msgs) != 1 || !strings.Contains(msgs[0], `"error"`) || strings.Contains(msgs[0], "requestTimeout") {
		t.Errorf("answer %q, want an error that does not blame a timeout", msgs)
	}
}

// TestEventScannerBoundsAnEvent: an event of many short data lines is cut
// off at maxAnswerBytes, not held whole.
func TestEventScannerBoundsAnEvent(t *testing.T) {
	t.Parallel()
	sc := sse.NewScanner(bufio.NewReader(&endlessData{line: []byte("data: " + strings.Repeat("x", 1000) + "\n")}), maxAnswerBytes)
	if _, err := sc.Next(); !errors.Is(err, sse.ErrTooLarge) {
		t.Fatalf("next = %v, want sse.ErrTooLarge", err)
	}
}

// endlessData repeats one line forever.
type endlessData struct {
	line []byte
	at   int
}

func (e *endlessData) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], e.line[e.at:])
		n += c
		e.at = (e.at + c) % len(e.line)
	}
	return n, nil
}
