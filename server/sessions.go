package server

import (
	"crypto/rand"
	"errors"
	"sync"
)

// errUnknownSession makes mcp-go answer 404, telling the client to start a
// new session.
var errUnknownSession = errors.New("unknown session")

// sessionIDs issues MCP session ids and remembers the live ones, so that a
// deleted, expired or made-up id is refused (404) instead of being taken at
// its word. It implements mcp-go's SessionIdManager.
type sessionIDs struct {
	mu   sync.RWMutex
	live map[string]struct{}
}

func newSessionIDs() *sessionIDs { return &sessionIDs{live: make(map[string]struct{})} }

// Generate issues a new id: 128 random bits.
func (s *sessionIDs) Generate() string {
	id := "mcp-session-" + rand.Text()
	s.mu.Lock()
	s.live[id] = struct{}{}
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

// Terminate forgets id; later requests with it get 404.
func (s *sessionIDs) Terminate(id string) (isNotAllowed bool, err error) {
	s.mu.Lock()
	delete(s.live, id)
	s.mu.Unlock()
	return false, nil
}
