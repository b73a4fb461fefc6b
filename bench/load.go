package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// protocolVersion is the MCP revision the harness negotiates: the newest one
// that still has the initialize handshake and Mcp-Session-Id sessions.
const protocolVersion = "2025-11-25"

// requestTimeout bounds every single HTTP exchange, so a stuck target cannot
// hang the run.
const requestTimeout = 30 * time.Second

// newHTTPClient returns the raw client every session shares: one keep-alive
// transport with enough idle connections per host for maxConns workers.
func newHTTPClient(maxConns int) *http.Client {
	t := &http.Transport{
		Proxy:               nil, // loopback only; never go through an environment proxy
		MaxIdleConns:        4 * maxConns,
		MaxIdleConnsPerHost: 2 * maxConns,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
		DisableCompression:  true,
	}
	return &http.Client{Transport: t, Timeout: requestTimeout}
}

// rpcResponse is the part of a JSON-RPC response the harness checks.
type rpcResponse struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// session is one MCP client session on one target.
type session struct {
	hc      *http.Client
	url     string
	id      string // Mcp-Session-Id
	version string // negotiated protocol version
	nextID  int64
}

// exchange is the raw outcome of one POST: status, the JSON-RPC message of
// the response (the body, or the SSE data carrying the response) and how
// long it took from sending to having the whole response.
type exchange struct {
	status  int
	header  http.Header
	message []byte
	elapsed time.Duration
}

// post sends one JSON-RPC message and reads the whole answer. Timing stops
// once the response is read; nothing is decoded inside the timed section.
func (s *session) post(ctx context.Context, body []byte) (exchange, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return exchange{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if s.id != "" {
		req.Header.Set("Mcp-Session-Id", s.id)
	}
	if s.version != "" {
		req.Header.Set("Mcp-Protocol-Version", s.version)
	}
	start := time.Now()
	resp, err := s.hc.Do(req)
	if err != nil {
		return exchange{}, err
	}
	defer resp.Body.Close()
	ex := exchange{status: resp.StatusCode, header: resp.Header}
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mediaType == "text/event-stream" {
		ex.message, err = readSSEResponse(resp.Body)
	} else {
		ex.message, err = io.ReadAll(resp.Body)
	}
	ex.elapsed = time.Since(start)
	if err != nil {
		return ex, fmt.Errorf("read response: %w", err)
	}
	// Drain what is left (nothing, normally) so the connection is reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return ex, nil
}

// readSSEResponse reads an SSE stream up to the first event whose data is a
// JSON-RPC response (it has an id and a result or an error) and returns
// that data. Notifications sent before it are skipped.
func readSSEResponse(r io.Reader) ([]byte, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var data []byte
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimRight(line, "\r\n")
			switch {
			case len(line) == 0: // end of event
				if len(data) > 0 && isResponse(data) {
					return data, nil
				}
				data = data[:0]
			case bytes.HasPrefix(line, []byte("data:")):
				d := bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))
				if len(data) > 0 {
					data = append(data, '\n')
				}
				data = append(data, d...)
			}
		}
		if err != nil {
			if len(data) > 0 && isResponse(data) {
				return data, nil
			}
			if errors.Is(err, io.EOF) {
				return nil, errors.New("event stream ended without a response")
			}
			return nil, err
		}
	}
}

func isResponse(data []byte) bool {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	return json.Unmarshal(data, &m) == nil && m.Method == "" && len(m.ID) > 0 && string(m.ID) != "null"
}

// check validates an exchange as the answer to request id: HTTP 200, a
// JSON-RPC response with that id and no error. It returns the result.
func check(ex exchange, id int64) (json.RawMessage, error) {
	if ex.status != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", ex.status, truncate(ex.message, 200))
	}
	var r rpcResponse
	if err := json.Unmarshal(ex.message, &r); err != nil {
		return nil, fmt.Errorf("decode response: %w: %s", err, truncate(ex.message, 200))
	}
	if string(r.ID) != strconv.FormatInt(id, 10) {
		return nil, fmt.Errorf("response id %s, want %d", r.ID, id)
	}
	if r.Error != nil {
		return nil, fmt.Errorf("JSON-RPC error %d: %s", r.Error.Code, r.Error.Message)
	}
	if len(r.Result) == 0 {
		return nil, errors.New("response has neither result nor error")
	}
	return r.Result, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// request builds a JSON-RPC request with the session's next id.
