package server

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// outboxLen bounds the notifications waiting to be written to one client
// session; beyond it they are dropped, counted and logged.
const outboxLen = 256

// flushWait bounds how long a call's handler waits, after the backend
// answered, for the notifications relayed during the call to be written.
const flushWait = 20 * time.Millisecond

// orderGap: a notification that follows the previous one to a session by
// less than this waits until mcp-go has taken the previous one off the
// session's queue (see outboxes).
const orderGap = 2 * time.Millisecond

// outboxes queues the notifications relayed to each client session and
// writes them in order, so that relaying never blocks the backend's reader
// (mcp-go's stdio client calls its notification handler on its read loop,
// and one shared stdio backend serves every client). mcp-go's Streamable
// HTTP server hands a session's notifications to whichever of its streams
// (the call's response, the GET stream) takes them first, so two queued
// together may reach the client out of order (progress must increase): a
// notification that follows another within orderGap is written only once
// the previous one has been taken.
//
// Each session's queue is written by one goroutine, started when something
// is queued and ended when the queue is empty, when the session ends
// (ended) or when the server shuts down (close, which waits for them).
// Sessions vmcp does not know by id (the stateless revision's requests)
// share one queue.
type outboxes struct {
	mu      sync.RWMutex
	byID    map[string]*outbox
	stopped bool
	writers sync.WaitGroup
	// dropped counts the notifications dropped on a full queue.
	dropped atomic.Int64
	// live reports whether a client session id is registered.
	live  func(id string) bool
	onErr func(method string, err error)
	// onDrop is told of the first notification dropped since a queue was
	// last written empty (n 1), and of how many were, once it is (n > 1
	// or 1 again).
	onDrop func(id string, n int, first bool)
}

// outbox is one session's queue.
type outbox struct {
	id      string
	mu      sync.Mutex
	items   []notification
	running bool // a writer goroutine owns the queue
	closed  bool
	dropped int // since the queue was last written empty

	queued  atomic.Int64 // ever queued
	written atomic.Int64 // of those, written (or discarded by ended/close)
	last    atomic.Int64 // when the last one was queued, Unix nanoseconds

	lastWrite time.Time // owned by the running writer
}

// notification is one queued notification and how to write it.
type notification struct {
	session mcpserver.ClientSession
	method  string
	send    func() error
}

// key returns the queue of session id: its own while it is registered,
// otherwise the shared one.
func (q *outboxes) key(id string) string {
	if id != "" && q.live(id) {
		return id
	}
	return ""
}

// get returns the queue of session id, creating it when create is set and
// the outboxes are not closed; nil otherwise.
func (q *outboxes) get(id string, create bool) *outbox {
	q.mu.RLock()
	k := q.key(id)
	o := q.byID[k]
	q.mu.RUnlock()
	if o != nil || !create {
		return o
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	// Again under the write lock: ended deletes the session first and
	// then its queue, so a queue made here for an ended session is not
	// left behind.
	k = q.key(id)
	if o = q.byID[k]; o == nil && !q.stopped {
		if q.byID == nil {
			q.byID = make(map[string]*outbox)
		}
		o = &outbox{id: k}
		q.byID[k] = o
	}
	return o
}

// push queues n for session s. It never blocks.
func (q *outboxes) push(s mcpserver.ClientSession, n notification) {
	o := q.get(s.SessionID(), true)
	if o == nil {
		return
	}
	q.mu.RLock() // writers.Add must not race close's Wait
	defer q.mu.RUnlock()
	if q.stopped {
		return
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	if len(o.items) >= outboxLen {
		o.dropped++
		first := o.dropped == 1
		o.mu.Unlock()
		q.dropped.Add(1)
		if first {
			q.onDrop(o.id, 1, true)
		}
		return
	}
	o.items = append(o.items, n)
	o.queued.Add(1)
	o.last.Store(time.Now().UnixNano())
	start := !o.running
	o.running = true
	o.mu.Unlock()
	if start {
		q.writers.Add(1)
		go q.write(o)
	}
}

// write writes o's notifications in order until none is left.
func (q *outboxes) write(o *outbox) {
	defer q.writers.Done()
	for {
		o.mu.Lock()
		if len(o.items) == 0 || o.closed {
			o.running = false
			dropped := o.dropped
			o.dropped = 0
			o.items = nil
			o.mu.Unlock()
			if dropped > 0 {
				q.onDrop(o.id, dropped, false)
			}
			return
		}
		n := o.items[0]
		o.items[0] = notification{}
		o.items = o.items[1:]
		o.mu.Unlock()
		if time.Since(o.lastWrite) < orderGap {
			drain(n.session.NotificationChannel(), time.Now().Add(flushWait))
		}
		if err := n.send(); err != nil {
			q.onErr(n.method, err)
		}
		o.lastWrite = time.Now()
		o.written.Add(1)
	}
}

// flush waits, at most flushWait, until the notifications queued for
// session s so far are written and mcp-go has taken them off ch, and then
// a moment for the taker to write the last one. It returns at once when
// none was queued since since (Unix nanoseconds).
func (q *outboxes) flush(s mcpserver.ClientSession, since int64) {
	o := q.get(s.SessionID(), false)
	if o == nil || o.last.Load() < since {
		return
	}
	deadline := time.Now().Add(flushWait)
	for target := o.queued.Load(); o.written.Load() < target && time.Now().Before(deadline); {
		time.Sleep(100 * time.Microsecond)
	}
	drain(s.NotificationChannel(), deadline)
}

// drain waits, until deadline at most, until mcp-go has taken every queued
// notification off ch, and then a moment for the taker to write it.
func drain(ch chan<- mcp.JSONRPCNotification, deadline time.Time) {
	for len(ch) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
	time.Sleep(200 * time.Microsecond)
}

// ended discards the queue of a session that ended; its writer stops after
// the notification it is writing. Call it after the session is no longer
// live.
func (q *outboxes) ended(id string) {
	if id == "" {
		return
	}
	q.mu.Lock()
	o := q.byID[id]
	delete(q.byID, id)
	q.mu.Unlock()
	if o != nil {
		o.discard()
	}
}

// close discards every queue, stops queueing and waits for the writers.
func (q *outboxes) close() error {
	q.mu.Lock()
	q.stopped = true
	all := q.byID
	q.byID = nil
	q.mu.Unlock()
	for _, o := range all {
		o.discard()
	}
	q.writers.Wait()
	return nil
}

func (o *outbox) discard() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	o.written.Add(int64(len(o.items)))
	o.items = nil
}
