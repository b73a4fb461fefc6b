package audit

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/parse"
)

// TestDisabledStageCostsNothing: with nothing to record to the stage is
// next itself, so requests pay nothing for it, and every request reaches
// next.
func TestDisabledStageCostsNothing(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cfg  config.Audit
		opts Options
	}{
		"zero":                       {},
		"disabled with a recorder":   {config.Audit{}, Options{Recorder: &events{}}},
		"enabled without a recorder": {config.Audit{Enabled: true}, Options{Recorder: Discard, Observer: Discard}},
	} {
		t.Run(name, func(t *testing.T) {
			mw, err := New(tc.cfg, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			next := &countingHandler{}
			h := mw(next)
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/mcp", nil))
			if next.calls != 1 {
				t.Fatalf("next called %d times, want 1", next.calls)
			}
			if h != http.Handler(next) {
				t.Fatalf("stage wrapped next in %T; a disabled stage must return next unchanged", h)
			}
		})
	}
}

func TestNegativeMaxArgumentBytes(t *testing.T) {
	t.Parallel()
	if _, err := New(config.Audit{Enabled: true, MaxArgumentBytes: -1}, Options{Recorder: &events{}}); err == nil {
		t.Fatal("New accepted maxArgumentBytes -1")
	}
}

type countingHandler struct{ calls int }

func (c *countingHandler) ServeHTTP(http.ResponseWriter, *http.Request) { c.calls++ }

// events is a Recorder that keeps what it is given.
type events struct {
	mu sync.Mutex
	e  []Event
}

func (r *events) Record(_ context.Context, e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.e = append(r.e, e)
}

func (r *events) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.e...)
}

// reply is a handler answering with status, content type and body, the
// body written in chunks of chunk bytes (0: in one write).
func reply(status int, contentType, body string, chunk int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		b := []byte(body)
		if chunk <= 0 {
			chunk = len(b) + 1
		}
		for len(b) > 0 {
			n := min(chunk, len(b))
			_, _ = w.Write(b[:n])
			b = b[n:]
		}
	})
}

// serve sends a request carrying p through the stage around next and
// returns the events of the trail and of the observer.
func serve(t *testing.T, cfg config.Audit, opts Options, p *parse.Parsed, next http.Handler) (trail, observed []Event, rec *httptest.ResponseRecorder) {
	t.Helper()
	tr, ob := &events{}, &events{}
	opts.Recorder, opts.Observer = tr, ob
	mw, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	if p != nil {
		req = req.WithContext(parse.NewContext(req.Context(), p))
	}
	req.Header.Set("Mcp-Session-Id", "sess-1")
	rec = httptest.NewRecorder()
	mw(next).ServeHTTP(rec, req)
	return tr.all(), ob.all(), rec
}

func toolCall(name string) *parse.Parsed {
	return &parse.Parsed{Method: "tools/call", ID: json.RawMessage(`7`), ResourceID: name, Arguments: json.RawMessage(`{"city":"Wien"}`)}
}

const (
	jsonType = "application/json"
	sseType  = "text/event-stream"
)

