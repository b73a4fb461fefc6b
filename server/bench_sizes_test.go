package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// BenchmarkToolsCallSizes measures tools/call of an echo tool with 100 B,
// 8 KiB and 64 KiB of text echoed back:
//
//	vmcp/<size>     through the whole chain to the in-process backend over
//	                loopback HTTP (as BenchmarkToolsCall)
//	backend/<size>  the same call served by the backend's handler alone,
//	                without vmcp or HTTP
//
// Allocations are counted for the whole process, so the vmcp rows include
// the backend's; backend/<size> is that share, to subtract. Every answer is
// checked to be 200 and at least as long as the text; the first one of each
// sub-benchmark is decoded and compared byte for byte.
//
//	go test ./server -run '^$' -bench ToolsCallSizes -benchmem
func BenchmarkToolsCallSizes(b *testing.B) {
	backend, backendSID, srv, sid := benchEchoServer(b)
	for _, size := range []int{100, 8 << 10, 64 << 10} {
		text := benchText(size)
		name := strconv.Itoa(size) + "B"
		if size >= 1<<10 {
			name = strconv.Itoa(size>>10) + "KiB"
		}
		for _, via := range []string{"vmcp", "backend"} {
			b.Run(via+"/"+name, func(b *testing.B) {
				tool, serve, s := "echo_echo", func(sid, body string) *httptest.ResponseRecorder { return post(srv, sid, body) }, sid
				if via == "backend" {
					tool, s = "echo", backendSID
					serve = func(sid, body string) *httptest.ResponseRecorder { return postHandler(backend, sid, body) }
				}
				params, err := json.Marshal(map[string]any{"name": tool, "arguments": map[string]any{"text": text}})
				if err != nil {
					b.Fatal(err)
				}
				body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":` + string(params) + `}`
				if err := checkEcho(serve(s, body), text); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					rec := serve(s, body)
					if rec.Code != http.StatusOK || rec.Body.Len() < size {
						b.Fatalf("tools/call = %d, %d bytes for %d of text", rec.Code, rec.Body.Len(), size)
					}
				}
			})
		}
	}
}

// benchEchoServer starts a backend named echo with one tool, echo, that
// returns its text argument, and vmcp in front of it over loopback HTTP. It
// returns the backend's handler with a session on it, and vmcp with one.
func benchEchoServer(b *testing.B) (http.Handler, string, *Server, string) {
	b.Helper()
	s := mcpserver.NewMCPServer("echo", "1", mcpserver.WithToolCapabilities(true))
	s.AddTool(mcp.NewTool("echo",
		mcp.WithDescription("Returns the given text unchanged."),
		mcp.WithString("text", mcp.Required(), mcp.Description("Text to send back.")),
	), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		text, err := req.RequireString("text")
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		return mcp.NewToolResultText(text), nil
	})
	h := mcpserver.NewStreamableHTTPServer(s)
	ts := httptest.NewServer(h)
	b.Cleanup(ts.Close)
	srv, sid := startBench(b, "echo", ts.URL+"/mcp")
	rec := postHandler(h, "", benchInitialize)
	bsid := rec.Header().Get("Mcp-Session-Id")
	if bsid == "" {
		b.Fatalf("no backend session: %d %s", rec.Code, rec.Body)
	}
	postHandler(h, bsid, benchInitialized)
	return h, bsid, srv, sid
}

// postHandler is post for any handler.
func postHandler(h http.Handler, sid, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/mcp", bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// checkEcho decodes a tools/call answer (JSON or one SSE event) and checks
// that its one text content is text.
func checkEcho(rec *httptest.ResponseRecorder, text string) error {
	if rec.Code != http.StatusOK {
		return fmt.Errorf("tools/call = %d %.200s", rec.Code, rec.Body)
	}
	msg := rec.Body.Bytes()
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream") {
		for line := range strings.SplitSeq(rec.Body.String(), "\n") {
			if d, ok := strings.CutPrefix(line, "data:"); ok {
				msg = []byte(strings.TrimSpace(d))
			}
		}
	}
	var r struct {
		Result struct {
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"result"`
	}
	if err := json.Unmarshal(msg, &r); err != nil {
		return fmt.Errorf("decode %.200s: %w", msg, err)
	}
	if len(r.Result.Content) != 1 || r.Result.Content[0].Text != text {
		return fmt.Errorf("echo did not answer the %d bytes sent: %.200s", len(text), msg)
	}
	return nil
}

// benchText is n bytes of varied ASCII words with characters JSON escapes,
// the same for every run.
func benchText(n int) string {
	words := strings.Fields(`the request response server client session tool backend gateway latency record field value
		index query table "quoted" C:\data\file.txt <tag> a&b report invoice order customer price total 2025 17 4096`)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	var sb strings.Builder
	for sb.Len() < n {
		sb.WriteString(words[r.IntN(len(words))])
		switch r.IntN(20) {
		case 0:
			sb.WriteString(".\n")
		case 1:
			sb.WriteString(",\t")
		default:
			sb.WriteByte(' ')
		}
	}
	return sb.String()[:n]
}
