package server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/jsonrpc"
	"github.com/vmcp/vmcp/parse"
	"github.com/vmcp/vmcp/sessions"
	"github.com/vmcp/vmcp/telemetry"
)

// errUnknownSession makes mcp-go answer 404, telling the client to start a
// new session.
var errUnknownSession = errors.New("unknown session")

// How sessions are bounded.
const (
	// maxSweepEvery is the longest time between two looks for idle
	// sessions, so a session ends within it after its idle timeout.
	maxSweepEvery = 30 * time.Second
	// unboundFor is how long a session may stay without an identity (an
	// initialize whose answer never got out) before the sweep ends it.
	unboundFor = time.Minute
	// evictableAfter is how long a session must have gone unused before
	// a new session of the same identity may end it; a caller whose every
	// session was used more recently is refused instead.
	evictableAfter = 10 * time.Second
	// globalRetryAfter is the Retry-After of a refusal at maxSessions.
	globalRetryAfter = 10 * time.Second
	// codeSessionLimit is the JSON-RPC error code of a refused session:
	// an implementation-defined server error, outside the -32020..-32099
	// that MCP reserves.
	codeSessionLimit = -32000
)

// sessionIDs issues MCP session ids, remembers the live ones (so that a
// deleted, expired or made-up id is refused with 404 instead of being taken
// at its word), which identity each belongs to and when a request last
// named it. It implements mcp-go's SessionIdManager. Once started (start)
// it bounds the sessions: in all, per identity, and in idle time.
type sessionIDs struct {
	mu sync.RWMutex
	// live maps a session id to its session.
	live map[string]*liveSession
	// owned maps an owner to its sessions, by id.
	owned map[string]map[string]*liveSession
	// pending counts the places reserved by refuseNew for initializes
	// mcp-go is serving, in all and by owner, so that initializes that
	// arrive together cannot pass the bounds together.
	pending   int
	pendingBy map[string]int

	// store is the session store shared by every replica, nil with
	// sessions.store: memory (store.go).
	store *sessionStore
	// endBackends ends the backend sessions of a session ended in the
	// store (expired, evicted, deleted); changed tells this replica's
	// listeners that a session's record changed. Set with store.
	endBackends func(ctx context.Context, sessions []backends.SessionData)
	changed     func(id string)
	// onEnd, when set, runs when a session ends on this replica (with a
	// store: mcp-go registers a session opened elsewhere only while its
	// GET stream is here, so its unregister hook cannot tell).
	onEnd func(id string)
	// deliver hands mcp-go a client's response that another replica
	// received for the GET stream this one holds; set by start.
	deliver func(id string, body []byte)

	// Set by start; zero: no bound.
	max, perOwner int
	idle          time.Duration
	// end ends a session as a DELETE does; nil: Terminate alone.
	end func(id string)
	log *slog.Logger
	now func() time.Time

	refusedAll, refusedOwner, evicted, expired atomic.Int64
	lastWarn                                   atomic.Int64 // Unix ns of the last refusal warning
}

// liveSession is one live session.
type liveSession struct {
	// owner is the issuer and subject of the identity that initialised
	// it, "" until bound.
	owner string
	// used is when a request last named it, Unix ns.
	used atomic.Int64
	// busy counts the requests in flight that name it, open GET streams
	// included (hold): a busy session is neither idle nor evictable.
	busy atomic.Int32
	// ending is set, under sessionIDs.mu, once the session is being ended
	// (idle, evicted): no request may start on it any more.
	ending atomic.Bool
	// caps are the capabilities the client declared in initialize, nil
	// when unknown.
	caps *mcp.ClientCapabilities
	// touched is when the session's expiry in the store was last slid
	// (Unix ns); unverified is set when the store may have lost it while
	// this replica was not listening (sessions store: redis only).
	touched    atomic.Int64
	unverified atomic.Bool
	// mu guards stream and ended.
	mu sync.Mutex
	// stream ends the session's open GET stream: when the session ends
	// (Terminate), or when another GET stream replaces it.
	stream *context.CancelFunc
	ended  bool
}

