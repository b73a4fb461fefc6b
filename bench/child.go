package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
)

// The -sizes mode runs the proxy and vmcp as child processes of their own,
// so that the CPU each one uses can be read from /proc/<pid>/stat without
// the load client's share (which grows with the size of the answers it
// decodes). The child is this same binary, started with these variables.
const (
	childEnv        = "VMCP_BENCH_CHILD"      // "proxy" or "vmcp"
	childBackendEnv = "VMCP_BENCH_BACKEND"    // the demo backend's URL
	childExtraEnv   = "VMCP_BENCH_EXTRA"      // vmcp: config appended at top level
	childConnsEnv   = "VMCP_BENCH_CONNS"      // proxy: the largest number of client connections
	childProfileEnv = "VMCP_BENCH_CPUPROFILE" // optional: CPU profile of the child's whole life
	childName       = "VMCP_BENCH_CHILD_NAME" // the name the parent gives the child, for its logs
	childReadyLine  = "LISTENING"             // first line of stdout, followed by the URL
	childLogMatch   = "fail open"             // vmcp warnings the parent counts
)

// runChild serves the proxy or vmcp named by kind in front of the backend
// until SIGTERM or SIGINT, and returns the exit code.
func runChild(kind string) int {
	name := os.Getenv(childName)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", name)
	slog.SetDefault(logger)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f := os.Getenv(childProfileEnv); f != "" {
		out, err := os.Create(f)
		if err == nil {
			err = pprof.StartCPUProfile(out)
		}
		if err != nil {
			logger.Error("cpu profile", "error", err)
		} else {
			defer func() {
				pprof.StopCPUProfile()
				out.Close()
			}()
		}
	}
	backendURL := os.Getenv(childBackendEnv)
	switch kind {
	case "proxy":
		conns, _ := strconv.Atoi(os.Getenv(childConnsEnv))
		p, err := startProxy(backendURL, max(conns, 1))
		if err != nil {
			logger.Error("proxy", "error", err)
			return 1
		}
		fmt.Println(childReadyLine, p.url)
		<-ctx.Done()
		p.stop()
	case "vmcp":
		v, err := startVMCP(ctx, backendURL, os.Getenv(childExtraEnv), logger)
		if err != nil {
			logger.Error("vmcp", "error", err)
			return 1
		}
		fmt.Println(childReadyLine, v.url)
		<-ctx.Done()
		if err := v.stop(); err != nil {
			logger.Error("vmcp shutdown", "error", err)
			return 1
		}
	default:
		fmt.Fprintf(os.Stderr, "bench: %s=%q: want proxy or vmcp\n", childEnv, kind)
		return 2
	}
	return 0
}

// startSelfChild starts this binary as a child of kind (proxy or vmcp)
// named name, with the given extra environment. Its stderr goes to ours;
// lines containing childLogMatch are counted in matched.
func startSelfChild(kind, name string, env []string, matched *atomic.Int64) (*backend, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), childEnv+"="+kind, childName+"="+name), env...)
	cmd.Stderr = &lineCounter{match: []byte(childLogMatch), count: matched}
	return startChild(cmd, name)
}

// lineCounter passes what a child writes on to our stderr and counts the
// lines that contain match.
type lineCounter struct {
	mu      sync.Mutex
	partial []byte
	match   []byte
	count   *atomic.Int64
}

func (w *lineCounter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		if w.count != nil && bytes.Contains(w.partial[:i], w.match) {
			w.count.Add(1)
		}
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 64<<10 { // a runaway line: count what we have
		w.partial = w.partial[:0]
	}
	_, err := os.Stderr.Write(p)
	return len(p), err
}

// checkRun says why a run over targets and conns is not valid, nil when it
// is: a vmcp that logged warnings or errors, or a measured phase with
// failed calls (measured returns a phase's result, nil when there is none).
func checkRun(targets []*childVMCP, conns []int, measured func(n int, name string) *result) error {
	var invalid error
	for _, t := range targets {
		if w := t.warnings.Load(); w > 0 {
			invalid = errors.Join(invalid, fmt.Errorf("%s: vmcp logged %d warnings or errors (on stderr above)", t.name, w))
		}
		for _, n := range conns {
			if r := measured(n, t.name); r != nil && r.errors > 0 {
				invalid = errors.Join(invalid, fmt.Errorf("%s, %d conns: %d errors (first: %v)", t.name, n, r.errors, r.firstErr))
			}
		}
	}
	if invalid != nil {
		return fmt.Errorf("run is not valid: %w", invalid)
	}
	return nil
}
