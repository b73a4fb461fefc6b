package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/parse"
	"github.com/vmcp/vmcp/sessions"
)

// With sessions.store: redis, every session is a record in Redis
// (sessions.Redis) and each replica keeps the sessions it has seen in its
// own table (sessionIDs), as a cache:
//
//   - a request naming a session this replica does not know reads the
//     record once (one round trip) and adopts it: identity binding and
//     the client's capabilities; after that the session costs no round
//     trip on this replica, except a touch, batched, at most once per
//     touchEvery per session, which slides its expiry;
//   - a session ended anywhere (DELETE, eviction at the per-identity
//     bound, expiry) is published on the store's channel, and every
//     replica forgets it at once (and ends its GET stream there);
//   - a replica that loses the channel (Redis restarted or unreachable)
//     marks every cached session unverified when it is back: the next
//     request on each reads the record again (404 if Redis lost it);
//     while Redis is down, cached sessions keep working and new ones are
//     refused;
//   - a touch that finds the record gone ends the session here too, so
//     a replica is at most touchEvery behind a missed message.
//
// A replica's table forgets a session idle there for the session TTL; its
// record stays in Redis as long as some replica touches it.

// How a replica uses the session store.
const (
	// storeTimeout bounds one round trip to the store made on a request's
	// path: a request never waits longer for Redis.
	storeTimeout = time.Second
	// maxTouchEvery bounds how often a session's expiry is slid.
	maxTouchEvery = time.Minute
	// flushTouchesEvery is how often touches are sent, in one pipeline.
	flushTouchesEvery = time.Second
	// storeSweepEvery is how often a replica ends expired sessions.
	storeSweepEvery = 30 * time.Second
)

// errStoreUnavailable answers a request the session store could not
// decide (Redis down or slow).
var errStoreUnavailable = errors.New("session store unavailable")

// sessionStore is a replica's use of the Redis session store.
type sessionStore struct {
	rs         *sessions.Redis
	touchEvery time.Duration
	log        *slog.Logger

	mu      sync.Mutex
	touches map[string]struct{}
}

func newSessionStore(rs *sessions.Redis, log *slog.Logger) *sessionStore {
	return &sessionStore{rs: rs, log: log, touchEvery: min(rs.TTL()/10, maxTouchEvery), touches: make(map[string]struct{})}
}

// touch queues id's expiry to be slid with the next flush.
func (st *sessionStore) touch(id string) {
	st.mu.Lock()
	st.touches[id] = struct{}{}
	st.mu.Unlock()
}

// flush sends the queued touches and returns the sessions the store no
// longer has.
func (st *sessionStore) flush(ctx context.Context) []string {
	st.mu.Lock()
	ids := make([]string, 0, len(st.touches))
	for id := range st.touches {
		ids = append(ids, id)
	}
	clear(st.touches)
	st.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	gone, err := st.rs.Touch(ctx, ids)
	if err != nil {
		st.log.Warn("slide the expiry of sessions in use", "sessions", len(ids), "error", err)
		return nil
	}
	return gone
}

// backendSessions returns a record's backend sessions.
func backendSessions(rec sessions.Record) []backends.SessionData {
	out := make([]backends.SessionData, 0, len(rec.Backends))
	for _, raw := range rec.Backends {
		var d backends.SessionData
		if json.Unmarshal(raw, &d) == nil {
			out = append(out, d)
		}
	}
	return out
}

// backendStore is the session store as the backends see it
// (backends.SessionStore).
type backendStore struct{ rs *sessions.Redis }

func (b backendStore) Load(ctx context.Context, session string) (backends.ClientState, error) {
	rec, err := b.rs.Get(ctx, session)
	if err != nil {
		return backends.ClientState{}, err
	}
	st := backends.ClientState{LogLevel: mcp.LoggingLevel(rec.LogLevel), Subscriptions: rec.Subscriptions,
		Backends: make(map[string]backends.SessionData, len(rec.Backends))}
	for _, d := range backendSessions(rec) {
		st.Backends[d.Backend] = d
	}
	return st, nil
}

