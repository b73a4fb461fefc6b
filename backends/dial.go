package backends

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"

	"github.com/vmcp/vmcp/config"
)

// dial starts a client for cfg with opts. live bounds the connection's
// lifetime (the SSE and GET streams, the stdio child); it must outlive the
// connect timeout.
//
// Every request carries headers, and those headerFunc (nil: none) returns
// for its context: the connection's credential, static or per request. They
// are set by the HTTP client's transport (withCredential), so that also the
// requests mcp-go builds without its header options (the DELETE that ends a
// session) carry them.
func dial(live context.Context, cfg config.Backend, headers map[string]string, headerFunc func(context.Context) map[string]string,
	hc *http.Client, log *slog.Logger, opts ...client.ClientOption) (*conn, error) {
	var (
		t   transport.Interface
		c   = &conn{}
		err error
	)
	hc = withCredential(hc, cfg.URL, headers, headerFunc)
	switch cfg.Transport {
	case config.TransportStreamableHTTP:
		var st *transport.StreamableHTTP
		st, err = transport.NewStreamableHTTP(cfg.URL,
			transport.WithHTTPBasicClient(hc),
			transport.WithContinuousListening(),
			transport.WithHTTPLogger(log),
		)
		if err == nil {
			// mcp-go bounds a backend's request by 30 s; see answeringHTTP.
			t = newAnsweringHTTP(st, cfg.URL, hc, requestTimeout(cfg), log)
		}
	case config.TransportSSE:
		t, err = transport.NewSSE(cfg.URL, transport.WithHTTPClient(hc))
	case config.TransportStdio:
		t = newStdio(cfg, c, log)
	default:
		return nil, fmt.Errorf("unsupported transport %q", cfg.Transport)
	}
	if err != nil {
		return nil, fmt.Errorf("%s transport: %w", cfg.Transport, err)
	}
	c.client = client.NewClient(t, opts...)
	if err := c.client.Start(live); err != nil {
		// Close first: once a stdio child is reaped its stderr is complete.
		if cerr := c.close(); cerr != nil {
			log.Debug("close after failed start", "error", cerr)
		}
		return nil, fmt.Errorf("start %s: %w%s", cfg.Transport, err, c.stderrTail())
	}
	return c, nil
}

// stderrWaitDelay bounds how long closing a stdio backend waits for its
// stderr to reach EOF after the child itself has exited.
const stderrWaitDelay = time.Second

// newStdio builds the stdio transport for cfg. The child runs in its own
// process group so that close can end the whole tree (npx, uvx and shells
// start grandchildren); c.kill and c.stderr are filled in here.
func newStdio(cfg config.Backend, c *conn, log *slog.Logger) transport.Interface {
	tail := &tailWriter{max: 4096, log: log}
	c.stderr = tail.String
	var (
		mu  sync.Mutex
		cmd *exec.Cmd
	)
	c.kill = func() {
		mu.Lock()
		defer mu.Unlock()
		if cmd != nil && cmd.Process != nil {
			// The client's Close already ended and reaped the leader; this
			// ends what is left of its group. ESRCH (nothing left) is normal.
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd = nil
		}
	}
	env := make([]string, 0, len(cfg.Env))
	for k, v := range cfg.Env {
		env = append(env, k+"="+v)
	}
	return transport.NewStdioWithOptions(cfg.Command, env, cfg.Args,
		transport.WithCommandFunc(func(_ context.Context, command string, env []string, args []string) (*exec.Cmd, error) {
			mu.Lock()
			defer mu.Unlock()
			// Not CommandContext: the child lives until close, not until
			// the connect timeout.
			cmd = exec.Command(command, args...)
			cmd.Env = append(inheritedEnv(), env...)
			cmd.Dir = cfg.Cwd
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Stderr = tail
			// A grandchild that inherited stderr keeps the pipe open after
			// the child exits; don't wait for it, c.kill ends it.
			cmd.WaitDelay = stderrWaitDelay
			return cmd, nil
		}),
		transport.WithCommandLogger(log),
	)
}

// inheritedEnvKeys are the variables of vmcp's own environment a stdio
// child inherits, as MCP clients do: enough to find programs, a home and a
// locale, and to reach the network through a proxy. Everything else (the
// tokens of other backends' outgoing auth, the Redis password) stays with
// vmcp; a backend that needs more gets it from its env setting.
var inheritedEnvKeys = []string{
	"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
}

func inheritedEnv() []string {
	env := make([]string, 0, len(inheritedEnvKeys))
	for _, k := range inheritedEnvKeys {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// tailWriter keeps the last max bytes written to it and logs each write at
// debug level.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
	max int
	log *slog.Logger
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.log.Debug("backend stderr", "text", strings.TrimRight(string(p), "\n"))
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

// String returns the kept tail, trimmed.
func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSpace(string(w.buf))
}
