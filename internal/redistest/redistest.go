// Package redistest starts a real redis-server for a test: on a free
// loopback port, with persistence off, stopped when the test ends. The
// Redis store tests of several packages share it.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Start starts a redis-server of tb's own and returns a client with room
// for 64 concurrent callers, and the server's process id. Server and
// client stop in tb.Cleanup. Without redis-server on PATH the test fails,
// saying what is missing, or is skipped when VMCP_TEST_SKIP_MISSING=1.
func Start(tb testing.TB) (*redis.Client, int) {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		// A plain `go test ./...` shows skips only with -v: fail, saying
		// what is missing, unless asked to skip.
		const msg = "redis-server not on PATH; install Redis (e.g. apt-get install redis-server) to run the Redis store tests"
		if os.Getenv("VMCP_TEST_SKIP_MISSING") == "1" {
			tb.Skip(msg)
		}
		tb.Fatal(msg + ". `bash .ci/run` installs every prerequisite; VMCP_TEST_SKIP_MISSING=1 skips these tests")
	}
	var lastErr error
	for range 3 { // a free port can be taken before redis binds it
		client, pid, err := tryStart(tb, bin)
		if err == nil {
			return client, pid
		}
		lastErr = err
	}
	tb.Fatalf("start redis-server: %v", lastErr)
	return nil, 0
}

func tryStart(tb testing.TB, bin string) (*redis.Client, int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	var out lockedBuffer
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--databases", "1")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	exited := make(chan struct{})
	go func() { // owned by this helper: ends when the server exits
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	client := redis.NewClient(&redis.Options{
		Addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		PoolSize: 64,
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := client.Ping(ctx).Err()
		cancel()
		if err == nil {
			break
		}
		select {
		case <-exited:
			client.Close()
			return nil, 0, errors.New("redis-server exited: " + out.String())
		default:
		}
		if time.Now().After(deadline) {
			client.Close()
			stop()
			return nil, 0, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Cleanup(func() {
		client.Close()
		stop()
	})
	return client, cmd.Process.Pid, nil
}

// lockedBuffer collects a child's output, written from exec's copying
// goroutines and read after exit.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