// hold marks session id in use until release is called: a request in
// flight (a GET stream for as long as it is open) keeps it from idle
// expiry and from eviction. stop, when not nil, is a GET stream's end: it
// is called when the session ends, and when another GET stream of the
// session replaces it (one per session, so one session cannot hold many
// connections open). An id vmcp does not know holds nothing; one being
// ended holds nothing either, and ok is false: the request must not start.
func (s *sessionIDs) hold(id string, stop context.CancelFunc) (release func(), ok bool) {
	s.mu.RLock()
	ls, live := s.live[id]
	if live && ls.ending.Load() {
		s.mu.RUnlock()
		return func() {}, false
	}
	if live {
		// Under the lock, so that a sweep or an eviction, which decide
		// under the write lock, see it.
		ls.busy.Add(1)
	}
	s.mu.RUnlock()
	if !live {
		return func() {}, true
	}
	var key *context.CancelFunc
	if stop != nil {
		key = &stop
		ls.mu.Lock()
		ended, previous := ls.ended, ls.stream
		if !ended {
			ls.stream = key
		}
		ls.mu.Unlock()
		if previous != nil {
			(*previous)()
		}
		if ended {
			stop()
		}
	}
	return func() {
		if key != nil {
			ls.mu.Lock()
			if ls.stream == key {
				ls.stream = nil
			}
			ls.mu.Unlock()
		}
		ls.used.Store(s.now().UnixNano())
		ls.busy.Add(-1)
	}, true
}

// end ends what holds ls open: its GET stream.
func (ls *liveSession) end() {
	ls.mu.Lock()
	stream := ls.stream
	ls.stream, ls.ended = nil, true
	ls.mu.Unlock()
	if stream != nil {
		(*stream)()
	}
}

func newSessionIDs() *sessionIDs {
	return &sessionIDs{live: make(map[string]*liveSession), owned: make(map[string]map[string]*liveSession),
		pendingBy: make(map[string]int), now: time.Now, log: slog.Default()}
}

// start bounds the sessions by server.maxSessions and
// server.maxSessionsPerIdentity and ends those idle for
// sessions.ttl, within maxSweepEvery of it, through mcp's DELETE
// handling (so its unregister hooks close the backend sessions). It returns
// the sweeper's stop, which waits for it.
func (s *sessionIDs) start(cfg config.Config, mcpHTTP *mcpserver.StreamableHTTPServer, log *slog.Logger) (stop func() error) {
	s.deliver = func(id string, body []byte) {
		h := http.Header{}
		h.Set(mcpserver.HeaderKeySessionID, id)
		h.Set("Content-Type", "application/json")
		mcpHTTP.Handle(discardResponse{h: http.Header{}}, &mcpserver.HTTPRequest{
			Method: http.MethodPost, Header: h, Body: body, Context: context.Background()})
	}
	return s.run(cfg.Server.MaxSessions, cfg.Server.MaxSessionsPerIdentity, cfg.Sessions.TTL.D(), log, func(id string) {
		h := http.Header{}
		h.Set(mcpserver.HeaderKeySessionID, id)
		mcpHTTP.Handle(discardResponse{h: http.Header{}}, &mcpserver.HTTPRequest{
			Method: http.MethodDelete, Header: h, Context: context.Background()})
	})
}

// run is start with the idle timeout and the end of a session given.
func (s *sessionIDs) run(maxAll, perOwner int, idle time.Duration, log *slog.Logger, end func(string)) (stop func() error) {
	s.mu.Lock()
	s.max, s.perOwner, s.idle, s.end, s.log = maxAll, perOwner, idle, end, log
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { // owned by s: ends with stop
		t := time.NewTicker(max(min(idle/4, maxSweepEvery), time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.sweep()
			}
		}
	})
	if s.store != nil {
		// Watch only queues: ending a session may wait on a backend.
		events := make(chan sessions.Event, storeEventQueue)
		wg.Go(func() { s.store.rs.Watch(ctx, func(e sessions.Event) { s.queueEvent(events, e) }) }) // owned by s: ends with stop
		wg.Go(func() {                                                                              // likewise
			for {
				select {
				case <-ctx.Done():
					return
				case e := <-events:
					s.storeEvent(e)
				}
			}
		})
		wg.Go(func() { s.maintainStore(ctx) }) // likewise
	}
	var once sync.Once
	return func() error {
		once.Do(cancel)
		wg.Wait()
		return nil
	}
}