// TestOutcome: the outcome comes from the status and the JSON-RPC response
// in a JSON or SSE body, however the body is split into writes.
func TestOutcome(t *testing.T) {
	t.Parallel()
	notification := `{"jsonrpc":"2.0","method":"notifications/progress","params":{"result":{"isError":true},"error":{"code":-1}}}`
	ping := `{"jsonrpc":"2.0","id":99,"method":"ping"}`
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		want        Outcome
		reason      string
	}{
		{"json result", 200, jsonType, `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"\"isError\":true, \\\"isError\\\":true"}]}}` + "\n", OutcomeSuccess, ""},
		{"json isError", 200, jsonType, `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"boom"}],"isError":true}}` + "\n", OutcomeToolError, ""},
		{"json isError false", 200, jsonType, `{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":false}}`, OutcomeSuccess, ""},
		{"isError deeper than the result", 200, jsonType, `{"jsonrpc":"2.0","id":7,"result":{"structuredContent":{"isError":true},"content":[{"isError":true}]}}`, OutcomeSuccess, ""},
		{"json whitespace", 200, jsonType, "{ \"jsonrpc\" : \"2.0\" ,\n \"id\" : 7 , \"result\" : { \"isError\" : true } }", OutcomeToolError, ""},
		{"jsonrpc internal error", 200, jsonType, `{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"backend weather unavailable"}}`, OutcomeBackendError, "jsonrpc error -32603"},
		{"jsonrpc invalid params", 200, jsonType, `{"jsonrpc":"2.0","id":7,"error":{"message":"no such tool","code":-32602}}`, OutcomeBadRequest, "jsonrpc error -32602"},
		{"jsonrpc invalid request, HTTP 400", 400, jsonType, `{"jsonrpc":"2.0","id":7,"error":{"code":-32600,"message":"bad"}}`, OutcomeBadRequest, "http 400"},
		{"unknown session", 404, "text/plain", "Session not found\n", OutcomeBadRequest, "http 404"},
		{"too large", 413, jsonType, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"too large"}}`, OutcomeBadRequest, "http 413"},
		{"unauthenticated", 401, jsonType, `{}`, OutcomeUnauthenticated, "http 401"},
		{"forbidden", 403, jsonType, `{}`, OutcomeForbidden, "http 403"},
		{"rate limited", 429, jsonType, `{"jsonrpc":"2.0","id":7,"error":{"code":-32029,"message":"Rate limit exceeded"}}`, OutcomeRateLimited, "http 429"},
		{"bad gateway", 502, "text/plain", "upstream", OutcomeBackendError, "http 502"},
		{"sse result after notifications", 200, sseType,
			"event: message\ndata: " + notification + "\n\nid: 3\nevent: message\ndata: " + ping + "\n\n: comment\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n\n", OutcomeSuccess, ""},
		{"sse isError after notifications", 200, sseType,
			"event: message\ndata: " + notification + "\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"isError\":true}}\n\n", OutcomeToolError, ""},
		{"sse error", 200, sseType,
			"event: message\ndata: " + notification + "\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32603,\"message\":\"x\"}}\n\n", OutcomeBackendError, "jsonrpc error -32603"},
		{"sse CRLF and multi-line data", 200, sseType,
			"event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\r\ndata: \"result\":{\"isError\":true}}\r\n\r\n", OutcomeToolError, ""},
		{"sse stream cut before the blank line", 200, sseType,
			"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"isError\":true}}\n", OutcomeToolError, ""},
		{"sse notifications only", 200, sseType, "event: message\ndata: " + notification + "\n\n", OutcomeBackendError, "no response"},
		{"no body", 200, "", "", OutcomeBackendError, "no response"},
		{"accepted", 202, "", "", OutcomeSuccess, ""},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, 3, 16} {
			trail, _, rec := serve(t, config.Audit{Enabled: true}, Options{}, toolCall("weather_forecast"),
				reply(tt.status, tt.contentType, tt.body, chunk))
			if len(trail) != 1 {
				t.Fatalf("%s: %d events, want 1", tt.name, len(trail))
			}
			e := trail[0]
			if e.Outcome != tt.want || e.Reason != tt.reason {
				t.Errorf("%s (chunks of %d): outcome %q reason %q, want %q %q", tt.name, chunk, e.Outcome, e.Reason, tt.want, tt.reason)
			}
			if e.ResponseBytes != int64(len(tt.body)) || rec.Body.String() != tt.body || rec.Code != tt.status {
				t.Errorf("%s: responseBytes %d, client got %d %q; want %d bytes, the body unchanged", tt.name, e.ResponseBytes, rec.Code, rec.Body, len(tt.body))
			}
		}
	}
}

// TestEventFields: the event says who called what, through what, served
// by which backend, when, how long and how big the answer was.
func TestEventFields(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	clock := []time.Time{at, at.Add(1500 * time.Microsecond)}
	var mu sync.Mutex
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t := clock[0]
		clock = clock[1:]
		return t
	}
	var routed []string
	opts := Options{
		Now: now,
		Route: func(method, name string) (string, string, bool) {
			routed = append(routed, method+" "+name)
			return "weather", "forecast", name == "weather_forecast"
		},
		Identity: func(context.Context) (string, string) { return "https://idp", "alice" },
	}
	p := toolCall("weather_forecast")
	p.Optimizer = parse.CallToolName
	body := `{"jsonrpc":"2.0","id":7,"result":{"content":[]}}`
	trail, observed, _ := serve(t, config.Audit{Enabled: true}, opts, p, reply(200, jsonType, body, 0))
	if len(trail) != 1 || len(observed) != 0 {
		t.Fatalf("trail %v, observed %v; want one trail event", trail, observed)
	}
	want := Event{
		Time: at, RequestID: `7`, SessionID: "sess-1", Issuer: "https://idp", Subject: "alice",
		ClientAddr: "192.0.2.1:1234", Method: "tools/call", Name: "weather_forecast", Via: "call_tool",
		Backend: "weather", OriginalName: "forecast", Outcome: OutcomeSuccess,
		Duration: 1500 * time.Microsecond, ResponseBytes: int64(len(body)),
	}
	if got := trail[0]; got != want {
		t.Errorf("event\n got %+v\nwant %+v", got, want)
	}
	if len(routed) != 1 || routed[0] != "tools/call weather_forecast" {
		t.Errorf("Route called with %v", routed)
	}
}

// TestArguments: arguments are left out unless includeArguments is on;
// then they are kept up to maxArgumentBytes (default 4096), cut at a
// character boundary and marked.
func TestArguments(t *testing.T) {
	t.Parallel()
	long := `{"text":"` + strings.Repeat("a", 5000) + `"}`
	tests := []struct {
		name      string
		cfg       config.Audit
		args      string
		want      string
		truncated bool
	}{
		{"off by default", config.Audit{Enabled: true}, `{"city":"Wien"}`, "", false},
		{"on", config.Audit{Enabled: true, IncludeArguments: true}, `{"city":"Wien"}`, `{"city":"Wien"}`, false},
		{"exactly the limit", config.Audit{Enabled: true, IncludeArguments: true, MaxArgumentBytes: 15}, `{"city":"Wien"}`, `{"city":"Wien"}`, false},
		{"over the limit", config.Audit{Enabled: true, IncludeArguments: true, MaxArgumentBytes: 10}, `{"city":"Wien"}`, `{"city":"W`, true},
		{"cut before a split character", config.Audit{Enabled: true, IncludeArguments: true, MaxArgumentBytes: 11}, `{"city":"Wöö"}`, `{"city":"W`, true},
		{"default limit", config.Audit{Enabled: true, IncludeArguments: true}, long, long[:4096], true},
	}
	for _, tt := range tests {
		p := toolCall("t")
		p.Arguments = json.RawMessage(tt.args)
		trail, _, _ := serve(t, tt.cfg, Options{}, p, reply(200, jsonType, `{"result":{}}`, 0))
		if got := trail[0].Arguments; got != tt.want || trail[0].ArgumentsTruncated != tt.truncated {
			t.Errorf("%s: arguments %q truncated %v, want %q %v", tt.name, got, trail[0].ArgumentsTruncated, tt.want, tt.truncated)
		}
	}
	// Observed requests never carry arguments.
	p := toolCall("t")
	_, observed, _ := serve(t, config.Audit{IncludeArguments: true}, Options{}, p, reply(200, jsonType, `{"result":{}}`, 0))
	if len(observed) != 1 || observed[0].Arguments != "" {
		t.Errorf("observed %+v; want one event without arguments", observed)
	}
}

