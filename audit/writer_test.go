package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/vmcp/vmcp/config"
)

// readLines returns the JSON objects of the file at path, one per line.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	return lines
}

// TestWriterWritesJSONLines: events recorded before Close are in the file,
// one JSON object per line with camelCase keys and empty fields left out,
// and the file is appended to, not truncated.
func TestWriterWritesJSONLines(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(`{"earlier":true}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(config.Audit{Enabled: true, Output: path}, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	w.Record(context.Background(), Event{Time: at, ClientAddr: "127.0.0.1:5", Outcome: OutcomeUnauthenticated, Reason: "no token"})
	w.Record(context.Background(), Event{Time: at, Issuer: "https://idp", Subject: "alice", Method: "tools/call", Name: "github_create_pr", Via: "call_tool", Outcome: OutcomeRateLimited, Reason: "perUser"})
	w.Record(context.Background(), Event{
		Time: at, RequestID: `"r-1"`, SessionID: "s", Method: "tools/call", Name: "weather_forecast",
		Backend: "weather", OriginalName: "forecast", Outcome: OutcomeToolError, Duration: 2500 * time.Microsecond,
		ResponseBytes: 120, Arguments: `{"city":"<Wien>"}`,
	})
	w.Record(context.Background(), Event{Time: at, Outcome: OutcomeSuccess, RequestID: `3`, Arguments: `{"city":"W`, ArgumentsTruncated: true})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 5 || lines[0]["earlier"] != true {
		t.Fatalf("file holds %d lines %v; want the earlier line kept and four events appended", len(lines), lines)
	}
	if lines[1]["outcome"] != "unauthenticated" || lines[1]["reason"] != "no token" || lines[1]["time"] != "2026-11-21T10:00:00Z" || lines[1]["subject"] != nil {
		t.Errorf("first event = %v", lines[1])
	}
	if lines[2]["outcome"] != "rate_limited" || lines[2]["subject"] != "alice" || lines[2]["name"] != "github_create_pr" || lines[2]["via"] != "call_tool" || lines[1]["via"] != nil {
		t.Errorf("second event = %v", lines[2])
	}
	third := lines[3]
	want := map[string]any{
		"time": "2026-11-21T10:00:00Z", "requestId": "r-1", "sessionId": "s", "method": "tools/call", "name": "weather_forecast",
		"backend": "weather", "originalName": "forecast", "outcome": "tool_error", "durationMs": 2.5, "responseBytes": 120.0,
		"arguments": map[string]any{"city": "<Wien>"},
	}
	if b, _ := json.Marshal(third); string(b) != mustJSON(t, want) {
		t.Errorf("third event = %s\nwant %s", b, mustJSON(t, want))
	}
	if l := lines[4]; l["arguments"] != `{"city":"W` || l["argumentsTruncated"] != true || l["requestId"] != 3.0 {
		t.Errorf("truncated arguments event = %v; want them as a string, marked", l)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWriterReopen: after the file is renamed (log rotation), Reopen makes
// later events go to a new file at the path; the old file keeps the old
// events.
func TestWriterReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	w, err := NewWriter(config.Audit{Enabled: true, Output: path}, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Record(context.Background(), Event{Name: "before", Outcome: OutcomeSuccess})
	waitLines(t, path, 1)
	rotated := filepath.Join(dir, "audit.log.1")
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	w.Record(context.Background(), Event{Name: "after", Outcome: OutcomeSuccess})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if old := readLines(t, rotated); len(old) != 1 || old[0]["name"] != "before" {
		t.Errorf("rotated file = %v; want the event before Reopen only", old)
	}
	if cur := readLines(t, path); len(cur) != 1 || cur[0]["name"] != "after" {
		t.Errorf("new file = %v; want the event after Reopen only", cur)
	}
	if err := w.Reopen(); err != nil {
		t.Errorf("Reopen after Close = %v; want nil", err)
	}
}

// TestWriterReopenStdout: Reopen of stdout does nothing.
func TestWriterReopenStdout(t *testing.T) {
	t.Parallel()
	w, err := NewWriter(config.Audit{Enabled: true, Output: "stdout"}, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Error(err)
	}
	if err := w.Close(); err != nil {
		t.Error(err)
	}
}

func waitLines(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(readLines(t, path)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not get %d lines within 5s", path, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWriterNeverBlocks: with the writer stalled, Record returns at once
// and counts what it drops, and the count is exported as
// vmcp_audit_events_dropped_total.
func TestWriterNeverBlocks(t *testing.T) {
	t.Parallel()
	r, wpipe, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	reader := sdkmetric.NewManualReader()
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("audit")
	w := newWriter(WriterOptions{}, 2)
	w.out = wpipe
	if err := w.register(meter); err != nil {
		t.Fatal(err)
	}
	// No goroutine drains the queue yet: it stays full.
	start := time.Now()
	for range 10 {
		w.Record(context.Background(), Event{Outcome: OutcomeSuccess})
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Record blocked for %v", d)
	}
	if got := w.Dropped(); got != 8 {
		t.Fatalf("Dropped = %d, want 8 (queue of 2, 10 events)", got)
	}
	if got := droppedMetric(t, reader); got != 8 {
		t.Fatalf("vmcp_audit_events_dropped_total = %d, want 8", got)
	}
	go w.run()
	go func() { _, _ = bufio.NewReader(r).WriteTo(discardW{}) }()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wpipe.Close()
	if got := droppedMetric(t, reader); got != -1 {
		t.Fatalf("after Close the counter is still reported (%d); Close must unregister it", got)
	}
}

type discardW struct{}

func (discardW) Write(p []byte) (int, error) { return len(p), nil }

// droppedMetric collects reader and returns the dropped counter, -1 when
// it is not reported.
func droppedMetric(t *testing.T, reader *sdkmetric.ManualReader) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "vmcp_audit_events_dropped_total" {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || !sum.IsMonotonic || len(sum.DataPoints) != 1 {
				t.Fatalf("%s is %T %+v; want one monotonic int64 sum", m.Name, m.Data, m.Data)
			}
			return sum.DataPoints[0].Value
		}
	}
	return -1
}

// TestWriterRecordAfterClose: a request that finishes after shutdown closed
// the writer (the drain timed out) loses its event, counted, instead of
// panicking on the closed queue; racing Records and Close are safe.
func TestWriterRecordAfterClose(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := NewWriter(config.Audit{Enabled: true, Output: path}, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				w.Record(context.Background(), Event{Outcome: OutcomeSuccess})
			}
		}()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	before := w.Dropped()
	w.Record(context.Background(), Event{Outcome: OutcomeSuccess})
	if got := w.Dropped(); got != before+1 {
		t.Errorf("Dropped after a Record on the closed writer = %d, want %d", got, before+1)
	}
}
