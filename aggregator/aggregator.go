package aggregator

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/vmcp/vmcp/config"
)

// Aggregator holds the latest capabilities of each backend and the catalogue
// built from them. Update replaces one backend's share and swaps in a new
// catalogue atomically; readers never see a half-built one.
type Aggregator struct {
	cfg   config.Aggregation
	order []string
	log   *slog.Logger

	mu      sync.Mutex // serialises Update and Hide
	caps    map[string]*Capabilities
	hidden  map[string]bool
	current atomic.Pointer[Catalogue]
	err     atomic.Pointer[error]
}

// New returns an Aggregator for backends (names in config order) with an
// empty catalogue. log nil means slog.Default().
func New(cfg config.Aggregation, backends []string, log *slog.Logger) *Aggregator {
	if log == nil {
		log = slog.Default()
	}
	a := &Aggregator{cfg: cfg, order: backends, log: log, caps: make(map[string]*Capabilities), hidden: make(map[string]bool)}
	empty, _ := Build(cfg, backends, nil, log)
	a.current.Store(empty)
	return a
}

// Catalogue returns the current catalogue. It is never nil.
func (a *Aggregator) Catalogue() *Catalogue { return a.current.Load() }

// Update records what backend now offers (nil: nothing, e.g. it is gone)
// and rebuilds the catalogue. The new catalogue is installed even when err
// is non-nil: err reports conflicts that manual resolution requires the
// user to settle, which were resolved by config order meanwhile.
func (a *Aggregator) Update(backend string, caps *Capabilities) (*Catalogue, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if caps == nil {
		delete(a.caps, backend)
	} else {
		a.caps[backend] = caps
	}
	return a.rebuild()
}

// Hide takes backend's tools, resources and prompts out of the catalogue
// (hidden true), for example while the backend is unhealthy, or puts them
// back (false). What the backend offers is kept: Update still records it
// while the backend is hidden, and the catalogue answers Hidden for the
// names its tools would have. The catalogue is rebuilt only when the
// backend's visibility changes; changed reports whether it was.
func (a *Aggregator) Hide(backend string, hidden bool) (c *Catalogue, changed bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.hidden[backend] == hidden {
		return a.current.Load(), false, a.Conflicts()
	}
	if hidden {
		a.hidden[backend] = true
	} else {
		delete(a.hidden, backend)
	}
	c, err = a.rebuild()
	return c, true, err
}

// rebuild builds and installs the catalogue of the backends not hidden.
// a.mu must be held.
func (a *Aggregator) rebuild() (*Catalogue, error) {
	visible := a.caps
	if len(a.hidden) > 0 {
		visible = make(map[string]*Capabilities, len(a.caps))
		for name, caps := range a.caps {
			if !a.hidden[name] {
				visible[name] = caps
			}
		}
	}
	c, err := Build(a.cfg, a.order, visible, a.log)
	if len(a.hidden) > 0 && c != nil {
		c.hidden = a.hiddenTools(c)
	}
	a.current.Store(c)
	if err != nil {
		err = fmt.Errorf("aggregate: %w", err)
	}
	a.err.Store(&err)
	return c, err
}

// hiddenTools returns the names the hidden backends' tools would have with
// every backend listed (their names may depend on the others', as with
// conflict resolution), less the names visible lists, by backend. a.mu
// must be held.
func (a *Aggregator) hiddenTools(visible *Catalogue) map[string]string {
	all, _ := Build(a.cfg, a.order, a.caps, quiet) // logged by the visible build
	out := make(map[string]string)
	if all == nil {
		return out
	}
	for name, r := range all.tools {
		if _, listed := visible.tools[name]; a.hidden[r.Backend] && !listed {
			out[name] = r.Backend
		}
	}
	return out
}

// quiet drops the log lines of the catalogue built for hiddenTools.
var quiet = slog.New(slog.DiscardHandler)

// Conflicts returns the unsettled conflicts of the current catalogue (see
// Update), or nil.
func (a *Aggregator) Conflicts() error {
	if p := a.err.Load(); p != nil {
		return *p
	}
	return nil
}