// TestTrailAndObserver: the trail gets tools/call (call_tool included),
// resources/read and prompts/get; the observer gets every other POST, and
// everything when the trail is off; GET and DELETE are neither. Events of
// the optimizer's tools say which one (Via).
func TestTrailAndObserver(t *testing.T) {
	t.Parallel()
	ok := reply(200, jsonType, `{"jsonrpc":"2.0","id":1,"result":{}}`, 0)
	tests := []struct {
		p       *parse.Parsed
		inTrail bool
	}{
		{toolCall("weather_forecast"), true},
		{&parse.Parsed{Method: "tools/call", ResourceID: "weather_forecast", Optimizer: parse.CallToolName}, true},
		{&parse.Parsed{Method: "tools/call", ResourceID: "find_tool", Optimizer: parse.FindToolName}, false},
		{&parse.Parsed{Method: "resources/read", ResourceID: "demo://x/readme"}, true},
		{&parse.Parsed{Method: "prompts/get", ResourceID: "notes_greet"}, true},
		{&parse.Parsed{Method: "tools/list"}, false},
		{&parse.Parsed{Method: "initialize"}, false},
		{&parse.Parsed{Method: "ping"}, false},
		{&parse.Parsed{Method: "notifications/initialized"}, false},
		{&parse.Parsed{Batch: true}, false},
	}
	for _, tt := range tests {
		trail, observed, _ := serve(t, config.Audit{Enabled: true}, Options{}, tt.p, ok)
		if got := len(trail) == 1 && len(observed) == 0; got != tt.inTrail || len(trail)+len(observed) != 1 {
			t.Errorf("%s %s: trail %d, observed %d; want in trail: %v", tt.p.Method, tt.p.ResourceID, len(trail), len(observed), tt.inTrail)
		}
		trail, observed, _ = serve(t, config.Audit{}, Options{}, tt.p, ok)
		if len(trail) != 0 || len(observed) != 1 {
			t.Errorf("trail off, %s: trail %d, observed %d; want everything observed", tt.p.Method, len(trail), len(observed))
		}
		// The optimizer tool a call went to is named, find_tool included,
		// so metrics do not take a search for a call of an unknown tool.
		if len(observed) == 1 && observed[0].Via != tt.p.Optimizer {
			t.Errorf("%s %s: Via = %q, want %q", tt.p.Method, tt.p.ResourceID, observed[0].Via, tt.p.Optimizer)
		}
	}
	trail, observed, _ := serve(t, config.Audit{Enabled: true}, Options{}, nil, ok)
	if len(trail)+len(observed) != 0 {
		t.Errorf("a request without Parsed (GET) was recorded: %v %v", trail, observed)
	}
}