func (s *session) request(method string, params any) ([]byte, int64) {
	id := atomic.AddInt64(&s.nextID, 1)
	m := map[string]any{"jsonrpc": "2.0", "id": id, "method": method}
	if params != nil {
		m["params"] = params
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // only harness-built values are marshalled
	}
	return b, id
}

// requestRaw builds a JSON-RPC request around params, already encoded,
// with the session's next id.
func (s *session) requestRaw(method string, params []byte) ([]byte, int64) {
	id := atomic.AddInt64(&s.nextID, 1)
	b := make([]byte, 0, len(params)+len(method)+64)
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"method":`...)
	b = strconv.AppendQuote(b, method) // method names are plain ASCII: a Go quote is a JSON string
	b = append(b, `,"params":`...)
	b = append(b, params...)
	return append(b, '}'), id
}

// openSession runs initialize and notifications/initialized on url.
func openSession(ctx context.Context, hc *http.Client, url string) (*session, error) {
	s := &session{hc: hc, url: url}
	body, id := s.request("initialize", map[string]any{
		"protocolVersion": protocolVersion,
		"capabilities":    map[string]any{},
		"clientInfo":      map[string]any{"name": "vmcp-bench", "version": "0"},
	})
	ex, err := s.post(ctx, body)
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	res, err := check(ex, id)
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	var init struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := json.Unmarshal(res, &init); err != nil {
		return nil, fmt.Errorf("initialize result: %w", err)
	}
	s.id = ex.header.Get("Mcp-Session-Id")
	if s.id == "" {
		return nil, errors.New("initialize: no Mcp-Session-Id in the response")
	}
	s.version = init.ProtocolVersion

	ex, err = s.post(ctx, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	if err != nil {
		return nil, fmt.Errorf("notifications/initialized: %w", err)
	}
	if ex.status != http.StatusAccepted && ex.status != http.StatusOK {
		return nil, fmt.Errorf("notifications/initialized: HTTP %d: %s", ex.status, truncate(ex.message, 200))
	}
	return s, nil
}

// close ends the session with DELETE (best effort).
func (s *session) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.url, nil)
	if err != nil {
		return
	}
	req.Header.Set("Mcp-Session-Id", s.id)
	req.Header.Set("Mcp-Protocol-Version", s.version)
	if resp, err := s.hc.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// op is one kind of request the load loop repeats.
type op struct {
	name   string
	method string
	params any
	// rawParams, if set, is the params object already encoded, sent as it
	// is instead of params: a large argument is encoded once, not per call.
	rawParams []byte
	// validate looks at a successful result; nil accepts any result.
	validate func(json.RawMessage) error
}

// callOp is tools/call of the echo tool under the target's name for it.
func callOp(tool string) op {
	return op{
		name:   "tools/call",
		method: "tools/call",
		params: map[string]any{"name": tool, "arguments": map[string]any{"text": "hello"}},
		validate: func(res json.RawMessage) error {
			var r struct {
				IsError bool `json:"isError"`
				Content []struct {
					Text string `json:"text"`
				} `json:"content"`
			}
			if err := json.Unmarshal(res, &r); err != nil {
				return err
			}
			if r.IsError || len(r.Content) == 0 || r.Content[0].Text != "hello" {
				return fmt.Errorf("unexpected echo result: %s", truncate(res, 200))
			}
			return nil
		},
	}
}

// listOp is tools/list; it checks the result holds at least minTools tools.
func listOp(minTools int) op {
	return op{
		name:   "tools/list",
		method: "tools/list",
		validate: func(res json.RawMessage) error {
			var r struct {
				Tools []json.RawMessage `json:"tools"`
			}
			if err := json.Unmarshal(res, &r); err != nil {
				return err
			}
			if len(r.Tools) < minTools {
				return fmt.Errorf("tools/list returned %d tools, want at least %d", len(r.Tools), minTools)
			}
			return nil
		},
	}
}

// do sends one request of o and checks the answer.
func (s *session) do(ctx context.Context, o op) (time.Duration, error) {
	var body []byte
	var id int64
	if o.rawParams != nil {
		body, id = s.requestRaw(o.method, o.rawParams)
	} else {
		body, id = s.request(o.method, o.params)
	}
	ex, err := s.post(ctx, body)
	if err != nil {
		return 0, err
	}
	res, err := check(ex, id)
	if err != nil {
		return ex.elapsed, err
	}
	if o.validate != nil {
		if err := o.validate(res); err != nil {
			return ex.elapsed, err
		}
	}
	return ex.elapsed, nil
}

// result is the outcome of one measured phase.
type result struct {
	target   string
	op       string
	conns    int
	count    int           // successful requests
	errors   int           // failed requests
	elapsed  time.Duration // wall time of the measured phase
	samples  []time.Duration
	firstErr error
	cpu      cpuUse // CPU used during the measured phase
}

func (r result) throughput() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.count) / r.elapsed.Seconds()
}

// percentile returns the q-quantile (0..1) of the sorted samples.
func (r result) percentile(q float64) time.Duration {
	if len(r.samples) == 0 {
		return 0
	}
	i := int(q*float64(len(r.samples))+0.5) - 1
	i = min(max(i, 0), len(r.samples)-1)
	return r.samples[i]
}

// worker state of one closed-loop phase.
type workerOut struct {
	samples []time.Duration
	errors  int
	err     error
}

// closedLoop runs o on every session in a closed loop: a warm-up of warm
// (not recorded) and then a measured phase of dur. Each session is one
// worker with at most one request in flight. onMeasure, if set, is called
// when the measured phase starts and the returned func when it ends.
func closedLoop(ctx context.Context, sessions []*session, o op, warm, dur time.Duration, onMeasure func() func()) result {
	if warm > 0 {
		runWorkers(ctx, sessions, o, time.Now().Add(warm), false)
	}
	var stop func()
	if onMeasure != nil {
		stop = onMeasure()
	}
	start := time.Now()
	outs := runWorkers(ctx, sessions, o, start.Add(dur), true)
	elapsed := time.Since(start)
	if stop != nil {
		stop()
	}
	r := result{op: o.name, conns: len(sessions), elapsed: elapsed}
	for _, w := range outs {
		r.samples = append(r.samples, w.samples...)
		r.errors += w.errors
		if r.firstErr == nil {
			r.firstErr = w.err
		}
	}
	r.count = len(r.samples)
	slices.Sort(r.samples)
	return r
}

func runWorkers(ctx context.Context, sessions []*session, o op, deadline time.Time, record bool) []workerOut {
	outs := make([]workerOut, len(sessions))
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Add(1)
		go pprof.Do(ctx, pprof.Labels("bench", "client"), func(ctx context.Context) {
			// The label marks the load generator's goroutines (and the
			// transport goroutines they start) in a CPU profile, so
			// -tagignore bench=client leaves vmcp's own work.
			defer wg.Done()
			out := &outs[i]
			if record {
				out.samples = make([]time.Duration, 0, 1<<14)
			}
			for time.Now().Before(deadline) && ctx.Err() == nil {
				d, err := s.do(ctx, o)
				if err != nil {
					out.errors++
					if out.err == nil {
						out.err = err
					}
					if ctx.Err() != nil {
						return
					}
					continue
				}
				if record {
					out.samples = append(out.samples, d)
				}
			}
		})
	}
	wg.Wait()
	return outs
}

// sequential runs o n times on one session, one after another, and returns
// the result (all samples sorted).
func sequential(ctx context.Context, s *session, o op, n int) result {
	r := result{op: o.name, conns: 1}
	start := time.Now()
	for range n {
		if ctx.Err() != nil {
			break
		}
		d, err := s.do(ctx, o)
		if err != nil {
			r.errors++
			if r.firstErr == nil {
				r.firstErr = err
			}
			continue
		}
		r.samples = append(r.samples, d)
	}
	r.elapsed = time.Since(start)
	r.count = len(r.samples)
	slices.Sort(r.samples)
	return r
}

// perCall is d spread over the calls r counted; NaN when it counted none.
func (r *result) perCall(d time.Duration) float64 {
	if r.count == 0 {
		return math.NaN()
	}
	return float64(d) / float64(r.count)
}

// fmtNs prints a duration in nanoseconds with fmtDur, or "-" for NaN.
func fmtNs(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmtDur(time.Duration(v))
}

// fmtDur prints a latency with a unit suited to its size.
func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
	}
}

// parseConns parses "1,16" into [1 16].
func parseConns(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("bad connection count %q (1..1024)", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no connection counts")
	}
	return out, nil
}
