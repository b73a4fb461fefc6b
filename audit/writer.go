package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/vmcp/vmcp/config"
)

// queueSize bounds the events waiting to be written; past it events are
// dropped and counted rather than making a request wait.
const queueSize = 4096

// batchBytes is how much the writer encodes before it writes, when events
// arrive faster than one write each.
const batchBytes = 64 << 10

// fileFlags open an audit file for appending, creating it if needed.
const fileFlags = os.O_WRONLY | os.O_APPEND | os.O_CREATE

// WriterOptions tune a Writer. The zero value works.
type WriterOptions struct {
	// Logger receives write failures and the dropped count at Close.
	// nil: slog.Default().
	Logger *slog.Logger
	// Meter gets the observable counter vmcp_audit_events_dropped_total.
	// nil: a no-op meter.
	Meter metric.Meter
}

// Writer is a Recorder that writes one JSON line per event to stdout,
// stderr or an appended file, from its own goroutine: Record never blocks.
type Writer struct {
	path  string // "" for stdout and stderr
	log   *slog.Logger
	queue chan Event
	// accepting guards the queue's closing: Record holds it for reading
	// while it sends, Close for writing while it stops accepting, so a
	// request that ends after shutdown began never sends on a closed queue.
	accepting sync.RWMutex
	stopped   bool // Close has begun; guarded by accepting
	dropped   atomic.Int64
	done      chan struct{}
	metric    metric.Registration

	mu      sync.Mutex // guards out, file, closed and failing
	out     io.Writer
	file    *os.File // nil for stdout and stderr
	closed  bool
	failing bool // the last write failed (logged once until one succeeds)

	once     sync.Once
	closeErr error
}

var _ Recorder = (*Writer)(nil)

// NewWriter opens cfg.Output, registers the dropped-events counter and
// starts the writing goroutine, which Close stops after writing what is
// queued.
func NewWriter(cfg config.Audit, opts WriterOptions) (*Writer, error) {
	w := newWriter(opts, queueSize)
	switch cfg.Output {
	case "", "stdout":
		w.out = os.Stdout
	case "stderr":
		w.out = os.Stderr
	default:
		f, err := os.OpenFile(cfg.Output, fileFlags, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit.output: %w", err)
		}
		w.path, w.out, w.file = cfg.Output, f, f
	}
	if err := w.register(opts.Meter); err != nil {
		if w.file != nil {
			_ = w.file.Close()
		}
		return nil, fmt.Errorf("audit metrics: %w", err)
	}
	go w.run()
	return w, nil
}

func newWriter(opts WriterOptions, size int) *Writer {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Writer{log: opts.Logger, queue: make(chan Event, size), done: make(chan struct{})}
}

func (w *Writer) register(m metric.Meter) error {
	if m == nil {
		m = noop.NewMeterProvider().Meter("")
	}
	dropped, err := m.Int64ObservableCounter("vmcp_audit_events_dropped_total",
		metric.WithDescription("Audit events dropped because the writer's queue was full."))
	if err != nil {
		return err
	}
	w.metric, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(dropped, w.dropped.Load())
		return nil
	}, dropped)
	return err
}

// Record queues e; when the queue is full, or the writer is closed, it
// drops e and counts it.
func (w *Writer) Record(_ context.Context, e Event) {
	w.accepting.RLock()
	defer w.accepting.RUnlock()
	if w.stopped {
		w.dropped.Add(1)
		return
	}
	select {
	case w.queue <- e:
	default:
		w.dropped.Add(1)
	}
}

// Dropped returns how many events were dropped because the queue was full.
func (w *Writer) Dropped() int64 { return w.dropped.Load() }

// Reopen opens the output file again under its configured path, for log
// rotation: after a rename, events written from now on go to a new file at
// the path (events still queued included) and the old file is closed. For
// stdout and stderr, and after Close, it does nothing.
func (w *Writer) Reopen() error {
	if w.path == "" {
		return nil
	}
	f, err := os.OpenFile(w.path, fileFlags, 0o600)
	if err != nil {
		return fmt.Errorf("reopen audit output: %w", err)
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return f.Close()
	}
	old := w.file
	w.out, w.file = f, f
	w.mu.Unlock()
	if err := old.Close(); err != nil {
		return fmt.Errorf("close rotated audit output: %w", err)
	}
	return nil
}

