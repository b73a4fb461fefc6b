package server

import (
	"container/list"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Refusing a connection beyond server.maxConnections.
const (
	// maxRefusing bounds the refusals being written at once; beyond it an
	// excess connection is closed without an answer.
	maxRefusing = 64
	// refuseWithin bounds writing one refusal and waiting for the client
	// to read it.
	refuseWithin = time.Second
	// refusedLogEvery is the least time between two refusal warnings.
	refusedLogEvery = 10 * time.Second
)

// refusal is what a connection beyond the cap is sent before its request
// is read: a 503 that any HTTP client understands, with a JSON-RPC error
// (no id: the request was not read) for MCP clients that show it, and
// Connection: close.
var refusal = func() string {
	const body = `{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"server busy: too many connections, retry in a second"}}` + "\n"
	return "HTTP/1.1 503 Service Unavailable\r\n" +
		"Retry-After: 1\r\n" +
		"Connection: close\r\n" +
		"Content-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		"\r\n" + body
}()

// connLimiter is a net.Listener that keeps at most max accepted
// connections open. A connection beyond that is answered with refusal and
// closed, by a short-lived goroutine of the limiter (at most maxRefusing
// at once, each bounded by refuseWithin, all ended by Close), so Accept
// never blocks on it and the next client that finds room is served.
//
// Why answer rather than close at once: a bare close is seen as a reset
// or an empty reply, which clients retry at once (or report as a network
// fault), while a 503 with Retry-After says the server is up and when to
// come back, and costs one small write.
type connLimiter struct {
	inner net.Listener
	max   int64
	log   *slog.Logger

	active  atomic.Int64 // open connections handed to the server
	refused atomic.Int64 // connections refused, in all

	// idle holds the accepted connections between requests (keep-alive),
	// least recently idle first (connState): at the cap the oldest is
	// closed to make room before a new connection is refused.
	idleMu sync.Mutex
	idle   list.List // of *limitedConn

	mu       sync.Mutex
	refusing map[net.Conn]struct{} // refusals being written
	closed   bool
	wg       sync.WaitGroup // the refusal goroutines
	lastLog  time.Time
	unlogged int64 // refusals since the last warning
}

// limitConns wraps ln so that at most max connections are open at once.
func limitConns(ln net.Listener, max int, log *slog.Logger) *connLimiter {
	return &connLimiter{inner: ln, max: int64(max), log: log, refusing: make(map[net.Conn]struct{})}
}

var _ net.Listener = (*connLimiter)(nil)

// Accept returns the next connection that fits under the cap, refusing
// those that do not on the way.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			return nil, err
		}
		if l.admit() || (l.closeOldestIdle() && l.admit()) {
			return &limitedConn{c: c, l: l}, nil
		}
		l.refuse(c)
	}
}

// admit takes a place for a new connection, if there is one.
func (l *connLimiter) admit() bool {
	if l.active.Add(1) <= l.max {
		return true
	}
	l.active.Add(-1)
	return false
}

// connState follows the server's connections (http.Server.ConnState): a
// connection waiting for its next request is idle, and closable to make
// room; any other state takes it out of the idle list.
func (l *connLimiter) connState(c net.Conn, state http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.idleMu.Lock()
	defer l.idleMu.Unlock()
	if state == http.StateIdle {
		if lc.idle == nil {
			lc.idle = l.idle.PushBack(lc)
		}
		return
	}
	if lc.idle != nil {
		l.idle.Remove(lc.idle)
		lc.idle = nil
	}
}

// closeOldestIdle closes the connection idle the longest, freeing its
// place, and reports whether there was one. A client that opened many
// connections and left them idle cannot keep others out until the idle
// timeout.
func (l *connLimiter) closeOldestIdle() bool {
	l.idleMu.Lock()
	e := l.idle.Front()
	if e == nil {
		l.idleMu.Unlock()
		return false
	}
	lc := e.Value.(*limitedConn)
	l.idle.Remove(e)
	lc.idle = nil
	l.idleMu.Unlock()
	_ = lc.Close()
	return true
}

// Close closes the listener and ends the refusals in progress.
func (l *connLimiter) Close() error {
	err := l.inner.Close()
	l.mu.Lock()
	l.closed = true
	for c := range l.refusing {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

// Addr is the listener's address.
func (l *connLimiter) Addr() net.Addr { return l.inner.Addr() }

// counts returns the open connections and the refused ones, in all.
func (l *connLimiter) counts() (active, refused int64) {
	return l.active.Load(), l.refused.Load()
}

// refuse answers c with refusal and closes it, in the background; with
// maxRefusing refusals in progress (or the listener closed), it closes c
// at once.
func (l *connLimiter) refuse(c net.Conn) {
	l.refused.Add(1)
	l.mu.Lock()
	l.warnLocked()
	if l.closed || len(l.refusing) >= maxRefusing {
		l.mu.Unlock()
		_ = c.Close()
		return
	}
	l.refusing[c] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	go func() { // owned by l: bounded by refuseWithin, ended by Close
		defer l.wg.Done()
		_ = c.SetDeadline(time.Now().Add(refuseWithin))
		if _, err := io.WriteString(c, refusal); err == nil {
			// Half-close, then read what the client sent until it
			// closes: closing with its request unread would reset the
			// connection and could discard the answer before it is read.
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
		}
		_ = c.Close()
		l.mu.Lock()
		delete(l.refusing, c)
		l.mu.Unlock()
	}()
}

// warnLocked logs a refusal at most once per refusedLogEvery, counting
// those in between. l.mu is held.
func (l *connLimiter) warnLocked() {
	now := time.Now()
	if !l.lastLog.IsZero() && now.Sub(l.lastLog) < refusedLogEvery {
		l.unlogged++
		return
	}
	l.log.Warn("connection refused: server.maxConnections are open",
		"max_connections", l.max, "refused_since_last_warning", l.unlogged+1, "refused_total", l.refused.Load())
	l.lastLog, l.unlogged = now, 0
}

// limitedConn is an accepted connection that gives its place back once
// closed.
type limitedConn struct {
	c    net.Conn
	l    *connLimiter
	once sync.Once
	// idle is its element in l.idle while it is idle; guarded by l.idleMu.
	idle *list.Element
}

var _ net.Conn = (*limitedConn)(nil)

func (c *limitedConn) Close() error {
	err := c.c.Close()
	c.once.Do(func() { c.l.active.Add(-1) })
	return err
}

func (c *limitedConn) Read(p []byte) (int, error)         { return c.c.Read(p) }
func (c *limitedConn) Write(p []byte) (int, error)        { return c.c.Write(p) }
func (c *limitedConn) LocalAddr() net.Addr                { return c.c.LocalAddr() }
func (c *limitedConn) RemoteAddr() net.Addr               { return c.c.RemoteAddr() }
func (c *limitedConn) SetDeadline(t time.Time) error      { return c.c.SetDeadline(t) }
func (c *limitedConn) SetReadDeadline(t time.Time) error  { return c.c.SetReadDeadline(t) }
func (c *limitedConn) SetWriteDeadline(t time.Time) error { return c.c.SetWriteDeadline(t) }

// CloseWrite half-closes a TCP connection, as net/http does before closing
// one whose request it did not read.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
