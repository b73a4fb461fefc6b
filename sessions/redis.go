package sessions

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis keys of one vmcp name (the {name} hash tag keeps them in one
// cluster slot, as the scripts need):
//
//	vmcp:{name}:sessions      sorted set: live session ids (and "p:"
//	                          reservations), scored by expiry (Unix ms)
//	vmcp:{name}:o:<hash>      sorted set: one owner's sessions, same scores
//	vmcp:{name}:s:<id>        hash: one session's record (meta, okey,
//	                          level, b:<backend>, s:<backend>\n<uri>)
//	vmcp:{name}:events        channel: "end <id>", "chg <id>",
//	                          "rsp <id> <client's response>"
//
// The sorted sets decide: a session whose score has passed is expired,
// whatever its hash. The hash outlives it by recordGrace, so the sweep
// that ends it can still close its backend sessions.
const (
	recordGrace = 10 * time.Minute
	// pendingFor is how long a reservation holds room for an initialize.
	pendingFor = 30 * time.Second
	// watchRetry is the pause before the watch tries Redis again.
	watchRetry = 250 * time.Millisecond
)

// Redis is the session store in Redis. Its methods do one round trip each
// and are bounded by the caller's context.
type Redis struct {
	rdb    redis.UniversalClient
	prefix string
	all    string
	events string
	ttl    time.Duration
	now    func() time.Time
	// offset is Redis's clock minus this process's (SyncClock): every
	// replica scores expiry on the one clock, Redis's.
	offset atomic.Int64
}

// NewRedis returns the store of the vmcp instance called name on rdb, in
// which a session no request touched for ttl expires.
func NewRedis(rdb redis.UniversalClient, name string, ttl time.Duration) *Redis {
	prefix := "vmcp:{" + name + "}:"
	s := &Redis{rdb: rdb, prefix: prefix, all: prefix + "sessions", events: prefix + "events", ttl: ttl}
	s.now = func() time.Time { return time.Now().Add(time.Duration(s.offset.Load())) }
	return s
}

// SyncClock measures how far Redis's clock is from this process's, so
// that replicas whose clocks differ still agree on when a session expires
// and which one was used last.
func (s *Redis) SyncClock(ctx context.Context) error {
	before := time.Now()
	t, err := s.rdb.Time(ctx).Result()
	if err != nil {
		return fmt.Errorf("session store: read Redis's clock: %w", err)
	}
	mid := before.Add(time.Since(before) / 2)
	s.offset.Store(int64(t.Sub(mid)))
	return nil
}

// TTL is the sliding expiry of a session.
func (s *Redis) TTL() time.Duration { return s.ttl }

func (s *Redis) recordKey(id string) string { return s.prefix + "s:" + id }

func (s *Redis) ownerKey(owner string) string {
	sum := sha256.Sum256([]byte(owner))
	return s.prefix + "o:" + hex.EncodeToString(sum[:16])
}

func ms(t time.Time) int64 { return t.UnixMilli() }

var admitScript = redis.NewScript(`
local now = tonumber(ARGV[1])
if redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf') >= tonumber(ARGV[2]) then return {'full'} end
local per = tonumber(ARGV[3])
local evicted, rec = false, {}
if per > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= per then
    local cands = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    local victim, score
    for i = 1, #cands, 2 do
      if string.sub(cands[i], 1, 2) ~= 'p:' then victim, score = cands[i], tonumber(cands[i + 1]); break end
    end
    local before = tonumber(ARGV[6])
    if not victim or score > before then
      local wait = 1000
      if victim then wait = score - before end
      return {'owner', tostring(wait)}
    end
    redis.call('ZREM', KEYS[1], victim)
    redis.call('ZREM', KEYS[2], victim)
    local rk = ARGV[7] .. victim
    rec = redis.call('HGETALL', rk)
    redis.call('DEL', rk)
    redis.call('PUBLISH', ARGV[8], 'end ' .. victim)
    evicted = victim
  end
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
end
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[4])
if evicted then return {'evicted', evicted, rec} end
return {'ok'}
`)

// Admit reserves room for a new session of owner within lim. At lim.Max
// it fails with a *RefusedError; at lim.PerOwner it ends owner's least
// recently used session if it went unused for lim.EvictableAfter (the
// Admission names it), or fails with a *RefusedError saying when to retry.
// The room is held until Create or Release, at most 30 s.
func (s *Redis) Admit(ctx context.Context, owner string, lim Limits) (Admission, error) {
	now := s.now()
	a := Admission{token: "p:" + rand.Text()}
	okey := s.all // unused by the script when there is no per-owner bound
	if lim.PerOwner > 0 {
		a.ownerKey = s.ownerKey(owner)
		okey = a.ownerKey
	}
	evictBefore := ms(now.Add(s.ttl - lim.EvictableAfter))
	res, err := admitScript.Run(ctx, s.rdb, []string{s.all, okey},
		ms(now), lim.Max, lim.PerOwner, a.token, ms(now.Add(pendingFor)), evictBefore, s.prefix+"s:", s.events).Slice()
	if err != nil {
		return Admission{}, fmt.Errorf("session store: admit: %w", err)
	}
	switch res[0] {
	case "full":
		return Admission{}, &RefusedError{}
	case "owner":
		wait, _ := strconv.ParseInt(res[1].(string), 10, 64)
		return Admission{}, &RefusedError{Owner: true, RetryAfter: time.Duration(max(wait, 1000)) * time.Millisecond}
	case "evicted":
		a.Evicted = res[1].(string)
		a.EvictedRecord = parseRecord(res[2])
	}
	return a, nil
}

var createScript = redis.NewScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
if ARGV[6] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
end
redis.call('HSET', KEYS[3], 'meta', ARGV[4], 'okey', ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return 1
`)

// Create stores rec as session id in the room a reserved.
func (s *Redis) Create(ctx context.Context, a Admission, id string, rec Record) error {
	meta, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("session store: encode record: %w", err)
	}
	okey := a.ownerKey
	key2 := okey
	if key2 == "" {
		key2 = s.all
	}
	err = createScript.Run(ctx, s.rdb, []string{s.all, key2, s.recordKey(id)},
		a.token, id, ms(s.now().Add(s.ttl)), meta, (s.ttl + recordGrace).Milliseconds(), okey).Err()
	if err != nil {
		return fmt.Errorf("session store: create: %w", err)
	}
	return nil
}

// Release gives back the room a reserved, for an initialize that opened no
// session.
func (s *Redis) Release(ctx context.Context, a Admission) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, s.all, a.token)
		if a.ownerKey != "" {
			p.ZRem(ctx, a.ownerKey, a.token)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("session store: release: %w", err)
	}
	return nil
}

var getScript = redis.NewScript(`
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= tonumber(ARGV[2]) then return false end
return redis.call('HGETALL', KEYS[2])
`)

// Get returns session id's record, or ErrNotFound.
func (s *Redis) Get(ctx context.Context, id string) (Record, error) {
	res, err := getScript.Run(ctx, s.rdb, []string{s.all, s.recordKey(id)}, id, ms(s.now())).Slice()
	if errors.Is(err, redis.Nil) || err == nil && len(res) == 0 {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, fmt.Errorf("session store: get: %w", err)
	}
	return parseRecord(res), nil
}

var touchScript = redis.NewScript(`
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= tonumber(ARGV[2]) then return 0 end
if redis.call('PEXPIRE', KEYS[2], ARGV[4]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
local okey = redis.call('HGET', KEYS[2], 'okey')
if okey and okey ~= '' then redis.call('ZADD', okey, 'XX', ARGV[3], ARGV[1]) end
return 1
`)

// Touch restarts the expiry of sessions ids, in one round trip, and
// returns those the store no longer has.
func (s *Redis) Touch(ctx context.Context, ids []string) (gone []string, err error) {
	if len(ids) == 0 {
		return nil, nil
	}
	now := s.now()
	cmds := make([]*redis.Cmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = touchScript.EvalSha(ctx, p, []string{s.all, s.recordKey(id)},
				id, ms(now), ms(now.Add(s.ttl)), (s.ttl + recordGrace).Milliseconds())
		}
		return nil
	})
	if err != nil && isNoScript(err) {
		if err = touchScript.Load(ctx, s.rdb).Err(); err == nil {
			return s.Touch(ctx, ids)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("session store: touch: %w", err)
	}
	for i, c := range cmds {
		if n, _ := c.Int(); n == 0 {
			gone = append(gone, ids[i])
		}
	}
	return gone, nil
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

var casScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (not cur and ARGV[3] == '') or cur == ARGV[3] then
  if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
  redis.call('PUBLISH', ARGV[4], 'chg ' .. ARGV[5])
  return {1, ARGV[2]}
end
return {1, cur}
`)

// SetBackend records data as session id's session with backend unless one
// is recorded already, and returns the one recorded: the first replica to
// open a backend session for a client wins, the others use it.
func (s *Redis) SetBackend(ctx context.Context, id, backend string, data []byte) ([]byte, error) {
	return s.ReplaceBackend(ctx, id, backend, nil, data)
}

// ReplaceBackend records data in place of old (nil: none) as session id's
// session with backend, if old is still the one recorded, and returns the
// one recorded after it. data nil forgets the backend session.
func (s *Redis) ReplaceBackend(ctx context.Context, id, backend string, old, data []byte) ([]byte, error) {
	res, err := casScript.Run(ctx, s.rdb, []string{s.recordKey(id)}, "b:"+backend, data, old, s.events, id).Slice()
	if err != nil {
		return nil, fmt.Errorf("session store: record backend session: %w", err)
	}
	if n, _ := res[0].(int64); n == 0 {
		return nil, ErrNotFound
	}
	if len(res) < 2 || res[1] == nil {
		return nil, nil
	}
	cur, _ := res[1].(string)
	if cur == "" {
		return nil, nil
	}
	return []byte(cur), nil
}

var setScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('PUBLISH', ARGV[3], 'chg ' .. ARGV[4])
return 1
`)

func (s *Redis) setField(ctx context.Context, id, field, value string) error {
	n, err := setScript.Run(ctx, s.rdb, []string{s.recordKey(id)}, field, value, s.events, id).Int()
	if err != nil {
		return fmt.Errorf("session store: update: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// SetLogLevel records the log level session id set.
func (s *Redis) SetLogLevel(ctx context.Context, id, level string) error {
	return s.setField(ctx, id, "level", level)
}

// Subscribe records (on) or forgets that session id subscribed to uri on
// backend.
func (s *Redis) Subscribe(ctx context.Context, id, backend, uri string, on bool) error {
	v := ""
	if on {
		v = "1"
	}
	return s.setField(ctx, id, "s:"+backend+"\n"+uri, v)
}

var deleteScript = redis.NewScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
local rec = redis.call('HGETALL', KEYS[2])
local okey = redis.call('HGET', KEYS[2], 'okey')
if okey and okey ~= '' then redis.call('ZREM', okey, ARGV[1]) end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[2], 'end ' .. ARGV[1])
return rec
`)

// Delete ends session id on every replica and returns what it was; ok is
// false if the store did not have it.
func (s *Redis) Delete(ctx context.Context, id string) (rec Record, ok bool, err error) {
	res, err := deleteScript.Run(ctx, s.rdb, []string{s.all, s.recordKey(id)}, id, s.events).Slice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Record{}, false, fmt.Errorf("session store: delete: %w", err)
	}
	if len(res) == 0 {
		return Record{}, false, nil
	}
	return parseRecord(res), true, nil
}

var sweepScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  if string.sub(id, 1, 2) ~= 'p:' then
    local rk = ARGV[3] .. id
    local rec = redis.call('HGETALL', rk)
    local okey = redis.call('HGET', rk, 'okey')
    if okey and okey ~= '' then redis.call('ZREM', okey, id) end
    redis.call('DEL', rk)
    redis.call('PUBLISH', ARGV[4], 'end ' .. id)
    table.insert(out, id)
    table.insert(out, rec)
  end
end
return out
`)

// Sweep ends at most limit expired sessions and returns them: each one
// to exactly one caller, whichever replica sweeps first.
func (s *Redis) Sweep(ctx context.Context, limit int) ([]Ended, error) {
	res, err := sweepScript.Run(ctx, s.rdb, []string{s.all}, ms(s.now()), limit, s.prefix+"s:", s.events).Slice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("session store: sweep: %w", err)
	}
	out := make([]Ended, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		id, _ := res[i].(string)
		out = append(out, Ended{ID: id, Record: parseRecord(res[i+1])})
	}
	return out, nil
}

// Forward publishes body, a client's response to a request sent on its
// GET stream, for the replica that holds that stream (EventResponse).
func (s *Redis) Forward(ctx context.Context, id string, body []byte) error {
	if err := s.rdb.Publish(ctx, s.events, "rsp "+id+" "+string(body)).Err(); err != nil {
		return fmt.Errorf("session store: forward a response: %w", err)
	}
	return nil
}

// Watch reports every session ended or changed on any replica to fn, until
// ctx ends. When the subscription is lost and comes back it reports
// EventReset: what happened meanwhile is unknown. fn runs on Watch's
// goroutine and must not block.
func (s *Redis) Watch(ctx context.Context, fn func(Event)) {
	ps := s.rdb.Subscribe(ctx, s.events)
	// A blocked Receive does not watch ctx: closing ps ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer func() {
		stop()
		_ = ps.Close()
	}()
	subscribed := false
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(watchRetry):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			if subscribed {
				fn(Event{Kind: EventReset})
			}
			subscribed = true
		case *redis.Message:
			kind, id, ok := strings.Cut(m.Payload, " ")
			if !ok {
				continue
			}
			switch kind {
			case "end":
				fn(Event{Kind: EventEnded, ID: id})
			case "chg":
				fn(Event{Kind: EventChanged, ID: id})
			case "rsp":
				if id, body, ok := strings.Cut(id, " "); ok {
					fn(Event{Kind: EventResponse, ID: id, Body: []byte(body)})
				}
			}
		}
	}
}

// parseRecord reads a record from HGETALL's flat list of fields and
// values.
func parseRecord(v any) Record {
	var rec Record
	list, _ := v.([]any)
	for i := 0; i+1 < len(list); i += 2 {
		field, _ := list[i].(string)
		value, _ := list[i+1].(string)
		switch {
		case field == "meta":
			_ = json.Unmarshal([]byte(value), &rec)
		case field == "level":
			rec.LogLevel = value
		case strings.HasPrefix(field, "b:"):
			if rec.Backends == nil {
				rec.Backends = make(map[string][]byte)
			}
			rec.Backends[field[2:]] = []byte(value)
		case strings.HasPrefix(field, "s:"):
			backend, uri, ok := strings.Cut(field[2:], "\n")
			if !ok {
				continue
			}
			if rec.Subscriptions == nil {
				rec.Subscriptions = make(map[string][]string)
			}
			rec.Subscriptions[backend] = append(rec.Subscriptions[backend], uri)
		}
	}
	return rec
}
