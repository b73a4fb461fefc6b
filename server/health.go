package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"

	"github.com/vmcp/vmcp/backends"
	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/jsonrpc"
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
// unhealthy and the server is not shutting down, 503 otherwise, with every
// backend's status and tool count. From the start of Shutdown it answers
// 503 with reason "draining", whatever the backends' state.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	cat := s.agg.Catalogue()
	body := struct {
		Ready     bool               `json:"ready"`
		Reason    string             `json:"reason,omitempty"` // "draining"; empty otherwise
		Backends  []backendHealth    `json:"backends"`
		Optimizer *optimizerProgress `json:"optimizer,omitempty"`
	}{}
	if s.optimizer != nil && s.cfg.Optimizer.Embeddings != nil && s.cfg.Optimizer.Weight() > 0 {
		// Embedding runs in the background: not embedded yet is still
		// ready (find_tool is lexical meanwhile).
		n, m := s.optimizer.Progress()
		body.Optimizer = &optimizerProgress{Tools: n, Embedded: m}
	}
	for _, st := range s.backends.Status() {
		if st.State == backends.StateConnected && st.Health != backends.HealthUnhealthy {
			body.Ready = true
		}
		body.Backends = append(body.Backends, backendHealth{Status: st, Tools: cat.ToolCount(st.Name)})
	}
	if s.draining.Load() {
		body.Ready, body.Reason = false, "draining"
	}
	w.Header().Set("Content-Type", "application/json")
	if !body.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body)
}

// optimizerProgress is /readyz's account of the tools' embedding.
type optimizerProgress struct {
	Tools    int `json:"tools"`
	Embedded int `json:"embedded"`
}

// healthChanges applies the backends' health changes to the catalogue on
// one goroutine of the server's. backends.Options.OnHealthChange must
// return quickly and runs on whichever goroutine saw the change (a client's
// call among them), so it only records the backend's name and wakes the
// goroutine; rebuilding the catalogue, telling every client and
// re-indexing the optimizer happen there, one change after another.
type healthChanges struct {
	apply func(backend string)
	wake  chan struct{} // one slot: a change is waiting
	stop  chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	pending map[string]struct{}
}

// watchHealth starts the goroutine that calls apply for each backend whose
// health changed; close stops it.
func watchHealth(apply func(backend string)) *healthChanges {
	h := &healthChanges{apply: apply, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), pending: map[string]struct{}{}}
	go h.run()
	return h
}

// changed records that backend's health changed. It never blocks.
func (h *healthChanges) changed(backend string) {
	h.mu.Lock()
	h.pending[backend] = struct{}{}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default: // already woken: the goroutine takes this name too
	}
}

func (h *healthChanges) run() {
	defer close(h.done)
	for {
		select {
		case <-h.stop:
			return
		case <-h.wake:
		}
		h.mu.Lock()
		names := make([]string, 0, len(h.pending))
		for name := range h.pending {
			names = append(names, name)
		}
		clear(h.pending)
		h.mu.Unlock()
		slices.Sort(names)
		for _, name := range names {
			h.apply(name)
		}
	}
}

// close stops the goroutine and waits for it; changes still pending are
// dropped (the server is shutting down).
func (h *healthChanges) close() error {
	close(h.stop)
	<-h.done
	return nil
}

// applyHealth hides an unhealthy backend's tools, resources and prompts
// from the catalogue, and shows them again once it is healthy or degraded;
// installing the new lists sends clients list_changed. It runs on the
// healthChanges goroutine and reads the backend's state afresh, so the
// last change is always the one acted on.
func (s *Server) applyHealth(name string) {
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
// disabled breaker has a negative threshold (zero takes the default, on).
func breakerConfig(b config.Breaker) backends.BreakerConfig {
	if !b.On() {
		return backends.BreakerConfig{FailureThreshold: -1}
	}
	return backends.BreakerConfig{FailureThreshold: b.FailureThreshold, OpenFor: b.OpenFor.D()}
}

// answeredUnhealthy answers a tools/call of a tool whose backend is
// hidden while unhealthy with the router's error naming the backend, as a
// call to an unavailable backend is answered. It stands in for the router
// only where mcp-go would answer first: a tool that is not installed is
// "not found" before any handler runs. call_tool of the optimizer reaches
// the router through its handler.
func (e *mcpEndpoint) answeredUnhealthy(w http.ResponseWriter, q *request) bool {
	p := q.p
	if p.ID == nil || p.Optimizer != "" {
		return false
	}
	err := e.tools.router.Unhealthy(p.ResourceID)
	if err == nil {
		return false
	}
	jsonrpc.WriteError(w, http.StatusOK, p.ID, jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: err.Error()})
	return true
}
