package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// This file validates the policy sections: aggregation, rate limits,
// optimizer, audit, health and authorization.

func (a Aggregation) validate(backends map[string]bool) error {
	var p problems
	switch a.ConflictResolution {
	case ConflictPrefix, ConflictPriority, ConflictManual:
	case "":
		p.addf("conflictResolution", "required (prefix, priority or manual)")
	default:
		p.addf("conflictResolution", "must be prefix, priority or manual, got %q", a.ConflictResolution)
	}
	p.add("conflictResolutionConfig", a.ConflictResolutionConfig.validate(backends))
	first := map[string]int{}
	for i, t := range a.Tools {
		coord := fmt.Sprintf("tools[%d]", i)
		p.add(coord, t.validate(backends))
		if j, dup := first[t.Backend]; dup && t.Backend != "" {
			p.addf(coord+".backend", "%q is also listed at tools[%d]", t.Backend, j)
		} else {
			first[t.Backend] = i
		}
	}
	return p.err()
}

func (c ConflictResolutionConfig) validate(backends map[string]bool) error {
	var p problems
	if !strings.Contains(c.PrefixFormat, "{backend}") {
		p.addf("prefixFormat", `must contain "{backend}", got %q`, c.PrefixFormat)
	}
	first := map[string]int{}
	for i, name := range c.PriorityOrder {
		coord := fmt.Sprintf("priorityOrder[%d]", i)
		if j, dup := first[name]; dup {
			p.addf(coord, "%q is also listed at priorityOrder[%d]", name, j)
			continue
		}
		first[name] = i
		if !backends[name] {
			p.addf(coord, "no backend named %q", name)
		}
	}
	return p.err()
}

func (t BackendTools) validate(backends map[string]bool) error {
	var p problems
	switch {
	case t.Backend == "":
		p.addf("backend", "required")
	case !backends[t.Backend]:
		p.addf("backend", "no backend named %q", t.Backend)
	}
	for i, name := range t.Filter {
		if name == "" {
			p.addf(fmt.Sprintf("filter[%d]", i), "must not be empty")
		}
	}
	renamedFrom := map[string]string{}
	for _, tool := range slices.Sorted(maps.Keys(t.Overrides)) {
		o := t.Overrides[tool]
		coord := joinPath("overrides", keyCoord(tool))
		if tool == "" {
			p.addf(coord, "tool name must not be empty")
		}
		if o.Name == "" && o.Description == "" {
			p.addf(coord, "must set name or description")
		}
		if o.Name == "" {
			continue
		}
		if other, dup := renamedFrom[o.Name]; dup {
			p.addf(coord+".name", "%q is also the new name of %q", o.Name, other)
		} else {
			renamedFrom[o.Name] = tool
		}
	}
	return p.err()
}

func (r RateLimiting) validate(authType string) error {
	var p problems
	perUser := func(coord string, b *Bucket) {
		if b == nil {
			return
		}
		p.add(coord, b.validate())
		if authType == AuthAnonymous {
			p.addf(coord, "needs incomingAuth.type oidc: anonymous callers have no identity of their own")
		}
	}
	if r.Shared != nil {
		p.add("shared", r.Shared.validate())
	}
	perUser("perUser", r.PerUser)
	first := map[string]int{}
	for i, t := range r.Tools {
		coord := fmt.Sprintf("tools[%d]", i)
		switch j, dup := first[t.Name]; {
		case t.Name == "":
			p.addf(coord+".name", "required")
		case dup:
			p.addf(coord+".name", "%q is also listed at tools[%d]", t.Name, j)
		default:
			first[t.Name] = i
		}
		if t.Shared == nil && t.PerUser == nil {
			p.addf(coord, "needs shared or perUser")
		}
		if t.Shared != nil {
			p.add(coord+".shared", t.Shared.validate())
		}
		perUser(coord+".perUser", t.PerUser)
	}
	if r.CheckTimeout <= 0 {
		p.addf("checkTimeout", "must be positive, got %s", r.CheckTimeout)
	}
	switch r.OnStoreFailure {
	case StoreFailureLocal, StoreFailureAllow, StoreFailureDeny:
	default:
		p.addf("onStoreFailure", "must be local, allow or deny, got %q", r.OnStoreFailure)
	}
	return p.err()
}

func (b Bucket) validate() error {
	var p problems
	if b.MaxTokens < 1 {
		p.addf("maxTokens", "must be at least 1, got %d", b.MaxTokens)
	}
	if b.RefillPeriod <= 0 {
		p.addf("refillPeriod", "must be positive, got %s", b.RefillPeriod)
	}
	// The Redis store counts tokens exactly as maxTokens × refill time in
	// microseconds, which must stay within Lua's 2^53 exact integers.
	if b.MaxTokens >= 1 && b.RefillPeriod > 0 {
		if micros := b.RefillPeriod.D().Microseconds(); micros > 0 && int64(b.MaxTokens) > maxBucketProduct/micros {
			p.addf("maxTokens", "%d tokens per %s is too fine a rate to count exactly; use a shorter refillPeriod with proportionally fewer tokens", b.MaxTokens, b.RefillPeriod)
		}
	}
	return p.err()
}

