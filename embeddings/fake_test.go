package embeddings_test

import (
	"crypto/sha256"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/embeddings"
)

// call is one request the fake embedding service received.
type call struct {
	Method, Path  string
	Auth          string // the Authorization header
	ContentType   string
	Model         string
	Input         []string
	Format        string // encoding_format
	Dimensions    int
	HasDimensions bool // the body has a "dimensions" field
	Fields        []string
}

// item is one entry of an answer's data.
type item struct {
	Index     int       `json:"index"`
	Embedding []float32 `json:"embedding"`
}

// fake is an OpenAI-compatible embedding service: it records requests and
// answers through respond (nil: vectors of every input, in reverse order).
type fake struct {
	srv     *httptest.Server
	respond func(n int, c call, w http.ResponseWriter, r *http.Request)

	mu    sync.Mutex
	calls []call
}

// newFake starts a fake service, closed when t ends. respond gets the
// number of the request (from 0).
func newFake(t *testing.T, respond func(n int, c call, w http.ResponseWriter, r *http.Request)) *fake {
	t.Helper()
	f := &fake{respond: respond}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	c := call{Method: r.Method, Path: r.URL.Path, Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type")}
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) == nil {
		for k := range fields {
			c.Fields = append(c.Fields, k)
		}
		slices.Sort(c.Fields)
		_, c.HasDimensions = fields["dimensions"]
	}
	var body struct {
		Model          string   `json:"model"`
		Input          []string `json:"input"`
		EncodingFormat string   `json:"encoding_format"`
		Dimensions     int      `json:"dimensions"`
	}
	_ = json.Unmarshal(raw, &body)
	c.Model, c.Input, c.Format, c.Dimensions = body.Model, body.Input, body.EncodingFormat, body.Dimensions
	f.mu.Lock()
	n := len(f.calls)
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	if f.respond != nil {
		f.respond(n, c, w, r)
		return
	}
	answerVectors(w, c)
}

// requests returns the requests so far.
func (f *fake) requests() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// inputs returns the inputs of each request so far.
func (f *fake) inputs() [][]string {
	var out [][]string
	for _, c := range f.requests() {
		out = append(out, c.Input)
	}
	return out
}

// url is the base URL of the fake's API.
func (f *fake) url() string { return f.srv.URL + "/v1" }

const defaultDims = 4

// rawVec is the fake's vector of text, not of unit length and never zero.
func rawVec(text string, dims int) []float32 {
	h := sha256.Sum256([]byte(text))
	v := make([]float32, dims)
	for i := range v {
		v[i] = float32(int(h[i%len(h)]%17) - 8)
		if v[i] == 0 {
			v[i] = 3
		}
		v[i] *= 5
	}
	return v
}

// unit is v scaled to unit length.
func unit(v []float32) []float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) / math.Sqrt(s))
	}
	return out
}

// want is the vector Service should return for what was sent as text.
func want(text string, dims int) []float32 { return unit(rawVec(text, dims)) }

// answerVectors answers c with the vectors of its inputs (of the requested
// dimensions, else defaultDims), in reverse order.
func answerVectors(w http.ResponseWriter, c call) {
	dims := c.Dimensions
	if dims == 0 {
		dims = defaultDims
	}
	var data []item
	for i := len(c.Input) - 1; i >= 0; i-- {
		data = append(data, item{Index: i, Embedding: rawVec(c.Input[i], dims)})
	}
	writeData(w, data)
}

func writeData(w http.ResponseWriter, data []item) {
	type obj struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	out := struct {
		Object string `json:"object"`
		Data   []obj  `json:"data"`
		Model  string `json:"model"`
	}{Object: "list", Model: "fake", Data: []obj{}}
	for _, d := range data {
		out.Data = append(out.Data, obj{Object: "embedding", Index: d.Index, Embedding: d.Embedding})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// hang holds a request until its client gives up (or 10s pass).
func hang(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// baseCfg is a configuration of f's service.
func baseCfg(f *fake) config.Embeddings {
	return config.Embeddings{URL: f.url(), Model: "m1", Timeout: config.Duration(2 * time.Second)}
}

// newService returns the Service of cfg, failing t on error.
func newService(t *testing.T, cfg config.Embeddings, o embeddings.Options) *embeddings.Service {
	t.Helper()
	s, err := embeddings.New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sameVec reports whether a and b are equal within float32 rounding.
func sameVec(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.IsNaN(float64(a[i])) || math.IsNaN(float64(b[i])) || math.Abs(float64(a[i]-b[i])) > 1e-6 {
			return false
		}
	}
	return true
}

// checkVecs fails t unless got are the vectors of the sent texts.
func checkVecs(t *testing.T, got [][]float32, sent []string, dims int) {
	t.Helper()
	if len(got) != len(sent) {
		t.Fatalf("%d vectors for %d texts", len(got), len(sent))
	}
	for i, s := range sent {
		if !sameVec(got[i], want(s, dims)) {
			t.Fatalf("vector %d (%q) = %v, want %v", i, s, got[i], want(s, dims))
		}
		if n := norm(got[i]); math.Abs(n-1) > 1e-5 {
			t.Fatalf("vector %d has length %v, want 1", i, n)
		}
	}
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// texts returns n distinct tool texts named by prefix.
func texts(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + " tool " + strconv.Itoa(i)
	}
	return out
}

// prefixed returns texts each with p before it.
func prefixed(p string, texts []string) []string {
	out := make([]string, len(texts))
	for i, t := range texts {
		out[i] = p + t
	}
	return out
}
