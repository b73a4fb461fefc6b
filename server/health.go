package server

import (
	"encoding/json"
	"net/http"

	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/config"
)

// backendHealth is one backend's line in /readyz: connection state,
// health, consecutive failures, breaker state, last error, and how many
// of its tools the catalogue lists (none while it is unhealthy).
type backendHealth struct {
	backends.Status
	Tools int `json:"tools"`
}

// healthz answers 200 while the process serves HTTP.
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// readyz answers 200 when at least one backend is connected and not
// unhealthy, 503 otherwise, with every backend's status and tool count.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	cat := s.agg.Catalogue()
	body := struct {
		Ready    bool            `json:"ready"`
		Backends []backendHealth `json:"backends"`
	}{}
	for _, st := range s.backends.Status() {
		if st.State == backends.StateConnected && st.Health != backends.HealthUnhealthy {
			body.Ready = true
		}
		body.Backends = append(body.Backends, backendHealth{Status: st, Tools: cat.ToolCount(st.Name)})
	}
	w.Header().Set("Content-Type", "application/json")
	if !body.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body)
}

// backendHealthChanged hides an unhealthy backend's tools, resources and
// prompts from the catalogue, and shows them again once it is healthy or
// degraded; installing the new lists sends clients list_changed. It runs
// on whichever goroutine saw the change, so it reads the backend's state
// afresh under a lock: the last call always acts on the last change.
func (s *Server) backendHealthChanged(name string) {
	s.hiding.Lock()
	defer s.hiding.Unlock()
	var st backends.Status
	for _, b := range s.backends.Status() {
		if b.Name == name {
			st = b
		}
	}
	hide := st.Health == backends.HealthUnhealthy
	cat, changed, err := s.agg.Hide(name, hide)
	if !changed {
		return
	}
	if err != nil {
		s.log.Error("catalogue has unsettled conflicts", "error", err)
	}
	if hide {
		s.log.Warn("backend unhealthy; its tools, resources and prompts are hidden until it recovers",
			"backend", name, "consecutive_failures", st.Failures, "error", st.LastError)
	} else {
		s.log.Info("backend recovered; its tools, resources and prompts are listed again",
			"backend", name, "health", st.Health, "backend_tools", cat.ToolCount(name))
	}
	s.sync.Sync()
}

// breakerConfig turns the config's breaker into the backends' one; a
// disabled breaker is the zero value.
func breakerConfig(b config.Breaker) backends.BreakerConfig {
	if !b.On() {
		return backends.BreakerConfig{}
	}
	return backends.BreakerConfig{FailureThreshold: b.FailureThreshold, OpenFor: b.OpenFor.D()}
}