// TestStreamingKeepsWorking: a handler below the stage can flush through
// http.Flusher and http.ResponseController, as mcp-go's SSE responses do.
func TestStreamingKeepsWorking(t *testing.T) {
	t.Parallel()
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", sseType)
		_, _ = w.Write([]byte("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n"))
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("ResponseController.Flush: %v", err)
		}
		f, ok := w.(http.Flusher)
		if !ok {
			t.Fatalf("%T is not an http.Flusher", w)
		}
		f.Flush()
	})
	trail, _, rec := serve(t, config.Audit{Enabled: true}, Options{}, toolCall("t"), next)
	if !rec.Flushed || len(trail) != 1 || trail[0].Outcome != OutcomeSuccess {
		t.Fatalf("flushed %v, trail %+v", rec.Flushed, trail)
	}
}

// TestPanicIsRecorded: a panic below the stage is recorded as a backend
// error and goes on up to the recover stage.
func TestPanicIsRecorded(t *testing.T) {
	t.Parallel()
	tr := &events{}
	mw, err := New(config.Audit{Enabled: true}, Options{Recorder: tr})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	req = req.WithContext(parse.NewContext(req.Context(), toolCall("t")))
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not reach the caller")
			}
		}()
		mw(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })).ServeHTTP(httptest.NewRecorder(), req)
	}()
	if e := tr.all(); len(e) != 1 || e[0].Outcome != OutcomeBackendError {
		t.Fatalf("events %+v; want one backend_error", e)
	}
}

// TestScannerEverySplit feeds JSON-RPC messages split at every position
// into two writes and compares the scanner with encoding/json.
func TestScannerEverySplit(t *testing.T) {
	t.Parallel()
	msgs := []string{
		`{"jsonrpc":"2.0","id":"a\"b","result":{"content":[{"type":"text","text":"x\\"}],"isError":true}}`,
		`{"jsonrpc":"2.0","id":1,"error":{"data":{"code":5},"code":-32602,"message":"m"}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"a":[1,2,{"isError":true}],"isErr":true,"isError":false}}`,
		`{"method":"notifications/message","jsonrpc":"2.0","params":{"result":1}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"isError" : true}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"is\u0045rror":true}}`,
	}
	for _, m := range msgs {
		var want struct {
			Method *string `json:"method"`
			Result *struct {
				IsError bool `json:"isError"`
			} `json:"result"`
			Error *struct {
				Code int `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(m), &want); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		wantMsg := message{result: want.Result != nil, error: want.Error != nil, method: want.Method != nil}
		if want.Result != nil && !strings.Contains(m, `\u0045`) { // the scanner does not decode escaped keys
			wantMsg.isError = want.Result.IsError
		}
		if want.Error != nil {
			wantMsg.code = want.Error.Code
		}
		for i := range len(m) + 1 {
			var s scanner
			s.feed([]byte(m[:i]))
			s.feed([]byte(m[i:]))
			if s.msg != wantMsg || s.depth != 0 {
				t.Errorf("%s split at %d: %+v depth %d, want %+v", m, i, s.msg, s.depth, wantMsg)
			}
		}
	}
}

// BenchmarkStage measures the stage around a handler answering a
// tools/call with a 1 KiB result.
func BenchmarkStage(b *testing.B) {
	body := []byte(`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"` + strings.Repeat("lorem ipsum \\\"x\\\" ", 50) + `"}]}}` + "\n")
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", jsonType)
		_, _ = w.Write(body)
	})
	mw, err := New(config.Audit{Enabled: true}, Options{Recorder: Discard, Observer: nopRecorder{},
		Route: func(string, string) (string, string, bool) { return "b", "t", true }})
	if err != nil {
		b.Fatal(err)
	}
	h := mw(next)
	req := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	req = req.WithContext(parse.NewContext(req.Context(), toolCall("t")))
	w := discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

type nopRecorder struct{}

func (nopRecorder) Record(context.Context, Event) {}

type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}

// TestTee: every member gets every event; nil and Discard are left out.
func TestTee(t *testing.T) {
	t.Parallel()
	if Tee() != Discard || Tee(nil, Discard) != Discard {
		t.Error("Tee of nothing live is not Discard")
	}
	a, b := &events{}, &events{}
	if Tee(nil, a, Discard) != Recorder(a) {
		t.Error("Tee of one live recorder is not that recorder")
	}
	Tee(Tee(a, nil), b).Record(context.Background(), Event{Name: "x"})
	if len(a.all()) != 1 || len(b.all()) != 1 {
		t.Errorf("a got %d events, b %d; want 1 each", len(a.all()), len(b.all()))
	}
}
