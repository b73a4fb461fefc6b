// Package embeddings turns text into vectors through an OpenAI-compatible
// embedding service (POST {url}/embeddings: OpenAI, Ollama, vLLM, Hugging
// Face TEI, LiteLLM, LocalAI), for the optimizer's hybrid search. A Service
// embeds tool texts once per content (cached in memory and, when given, in
// Redis, so replicas and restarts share them) and queries within a short
// deadline, with a small cache of recent queries.
package embeddings

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"unicode"

	"github.com/vmcp/vmcp/internal/runes"
)

// MaxDimensions bounds the size of a vector, configured or answered.
const MaxDimensions = 16384

// maxResponseBytes bounds the answer to a request for n texts: n vectors
// of MaxDimensions numbers as JSON text (about 24 bytes each), and room
// for the rest.
func maxResponseBytes(n int) int64 { return int64(n)*MaxDimensions*24 + 64<<10 }

// statusError is a service's answer other than 200.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("embedding service: HTTP %d: %s", e.code, e.msg)
}

// rejectsInput reports whether err is the service refusing the input
// itself (too long for the model, say), not the request or the caller.
func rejectsInput(err error) bool {
	var se *statusError
	return errors.As(err, &se) && (se.code == http.StatusBadRequest || se.code == http.StatusRequestEntityTooLarge ||
		se.code == http.StatusUnprocessableEntity)
}

// client is vmcp's client of one embedding service.
type client struct {
	url    string // .../embeddings
	model  string
	apiKey string
	dims   int // requested and required; 0: the model's
	hc     *http.Client
}

// request is the body of POST /embeddings.
type request struct {
	Model          string   `json:"model"`
	Input          []string `json:"input"`
	EncodingFormat string   `json:"encoding_format"`
	Dimensions     int      `json:"dimensions,omitempty"`
}

// embed returns the unit-length vectors of texts, in order, from one
// request. A vector whose size differs from the configured dimensions (or,
// when none is configured, from the others) is an error.
func (c *client) embed(ctx context.Context, texts []string) ([][]float32, error) {
	body, err := json.Marshal(request{Model: c.model, Input: texts, EncodingFormat: "float", Dimensions: c.dims})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("embedding service: no answer in time: %w", ctx.Err())
		}
		return nil, fmt.Errorf("embedding service: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	limit := maxResponseBytes(len(texts))
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("embedding service: read the answer: %w", err)
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("embedding service: an answer over %d bytes for %d inputs", limit, len(texts))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &statusError{code: resp.StatusCode, msg: errorMessage(raw)}
	}
	var out struct {
		Data []struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("embedding service: not an embeddings answer: %w", err)
	}
	if len(out.Data) != len(texts) {
		return nil, fmt.Errorf("embedding service: %d vectors for %d inputs", len(out.Data), len(texts))
	}
	vecs := make([][]float32, len(texts))
	want := c.dims
	for _, d := range out.Data {
		if d.Index < 0 || d.Index >= len(texts) || vecs[d.Index] != nil {
			return nil, fmt.Errorf("embedding service: bad or repeated index %d", d.Index)
		}
		if want == 0 {
			want = len(d.Embedding)
		}
		if len(d.Embedding) != want || want == 0 || want > MaxDimensions {
			return nil, fmt.Errorf("%w: got %d, want %d", ErrDimensions, len(d.Embedding), want)
		}
		if !normalize(d.Embedding) {
			return nil, errors.New("embedding service: a zero or non-finite vector")
		}
		vecs[d.Index] = d.Embedding
	}
	return vecs, nil
}

// ErrDimensions is a vector of the wrong size.
var ErrDimensions = errors.New("embedding service: vector of unexpected size")

// normalize scales v to unit length, and reports whether it could (a
// zero or non-finite vector cannot be).
func normalize(v []float32) bool {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 || math.IsInf(sum, 0) || math.IsNaN(sum) {
		return false
	}
	inv := 1 / math.Sqrt(sum) // in float64: a tiny vector's inverse norm overflows float32
	for i := range v {
		x := float32(float64(v[i]) * inv)
		if math.IsInf(float64(x), 0) || math.IsNaN(float64(x)) {
			return false
		}
		v[i] = x
	}
	return true
}

// errorMessage returns the message of an OpenAI-style error body, or the
// start of the body, printable and short.
func errorMessage(raw []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	msg := string(raw)
	if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
		msg = e.Error.Message
	}
	msg = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, msg)
	if cut := runes.Cut(msg, 200); cut != msg {
		msg = cut + "…"
	}
	return strings.TrimSpace(msg)
}