// line is an Event as written: times in RFC 3339, durations in ms, empty
// fields left out.
type line struct {
	Time               string  `json:"time"`
	RequestID          any     `json:"requestId,omitempty"`
	SessionID          string  `json:"sessionId,omitempty"`
	Issuer             string  `json:"issuer,omitempty"`
	Subject            string  `json:"subject,omitempty"`
	ClientAddr         string  `json:"clientAddr,omitempty"`
	Method             string  `json:"method,omitempty"`
	Name               string  `json:"name,omitempty"`
	Via                string  `json:"via,omitempty"`
	Backend            string  `json:"backend,omitempty"`
	OriginalName       string  `json:"originalName,omitempty"`
	Outcome            Outcome `json:"outcome"`
	Reason             string  `json:"reason,omitempty"`
	DurationMS         float64 `json:"durationMs,omitempty"`
	ResponseBytes      int64   `json:"responseBytes,omitempty"`
	Arguments          any     `json:"arguments,omitempty"`
	ArgumentsTruncated bool    `json:"argumentsTruncated,omitempty"`
}

func toLine(e Event) line {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	l := line{
		Time: e.Time.UTC().Format(time.RFC3339Nano), SessionID: e.SessionID,
		Issuer: e.Issuer, Subject: e.Subject, ClientAddr: e.ClientAddr,
		Method: e.Method, Name: e.Name, Via: e.Via, Backend: e.Backend, OriginalName: e.OriginalName,
		Outcome: e.Outcome, Reason: e.Reason,
		DurationMS:    float64(e.Duration) / float64(time.Millisecond),
		ResponseBytes: e.ResponseBytes,
	}
	if e.RequestID != "" {
		l.RequestID = rawOrString(e.RequestID)
	}
	switch {
	case e.ArgumentsTruncated: // no longer JSON: written as a string
		l.Arguments, l.ArgumentsTruncated = e.Arguments, true
	case e.Arguments != "":
		l.Arguments = rawOrString(e.Arguments)
	}
	return l
}

// rawOrString returns s as raw JSON when it is valid JSON, else as a
// string, so that one bad field never costs the whole line.
func rawOrString(s string) any {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	return s
}

func (w *Writer) run() {
	defer close(w.done)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for e := range w.queue {
		w.encode(enc, e)
		// Under load, write what else is queued in one go.
		for len(w.queue) > 0 && buf.Len() < batchBytes {
			w.encode(enc, <-w.queue)
		}
		w.write(buf.Bytes())
		buf.Reset()
	}
}

func (w *Writer) encode(enc *json.Encoder, e Event) {
	if err := enc.Encode(toLine(e)); err != nil {
		w.log.Warn("encode audit event", "error", err)
	}
}

func (w *Writer) write(b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.out.Write(b)
	switch {
	case err != nil && !w.failing:
		w.failing = true
		w.log.Warn("write audit events; further failures are not logged until a write succeeds", "error", err)
	case err == nil && w.failing:
		w.failing = false
		w.log.Info("audit events written again")
	}
}

// Close stops accepting events, writes the queued ones and closes the file.
// Events recorded after Close are dropped and counted; calling Close again
// returns the first result.
func (w *Writer) Close() error {
	w.once.Do(func() {
		w.accepting.Lock()
		w.stopped = true
		close(w.queue)
		w.accepting.Unlock()
		<-w.done
		var errs []error
		if w.metric != nil {
			errs = append(errs, w.metric.Unregister())
		}
		if n := w.dropped.Load(); n > 0 {
			w.log.Warn("audit events dropped: queue full", "dropped", n)
		}
		w.mu.Lock()
		w.closed = true
		if w.file != nil {
			errs = append(errs, w.file.Close())
		}
		w.mu.Unlock()
		w.closeErr = errors.Join(errs...)
	})
	return w.closeErr
}