// Generate issues a new id: 128 random bits.
func (s *sessionIDs) Generate() string {
	id := "mcp-session-" + rand.Text()
	ls := &liveSession{}
	ls.used.Store(s.now().UnixNano())
	ls.touched.Store(ls.used.Load()) // the store's Create sets its expiry
	s.mu.Lock()
	s.live[id] = ls
	s.mu.Unlock()
	return id
}

// Validate accepts live ids only.
func (s *sessionIDs) Validate(id string) (isTerminated bool, err error) {
	if !s.valid(id) {
		return false, errUnknownSession
	}
	return false, nil
}

// valid reports whether id is live (and not being ended); a live one
// counts as used now.
func (s *sessionIDs) valid(id string) bool {
	s.mu.RLock()
	ls, ok := s.live[id]
	s.mu.RUnlock()
	ok = ok && !ls.ending.Load()
	if ok {
		ls.used.Store(s.now().UnixNano())
	}
	return ok
}

// bind records owner as the owner of a live, unbound session. A session
// beyond the owner's bound (sessions opened at once, past refuseNew
// together) makes room by ending the owner's least recently used one, if
// it is idle enough.
func (s *sessionIDs) bind(id, owner string) { s.bindWith(id, owner, nil) }

// bindWith is bind that also records the client's capabilities.
func (s *sessionIDs) bindWith(id, owner string, caps *mcp.ClientCapabilities) {
	s.mu.Lock()
	ls, ok := s.live[id]
	if !ok || ls.owner != "" || owner == "" {
		s.mu.Unlock()
		return
	}
	ls.owner, ls.caps = owner, caps
	s.ownLocked(id, ls)
	s.mu.Unlock()
}

// ownLocked records ls, session id, among its owner's sessions. s.mu is
// held for writing.
func (s *sessionIDs) ownLocked(id string, ls *liveSession) {
	own := s.owned[ls.owner]
	if own == nil {
		own = make(map[string]*liveSession)
		s.owned[ls.owner] = own
	}
	own[id] = ls
}

// usableBy reports whether the session id may be used by owner: it is
// unknown to vmcp (mcp-go then refuses it) or bound to that owner.
func (s *sessionIDs) usableBy(id, owner string) bool {
	s.mu.RLock()
	ls, ok := s.live[id]
	s.mu.RUnlock()
	if !ok {
		return true
	}
	if ls.owner == "" || ls.owner == owner {
		ls.used.Store(s.now().UnixNano())
		return true
	}
	return false
}

// Terminate forgets id; later requests with it get 404, and its open GET
// streams end.
func (s *sessionIDs) Terminate(id string) (isNotAllowed bool, err error) {
	s.mu.Lock()
	ls, ok := s.live[id]
	if ok {
		delete(s.live, id)
		if own := s.owned[ls.owner]; own != nil {
			delete(own, id)
			if len(own) == 0 {
				delete(s.owned, ls.owner)
			}
		}
	}
	s.mu.Unlock()
	if ok {
		ls.end()
		if s.onEnd != nil {
			s.onEnd(id)
		}
	}
	return false, nil
}

// refuseNew answers a request that would open a session beyond the bounds,
// and reports whether it did; the endpoint calls it before handing the
// request to mcp-go. Only an initialize of a session-based revision opens a
// session. At server.maxSessions it is refused with 503. At
// server.maxSessionsPerIdentity for owner, owner's least recently used
// session is ended to make room when no request has named it for
// evictableAfter; otherwise the initialize is refused with 429 and the
// time until that session may be ended.
func (s *sessionIDs) refuseNew(w http.ResponseWriter, r *http.Request, p *parse.Parsed, owner string) (refused bool, ns *newSession) {
	if p.Method != string(mcp.MethodInitialize) || p.Batch ||
		mcp.IsModernProtocol(r.Header.Get(mcpserver.HeaderKeyProtocolVersion)) || mcp.IsModernProtocol(p.ProtocolVersion) {
		return false, nil
	}
	if s.store != nil {
		return s.admitStored(w, r, p, owner)
	}
	perOwner := owner != "" && owner != anonymousOwner && s.perOwner > 0
	s.mu.Lock()
	full := s.max > 0 && len(s.live)+s.pending >= s.max
	var victim string
	var wait time.Duration
	if !full && perOwner && len(s.owned[owner])+s.pendingBy[owner] >= s.perOwner {
		victim, wait = s.evictableLocked(owner, "")
		if victim == "" && wait == 0 {
			wait = time.Second // every place is an initialize being served
		}
	}
	if !full && wait == 0 {
		// Reserved until mcp-go has answered and bind has run.
		s.pending++
		s.pendingBy[owner]++
	}
	s.mu.Unlock()
	switch {
	case full:
		s.refuseAll(w, p)
		return true, nil
	case wait > 0:
		s.refuseOwner(w, p, wait)
		return true, nil
	case victim != "":
		s.evict(victim)
	}
	return false, &newSession{s: s, owner: owner, params: p.Params, release: func() {
		s.mu.Lock()
		s.pending--
		if s.pendingBy[owner]--; s.pendingBy[owner] <= 0 {
			delete(s.pendingBy, owner)
		}
		s.mu.Unlock()
	}}
}

