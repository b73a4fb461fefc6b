package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

// discoveryTimeout bounds reaching the identity provider at start-up.
const discoveryTimeout = 15 * time.Second

// authentication builds the auth stage. For OIDC it reaches the provider
// (discovery and keys; a start-up error when it cannot), registers the
// verifier's close, and serves the protected resource metadata, without
// auth, at its well-known paths.
func (s *Server) authentication(ctx context.Context, rec audit.Recorder) (func(http.Handler) http.Handler, error) {
	in := s.cfg.IncomingAuth
	if in.Type != config.AuthOIDC {
		return auth.New(in, nil, rec, "")
	}
	oidc := *in.OIDC
	if oidc.Resource == "" {
		oidc.Resource = "http://" + s.listener.Addr().String() + s.cfg.Server.Path
	}
	in.OIDC = &oidc

	vctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	v, err := auth.NewVerifier(vctx, oidc, auth.VerifierOptions{HTTPClient: s.opts.HTTPClient, Logger: s.log})
	if err != nil {
		return nil, fmt.Errorf("incomingAuth.oidc: %w", err)
	}
	s.closers = append(s.closers, v.Close)

	metadata := auth.MetadataHandler(oidc, []string{v.Issuer()})
	for _, p := range auth.MetadataPaths(s.cfg.Server.Path) {
		s.mux.Handle(p, metadata)
	}
	return auth.New(in, v, rec, auth.MetadataURL(oidc.Resource))
}
