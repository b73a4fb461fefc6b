package server

import (
	"context"
	"net/http"

	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/auth"
)

// auditRecorder opens the audit output when auditing is on and registers
// its close; otherwise events are discarded. The auth, rate-limit and
// audit stages all record to it.
func (s *Server) auditRecorder() (audit.Recorder, error) {
	if !s.cfg.Audit.Enabled {
		return audit.Discard, nil
	}
	w, err := audit.NewWriter(s.cfg.Audit, audit.WriterOptions{
		Logger: s.log,
		Meter:  s.tel.MeterProvider().Meter("github.com/vmcp/vmcp/audit"),
	})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, w.Close)
	s.auditLog.Store(w)
	return w, nil
}

// auditStage builds the audit stage recording the trail to rec and every
// other request to observer (nil: none), with backends and original names
// from the current catalogue.
func (s *Server) auditStage(rec, observer audit.Recorder) (func(http.Handler) http.Handler, error) {
	return audit.New(s.cfg.Audit, audit.Options{
		Recorder: rec,
		Observer: observer,
		Route:    s.route,
		Identity: func(ctx context.Context) (string, string) {
			id, _ := auth.IdentityFrom(ctx)
			return id.Issuer, id.Subject
		},
	})
}

// route returns the backend and original name behind a post-aggregation
// name of method, from the current catalogue (aggregator.Catalogue.Route).
func (s *Server) route(method, name string) (backend, original string, ok bool) {
	r, ok := s.agg.Catalogue().Route(method, name)
	return r.Backend, r.Name, ok
}

// ReopenAuditLog reopens the audit file, for log rotation: after the file
// was renamed, events go to a new file at audit.output and the old one is
// closed. It does nothing when the audit trail is off, goes to stdout or
// stderr, or is not open yet (before Start). Safe to call at any time,
// from any goroutine (cmd/vmcp calls it on SIGHUP).
func (s *Server) ReopenAuditLog() error {
	if w := s.auditLog.Load(); w != nil {
		return w.Reopen()
	}
	return nil
}
