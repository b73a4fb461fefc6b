package server

import (
	"encoding/json"
	"net/http"

	"github.com/vmcp/vmcp/backends"
)

// backendHealth is one backend's line in /readyz.
type backendHealth struct {
	backends.Status
	Tools int `json:"tools"`
}

// healthz answers 200 while the process serves HTTP.
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// readyz answers 200 when at least one backend is connected, 503 otherwise,
// with every backend's transport, state, tool count and last error.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	cat := s.agg.Catalogue()
	body := struct {
		Ready    bool            `json:"ready"`
		Backends []backendHealth `json:"backends"`
	}{}
	for _, st := range s.backends.Status() {
		if st.State == backends.StateConnected {
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
