package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// State are the server's read-outs, called at each collection (each
// scrape of /metrics). Each must be cheap and safe for concurrent use;
// nil leaves its series out.
type State struct {
	// Backends returns every configured backend and its state.
	Backends func() []BackendState
	// Catalogue returns the sizes of the aggregated catalogue.
	Catalogue func() CatalogueSize
	// Sessions returns the number of live MCP sessions.
	Sessions func() int
	// SessionBounds returns the counters of the session bounds.
	SessionBounds func() SessionCounts
	// Connections returns the open client connections and the number
	// refused at server.maxConnections since start.
	Connections func() (open, refused int64)
}

// BackendState is one backend as the gauges see it.
type BackendState struct {
	Name  string // the configured name
	State string // the backend's connection state, from a small fixed set
	// Health is healthy, degraded or unhealthy, from consecutive failures.
	Health string
	Up     bool // whether calls can reach it
}

// SessionCounts are what the session bounds did since start.
type SessionCounts struct {
	// RefusedMax and RefusedPerIdentity count the sessions refused at
	// server.maxSessions and server.maxSessionsPerIdentity.
	RefusedMax, RefusedPerIdentity int64
	// Evicted counts the sessions ended to make room for a new one of the
	// same identity; Expired those ended after their idle timeout.
	Evicted, Expired int64
}

// CatalogueSize counts the aggregated catalogue.
type CatalogueSize struct {
	Tools, Resources, ResourceTemplates, Prompts int
}

// Observe registers the server's gauges on tel's meter provider:
//
//	vmcp_backend_up{backend}              1 when calls can reach it, else 0
//	vmcp_backend_state{backend, state}    1 for the backend's current connection state
//	vmcp_backend_health{backend, health}  1 for the backend's current health state
//	vmcp_catalogue_items{kind}            tools, resources, resource_templates, prompts
//	vmcp_sessions_active
//	vmcp_sessions_refused_total{reason}    max_sessions, max_sessions_per_identity
//	vmcp_sessions_ended_total{reason}      evicted (for the same identity), idle
//	vmcp_connections_open
//	vmcp_connections_refused_total        refused at server.maxConnections
//
// With metrics off it does nothing. The callbacks stop with Shutdown.
func Observe(tel *Telemetry, s State) error {
	if !tel.Metrics() {
		return nil
	}
	m := tel.mp.Meter(scope)
	up, err := m.Int64ObservableGauge("vmcp_backend_up",
		metric.WithDescription("1 when the backend is connected and calls can reach it, else 0."))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	state, err := m.Int64ObservableGauge("vmcp_backend_state",
		metric.WithDescription("1 for the backend's current state."))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	health, err := m.Int64ObservableGauge("vmcp_backend_health",
		metric.WithDescription("1 for the backend's current health state (healthy, degraded, unhealthy)."))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	items, err := m.Int64ObservableGauge("vmcp_catalogue_items",
		metric.WithDescription("Entries of the aggregated catalogue, by kind."))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	sessions, err := m.Int64ObservableGauge("vmcp_sessions_active",
		metric.WithDescription("Live MCP sessions."))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	sessRefused, err := m.Int64ObservableCounter("vmcp_sessions_refused_total",
		metric.WithDescription("New MCP sessions refused, by the bound that refused them."))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	sessEnded, err := m.Int64ObservableCounter("vmcp_sessions_ended_total",
		metric.WithDescription("MCP sessions vmcp ended itself: evicted for a new one of the same identity, or idle."))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	conns, err := m.Int64ObservableGauge("vmcp_connections_open",
		metric.WithDescription("Open client connections."))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	refused, err := m.Int64ObservableCounter("vmcp_connections_refused_total",
		metric.WithDescription("Client connections refused with 503 (or closed) because server.maxConnections were open."))
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if s.Backends != nil {
			for _, b := range s.Backends() {
				name := attribute.String("backend", b.Name)
				v := int64(0)
				if b.Up {
					v = 1
				}
				o.ObserveInt64(up, v, metric.WithAttributes(name))
				o.ObserveInt64(state, 1, metric.WithAttributes(name, attribute.String("state", b.State)))
				if b.Health != "" {
					o.ObserveInt64(health, 1, metric.WithAttributes(name, attribute.String("health", b.Health)))
				}
			}
		}
		if s.Catalogue != nil {
			c := s.Catalogue()
			for kind, n := range map[string]int{"tools": c.Tools, "resources": c.Resources,
				"resource_templates": c.ResourceTemplates, "prompts": c.Prompts} {
				o.ObserveInt64(items, int64(n), metric.WithAttributes(attribute.String("kind", kind)))
			}
		}
		if s.Sessions != nil {
			o.ObserveInt64(sessions, int64(s.Sessions()))
		}
		if s.SessionBounds != nil {
			c := s.SessionBounds()
			o.ObserveInt64(sessRefused, c.RefusedMax, metric.WithAttributes(attribute.String("reason", "max_sessions")))
			o.ObserveInt64(sessRefused, c.RefusedPerIdentity, metric.WithAttributes(attribute.String("reason", "max_sessions_per_identity")))
			o.ObserveInt64(sessEnded, c.Evicted, metric.WithAttributes(attribute.String("reason", "evicted")))
			o.ObserveInt64(sessEnded, c.Expired, metric.WithAttributes(attribute.String("reason", "idle")))
		}
		if s.Connections != nil {
			open, n := s.Connections()
			o.ObserveInt64(conns, open)
			o.ObserveInt64(refused, n)
		}
		return nil
	}, up, state, health, items, sessions, sessRefused, sessEnded, conns, refused)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	return nil
}
