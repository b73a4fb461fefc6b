package aggregator

import (
	"errors"
	"log/slog"
	"strings"

	"github.com/vmcp/vmcp/config"
)

// resolver applies one conflict strategy.
type resolver struct {
	strategy  string
	prefixes  map[string]string // backend → its prefix, under prefix
	ranks     map[string]int
	selection map[string]*selection
}

// selection is one backend's tool filter and overrides.
type selection struct {
	allow     map[string]bool // nil: everything
	overrides map[string]config.ToolOverride
}

func (s *selection) allows(name string) bool { return s.allow == nil || s.allow[name] }

func (s *selection) override(name string) (config.ToolOverride, bool) {
	if s == nil {
		return config.ToolOverride{}, false
	}
	o, ok := s.overrides[name]
	return o, ok
}

func newResolver(cfg config.Aggregation, order []string) *resolver {
	r := &resolver{
		strategy:  cfg.ConflictResolution,
		prefixes:  make(map[string]string, len(order)),
		ranks:     make(map[string]int, len(order)),
		selection: make(map[string]*selection, len(cfg.Tools)),
	}
	if r.strategy == "" {
		r.strategy = config.ConflictPrefix
	}
	format := cfg.ConflictResolutionConfig.PrefixFormat
	if format == "" {
		format = "{backend}_"
	}
	for _, b := range order {
		r.prefixes[b] = strings.ReplaceAll(format, "{backend}", b)
	}
	// Rank: priorityOrder first, then the remaining backends in config order.
	for i, b := range cfg.ConflictResolutionConfig.PriorityOrder {
		if _, seen := r.ranks[b]; !seen {
			r.ranks[b] = i
		}
	}
	next := len(cfg.ConflictResolutionConfig.PriorityOrder)
	for _, b := range order {
		if _, ok := r.ranks[b]; !ok {
			r.ranks[b] = next
			next++
		}
	}
	for _, t := range cfg.Tools {
		s := &selection{overrides: t.Overrides}
		if len(t.Filter) > 0 {
			s.allow = make(map[string]bool, len(t.Filter))
			for _, n := range t.Filter {
				s.allow[n] = true
			}
		}
		r.selection[t.Backend] = s
	}
	return r
}

func (r *resolver) rank(backend string) int { return r.ranks[backend] }

// resolve names every candidate and drops the losers of conflicts, keeping
// the input order otherwise. Under prefix and priority conflicts are
// resolved (by config order and by rank) and logged; under manual they are
// resolved by config order and returned as errors.
func (r *resolver) resolve(kind string, cands []candidate, log *slog.Logger) ([]candidate, error) {
	if r.strategy == config.ConflictPrefix {
		for i := range cands {
			cands[i].name = r.prefixes[cands[i].route.Backend] + cands[i].name
		}
	}
	winner := make(map[string]int, len(cands)) // name → index in cands
	var losers map[string][]string             // name → backends dropped
	for i, c := range cands {
		w, dup := winner[c.name]
		if !dup {
			winner[c.name] = i
			continue
		}
		if losers == nil {
			losers = make(map[string][]string)
		}
		keep, drop := w, i
		if r.strategy == config.ConflictPriority && c.rank < cands[w].rank {
			keep, drop = i, w
		}
		winner[c.name] = keep
		losers[c.name] = append(losers[c.name], cands[drop].route.Backend)
	}
	if losers == nil {
		return cands, nil
	}
	var errs []error
	kept := make([]candidate, 0, len(winner))
	for i, c := range cands {
		if winner[c.name] != i {
			continue
		}
		kept = append(kept, c)
		dropped, conflicted := losers[c.name]
		if !conflicted {
			continue
		}
		if r.strategy == config.ConflictManual && kind == "tool" {
			errs = append(errs, conflictError(kind, c.name, append([]string{c.route.Backend}, dropped...)))
			continue
		}
		log.Warn("name conflict; keeping one backend's "+kind, "name", c.name, "strategy", r.strategy, "kept", c.route.Backend, "dropped", dropped)
	}
	return kept, errors.Join(errs...)
}
