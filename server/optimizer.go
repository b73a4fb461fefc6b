package server

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/vmcp/vmcp/embeddings"
	"github.com/vmcp/vmcp/optimizer"
)

// newOptimizer returns the optimizer's find_tool and call_tool, with the
// hybrid search when optimizer.embeddings is set: its vectors shared with
// the other replicas through Redis when redis is set, its background
// embedding stopped by a closer.
func (s *Server) newOptimizer() (*optimizer.Tools, error) {
	cfg := s.cfg.Optimizer
	o := optimizer.NewTools(cfg.MaxToolsToReturn, optimizer.CallFunc(s.sync.callTool))
	if s.policy != nil {
		o.Restrict(s.sync.visibleTools)
		// Callers with the same outcome set see the same tools.
		o.CacheVisibility(func(ctx context.Context) string { return s.sync.lister(ctx).Key() })
	}
	if cfg.Embeddings == nil || cfg.Weight() == 0 {
		return o, nil // hybridWeight 0: lexical, nothing to embed
	}
	meter := s.tel.MeterProvider().Meter("github.com/vmcp/vmcp/optimizer")
	eo := embeddings.Options{HTTPClient: s.opts.HTTPClient, Getenv: s.opts.Getenv, Meter: meter, Logger: s.log}
	if s.redis != nil {
		// Content-addressed: every replica and restart of this vmcp
		// (name) shares them.
		eo.Redis, eo.Prefix = s.redis, "vmcp:{"+s.cfg.Name+"}:emb:"
	}
	svc, err := embeddings.New(*cfg.Embeddings, eo)
	if err != nil {
		return nil, fmt.Errorf("optimizer.embeddings.%w", err)
	}
	fallbacks, err := meter.Int64Counter("vmcp_optimizer_search_fallbacks_total",
		metric.WithDescription("find_tool searches that were lexical although the tools are embedded, by reason (timeout, query_error, paused, dimensions)."))
	if err != nil {
		return nil, err
	}
	o.UseEmbeddings(optimizer.HybridOptions{Embedder: svc, Weight: cfg.Weight(), Logger: s.log,
		OnFallback: func(reason string) {
			fallbacks.Add(context.Background(), 1, metric.WithAttributes(attribute.String("reason", reason)))
		}})
	s.closers = append(s.closers, func() error { o.Close(); return nil })
	return o, nil
}
