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

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/outauth"
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
	// storeEventQueue bounds the events from the store not applied yet.
	storeEventQueue = 4096
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
	// ends are the DELETEs waiting for their own end message, by session.
	ends map[string]chan struct{}
}

// awaitEnd returns a channel closed when the end of session id comes back
// on the store's channel.
func (st *sessionStore) awaitEnd(id string) chan struct{} {
	ch := make(chan struct{})
	st.mu.Lock()
	st.ends[id] = ch
	st.mu.Unlock()
	return ch
}

func (st *sessionStore) forgetEnd(id string, ch chan struct{}) {
	st.mu.Lock()
	if st.ends[id] == ch {
		delete(st.ends, id)
	}
	st.mu.Unlock()
}

// ended closes the channel of a DELETE waiting for session id's end.
func (st *sessionStore) ended(id string) {
	st.mu.Lock()
	ch := st.ends[id]
	delete(st.ends, id)
	st.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

func newSessionStore(rs *sessions.Redis, log *slog.Logger) *sessionStore {
	return &sessionStore{rs: rs, log: log, touchEvery: min(rs.TTL()/10, maxTouchEvery), touches: make(map[string]struct{}), ends: make(map[string]chan struct{})}
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

// endingCtx returns the context rec's backend sessions are ended with:
// ctx when it is the request of rec's owner (whose token may be exchanged
// for the backends' DELETE), else a context naming the owner, whose cached
// credentials the DELETE may use (outauth.OnBehalf).
func endingCtx(ctx context.Context, rec sessions.Record) context.Context {
	if id, ok := auth.IdentityFrom(ctx); ok && identityOwner(id) == rec.Owner {
		return ctx
	}
	return outauth.OnBehalf(context.Background(), ownerCaller(rec.Owner))
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
	s.mu.RLock()
	ls = s.live[id]
	s.mu.RUnlock()
	if ls != nil {
		s.use(id, ls)
	}
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

// touchBusy counts the sessions with a request in flight here (a long
// call, an open GET stream) as used: they must not expire in the store,
// nor be evicted for their identity's bound, while no new request names
// them.
func (s *sessionIDs) touchBusy() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for id, ls := range s.live {
		if ls.busy.Load() > 0 {
			s.use(id, ls)
		}
	}
}

// adopt holds here a session another replica opened, as its record says.
// Its first use here touches it in the store: that slides the expiry of a
// session resumed here near its end, and finds one ended while it was
// being read.
func (s *sessionIDs) adopt(id string, rec sessions.Record) {
	ls := &liveSession{owner: rec.Owner}
	var caps mcp.ClientCapabilities
	if json.Unmarshal(rec.Capabilities, &caps) == nil {
		ls.caps = &caps
	}
	ls.used.Store(s.now().UnixNano())
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.live[id]; ok {
		return // adopted meanwhile
	}
	s.live[id] = ls
	if ls.owner != "" {
		s.ownLocked(id, ls)
	}
}

// holds reports whether this replica holds session id.
func (s *sessionIDs) holds(id string) bool {
	s.mu.RLock()
	_, ok := s.live[id]
	s.mu.RUnlock()
	return ok
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
	// The store sees use only through touches, at most touchEvery apart
	// (and busy sessions are touched as often): a session touched within
	// that much more than evictableAfter may be in use.
	lim := sessions.Limits{Max: s.max, EvictableAfter: evictableAfter + s.store.touchEvery + flushTouchesEvery}
	if owner != "" && owner != anonymousOwner {
		lim.PerOwner = s.perOwner
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	a, err := s.store.rs.Admit(ctx, owner, lim)
	var refused *sessions.RefusedError
	switch {
	case errors.As(err, &refused) && refused.Owner:
		s.refuseOwner(w, p, refused.RetryAfter)
		return true, nil
	case errors.As(err, &refused):
		s.refuseAll(w, p)
		return true, nil
	case err != nil:
		s.warn("new session refused: the session store is unavailable", "error", err)
		refuseSession(w, p, http.StatusServiceUnavailable, time.Second,
			"session store unavailable: cannot open a session now; retry later", "session_store")
		return true, nil
	}
	if a.Evicted != "" { // ended in the store by Admit
		s.endBackends(endingCtx(r.Context(), a.EvictedRecord), backendSessions(a.EvictedRecord))
		s.evict(a.Evicted)
	}
	return false, &newSession{s: s, owner: owner, params: p.Params, admission: &a}
}

// deleteStored ends session id in the store, for every replica, and its
// backend sessions: the client sent DELETE. An error means the session
// lives on.
func (s *sessionIDs) deleteStored(ctx context.Context, id string) error {
	if s.store == nil || id == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	echo := s.store.awaitEnd(id)
	defer s.store.forgetEnd(id, echo)
	rec, ok, err := s.store.rs.Delete(ctx, id)
	if err != nil {
		s.log.Warn("end a session in the session store", "session_prefix", prefix(id), "error", err)
		return err
	}
	if ok {
		s.endBackends(endingCtx(ctx, rec), backendSessions(rec))
	}
	// Answer once this replica has heard its own message: Redis writes a
	// message to every subscriber at once, so the other replicas have it
	// too, and a request right after the answer finds the session gone.
	select {
	case <-echo:
	case <-ctx.Done():
	}
	return nil
}

// queueEvent queues e for storeEvent; on a full queue it is dropped (an
// ended session is then caught by its next touch, within touchEvery).
func (s *sessionIDs) queueEvent(q chan<- sessions.Event, e sessions.Event) {
	select {
	case q <- e:
	default:
		s.warn("session store events dropped: too many at once", "queue", storeEventQueue)
	}
}

// storeEvent applies what another replica (or this one) did to a session.
func (s *sessionIDs) storeEvent(e sessions.Event) {
	switch e.Kind {
	case sessions.EventEnded:
		s.endLocal(e.ID)
		s.store.ended(e.ID)
	case sessions.EventChanged:
		s.changed(e.ID)
	case sessions.EventResponse:
		// Whichever replica's mcp-go waits for it takes it; the others
		// find nothing pending.
		if s.holds(e.ID) {
			s.deliver(e.ID, e.Body)
		}
	case sessions.EventReset:
		s.mu.RLock()
		ids := make([]string, 0, len(s.live))
		for id, ls := range s.live {
			ls.unverified.Store(true)
			ids = append(ids, id)
		}
		s.mu.RUnlock()
		n := len(ids)
		for _, id := range ids {
			s.changed(id) // a listener reads the record again: changes may have been missed
		}
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
			s.touchBusy()
			for _, id := range s.store.flush(ctx) {
				s.endLocal(id)
			}
		case <-sweep.C:
			sctx, cancel := context.WithTimeout(ctx, storeTimeout)
			if err := s.store.rs.SyncClock(sctx); err != nil {
				s.log.Debug("read Redis's clock", "error", err)
			}
			ended, err := s.store.rs.Sweep(sctx, 1000)
			cancel()
			if err != nil {
				s.log.Debug("end expired sessions in the session store", "error", err)
				continue
			}
			for _, e := range ended {
				s.expired.Add(1)
				s.endBackends(endingCtx(ctx, e.Record), backendSessions(e.Record))
				s.endLocal(e.ID)
			}
		}
	}
}
