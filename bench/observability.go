package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// runObservability measures tools/call through vmcp with the audit trail
// (to a file) and Prometheus metrics both off and both on, with the same
// connections, in interleaved rounds, and prints the on/off throughput
// ratio. It checks that the audit file holds one event per call made.
func runObservability(ctx context.Context, opts options, out io.Writer) (err error) {
	n := opts.conns[len(opts.conns)-1]
	be, err := launchDemo(ctx, opts.tools)
	if err != nil {
		return err
	}
	defer be.stop()
	dir, err := os.MkdirTemp("", "vmcp-bench-audit-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	auditFile := filepath.Join(dir, "audit.jsonl")

	specs := []struct{ name, extra string }{
		{"off", "audit: {enabled: false}\ntelemetry: {prometheus: false}\n"},
		{"on", fmt.Sprintf("audit: {enabled: true, output: %q}\ntelemetry: {prometheus: true}\n", auditFile)},
	}
	var targets []*comparedVMCP // off, on
	defer func() {
		for _, t := range targets {
			err = errors.Join(err, t.stop())
		}
	}()
	hc := newHTTPClient(n * len(specs))
	defer hc.CloseIdleConnections()
	for _, sp := range specs {
		t := &comparedVMCP{name: sp.name}
		targets = append(targets, t)
		if err := t.start(ctx, hc, be.url, sp.extra, n, nil); err != nil {
			return err
		}
	}

	loadStart := loadAvg()
	call := callOp(backendName + "_echo")
	pid := be.cmd.Process.Pid
	for round := range opts.rounds {
		for _, t := range rotated(targets, round) {
			slog.Info("tools/call", "audit+metrics", t.name, "round", round+1, "conns", n, "duration", opts.dur)
			var use cpuUse
			r := closedLoop(ctx, t.sessions, call, opts.warm, opts.dur, func() func() {
				before := takeCPU(pid)
				return func() { use = takeCPU(pid).since(before) }
			})
			t.addRound(r, use)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	on, off := targets[1], targets[0]
	// Close the "on" server now, so every queued event is in the file.
	if err := on.stop(); err != nil {
		return err
	}
	events, err := countLines(auditFile)
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}

	fmt.Fprintf(out, "vmcp bench -observability: %s, GOMAXPROCS=%d, NumCPU=%d, -d %s per phase, warm-up %s, %d interleaved rounds, %d connections\n",
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), opts.dur, opts.warm, opts.rounds, n)
	fmt.Fprintf(out, "vmcp tree: %s\n", opts.tree)
	fmt.Fprintf(out, "on: audit to a file (one JSON line per tools/call) and telemetry.prometheus (every request counted, tool-call durations); off: neither\n")
	fmt.Fprintf(out, "load average at start %s, at end %s\n\n", loadStart, loadAvg())
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "audit+metrics\tconns\treq/s\tper round\tp50\tp99\terrors\tharness CPU/req\tbackend CPU/req\tmachine busy\t")
	for _, t := range targets {
		r := t.total
		per := make([]string, len(t.rounds))
		for i, x := range t.rounds {
			per[i] = strconv.FormatFloat(x, 'f', 0, 64)
		}
		perReq := func(d time.Duration) string {
			if r.count == 0 {
				return "-"
			}
			return fmtDur(d / time.Duration(r.count))
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%d\t%s\t%s\t%.0f%%\t\n", t.name, n, r.throughput(), strings.Join(per, " "),
			fmtDur(r.percentile(0.50)), fmtDur(r.percentile(0.99)), r.errors,
			perReq(r.cpu.harness), perReq(r.cpu.backend), 100*r.cpu.busy)
	}
	tw.Flush()
	ratio := 0.0
	if off.total.throughput() > 0 {
		ratio = on.total.throughput() / off.total.throughput()
	}
	verdict := "ok"
	if ratio < 0.9 {
		verdict = "BELOW TARGET"
	}
	fmt.Fprintf(out, "\ntools/call throughput, audit+metrics on / off (target >= 0.9): %.2f  %s\n", ratio, verdict)
	fmt.Fprintf(out, "audit file: %d events (every tools/call the on target served, warm-ups included)\n", events)

	for _, t := range targets {
		if t.total.errors > 0 {
			return fmt.Errorf("%d errors with audit+metrics %s (first: %v): run is not valid", t.total.errors, t.name, t.total.firstErr)
		}
	}
	if events < on.total.count {
		return fmt.Errorf("the audit file has %d events for %d measured calls: events were dropped", events, on.total.count)
	}
	return nil
}

// countLines counts the lines of a file.
func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		n++
	}
	return n, sc.Err()
}
