package server

import (
	"crypto/rand"
	"errors"
	"sync"
)

// errUnknownSession makes mcp-go answer 404, telling the client to start a
// new session.
var errUnknownSession = errors.New("unknown session")

// sessionIDs issues MCP session ids, remembers the live ones (so that a
// deleted, expired or made-up id is refused with 404 instead of being taken
// at its word) and which identity each belongs to. It implements mcp-go's
// SessionIdManager.
type sessionIDs struct {
	mu sync.RWMutex
	// live maps a session id to its owner: the issuer and subject of the
	// identity that initialised it, "" until bound.
	live map[string]string
}

func newSessionIDs() *sessionIDs { return &sessionIDs{live: make(map[string]string)} }

// Generate issues a new id: 128 random bits.
func (s *sessionIDs) Generate() string {
	id := "mcp-session-" + rand.Text()
	s.mu.Lock()
	s.live[id] = ""
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

func (s *sessionIDs) valid(id string) bool {
	s.mu.RLock()
	_, ok := s.live[id]
	s.mu.RUnlock()
	return ok
}

// bind records owner as the owner of a live, unbound session.
func (s *sessionIDs) bind(id, owner string) {
	s.mu.Lock()
	if o, ok := s.live[id]; ok && o == "" {
		s.live[id] = owner
	}
	s.mu.Unlock()
}

// usableBy reports whether the session id may be used by owner: it is
// unknown to vmcp (mcp-go then refuses it) or bound to that owner.
func (s *sessionIDs) usableBy(id, owner string) bool {
	s.mu.RLock()
	o, ok := s.live[id]
	s.mu.RUnlock()
	return !ok || o == "" || o == owner
}

// Terminate forgets id; later requests with it get 404.
func (s *sessionIDs) Terminate(id string) (isNotAllowed bool, err error) {
	s.mu.Lock()
	delete(s.live, id)
	s.mu.Unlock()
	return false, nil
}
