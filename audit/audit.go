// Package audit is the audit stage of the request path: it records who
// called what, which backend served it, the outcome and the duration, and
// writes the trail (Writer). The auth and rate-limit stages record their
// refusals through the same Recorder, so the trail has every decision.
package audit

import (
	"context"
	"errors"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/parse"
)

// defaultMaxArgumentBytes bounds the recorded arguments when
// audit.maxArgumentBytes is 0.
const defaultMaxArgumentBytes = 4096

// Options are the already-built dependencies of the stage.
type Options struct {
	// Recorder receives the trail: one event per tools/call (including
	// the optimizer's call_tool, not find_tool), resources/read and
	// prompts/get. nil: no trail. It is used only when cfg.Enabled.
	Recorder Recorder
	// Observer receives an event for every other MCP POST request (lists,
	// initialize, find_tool, ping, notifications, batches), and for every
	// request when there is no trail, so that a metrics recorder given
	// as both (Recorder: Tee(trail, metrics), Observer: metrics) sees
	// each request exactly once. nil: none.
	Observer Recorder
	// Route returns the backend and original name behind a
	// post-aggregation name of method (tools/call, prompts/get,
	// resources/read). nil: events name no backend.
	Route func(method, name string) (backend, original string, ok bool)
	// Identity returns the issuer and subject of the request's identity.
	// nil: events carry no identity.
	Identity func(ctx context.Context) (issuer, subject string)
	// Now is the clock. nil: time.Now.
	Now func() time.Time
}

// New returns the stage for cfg. When there is nothing to record to (no
// trail, no observer) it returns next unchanged, at no cost per request.
// The stage reads the request from parse.FromContext and never buffers
// the response: it wraps the ResponseWriter (Flush and
// http.ResponseController keep working) and classifies the outcome from
// the status and the bytes as they pass.
func New(cfg config.Audit, opts Options) (func(http.Handler) http.Handler, error) {
	if cfg.MaxArgumentBytes < 0 {
		return nil, errors.New("maxArgumentBytes must not be negative")
	}
	s := stage{
		observer: opts.Observer,
		route:    opts.Route,
		identity: opts.Identity,
		now:      opts.Now,
		args:     cfg.IncludeArguments,
		maxArgs:  cfg.MaxArgumentBytes,
	}
	if cfg.Enabled && opts.Recorder != nil && opts.Recorder != Discard {
		s.trail = opts.Recorder
	}
	if s.observer == Discard {
		s.observer = nil
	}
	if s.trail == nil && s.observer == nil {
		return func(next http.Handler) http.Handler { return next }, nil
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxArgs == 0 {
		s.maxArgs = defaultMaxArgumentBytes
	}
	return func(next http.Handler) http.Handler {
		st := s
		st.next = next
		return &st
	}, nil
}

type stage struct {
	next     http.Handler
	trail    Recorder // nil: no trail
	observer Recorder // nil: none
	route    func(method, name string) (string, string, bool)
	identity func(context.Context) (string, string)
	now      func() time.Time
	args     bool
	maxArgs  int
}

// audited reports whether p reads or changes backend state, and so
// belongs in the trail.
func audited(p *parse.Parsed) bool {
	return p.CallsTool() || p.Method == "resources/read" || p.Method == "prompts/get"
}

func (s *stage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := parse.FromContext(r.Context())
	if !ok || p.Denied { // not a POST (GET streams, DELETE), or denied: authz recorded it
		s.next.ServeHTTP(w, r)
		return
	}
	toTrail := s.trail != nil && audited(p)
	rec := s.observer
	if toTrail {
		rec = s.trail
	}
	if rec == nil {
		s.next.ServeHTTP(w, r)
		return
	}
	start := s.now()
	rw := &response{w: w}
	defer func() {
		if v := recover(); v != nil {
			rw.status = http.StatusInternalServerError
			s.record(rec, r, p, toTrail, rw, start)
			panic(v)
		}
	}()
	s.next.ServeHTTP(rw, r)
	s.record(rec, r, p, toTrail, rw, start)
}

// record builds the event of a finished request and hands it to rec.
// withArgs adds the arguments when the config asks for them.
func (s *stage) record(rec Recorder, r *http.Request, p *parse.Parsed, withArgs bool, rw *response, start time.Time) {
	e := Event{
		Time:          start,
		RequestID:     string(p.ID),
		SessionID:     r.Header.Get("Mcp-Session-Id"),
		ClientAddr:    r.RemoteAddr,
		Method:        p.Method,
		Name:          p.ResourceID,
		Duration:      s.now().Sub(start),
		ResponseBytes: rw.bytes,
	}
	if e.SessionID == "" { // initialize: the session starts with the response
		e.SessionID = rw.Header().Get("Mcp-Session-Id")
	}
	e.Via = p.Optimizer
	if s.identity != nil {
		e.Issuer, e.Subject = s.identity(r.Context())
	}
	if s.route != nil && audited(p) && e.Name != "" {
		if b, orig, ok := s.route(p.Method, e.Name); ok {
			e.Backend, e.OriginalName = b, orig
		}
	}
	e.Name = parse.TruncateName(e.Name)
	if withArgs && s.args && len(p.Arguments) > 0 {
		args, cut := truncate(p.Arguments, s.maxArgs)
		e.Arguments, e.ArgumentsTruncated = string(args), cut
	}
	e.Outcome, e.Reason = rw.outcome()
	rec.Record(r.Context(), e)
}

// truncate returns at most max bytes of b, cut at a UTF-8 character
// boundary, and whether it cut.
func truncate(b []byte, max int) ([]byte, bool) {
	if len(b) <= max {
		return b, false
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return b[:cut], true
}