// maxBucketProduct bounds maxTokens × refillPeriod in microseconds (2^53).
const maxBucketProduct = 1 << 53

func (o Optimizer) validate() error {
	var p problems
	if o.MaxToolsToReturn < 1 || o.MaxToolsToReturn > 100 {
		p.addf("maxToolsToReturn", "must be between 1 and 100, got %d", o.MaxToolsToReturn)
	}
	if w := o.HybridWeight; w != nil && (*w < 0 || *w > 1 || *w != *w) {
		p.addf("hybridWeight", "must be between 0 and 1, got %v", *w)
	}
	if e := o.Embeddings; e != nil {
		p.add("embeddings", e.validate())
	}
	return p.err()
}

func (e Embeddings) validate() error {
	var p problems
	if e.URL == "" {
		p.addf("url", "required (the API's base URL, e.g. http://127.0.0.1:11434/v1)")
	} else if err := checkSecureURL(e.URL); err != nil && e.APIKeyEnv != "" {
		p.add("url", err) // an API key goes over https only (or to loopback)
	} else if _, err := checkURL(e.URL); err != nil {
		p.add("url", err)
	}
	if e.Model == "" {
		p.addf("model", "required")
	}
	if e.Dimensions < 0 || e.Dimensions > 16384 {
		p.addf("dimensions", "must be between 0 (the model's) and 16384, got %d", e.Dimensions)
	}
	if e.BatchSize < 1 || e.BatchSize > 2048 {
		p.addf("batchSize", "must be between 1 and 2048, got %d", e.BatchSize)
	}
	if e.Timeout <= 0 || e.Timeout > Duration(10*time.Second) {
		p.addf("timeout", "must be positive and at most 10s (a query's deadline), got %s", e.Timeout)
	}
	return p.err()
}

func (a Audit) validate() error {
	var p problems
	if a.Output == "" {
		p.addf("output", "required (stdout, stderr or a file path)")
	}
	if a.MaxArgumentBytes < 0 {
		p.addf("maxArgumentBytes", "must not be negative, got %d", a.MaxArgumentBytes)
	}
	return p.err()
}

// validate checks the health section. Zero values are accepted (the
// backends package has the same defaults); negative ones are not.
func (h Health) validate() error {
	var p problems
	if h.Interval < 0 {
		p.addf("interval", "must not be negative, got %s", h.Interval)
	}
	if h.Timeout < 0 {
		p.addf("timeout", "must not be negative, got %s", h.Timeout)
	} else if h.Interval > 0 && h.Timeout > h.Interval {
		p.addf("timeout", "must not exceed health.interval (%s), got %s", h.Interval, h.Timeout)
	}
	if h.DegradedAfter < 0 {
		p.addf("degradedAfter", "must not be negative, got %d", h.DegradedAfter)
	}
	if h.UnhealthyAfter < 0 {
		p.addf("unhealthyAfter", "must not be negative, got %d", h.UnhealthyAfter)
	} else if h.UnhealthyAfter > 0 && h.UnhealthyAfter < h.DegradedAfter {
		p.addf("unhealthyAfter", "must be at least degradedAfter (%d), got %d", h.DegradedAfter, h.UnhealthyAfter)
	}
	if h.Breaker.FailureThreshold < 0 {
		p.addf("breaker.failureThreshold", "must not be negative, got %d", h.Breaker.FailureThreshold)
	}
	if h.Breaker.OpenFor < 0 {
		p.addf("breaker.openFor", "must not be negative, got %s", h.Breaker.OpenFor)
	}
	return p.err()
}

// validate checks the authorization section, except its CEL conditions:
// the config package imports no CEL, so authz.New compiles them.
func (a Authorization) validate(backends map[string]bool) error {
	var p problems
	if !isEffect(a.Default) {
		p.addf("default", "must be allow or deny, got %q", a.Default)
	}
	for i, r := range a.Rules {
		p.add(fmt.Sprintf("rules[%d]", i), r.validate(backends))
	}
	return p.err()
}

func (r AuthzRule) validate(backends map[string]bool) error {
	var p problems
	switch {
	case r.Effect == "":
		p.addf("effect", "required (allow or deny)")
	case !isEffect(r.Effect):
		p.addf("effect", "must be allow or deny, got %q", r.Effect)
	}
	globs := func(key string, list []string) {
		for i, g := range list {
			if g == "" {
				p.addf(fmt.Sprintf("%s[%d]", key, i), "must not be empty")
			}
		}
	}
	globs("tools", r.Tools)
	globs("resources", r.Resources)
	globs("prompts", r.Prompts)
	for i, name := range r.Backends {
		if !backends[name] {
			p.addf(fmt.Sprintf("backends[%d]", i), "no backend named %q", name)
		}
	}
	return p.err()
}

func isEffect(s string) bool { return s == EffectAllow || s == EffectDeny }
