package bodylimit_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vmcp/vmcp/bodylimit"
	"github.com/vmcp/vmcp/jsonrpc"
	"github.com/vmcp/vmcp/parse"
)

const limit = 32

// errorReply is a JSON-RPC error response as a client decodes it.
type errorReply struct {
	ID    json.RawMessage `json:"id"`
	Error struct {
		Code int `json:"code"`
		Data struct {
			MaxBytes int64 `json:"maxBytes"`
		} `json:"data"`
	} `json:"error"`
}

func assert413(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 413; body %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var e errorReply
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("body is not JSON-RPC: %v\n%s", err, w.Body)
	}
	if e.Error.Code != jsonrpc.CodeInvalidRequest || e.Error.Data.MaxBytes != limit || string(e.ID) != "null" {
		t.Errorf("error = %s, want code %d, maxBytes %d, null id", w.Body, jsonrpc.CodeInvalidRequest, limit)
	}
}

func TestDeclaredLengthOverLimitIsRefused(t *testing.T) {
	t.Parallel()
	called := false
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(strings.Repeat("x", limit+1)))
	bodylimit.New(limit)(next).ServeHTTP(w, r)

	if called {
		t.Fatal("next was called for a body over the limit")
	}
	assert413(t, w)
}

func TestBodyWithinLimitPasses(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, limit} {
		var got []byte
		var readErr error
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, readErr = io.ReadAll(r.Body)
			w.WriteHeader(http.StatusNoContent)
		})
		body := strings.Repeat("x", n)
		w := httptest.NewRecorder()
		bodylimit.New(limit)(next).ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body)))

		if w.Code != http.StatusNoContent {
			t.Errorf("%d bytes: status = %d, want next's 204", n, w.Code)
		}
		if readErr != nil || string(got) != body {
			t.Errorf("%d bytes: next read %q, %v; want the whole body", n, got, readErr)
		}
	}
}

func TestGETWithoutBodyPasses(t *testing.T) {
	t.Parallel()
	called := false
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })
	r := httptest.NewRequest(http.MethodGet, "/mcp", nil)
	r.Body = nil // as a server-side request never has, but embedders may build
	bodylimit.New(limit)(next).ServeHTTP(httptest.NewRecorder(), r)
	if !called {
		t.Fatal("next not called")
	}
}

// chunked returns a POST whose length is unknown, as with
// Transfer-Encoding: chunked.
func chunked(n int) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/mcp", io.NopCloser(strings.NewReader(strings.Repeat("x", n))))
	r.ContentLength = -1
	return r
}

func TestUndeclaredLengthOverLimitFailsTheRead(t *testing.T) {
	t.Parallel()
	var readErr error
	called := false
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called = true
		_, readErr = io.ReadAll(r.Body)
	})
	bodylimit.New(limit)(next).ServeHTTP(httptest.NewRecorder(), chunked(limit+1))

	if !called {
		t.Fatal("next not called; the length was not known up front")
	}
	var tooBig *http.MaxBytesError
	if !errors.As(readErr, &tooBig) {
		t.Fatalf("read error = %v, want *http.MaxBytesError", readErr)
	}
	if tooBig.Limit != limit {
		t.Errorf("Limit = %d, want %d", tooBig.Limit, limit)
	}
}

func TestUndeclaredLengthOverLimitWithParseIs413(t *testing.T) {
	t.Parallel()
	called := false
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })
	h := bodylimit.New(limit)(parse.New(parse.Options{})(next))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, chunked(limit+1))

	if called {
		t.Fatal("next was called for a body over the limit")
	}
	assert413(t, w)
}

func TestOverLimitOnARealServer(t *testing.T) {
	t.Parallel()
	called := false
	srv := httptest.NewServer(bodylimit.New(limit)(parse.New(parse.Options{})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))))
	defer srv.Close()

	for name, declared := range map[string]bool{"declared": true, "chunked": false} {
		body := io.Reader(strings.NewReader(strings.Repeat(" ", limit+1)))
		if !declared {
			body = io.MultiReader(body) // hides the length, so the client sends chunked
		}
		resp, err := http.Post(srv.URL, "application/json", body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: status = %d, want 413", name, resp.StatusCode)
		}
	}
	if called {
		t.Error("next was called")
	}
}
