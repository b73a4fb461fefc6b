// Package sessions keeps MCP client sessions as data in Redis, so that any
// vmcp replica serves any request of any session. A session is a Record:
// its identity binding, protocol version, the client's capabilities and
// info, its log level and subscriptions, and the backend sessions it has
// opened. Redis holds the records, the bounds on how many there are (in
// all and per identity) and their sliding expiry; a channel tells every
// replica when a session ends or changes.
//
// Without Redis (sessions.store: memory) vmcp keeps sessions in its own
// tables (server/sessions.go) and this package is not used.
package sessions

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned for a session the store does not have: never
// created, ended, expired, or lost with Redis's data.
var ErrNotFound = errors.New("session not found")

// Record is one client session as data.
type Record struct {
	// Owner is the identity the session is bound to (issuer and subject,
	// as the server spells them); no other identity may use it.
	Owner string `json:"owner"`
	// ProtocolVersion is the revision negotiated in initialize.
	ProtocolVersion string `json:"protocolVersion"`
	// Capabilities and ClientInfo are what the client sent in
	// initialize, as JSON.
	Capabilities json.RawMessage `json:"capabilities,omitempty"`
	ClientInfo   json.RawMessage `json:"clientInfo,omitempty"`

	// LogLevel is the level the client set with logging/setLevel, "" if
	// none.
	LogLevel string `json:"-"`
	// Subscriptions are the resource URIs the client subscribed to, by
	// backend.
	Subscriptions map[string][]string `json:"-"`
	// Backends are the client's backend sessions, by backend name, as the
	// JSON of backends.SessionData.
	Backends map[string][]byte `json:"-"`
}

// Limits bound the sessions Admit lets in.
type Limits struct {
	// Max bounds the live sessions of this vmcp (every replica).
	Max int
	// PerOwner bounds the live sessions of one owner; 0 is no bound (the
	// anonymous identity).
	PerOwner int
	// EvictableAfter is how long an owner's session must have gone unused
	// before a new session of the same owner may end it.
	EvictableAfter time.Duration
}

// Admission is room reserved for one new session.
type Admission struct {
	token, ownerKey string
	// Evicted is the session of the same owner that was ended to make
	// room, "" if none; EvictedRecord is what it was (the caller closes
	// its backend sessions).
	Evicted       string
	EvictedRecord Record
}

// RefusedError is Admit's answer when there is no room.
type RefusedError struct {
	// Owner is set when the owner's bound refused it (otherwise the bound
	// on all sessions did).
	Owner bool
	// RetryAfter is when the owner's least recently used session may be
	// ended to make room.
	RetryAfter time.Duration
}

func (e *RefusedError) Error() string {
	if e.Owner {
		return fmt.Sprintf("too many sessions for this identity; retry after %s", e.RetryAfter)
	}
	return "too many sessions"
}

// Ended is a session that ended in the store (expired), with what it was.
type Ended struct {
	ID     string
	Record Record
}

// EventKind says what an Event reports.
type EventKind int

// The events Watch reports.
const (
	// EventEnded: the session ended (DELETE, eviction, expiry) on some
	// replica.
	EventEnded EventKind = iota + 1
	// EventChanged: the session's record changed (a backend session
	// opened or replaced, a subscription, the log level).
	EventChanged
	// EventReset: the watch was lost and is back; events may have been
	// missed meanwhile (Redis restarted, perhaps empty), so every cached
	// session must be read again before it is trusted.
	EventReset
	// EventResponse: a client answered, on some replica, a request sent
	// on its GET stream; the replica holding that stream delivers Body.
	EventResponse
)

// Event is one change Watch reports.
type Event struct {
	Kind EventKind
	// ID is the session, "" for EventReset.
	ID string
	// Body is the client's response, for EventResponse.
	Body []byte
}
