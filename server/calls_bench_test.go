package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkRelayEventStream measures relaying one backend answer given as
// an event stream (as the TypeScript SDK's servers answer by default): a
// progress notification and a result of about 64 KiB of escaped text.
func BenchmarkRelayEventStream(b *testing.B) {
	text := strings.Repeat(`lorem \"ipsum\" dolor\nsit amet, `, 64<<10/32)
	stream := "event: message\ndata: {\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1},\"jsonrpc\":\"2.0\"}\n\n" +
		"event: message\ndata: {\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"" + text + "\"}]},\"jsonrpc\":\"2.0\",\"id\":\"vmcp-1\"}\n\n"
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: io.NopCloser(strings.NewReader(stream))}
		w := httptest.NewRecorder()
		a := answer{w: w, ctx: context.Background(), clientID: []byte("7"), backendID: []byte(`"vmcp-1"`), backend: "b", log: slog.New(slog.DiscardHandler)}
		a.relay(resp)
		if w.Body.Len() < 64<<10 {
			b.Fatalf("relayed %d bytes", w.Body.Len())
		}
	}
}