func (b backendStore) Swap(ctx context.Context, session, backend string, prev, next *backends.SessionData) (*backends.SessionData, error) {
	var old, data []byte
	var err error
	if prev != nil {
		if old, err = json.Marshal(prev); err != nil {
			return nil, err
		}
	}
	if next != nil {
		if data, err = json.Marshal(next); err != nil {
			return nil, err
		}
	}
	cur, err := b.rs.ReplaceBackend(ctx, session, backend, old, data)
	if err != nil || cur == nil {
		return nil, err
	}
	var d backends.SessionData
	if err := json.Unmarshal(cur, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func (b backendStore) LogLevel(ctx context.Context, session string, level mcp.LoggingLevel) error {
	return b.rs.SetLogLevel(ctx, session, string(level))
}

func (b backendStore) Subscribed(ctx context.Context, session, backend, uri string, on bool) error {
	return b.rs.Subscribe(ctx, session, backend, uri, on)
}

var _ backends.SessionStore = backendStore{}

// lookup checks that id names a live session: one this replica holds, or,
// with a store, one the store has (read once, then held here). It returns
// errUnknownSession for an unknown or ended session and
// errStoreUnavailable when the store cannot tell; a session held here
// keeps working while the store is down.
func (s *sessionIDs) lookup(ctx context.Context, id string) error {
	s.mu.RLock()
	ls, ok := s.live[id]
	s.mu.RUnlock()
	if ok && ls.ending.Load() {
		return errUnknownSession
	}
	if ok && (s.store == nil || !ls.unverified.Load()) {
		s.use(id, ls)
		return nil
	}
	if s.store == nil {
		return errUnknownSession
	}
	rctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	rec, err := s.store.rs.Get(rctx, id)
	switch {
	case errors.Is(err, sessions.ErrNotFound):
		if ok {
			s.log.Info("session lost by the session store; ended here too", "session_prefix", prefix(id))
			s.endLocal(id)
		}
		return errUnknownSession
	case err != nil && ok:
		s.use(id, ls) // the store is down: what this replica holds serves
		return nil
	case err != nil:
		s.warn("session store unavailable: a request on a session this replica does not hold is refused", "error", err)
		return errStoreUnavailable
	case ok:
		ls.unverified.Store(false)
		s.use(id, ls)
		return nil
	}
	s.adopt(id, rec)
	return nil
}

// use marks ls used now, and queues a touch of its expiry in the store
// when the last one is touchEvery old.
func (s *sessionIDs) use(id string, ls *liveSession) {
	now := s.now().UnixNano()
	ls.used.Store(now)
	if s.store == nil {
		return
	}
	if last := ls.touched.Load(); now-last >= int64(s.store.touchEvery) && ls.touched.CompareAndSwap(last, now) {
		s.store.touch(id)
	}
}

// adopt holds here a session another replica opened, as its record says.
func (s *sessionIDs) adopt(id string, rec sessions.Record) {
	ls := &liveSession{owner: rec.Owner}
	var caps mcp.ClientCapabilities
	if json.Unmarshal(rec.Capabilities, &caps) == nil {
		ls.caps = &caps
	}
	now := s.now().UnixNano()
	ls.used.Store(now)
	ls.touched.Store(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.live[id]; ok {
		return // adopted meanwhile
	}
	s.live[id] = ls
	if ls.owner != "" {
		own := s.owned[ls.owner]
		if own == nil {
			own = make(map[string]*liveSession)
			s.owned[ls.owner] = own
		}
		own[id] = ls
	}
}

// holdsStream reports whether session id's GET stream is open on this
// replica.
func (s *sessionIDs) holdsStream(id string) bool {
	s.mu.RLock()
	ls, ok := s.live[id]
	s.mu.RUnlock()
	if !ok {
		return false
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.stream != nil
}

// capsOf returns the capabilities the client of session id declared, if
// this replica knows them.
func (s *sessionIDs) capsOf(id string) (mcp.ClientCapabilities, bool) {
	s.mu.RLock()
	ls, ok := s.live[id]
	s.mu.RUnlock()
	if !ok || ls.caps == nil {
		return mcp.ClientCapabilities{}, false
	}
	return *ls.caps, true
}

// endLocal ends session id on this replica only (its GET stream, its
// state in mcp-go and the backends), if this replica holds it.
func (s *sessionIDs) endLocal(id string) {
	s.mu.RLock()
	_, ok := s.live[id]
	s.mu.RUnlock()
	if ok {
		s.endSession(id)
	}
}

// admitStored is refuseNew with the store: the bounds hold over every
// replica.
func (s *sessionIDs) admitStored(w http.ResponseWriter, r *http.Request, p *parse.Parsed, owner string) (bool, *newSession) {
	lim := sessions.Limits{Max: s.max, EvictableAfter: evictableAfter}
	if owner != "" && owner != anonymousOwner {
		lim.PerOwner = s.perOwner
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	a, err := s.store.rs.Admit(ctx, owner, lim)
	var refused *sessions.RefusedError
	switch {
	case errors.As(err, &refused) && refused.Owner:
		s.refusedOwner.Add(1)
		s.warn("new session refused: the identity has server.maxSessionsPerIdentity sessions, all in recent use",
			"max_sessions_per_identity", s.perOwner)
		refuseSession(w, p, http.StatusTooManyRequests, refused.RetryAfter,
			"too many sessions for this identity (server.maxSessionsPerIdentity); end one (DELETE) or retry later", "max_sessions_per_identity")
		return true, nil
	case errors.As(err, &refused):
		s.refusedAll.Add(1)
		s.warn("new session refused: server.maxSessions are live", "max_sessions", s.max)
		refuseSession(w, p, http.StatusServiceUnavailable, globalRetryAfter,
			"server at its session limit (server.maxSessions); retry later", "max_sessions")
		return true, nil
	case err != nil:
		s.warn("new session refused: the session store is unavailable", "error", err)
		refuseSession(w, p, http.StatusServiceUnavailable, time.Second,
			"session store unavailable: cannot open a session now; retry later", "session_store")
		return true, nil
	}
	if a.Evicted != "" {
		s.evicted.Add(1)
		s.log.Info("session ended to make room for a new one of the same identity (server.maxSessionsPerIdentity)",
			"session_prefix", prefix(a.Evicted))
		s.endBackends(backendSessions(a.EvictedRecord))
		s.endLocal(a.Evicted)
	}
	return false, &newSession{s: s, owner: owner, params: p.Params, admission: &a}
}

// deleteStored ends session id in the store, for every replica, and its
// backend sessions: the client sent DELETE.
func (s *sessionIDs) deleteStored(ctx context.Context, id string) {
	if s.store == nil || id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	rec, ok, err := s.store.rs.Delete(ctx, id)
	if err != nil {
		s.log.Warn("end a session in the session store; it expires there by itself", "session_prefix", prefix(id), "error", err)
		return
	}
	if ok {
		s.endBackends(backendSessions(rec))
	}
}

// storeEvent applies what another replica (or this one) did to a session.
func (s *sessionIDs) storeEvent(e sessions.Event) {
	switch e.Kind {
	case sessions.EventEnded:
		s.endLocal(e.ID)
	case sessions.EventChanged:
		s.changed(e.ID)
	case sessions.EventResponse:
		if s.holdsStream(e.ID) {
			s.deliver(e.ID, e.Body)
		}
	case sessions.EventReset:
		s.mu.RLock()
		for _, ls := range s.live {
			ls.unverified.Store(true)
		}
		n := len(s.live)
		s.mu.RUnlock()
		s.log.Info("session store reachable again: each session held here is read again on its next request", "sessions", n)
	}
}

// maintainStore sends the batched touches, ends here the sessions they
// find gone, and ends the sessions that expired in the store (with their
// backend sessions), until ctx ends.
func (s *sessionIDs) maintainStore(ctx context.Context) {
	touches := time.NewTicker(flushTouchesEvery)
	defer touches.Stop()
	sweep := time.NewTicker(storeSweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-touches.C:
			for _, id := range s.store.flush(ctx) {
				s.endLocal(id)
			}
		case <-sweep.C:
			sctx, cancel := context.WithTimeout(ctx, storeTimeout)
			ended, err := s.store.rs.Sweep(sctx, 1000)
			cancel()
			if err != nil {
				s.log.Debug("end expired sessions in the session store", "error", err)
				continue
			}
			for _, e := range ended {
				s.expired.Add(1)
				s.endBackends(backendSessions(e.Record))
				s.endLocal(e.ID)
			}
		}
	}
}
