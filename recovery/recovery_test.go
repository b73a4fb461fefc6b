package recovery_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vmcp/vmcp/jsonrpc"
	"github.com/vmcp/vmcp/recovery"
)

// newLogger returns a JSON logger writing to a buffer. The stage logs on
// the request goroutine, so tests that call ServeHTTP directly can read the
// buffer afterwards without locking.
func newLogger() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewJSONHandler(&buf, nil)), &buf
}

func TestPanicIsAnsweredAndLogged(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		value     any
		wantPanic string
	}{
		{name: "string", value: "boom", wantPanic: "boom"},
		{name: "error", value: errors.New("nil map write"), wantPanic: "nil map write"},
		{name: "number", value: 42, wantPanic: "42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			log, buf := newLogger()
			next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(tt.value) })
			w := httptest.NewRecorder()
			recovery.New(log)(next).ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/mcp", nil))

			if w.Code != http.StatusInternalServerError {
				t.Errorf("status = %d, want 500", w.Code)
			}
			var e struct {
				ID    json.RawMessage `json:"id"`
				Error jsonrpc.Error   `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
				t.Fatalf("body is not JSON-RPC: %v\n%s", err, w.Body)
			}
			if e.Error.Code != jsonrpc.CodeInternalError || string(e.ID) != "null" {
				t.Errorf("body = %s, want internal error with null id", w.Body)
			}
			if strings.Contains(w.Body.String(), tt.wantPanic) {
				t.Errorf("panic value %q leaked to the client: %s", tt.wantPanic, w.Body)
			}

			var rec map[string]any
			if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
				t.Fatalf("log is not one JSON record: %v\n%s", err, buf)
			}
			if rec["level"] != "ERROR" {
				t.Errorf("level = %v, want ERROR", rec["level"])
			}
			if got := fmt.Sprint(rec["panic"]); got != tt.wantPanic {
				t.Errorf("logged panic = %q, want %q", got, tt.wantPanic)
			}
			if rec["method"] != http.MethodPost || rec["path"] != "/mcp" {
				t.Errorf("log lacks the request: %v", rec)
			}
			if stack, _ := rec["stack"].(string); !strings.Contains(stack, "recovery_test") {
				t.Errorf("logged stack does not show the panicking handler:\n%s", stack)
			}
		})
	}
}

func TestAbortHandlerPanicPassesThrough(t *testing.T) {
	t.Parallel()
	for _, v := range []any{http.ErrAbortHandler, fmt.Errorf("stream: %w", http.ErrAbortHandler)} {
		log, buf := newLogger()
		next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(v) })
		w := httptest.NewRecorder()
		got := func() (r any) {
			defer func() { r = recover() }()
			recovery.New(log)(next).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/mcp", nil))
			return nil
		}()
		if got != v {
			t.Errorf("re-panicked with %v, want %v", got, v)
		}
		if w.Body.Len() != 0 {
			t.Errorf("wrote %s for an aborted request", w.Body)
		}
		if buf.Len() != 0 {
			t.Errorf("logged an abort as a panic: %s", buf)
		}
	}
}

func TestNoPanicLeavesResponseAlone(t *testing.T) {
	t.Parallel()
	log, buf := newLogger()
	called := false
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called = true
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte("data: ok\n\n"))
	})
	w := httptest.NewRecorder()
	recovery.New(log)(next).ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/mcp", nil))

	if !called {
		t.Fatal("next not called")
	}
	if w.Code != http.StatusAccepted || w.Body.String() != "data: ok\n\n" || w.Header().Get("Content-Type") != "text/event-stream" {
		t.Errorf("response changed: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if buf.Len() != 0 {
		t.Errorf("logged without a panic: %s", buf)
	}
}

func TestNilLoggerUsesDefault(t *testing.T) {
	// Not parallel: it swaps the process-wide default logger.
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(prev)

	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("to default") })
	w := httptest.NewRecorder()
	recovery.New(nil)(next).ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/mcp", nil))

	if w.Code != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", w.Code)
	}
	if !strings.Contains(buf.String(), "to default") {
		t.Errorf("default logger did not get the panic: %q", buf.String())
	}
}

func TestPanicOnARealServerKeepsTheConnectionUseful(t *testing.T) {
	t.Parallel()
	log, _ := newLogger()
	srv := httptest.NewServer(recovery.New(log)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })))
	defer srv.Close()

	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatalf("client saw a dropped connection instead of an answer: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", resp.StatusCode)
	}
}
