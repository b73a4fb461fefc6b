package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmcp/vmcp/config"
)

// queueSize bounds the events waiting to be written; past it events are
// dropped and counted rather than making a request wait.
const queueSize = 4096

// Writer is a Recorder that writes one JSON line per event to stdout,
// stderr or an appended file, from its own goroutine: Record never blocks.
type Writer struct {
	out     io.Writer
	file    *os.File // nil for stdout and stderr
	log     *slog.Logger
	queue   chan Event
	dropped atomic.Int64
	done    chan struct{}
	once    sync.Once
}

var _ Recorder = (*Writer)(nil)

// NewWriter opens cfg.Output and starts the writing goroutine, which Close
// stops after writing what is queued. log nil means slog.Default().
func NewWriter(cfg config.Audit, log *slog.Logger) (*Writer, error) {
	if log == nil {
		log = slog.Default()
	}
	w := &Writer{log: log, queue: make(chan Event, queueSize), done: make(chan struct{})}
	switch cfg.Output {
	case "", "stdout":
		w.out = os.Stdout
	case "stderr":
		w.out = os.Stderr
	default:
		f, err := os.OpenFile(cfg.Output, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit.output: %w", err)
		}
		w.out, w.file = f, f
	}
	go w.run()
	return w, nil
}

// Record queues e; when the queue is full it drops e and counts it.
func (w *Writer) Record(_ context.Context, e Event) {
	select {
	case w.queue <- e:
	default:
		w.dropped.Add(1)
	}
}

// Dropped returns how many events were dropped because the queue was full.
func (w *Writer) Dropped() int64 { return w.dropped.Load() }

// line is an Event as written: times in RFC 3339, durations in ms, empty
// fields left out.
type line struct {
	Time       string  `json:"time"`
	Issuer     string  `json:"issuer,omitempty"`
	Subject    string  `json:"subject,omitempty"`
	ClientAddr string  `json:"clientAddr,omitempty"`
	Method     string  `json:"method,omitempty"`
	Name       string  `json:"name,omitempty"`
	Via        string  `json:"via,omitempty"`
	Outcome    Outcome `json:"outcome"`
	Reason     string  `json:"reason,omitempty"`
	DurationMS float64 `json:"durationMs,omitempty"`
}

func (w *Writer) run() {
	defer close(w.done)
	enc := json.NewEncoder(w.out)
	for e := range w.queue {
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		err := enc.Encode(line{
			Time: e.Time.UTC().Format(time.RFC3339Nano), Issuer: e.Issuer, Subject: e.Subject,
			ClientAddr: e.ClientAddr, Method: e.Method, Name: e.Name, Via: e.Via, Outcome: e.Outcome, Reason: e.Reason,
			DurationMS: float64(e.Duration) / float64(time.Millisecond),
		})
		if err != nil {
			w.log.Warn("write audit event", "error", err)
		}
	}
}

// Close stops accepting events, writes the queued ones and closes the file.
// Record must not be called after Close.
func (w *Writer) Close() error {
	var err error
	w.once.Do(func() {
		close(w.queue)
		<-w.done
		if n := w.dropped.Load(); n > 0 {
			w.log.Warn("audit events dropped: queue full", "dropped", n)
		}
		if w.file != nil {
			err = w.file.Close()
		}
	})
	return err
}
