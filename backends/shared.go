package backends

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// callTable tracks the calls in flight on a shared connection (a stdio
// backend, or a request without an MCP session), so that what the backend
// sends during a call reaches the client that made it. Progress tokens are
// rewritten to be unique on the connection and mapped back; server-to-client
// requests and log messages are attributed when all calls in flight belong
// to one client.
type callTable struct {
	mu    sync.Mutex
	next  uint64
	calls map[string]*inflight // by the token sent to the backend
	swept time.Time
}

// lateProgress is how long after a call ended its progress token still
// maps back: mcp-go's stdio server, for one, may write a call's
// notifications after its response.
const lateProgress = 2 * time.Second

type inflight struct {
	ctx     context.Context
	session string
	token   mcp.ProgressToken // the client's own; nil when it sent none
	seq     uint64
	ended   time.Time // zero while in flight
}

// start registers a call of client session with the caller's _meta (nil or
// outboundMeta's result, which it may change) and returns the _meta to send
// and the function that ends the call.
func (t *callTable) start(ctx context.Context, session string, meta *mcp.Meta) (*mcp.Meta, func()) {
	t.mu.Lock()
	t.next++
	seq := t.next
	key := "vmcp-" + strconv.FormatUint(seq, 10)
	c := &inflight{ctx: ctx, session: session, seq: seq}
	if meta != nil && meta.ProgressToken != nil {
		c.token = meta.ProgressToken
		meta.ProgressToken = key
	}
	if t.calls == nil {
		t.calls = make(map[string]*inflight)
	}
	t.calls[key] = c
	now := time.Now()
	if now.Sub(t.swept) > lateProgress {
		t.swept = now
		for k, c := range t.calls {
			if !c.ended.IsZero() && now.Sub(c.ended) > lateProgress {
				delete(t.calls, k)
			}
		}
	}
	t.mu.Unlock()
	return meta, func() {
		t.mu.Lock()
		if c.token == nil {
			delete(t.calls, key)
		} else {
			c.ended = time.Now()
		}
		t.mu.Unlock()
	}
}

// byToken returns the call a progress token sent to the backend belongs to.
func (t *callTable) byToken(token any) (*inflight, bool) {
	s, ok := token.(string)
	if !ok {
		return nil, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.calls[s]
	return c, ok && c.token != nil && (c.ended.IsZero() || time.Since(c.ended) <= lateProgress)
}

// only returns the latest call in flight when every call in flight belongs
// to one client session.
func (t *callTable) only() (*inflight, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var latest *inflight
	for _, c := range t.calls {
		if !c.ended.IsZero() {
			continue
		}
		if latest != nil && c.session != latest.session {
			return nil, false
		}
		if latest == nil || c.seq > latest.seq {
			latest = c
		}
	}
	return latest, latest != nil
}

// sharedHandlers answers a backend's requests on a shared connection.
type sharedHandlers struct {
	relay Relay
	calls *callTable
}

// attribute picks the context and client session of a request that arrived
// on the shared connection with handler context ctx. Over HTTP a request
// sent on a call's own response stream already carries that call's
// context; the relay prefers it.
func (h sharedHandlers) attribute(ctx context.Context) (context.Context, string) {
	if c, ok := h.calls.only(); ok {
		return c.ctx, c.session
	}
	return ctx, ""
}

func (h sharedHandlers) CreateMessage(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	ctx, session := h.attribute(ctx)
	return h.relay.Sample(ctx, session, req)
}

func (h sharedHandlers) Elicit(ctx context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	ctx, session := h.attribute(ctx)
	return h.relay.Elicit(ctx, session, req)
}

func (h sharedHandlers) ListRoots(ctx context.Context, req mcp.ListRootsRequest) (*mcp.ListRootsResult, error) {
	ctx, session := h.attribute(ctx)
	return h.relay.ListRoots(ctx, session, req)
}

var (
	_ client.SamplingHandler    = sharedHandlers{}
	_ client.ElicitationHandler = sharedHandlers{}
	_ client.RootsHandler       = sharedHandlers{}
)

// notify relays a notification that arrived on the shared connection:
// progress by its token, a log message when one client's calls are in
// flight, a resource update to the clients subscribed to it. Anything else
// cannot be attributed and is dropped.
func (h sharedHandlers) notify(live context.Context, subs *subscriptions, n mcp.JSONRPCNotification) bool {
	switch n.Method {
	case string(mcp.MethodNotificationProgress):
		c, ok := h.calls.byToken(n.Params.AdditionalFields["progressToken"])
		if !ok {
			return false
		}
		fields := make(map[string]any, len(n.Params.AdditionalFields))
		for k, v := range n.Params.AdditionalFields {
			fields[k] = v
		}
		fields["progressToken"] = c.token
		n.Params.AdditionalFields = fields
		h.relay.Notify(c.ctx, c.session, n)
		return true
	case string(mcp.MethodNotificationMessage):
		c, ok := h.calls.only()
		if !ok {
			return false
		}
		h.relay.Notify(c.ctx, c.session, n)
		return true
	case mcp.MethodNotificationResourceUpdated:
		uri, _ := n.Params.AdditionalFields["uri"].(string)
		sessions := subs.of(uri)
		for _, s := range sessions {
			h.relay.Notify(live, s, n)
		}
		return len(sessions) > 0
	}
	return false
}

// subscriptions counts the clients subscribed to each resource on a shared
// connection: the backend is subscribed once, on the first, and
// unsubscribed after the last.
type subscriptions struct {
	// wire is held while a change is sent to the backend, so that the
	// backend's subscriptions follow the counts in order.
	wire  sync.Mutex
	mu    sync.Mutex
	byURI map[string]map[string]struct{}
}

// add records session's subscription and reports whether it is the first.
func (s *subscriptions) add(uri, session string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byURI == nil {
		s.byURI = make(map[string]map[string]struct{})
	}
	set := s.byURI[uri]
	if set == nil {
		set = make(map[string]struct{})
		s.byURI[uri] = set
	}
	set[session] = struct{}{}
	return len(set) == 1
}

// remove drops session's subscription and reports whether it was the last.
func (s *subscriptions) remove(uri, session string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	set, ok := s.byURI[uri]
	if !ok {
		return false
	}
	if _, ok := set[session]; !ok {
		return false
	}
	delete(set, session)
	if len(set) == 0 {
		delete(s.byURI, uri)
		return true
	}
	return false
}

// dropSession forgets every subscription of session and returns the URIs
// it was the last subscriber of.
func (s *subscriptions) dropSession(session string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last []string
	for uri, set := range s.byURI {
		if _, ok := set[session]; !ok {
			continue
		}
		delete(set, session)
		if len(set) == 0 {
			delete(s.byURI, uri)
			last = append(last, uri)
		}
	}
	return last
}

// has reports whether session is subscribed to anything.
func (s *subscriptions) has(session string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, set := range s.byURI {
		if _, ok := set[session]; ok {
			return true
		}
	}
	return false
}

// uris returns every URI with a subscriber.
func (s *subscriptions) uris() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.byURI))
	for uri := range s.byURI {
		out = append(out, uri)
	}
	return out
}

func (s *subscriptions) of(uri string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.byURI[uri]))
	for session := range s.byURI[uri] {
		out = append(out, session)
	}
	return out
}
