package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmcp/vmcp/config"
)

// TestWriterWritesJSONLines: events recorded before Close are in the file,
// one JSON object per line, and the file is appended to, not truncated.
func TestWriterWritesJSONLines(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(`{"earlier":true}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(config.Audit{Enabled: true, Output: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	w.Record(context.Background(), Event{Time: at, ClientAddr: "127.0.0.1:5", Outcome: OutcomeUnauthenticated, Reason: "no token"})
	w.Record(context.Background(), Event{Time: at, Issuer: "https://idp", Subject: "alice", Method: "tools/call", Name: "github_create_pr", Via: "call_tool", Outcome: OutcomeRateLimited, Reason: "perUser"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
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
	if len(lines) != 3 || lines[0]["earlier"] != true {
		t.Fatalf("file holds %d lines %v; want the earlier line kept and two events appended", len(lines), lines)
	}
	if lines[1]["outcome"] != "unauthenticated" || lines[1]["reason"] != "no token" || lines[1]["time"] != "2026-11-21T10:00:00Z" || lines[1]["subject"] != nil {
		t.Errorf("first event = %v", lines[1])
	}
	if lines[2]["outcome"] != "rate_limited" || lines[2]["subject"] != "alice" || lines[2]["name"] != "github_create_pr" || lines[2]["via"] != "call_tool" || lines[1]["via"] != nil {
		t.Errorf("second event = %v", lines[2])
	}
}

// TestWriterNeverBlocks: with the writer stalled, Record returns at once
// and counts what it drops.
func TestWriterNeverBlocks(t *testing.T) {
	t.Parallel()
	r, wpipe, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w := &Writer{out: wpipe, queue: make(chan Event, 2), done: make(chan struct{}), log: nil}
	// No goroutine drains the queue: it stays full.
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
	wpipe.Close()
}
