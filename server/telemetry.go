package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/telemetry"
)

// setupTelemetry builds the tracer and meter providers the config asks for
// (opening no connection) and registers their shutdown, which runs last:
// it flushes the spans of everything closed before it.
func (s *Server) setupTelemetry() error {
	tel, err := telemetry.Setup(context.Background(), s.cfg.Telemetry, telemetry.Options{
		Version:        s.opts.Version,
		TracerProvider: s.opts.TracerProvider,
	})
	if err != nil {
		return err
	}
	s.tel = tel
	s.closers = append(s.closers, tel.Close)
	return nil
}

// backendTransport returns the wrapper of the backends' HTTP transport:
// the trace context added to each request while tracing is on, else nil.
func (s *Server) backendTransport() func(http.RoundTripper) http.RoundTripper {
	if !s.tel.Tracing() {
		return nil
	}
	return telemetry.Transport
}

// withMetrics returns rec joined with the MCP-level metrics (which also
// annotate the request's span), and the metrics alone, when telemetry is
// on; rec itself and nil otherwise.
func (s *Server) withMetrics(rec audit.Recorder) (joined, metrics audit.Recorder, err error) {
	if !s.tel.Tracing() && !s.tel.Metrics() {
		return rec, nil, nil
	}
	m, err := telemetry.NewMetrics(s.tel)
	if err != nil {
		return nil, nil, err
	}
	return audit.Tee(rec, m), m, nil
}

// observeState registers the gauges of backends, catalogue and sessions.
func (s *Server) observeState() error {
	st := telemetry.State{
		Backends: func() []telemetry.BackendState {
			sts := s.backends.Status()
			out := make([]telemetry.BackendState, len(sts))
			for i, st := range sts {
				out[i] = telemetry.BackendState{Name: st.Name, State: string(st.State), Health: string(st.Health),
					Up: st.State == backends.StateConnected && st.Health != backends.HealthUnhealthy && st.Breaker != backends.BreakerOpen}
			}
			return out
		},
		Catalogue: func() telemetry.CatalogueSize {
			c := s.agg.Catalogue()
			return telemetry.CatalogueSize{Tools: len(c.Tools), Resources: len(c.Resources),
				ResourceTemplates: len(c.ResourceTemplates), Prompts: len(c.Prompts)}
		},
		Sessions:      s.sessions.count,
		SessionBounds: s.sessions.counts,
	}
	if l, ok := s.listener.(*connLimiter); ok {
		st.Connections = l.counts
	}
	err := telemetry.Observe(s.tel, st)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	return nil
}

// count returns the number of live sessions.
func (s *sessionIDs) count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.live)
}
