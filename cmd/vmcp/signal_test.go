package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSignals runs serve in a real process (this test binary running main)
// whose only backend is a stdio child that never answers initialize, so
// start-up is still connecting when the first SIGINT arrives.
func TestSignals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// ignoreTERM makes the backend child ignore SIGTERM, so closing it
		// takes mcp-go's whole grace period (stdin close 2s, SIGTERM 3s).
		ignoreTERM bool
		// second sends another SIGINT once the shutdown has begun.
		second bool
	}{
		{name: "SIGINT during start-up exits 0"},
		{name: "second SIGINT during shutdown kills", ignoreTERM: true, second: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			pidFile := filepath.Join(dir, "backend.pid")
			script := "echo $$ > " + pidFile + "; exec sleep 600"
			if tt.ignoreTERM {
				script = "trap '' TERM; " + script
			}
			path := writeConfig(t, fmt.Sprintf(`
server: {host: 127.0.0.1, port: 0}
backends:
  - name: stuck
    transport: stdio
    command: /bin/sh
    args: ["-c", %q]
`, script))

			var stderr syncBuffer
			cmd := exec.Command(os.Args[0], "serve", "--config", path)
			cmd.Env = append(os.Environ(), runMainEnv+"=1")
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var waitErr error
			exited := make(chan struct{})
			go func() {
				waitErr = cmd.Wait()
				close(exited)
			}()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
				// A killed vmcp leaves its backend (own process group).
				if b, err := os.ReadFile(pidFile); err == nil {
					if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
						_ = syscall.Kill(-pid, syscall.SIGKILL)
					}
				}
			})

			waitFor(t, 20*time.Second, "the backend child", func() bool {
				b, err := os.ReadFile(pidFile)
				return err == nil && len(b) > 0
			})
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 20*time.Second, "the start-up interruption log line", func() bool {
				return strings.Contains(stderr.String(), "interrupted during start-up")
			})
			if tt.second {
				if err := cmd.Process.Signal(os.Interrupt); err != nil {
					t.Fatal(err)
				}
			}

			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				t.Fatalf("vmcp still running 30s after SIGINT:\n%s", stderr.String())
			}
			err := waitErr
			var exit *exec.ExitError
			switch {
			case tt.second:
				ws, ok := exitStatus(err, &exit)
				if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
					t.Errorf("exit = %v, want killed by SIGINT\n%s", err, stderr.String())
				}
			case err != nil:
				t.Errorf("exit = %v, want status 0\n%s", err, stderr.String())
			}
			if strings.Contains(stderr.String(), "cannot start") {
				t.Errorf("stderr reports a start-up failure:\n%s", stderr.String())
			}
		})
	}
}

func exitStatus(err error, exit **exec.ExitError) (syscall.WaitStatus, bool) {
	if !errors.As(err, exit) {
		return 0, false
	}
	ws, ok := (*exit).Sys().(syscall.WaitStatus)
	return ws, ok
}

func waitFor(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