// newSession is an initialize let in by refuseNew: its place is reserved
// until done.
type newSession struct {
	s      *sessionIDs
	owner  string
	params []byte // the initialize's params
	// admission is the place the store reserved (sessions.store: redis).
	admission *sessions.Admission
	release   func()
	created   bool
	// failed names a session whose record the store did not take: it is
	// ended here once mcp-go is done with it (abandon).
	failed string
}

// create binds session id, which mcp-go issued for the initialize, to its
// owner and, with a store, records it there, before the answer goes out:
// the client's next request may reach another replica. An error means
// the session could not be recorded and is gone.
func (n *newSession) create(ctx context.Context, id string) error {
	var init struct {
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
		ClientInfo      json.RawMessage `json:"clientInfo"`
	}
	_ = json.Unmarshal(n.params, &init) // mcp-go has checked them
	var caps mcp.ClientCapabilities
	_ = json.Unmarshal(init.Capabilities, &caps)
	n.s.bindWith(id, n.owner, &caps)
	if n.admission == nil || n.created {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	err := n.s.store.rs.Create(cctx, *n.admission, id, sessions.Record{Owner: n.owner, ProtocolVersion: init.ProtocolVersion,
		Capabilities: init.Capabilities, ClientInfo: init.ClientInfo})
	if err != nil {
		n.s.log.Warn("new session refused: the session store did not take it", "error", err)
		n.failed = id
		if errors.Is(err, context.DeadlineExceeded) {
			// Redis may have taken it after all: remove it, or it counts
			// against the bounds until it expires.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
			_, _, _ = n.s.store.rs.Delete(dctx, id)
			cancel()
		}
		return errStoreUnavailable
	}
	n.created = true
	return nil
}

// abandon ends, here, a session whose record the store did not take, once
// mcp-go has registered it.
func (n *newSession) abandon() {
	if n.failed != "" {
		n.s.endSession(n.failed)
	}
}

// done gives the reserved place back; a created session holds it now.
func (n *newSession) done() {
	if n.release != nil {
		n.release()
	}
	if n.admission != nil && !n.created {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		if err := n.s.store.rs.Release(ctx, *n.admission); err != nil {
			n.s.log.Debug("give back a session place", "error", err)
		}
	}
}

// refuseAll answers an initialize refused at server.maxSessions: 503.
func (s *sessionIDs) refuseAll(w http.ResponseWriter, p *parse.Parsed) {
	s.refusedAll.Add(1)
	s.warn("new session refused: server.maxSessions are live", "max_sessions", s.max)
	refuseSession(w, p, http.StatusServiceUnavailable, globalRetryAfter,
		"server at its session limit (server.maxSessions); retry later", "max_sessions")
}

// refuseOwner answers an initialize refused at
// server.maxSessionsPerIdentity: 429, retry after wait.
func (s *sessionIDs) refuseOwner(w http.ResponseWriter, p *parse.Parsed, wait time.Duration) {
	s.refusedOwner.Add(1)
	s.warn("new session refused: the identity has server.maxSessionsPerIdentity sessions, all in recent use",
		"max_sessions_per_identity", s.perOwner)
	refuseSession(w, p, http.StatusTooManyRequests, wait,
		"too many sessions for this identity (server.maxSessionsPerIdentity); end one (DELETE) or retry later", "max_sessions_per_identity")
}

// anonymousOwner is the owner of anonymous requests: every anonymous
// client is that one identity, so the per-identity bound does not apply
// to it (one anonymous client would end the others' sessions); the total
// bound does.
const anonymousOwner = auth.AnonymousIssuer + "\n" + auth.AnonymousSubject

// warn logs a refusal, at most once per refusedLogEvery; the counters
// in counts have them all.
func (s *sessionIDs) warn(msg string, args ...any) {
	now, last := s.now().UnixNano(), s.lastWarn.Load()
	if last != 0 && now-last < int64(refusedLogEvery) || !s.lastWarn.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn(msg, args...)
}

// evictableLocked returns owner's least recently used session other than
// keep, marked as ending, if no request has named it for evictableAfter and
// none is in flight on it, else "" and the wait until it may be ended. The
// write lock s.mu is held.
func (s *sessionIDs) evictableLocked(owner, keep string) (id string, wait time.Duration) {
	var lru string
	oldest := int64(math.MaxInt64)
	for sid, ls := range s.owned[owner] {
		if u := ls.used.Load(); sid != keep && ls.busy.Load() == 0 && u < oldest {
			lru, oldest = sid, u
		}
	}
	if lru == "" {
		return "", 0
	}
	idle := s.now().Sub(time.Unix(0, oldest))
	if idle < evictableAfter {
		return "", evictableAfter - idle
	}
	s.owned[owner][lru].ending.Store(true) // no request starts on it now
	return lru, 0
}

// evict ends id, here if this replica holds it, to make room for another
// session of its owner.
func (s *sessionIDs) evict(id string) {
	s.evicted.Add(1)
	s.log.Info("session ended to make room for a new one of the same identity (server.maxSessionsPerIdentity)",
		"session_prefix", prefix(id))
	s.endLocal(id)
}

// sweep ends the sessions no request has named for the idle timeout and
// none is in flight on. The choice is made under the write lock, and a
// chosen session is marked as ending, so no request starts on it after.
func (s *sessionIDs) sweep() {
	cutoff := s.now().Add(-s.idle).UnixNano()
	// A session never bound to an identity is an initialize that got no
	// answer out (its client went away): it goes sooner.
	unbound := s.now().Add(-min(s.idle, unboundFor)).UnixNano()
	var idle []string
	s.mu.Lock()
	for id, ls := range s.live {
		last := cutoff
		if ls.owner == "" {
			last = unbound
		}
		if ls.used.Load() <= last && ls.busy.Load() == 0 && !ls.ending.Load() {
			ls.ending.Store(true)
			idle = append(idle, id)
		}
	}
	s.mu.Unlock()
	for _, id := range idle {
		s.expired.Add(1)
		s.log.Debug("idle session ended", "session_prefix", prefix(id), "idle_timeout", s.idle)
		s.endSession(id)
	}
}

// endSession ends id as a DELETE would, or only forgets it when there is
// no end.
func (s *sessionIDs) endSession(id string) {
	if s.end != nil {
		s.end(id)
	}
	_, _ = s.Terminate(id) // in case end did not (mcp-go already had let it go)
}

// counts returns the session bounds' counters.
func (s *sessionIDs) counts() telemetry.SessionCounts {
	return telemetry.SessionCounts{
		RefusedMax: s.refusedAll.Load(), RefusedPerIdentity: s.refusedOwner.Load(),
		Evicted: s.evicted.Load(), Expired: s.expired.Load(),
	}
}

// refuseSession answers an initialize refused by a session bound: status,
// Retry-After (whole seconds, rounded up) and a JSON-RPC error echoing its
// id, whose data names the bound.
func refuseSession(w http.ResponseWriter, p *parse.Parsed, status int, retry time.Duration, msg, reason string) {
	secs := max(int64(math.Ceil(retry.Seconds())), 1)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	jsonrpc.WriteError(w, status, p.ID, jsonrpc.Error{Code: codeSessionLimit, Message: msg,
		Data: map[string]any{"retryAfterSeconds": secs, "reason": reason}})
}

// discardResponse is the response writer of a DELETE vmcp sends mcp-go
// itself to end a session.
type discardResponse struct{ h http.Header }

func (d discardResponse) Header() http.Header         { return d.h }
func (d discardResponse) WriteHeader(int)             {}
func (d discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (d discardResponse) Flush()                      {}
func (d discardResponse) CanStream() bool             { return false }
