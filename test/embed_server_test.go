package test

// Tests of test/js/embed.mjs, the OpenAI-compatible embedding server (USE
// lite) that the optimizer's embedding tests run against: what it answers,
// that the model is a real one, and its test knobs and counts.

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

// embedResponse is OpenAI's answer to POST /v1/embeddings.
type embedResponse struct {
	Object string `json:"object"`
	Data   []struct {
		Object    string          `json:"object"`
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"` // floats, or a base64 string
	} `json:"data"`
	Model string `json:"model"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// openAIError is OpenAI's error body; every member is always present.
type openAIError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// postEmbeddings sends body (JSON-encoded unless a string) to the server's
// /v1/embeddings, with a bearer key unless key is "", and returns the status,
// the body and how long the answer took.
func postEmbeddings(t *testing.T, e *embedder, key string, body any) (int, []byte, time.Duration) {
	t.Helper()
	var b []byte
	if s, ok := body.(string); ok {
		b = []byte(s)
	} else {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequestWithContext(ctxT(t, 30*time.Second), http.MethodPost, e.URL+"/embeddings", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	start := time.Now()
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatalf("POST /v1/embeddings: %v", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out, time.Since(start)
}

// embedOK sends a request that must succeed and returns its decoded vectors
// (float or base64, by the request's encoding_format) in index order.
func embedOK(t *testing.T, e *embedder, key string, req map[string]any) (embedResponse, [][]float32) {
	t.Helper()
	status, body, _ := postEmbeddings(t, e, key, req)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var r embedResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if r.Object != "list" {
		t.Errorf("object %q, want list", r.Object)
	}
	if r.Usage.PromptTokens <= 0 || r.Usage.TotalTokens != r.Usage.PromptTokens {
		t.Errorf("usage %+v: want prompt_tokens > 0 and total_tokens = prompt_tokens", r.Usage)
	}
	vecs := make([][]float32, len(r.Data))
	for i, d := range r.Data {
		if d.Object != "embedding" || d.Index != i {
			t.Fatalf("data[%d]: object %q index %d", i, d.Object, d.Index)
		}
		if req["encoding_format"] == "base64" {
			var s string
			if err := json.Unmarshal(d.Embedding, &s); err != nil {
				t.Fatalf("data[%d].embedding is not a base64 string: %s", i, d.Embedding)
			}
			vecs[i] = decodeBase64Floats(t, s)
		} else if err := json.Unmarshal(d.Embedding, &vecs[i]); err != nil {
			t.Fatalf("data[%d].embedding is not a list of floats: %v", i, err)
		}
	}
	return r, vecs
}

// embedTexts embeds texts with the float encoding.
func embedTexts(t *testing.T, e *embedder, texts ...string) [][]float32 {
	t.Helper()
	_, vecs := embedOK(t, e, "", map[string]any{"model": "m", "input": texts})
	if len(vecs) != len(texts) {
		t.Fatalf("%d vectors for %d texts", len(vecs), len(texts))
	}
	return vecs
}

// decodeBase64Floats decodes OpenAI's base64 encoding: little-endian float32s.
func decodeBase64Floats(t *testing.T, s string) []float32 {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b)%4 != 0 {
		t.Fatalf("bad base64 embedding (%v, %d bytes)", err, len(b))
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// checkUnit fails t unless v has n dimensions and unit length.
func checkUnit(t *testing.T, what string, v []float32, n int) {
	t.Helper()
	if len(v) != n {
		t.Fatalf("%s: %d dimensions, want %d", what, len(v), n)
	}
	if norm := math.Sqrt(dot(v, v)); math.Abs(norm-1) > 1e-5 {
		t.Errorf("%s: norm %v, want 1", what, norm)
	}
}

func maxDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

// checkOpenAIError fails t unless the answer is OpenAI's error shape with the
// given status, type, param ("" for null) and code ("" for null).
func checkOpenAIError(t *testing.T, status int, body []byte, wantStatus int, wantType, wantParam, wantCode string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d: %s", status, wantStatus, body)
	}
	var raw map[string]map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := raw["error"][k]; !ok {
			t.Errorf("error.%s missing: %s", k, body)
		}
	}
	var e openAIError
	_ = json.Unmarshal(body, &e)
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	if e.Error.Message == "" || e.Error.Type != wantType || str(e.Error.Param) != wantParam || str(e.Error.Code) != wantCode {
		t.Errorf("error %+v (param %q, code %q), want type %q param %q code %q",
			e.Error, str(e.Error.Param), str(e.Error.Code), wantType, wantParam, wantCode)
	}
}

// TestEmbedServer checks embed.mjs's answers and knobs against one server.
// The cases run in order and each leaves the server healthy.
func TestEmbedServer(t *testing.T) {
	needEmbedder(t)
	e := startEmbedder(t, embedderOpts{})
	if e.Model != "use-lite" || e.Dims != 512 || !strings.HasPrefix(e.URL, "http://127.0.0.1:") || !strings.HasSuffix(e.URL, "/v1") {
		t.Fatalf("READY: %+v", e)
	}
	t.Logf("embed.mjs start-up:\n%s", e.Logs.String())

	const ppt, deck, weather = "create a powerpoint presentation", "make a ppt slide deck", "get the weather in Paris"

	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"single input: one 512-dim unit vector", func(t *testing.T) {
			r, vecs := embedOK(t, e, "", map[string]any{"model": "text-embedding-3-small", "input": ppt})
			if len(vecs) != 1 {
				t.Fatalf("%d vectors", len(vecs))
			}
			checkUnit(t, "vector", vecs[0], 512)
			if r.Model != "use-lite" {
				t.Errorf("model %q, want the server's use-lite whatever was asked", r.Model)
			}
		}},
		{"batch of 256: unit vectors in input order", func(t *testing.T) {
			texts := make([]string, 256)
			for i := range texts {
				texts[i] = fmt.Sprintf("tool number %d reads files from the disk", i)
			}
			vecs := embedTexts(t, e, texts...)
			for i, v := range vecs {
				checkUnit(t, fmt.Sprintf("vector %d", i), v, 512)
			}
			// Index order: the vector at i is the text at i's.
			for _, i := range []int{0, 97, 255} {
				if d := maxDiff(vecs[i], embedTexts(t, e, texts[i])[0]); d > 1e-6 {
					t.Errorf("vector %d differs from its text's alone by %g", i, d)
				}
			}
		}},
		{"the same text gives the same vector", func(t *testing.T) {
			a := embedTexts(t, e, ppt)[0]
			b := embedTexts(t, e, ppt)[0]
			c := embedTexts(t, e, weather, ppt, deck)[1]
			if d := maxDiff(a, b); d != 0 {
				t.Errorf("two requests differ by %g", d)
			}
			if d := maxDiff(a, c); d > 1e-6 {
				t.Errorf("alone and in a batch differ by %g", d)
			}
		}},
		{"a real model: close texts are closer than unrelated ones", func(t *testing.T) {
			v := embedTexts(t, e, ppt, deck, weather)
			near, far := dot(v[0], v[1]), dot(v[0], v[2])
			t.Logf("cos(%q, %q) = %.3f; cos(%q, %q) = %.3f", ppt, deck, near, ppt, weather, far)
			if near <= far {
				t.Errorf("close pair %.3f not above unrelated pair %.3f", near, far)
			}
		}},
		{"base64 decodes to the same floats", func(t *testing.T) {
			texts := []string{ppt, weather}
			_, floats := embedOK(t, e, "", map[string]any{"model": "m", "input": texts, "encoding_format": "float"})
			_, b64 := embedOK(t, e, "", map[string]any{"model": "m", "input": texts, "encoding_format": "base64"})
			for i := range texts {
				checkUnit(t, "base64 vector", b64[i], 512)
				if d := maxDiff(floats[i], b64[i]); d != 0 {
					t.Errorf("text %d: base64 and float differ by %g", i, d)
				}
			}
		}},
		{"dimensions: the first N, re-normalised", func(t *testing.T) {
			full := embedTexts(t, e, ppt)[0]
			_, vecs := embedOK(t, e, "", map[string]any{"model": "m", "input": ppt, "dimensions": 64})
			checkUnit(t, "vector", vecs[0], 64)
			scale := 1 / math.Sqrt(dot(full[:64], full[:64]))
			for i, x := range vecs[0] {
				if math.Abs(float64(x)-float64(full[i])*scale) > 1e-5 {
					t.Fatalf("dimension %d: %v, want %v", i, x, float64(full[i])*scale)
				}
			}
		}},
		{"knob delayMs: answers late", func(t *testing.T) {
			e.configure(t, 400, false, 0)
			defer e.configure(t, 0, false, 0)
			status, body, took := postEmbeddings(t, e, "", map[string]any{"model": "m", "input": ppt})
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			if took < 400*time.Millisecond || took > 10*time.Second {
				t.Errorf("answered in %v, want about 400ms", took)
			}
		}},
		{"knob fail: 500 in OpenAI's shape, then healthy again", func(t *testing.T) {
			e.configure(t, 0, true, 0)
			status, body, _ := postEmbeddings(t, e, "", map[string]any{"model": "m", "input": ppt})
			checkOpenAIError(t, status, body, http.StatusInternalServerError, "server_error", "", "")
			e.configure(t, 0, false, 0)
			checkUnit(t, "after fail", embedTexts(t, e, ppt)[0], 512)
		}},
		{"knob dims: vectors of the wrong length", func(t *testing.T) {
			defer e.configure(t, 0, false, 0)
			for _, n := range []int{384, 768} {
				e.configure(t, 0, false, n)
				for _, v := range embedTexts(t, e, ppt, weather) {
					checkUnit(t, fmt.Sprintf("dims %d", n), v, n)
				}
			}
		}},
		{"stats: one count per input text, reset zeros them", func(t *testing.T) {
			e.reset(t)
			if s := e.stats(t); s.Requests != 0 || s.Inputs != 0 || len(s.ByInput) != 0 {
				t.Fatalf("after reset: %+v", s)
			}
			embedTexts(t, e, ppt, weather)
			embedTexts(t, e, ppt)
			status, _, _ := postEmbeddings(t, e, "", map[string]any{"model": "m", "input": []string{deck, ""}})
			if status != http.StatusBadRequest {
				t.Fatalf("invalid request: status %d", status)
			}
			s := e.stats(t)
			if s.Requests != 3 || s.Inputs != 3 || len(s.ByInput) != 2 ||
				s.count(ppt) != 2 || s.count(weather) != 1 || s.count(deck) != 0 {
				t.Errorf("stats %+v: want 3 requests, inputs 3: ppt 2, weather 1 (the invalid request's none)", s)
			}
		}},
	}
	for _, c := range cases {
		if !t.Run(c.name, c.run) {
			// A case that failed may have left a knob set.
			e.configure(t, 0, false, 0)
		}
	}
}

// TestEmbedServerErrors checks the 400 and 401 answers, in OpenAI's shape,
// of a server that requires an API key and allows 4 inputs a request.
func TestEmbedServerErrors(t *testing.T) {
	needEmbedder(t)
	const key = "sk-test-embed"
	e := startEmbedder(t, embedderOpts{apiKey: key, modelName: "nomic-embed-text", maxBatch: 4})
	if e.Model != "nomic-embed-text" {
		t.Fatalf("READY model %q", e.Model)
	}

	// The valid request, and the key, work.
	r, vecs := embedOK(t, e, key, map[string]any{"model": "text-embedding-3-small", "input": []string{"a", "b", "c", "d"}})
	if r.Model != "nomic-embed-text" || len(vecs) != 4 {
		t.Fatalf("model %q, %d vectors", r.Model, len(vecs))
	}

	ok := map[string]any{"model": "m", "input": "hello"}
	cases := []struct {
		name               string
		key                string
		body               any
		status             int
		param, code, etype string
	}{
		{"no key", "", ok, 401, "", "", "invalid_request_error"},
		{"wrong key", "sk-other", ok, 401, "", "invalid_api_key", "invalid_request_error"},
		{"not JSON", key, `{"model":`, 400, "", "", "invalid_request_error"},
		{"not an object", key, `["hello"]`, 400, "", "", "invalid_request_error"},
		{"no model", key, map[string]any{"input": "hello"}, 400, "model", "", "invalid_request_error"},
		{"model not a string", key, map[string]any{"model": 3, "input": "hello"}, 400, "model", "invalid_type", "invalid_request_error"},
		{"no input", key, map[string]any{"model": "m"}, 400, "input", "", "invalid_request_error"},
		{"empty string", key, map[string]any{"model": "m", "input": ""}, 400, "input", "", "invalid_request_error"},
		{"empty string in a batch", key, map[string]any{"model": "m", "input": []string{"a", ""}}, 400, "input", "", "invalid_request_error"},
		{"empty array", key, map[string]any{"model": "m", "input": []string{}}, 400, "input", "", "invalid_request_error"},
		{"token arrays", key, map[string]any{"model": "m", "input": [][]int{{1, 2}}}, 400, "input", "invalid_type", "invalid_request_error"},
		{"input a number", key, map[string]any{"model": "m", "input": 7}, 400, "input", "invalid_type", "invalid_request_error"},
		{"over max-batch", key, map[string]any{"model": "m", "input": []string{"a", "b", "c", "d", "e"}}, 400, "input", "", "invalid_request_error"},
		{"bad encoding_format", key, map[string]any{"model": "m", "input": "a", "encoding_format": "int8"}, 400, "encoding_format", "invalid_value", "invalid_request_error"},
		{"dimensions 0", key, map[string]any{"model": "m", "input": "a", "dimensions": 0}, 400, "dimensions", "invalid_value", "invalid_request_error"},
		{"dimensions over 512", key, map[string]any{"model": "m", "input": "a", "dimensions": 513}, 400, "dimensions", "invalid_value", "invalid_request_error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body, _ := postEmbeddings(t, e, c.key, c.body)
			checkOpenAIError(t, status, body, c.status, c.etype, c.param, c.code)
		})
	}

	// Refused requests are counted as requests, with no inputs.
	s := e.stats(t)
	if s.Requests != 1+len(cases) || s.Inputs != 4 {
		t.Errorf("stats %+v: want %d requests, 4 inputs", s, 1+len(cases))
	}
}
