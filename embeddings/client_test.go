package embeddings_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/embeddings"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// TestNewAPIKey: New resolves apiKeyEnv through Getenv and fails naming the
// variable when it is unset or empty; it connects to nothing.
func TestNewAPIKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		keyEnv  string
		env     map[string]string
		wantErr string
	}{
		{"no key configured", "", nil, ""},
		{"key set", "EMB_KEY", map[string]string{"EMB_KEY": "sk-1"}, ""},
		{"key unset", "EMB_KEY", map[string]string{"OTHER": "x"}, "apiKeyEnv: environment variable EMB_KEY is not set"},
		{"key empty", "EMB_KEY", map[string]string{"EMB_KEY": ""}, "apiKeyEnv: environment variable EMB_KEY is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// An address nothing listens on: New must not connect.
			cfg := config.Embeddings{URL: "http://127.0.0.1:1/v1", Model: "m", APIKeyEnv: tc.keyEnv}
			s, err := embeddings.New(cfg, embeddings.Options{Getenv: env(tc.env)})
			if tc.wantErr == "" {
				if err != nil || s == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("New error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestRequestShape: POST {url}/embeddings with the model, the inputs,
// encoding_format float, dimensions only when configured, and the API key
// as a bearer token.
func TestRequestShape(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		suffix   string // after the fake's base URL
		dims     int
		keyEnv   string
		wantPath string
		wantAuth string
	}{
		{"plain", "/v1", 0, "", "/v1/embeddings", ""},
		{"trailing slash", "/v1/", 0, "", "/v1/embeddings", ""},
		{"trailing slashes", "/v1//", 0, "", "/v1/embeddings", ""},
		{"root", "", 0, "", "/embeddings", ""},
		{"dimensions", "/v1", 8, "", "/v1/embeddings", ""},
		{"api key", "/v1", 0, "EMB_KEY", "/v1/embeddings", "Bearer sk-secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, nil)
			cfg := config.Embeddings{URL: f.srv.URL + tc.suffix, Model: "text-embedding-3-small", Dimensions: tc.dims, APIKeyEnv: tc.keyEnv}
			s := newService(t, cfg, embeddings.Options{Getenv: env(map[string]string{"EMB_KEY": "sk-secret"})})
			in := []string{"alpha", "beta"}
			got, err := s.Documents(context.Background(), in, nil)
			if err != nil {
				t.Fatal(err)
			}
			dims := tc.dims
			if dims == 0 {
				dims = defaultDims
			}
			checkVecs(t, got, in, dims)
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			c := reqs[0]
			if c.Method != http.MethodPost || c.Path != tc.wantPath {
				t.Errorf("%s %s, want POST %s", c.Method, c.Path, tc.wantPath)
			}
			if c.Auth != tc.wantAuth {
				t.Errorf("Authorization %q, want %q", c.Auth, tc.wantAuth)
			}
			if c.ContentType != "application/json" {
				t.Errorf("Content-Type %q", c.ContentType)
			}
			if c.Model != "text-embedding-3-small" || c.Format != "float" || !slices.Equal(c.Input, in) {
				t.Errorf("body model %q format %q input %q", c.Model, c.Format, c.Input)
			}
			if c.HasDimensions != (tc.dims > 0) || c.Dimensions != tc.dims {
				t.Errorf("dimensions %d (sent: %v), want %d (sent: %v); fields %v", c.Dimensions, c.HasDimensions, tc.dims, tc.dims > 0, c.Fields)
			}
		})
	}
}

// TestAnswers: how answers of the service become vectors or errors.
func TestAnswers(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 1000)
	euros := strings.Repeat("€", 150) // 450 bytes: a cut at 200 bytes falls inside a rune
	for _, tc := range []struct {
		name    string
		dims    int // cfg.Dimensions
		in      []string
		respond func(w http.ResponseWriter, c call)
		wantDim int    // the vectors' size, when they are expected
		errHas  string // else a substring of the error
		errIs   error
		check   func(t *testing.T, err error)
	}{
		{name: "in order", in: []string{"a", "b", "c"}, wantDim: 4, respond: func(w http.ResponseWriter, c call) {
			writeData(w, []item{{0, rawVec("a", 4)}, {1, rawVec("b", 4)}, {2, rawVec("c", 4)}})
		}},
		{name: "out of order", in: []string{"a", "b", "c"}, wantDim: 4, respond: func(w http.ResponseWriter, c call) {
			writeData(w, []item{{2, rawVec("c", 4)}, {0, rawVec("a", 4)}, {1, rawVec("b", 4)}})
		}},
		{name: "configured dimensions", dims: 3, in: []string{"a", "b"}, wantDim: 3, respond: func(w http.ResponseWriter, c call) {
			writeData(w, []item{{1, rawVec("b", 3)}, {0, rawVec("a", 3)}})
		}},
		{name: "zero vector", in: []string{"a", "b"}, errHas: "zero or non-finite", respond: func(w http.ResponseWriter, c call) {
			writeData(w, []item{{0, rawVec("a", 4)}, {1, make([]float32, 4)}})
		}},
		{name: "repeated index", in: []string{"a", "b"}, errHas: "bad or repeated index 0", respond: func(w http.ResponseWriter, c call) {
			writeData(w, []item{{0, rawVec("a", 4)}, {0, rawVec("b", 4)}})
		}},
		{name: "index out of range", in: []string{"a", "b"}, errHas: "bad or repeated index 2", respond: func(w http.ResponseWriter, c call) {
			writeData(w, []item{{0, rawVec("a", 4)}, {2, rawVec("b", 4)}})
		}},
		{name: "negative index", in: []string{"a", "b"}, errHas: "bad or repeated index -1", respond: func(w http.ResponseWriter, c call) {
			writeData(w, []item{{-1, rawVec("a", 4)}, {1, rawVec("b", 4)}})
		}},
		{name: "too few vectors", in: []string{"a", "b"}, errHas: "1 vectors for 2 inputs", respond: func(w http.ResponseWriter, c call) {
			writeData(w, []item{{0, rawVec("a", 4)}})
		}},
		{name: "too many vectors", in: []string{"a"}, errHas: "2 vectors for 1 inputs", respond: func(w http.ResponseWriter, c call) {
			writeData(w, []item{{0, rawVec("a", 4)}, {1, rawVec("b", 4)}})
		}},
		{name: "no data", in: []string{"a"}, errHas: "0 vectors for 1 inputs", respond: func(w http.ResponseWriter, c call) {
			_, _ = w.Write([]byte(`{"object":"list"}`))
		}},
		{name: "not JSON", in: []string{"a"}, errHas: "not an embeddings answer", respond: func(w http.ResponseWriter, c call) {
			_, _ = w.Write([]byte(`<html>hello</html>`))
		}},
		{name: "wrong dimensions", dims: 4, in: []string{"a", "b"}, errIs: embeddings.ErrDimensions, errHas: "got 3, want 4", respond: func(w http.ResponseWriter, c call) {
			writeData(w, []item{{0, rawVec("a", 4)}, {1, rawVec("b", 3)}})
		}},
		{name: "all of wrong dimensions", dims: 8, in: []string{"a"}, errIs: embeddings.ErrDimensions, respond: func(w http.ResponseWriter, c call) {
			writeData(w, []item{{0, rawVec("a", 4)}})
		}},
		{name: "mixed sizes", in: []string{"a", "b", "c"}, errIs: embeddings.ErrDimensions, respond: func(w http.ResponseWriter, c call) {
			writeData(w, []item{{0, rawVec("a", 4)}, {1, rawVec("b", 4)}, {2, rawVec("c", 5)}})
		}},
		{name: "empty vectors", in: []string{"a"}, errIs: embeddings.ErrDimensions, respond: func(w http.ResponseWriter, c call) {
			writeData(w, []item{{0, []float32{}}})
		}},
		{name: "HTTP 400 OpenAI error", in: []string{"a"}, errHas: "HTTP 400: This model's maximum context length is 8192 tokens", respond: func(w http.ResponseWriter, c call) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","param":null,"code":null}}`))
		}},
		{name: "HTTP 500 OpenAI error", in: []string{"a"}, errHas: "HTTP 500: The server had an error", respond: func(w http.ResponseWriter, c call) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":{"message":"The server had an error","type":"server_error"}}`))
		}},
		{name: "HTTP 401 plain text", in: []string{"a"}, errHas: "HTTP 401: unauthorized", respond: func(w http.ResponseWriter, c call) {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte("unauthorized\n"))
		}},
		{name: "HTTP 502 control characters", in: []string{"a"}, errHas: "HTTP 502: bad gateway    is gone", respond: func(w http.ResponseWriter, c call) {
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("bad gateway\r\n\x1b is gone\x00"))
		}, check: printable},
		{name: "HTTP 500 long message", in: []string{"a"}, errHas: "HTTP 500: " + long[:200] + "…", respond: func(w http.ResponseWriter, c call) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":{"message":"` + long + `"}}`))
		}, check: func(t *testing.T, err error) {
			if strings.Contains(err.Error(), long[:201]) {
				t.Errorf("message not cut to 200: %d bytes", len(err.Error()))
			}
		}},
		{name: "HTTP 500 long body", in: []string{"a"}, errHas: "HTTP 500: " + long[:200] + "…", respond: func(w http.ResponseWriter, c call) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(long))
		}},
		// BUG: errorMessage cuts msg[:200] by bytes, which can split a
		// multi-byte rune and leave invalid UTF-8 in the error (and logs).
		{name: "HTTP 500 long multibyte message", in: []string{"a"}, errHas: "HTTP 500: €€€", respond: func(w http.ResponseWriter, c call) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":{"message":"` + euros + `"}}`))
		}, check: printable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, func(_ int, c call, w http.ResponseWriter, _ *http.Request) { tc.respond(w, c) })
			cfg := baseCfg(f)
			cfg.Dimensions = tc.dims
			s := newService(t, cfg, embeddings.Options{})
			got, err := s.Documents(context.Background(), tc.in, nil)
			if tc.wantDim != 0 {
				if err != nil {
					t.Fatal(err)
				}
				checkVecs(t, got, tc.in, tc.wantDim)
				return
			}
			if err == nil {
				t.Fatalf("no error; vectors %v", got)
			}
			if got != nil {
				t.Errorf("vectors %v with the error", got)
			}
			if tc.errHas != "" && !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("error %q, want it to contain %q", err, tc.errHas)
			}
			if tc.errIs != nil && !errors.Is(err, tc.errIs) {
				t.Errorf("error %v is not %v", err, tc.errIs)
			}
			if tc.check != nil {
				tc.check(t, err)
			}
		})
	}
}

// printable fails t unless err's text is valid UTF-8 of printable runes.
func printable(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	if !utf8.ValidString(msg) {
		t.Errorf("BUG: error is not valid UTF-8: %q", msg)
	}
	for _, r := range msg {
		if !unicode.IsPrint(r) {
			t.Errorf("error has the unprintable %U: %q", r, msg)
			break
		}
	}
}

// TestUnreachable: a service nothing listens on is an error, not a hang.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	s := newService(t, config.Embeddings{URL: "http://127.0.0.1:1/v1", Model: "m"}, embeddings.Options{})
	if _, err := s.Documents(context.Background(), []string{"a"}, nil); err == nil || !strings.Contains(err.Error(), "embedding service") {
		t.Fatalf("Documents error %v", err)
	}
	if _, err := s.Query(context.Background(), "q"); err == nil {
		t.Fatal("Query: no error")
	}
}
