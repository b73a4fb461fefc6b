// Package authz decides which caller may use which tool, resource and
// prompt, from the rules of the authorization section of the config.
//
// A rule applies to a request when its selectors match and its CEL
// condition, if it has one, holds. A deny rule that applies wins over any
// allow rule that applies; when none applies, the section's default
// decides. A nil *Policy (no authorization section) allows everything.
package authz

import (
	"errors"
	"fmt"
	"slices"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

// Kind is what a request or list item names.
type Kind uint8

// The kinds of item a rule selects.
const (
	Tool Kind = iota + 1
	Resource
	Prompt
)

// Request is what the authz stage decides on.
type Request struct {
	Method    string // JSON-RPC method, e.g. "tools/call"
	Kind      Kind
	Name      string // post-aggregation tool or prompt name, or resource URI
	Backend   string // the backend that serves it ("" if unknown)
	Arguments []byte // the call's arguments as raw JSON (an object) or nil; decoded only when a rule that reads request.arguments applies
}

// Decision is the outcome for one request.
type Decision struct {
	Allow bool
	Rule  int // index in authorization.rules of the rule that decided, -1 for the default
}

// Policy is the compiled authorization section; a nil *Policy allows
// everything (every method works on a nil receiver). It is safe for
// concurrent use and never changes after New.
type Policy struct {
	rules        []rule
	defaultAllow bool
	// itemIdentity is set when some condition reads both the identity and
	// the item (request.name, request.method or backend) without reading
	// request.arguments: a list then depends on who the caller is, not
	// only on the outcomes of the identity-only conditions; itemClaims
	// when such a condition reads the claims too.
	itemIdentity, itemClaims bool
}

// rule is one compiled authorization rule.
type rule struct {
	deny bool
	// kinds is set when the rule lists tools, resources or prompts: the
	// request's kind must then be listed and its name match a glob.
	kinds                     bool
	tools, resources, prompts []glob
	backends                  []string
	cond                      *condition // nil: none
}

// New compiles cfg (nil: returns nil, nil, a Policy that allows
// everything). CEL conditions are compiled and type-checked here; every
// error names its key path, as in "authorization.rules[2].when: ERROR:
// <input>:1:1: undeclared reference to 'requst'", and wraps
// config.ErrInvalid; several are joined with errors.Join. An empty Default
// means deny. New does not check backend names: config.Validate does.
func New(cfg *config.Authorization) (*Policy, error) {
	if cfg == nil {
		return nil, nil
	}
	var errs []error
	p := &Policy{rules: make([]rule, len(cfg.Rules))}
	switch cfg.Default {
	case config.EffectAllow:
		p.defaultAllow = true
	case config.EffectDeny, "":
	default:
		errs = append(errs, config.Invalid("authorization.default",
			fmt.Errorf("must be allow or deny, got %q", cfg.Default)))
	}
	for i, rc := range cfg.Rules {
		path := fmt.Sprintf("authorization.rules[%d]", i)
		r := &p.rules[i]
		switch rc.Effect {
		case config.EffectDeny:
			r.deny = true
		case config.EffectAllow:
		default:
			errs = append(errs, config.Invalid(path+".effect",
				fmt.Errorf("must be allow or deny, got %q", rc.Effect)))
		}
		r.tools = compileGlobs(rc.Tools)
		r.resources = compileGlobs(rc.Resources)
		r.prompts = compileGlobs(rc.Prompts)
		r.kinds = len(rc.Tools)+len(rc.Resources)+len(rc.Prompts) > 0
		r.backends = slices.Clone(rc.Backends)
		if rc.When == "" {
			continue
		}
		c, err := compileCondition(rc.When)
		if err != nil {
			errs = append(errs, config.Invalid(path+".when", err))
			continue
		}
		r.cond = c
		if c.deps&readsIdentity != 0 && c.deps&readsItem != 0 && c.deps&readsArguments == 0 {
			p.itemIdentity = true
			p.itemClaims = p.itemClaims || c.deps&readsClaims != 0
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// Decide returns whether id may make request r, and the rule that said so.
// A condition that fails to evaluate counts as holding in a deny rule (fail
// closed) and as not holding in an allow rule.
func (p *Policy) Decide(id auth.Identity, r Request) Decision {
	if p == nil {
		return Decision{Allow: true, Rule: -1}
	}
	e := evaluator{p: p, id: id, r: r}
	d := e.decide()
	e.release()
	return d
}

// selects reports whether r's selectors match r.
func (ru *rule) selects(r *Request) bool {
	if ru.kinds {
		var globs []glob
		switch r.Kind {
		case Tool:
			globs = ru.tools
		case Resource:
			globs = ru.resources
		case Prompt:
			globs = ru.prompts
		}
		if !matchAny(globs, r.Name) {
			return false
		}
	}
	if len(ru.backends) > 0 {
		for _, b := range ru.backends {
			if b == r.Backend {
				return true
			}
		}
		return false
	}
	return true
}

// evaluator decides one request, for Decide or for a Lister. It holds the
// identity and request by value: pointers to the caller's would move them
// to the heap, since the activation copies from them.
type evaluator struct {
	p  *Policy
	id auth.Identity
	r  Request
	// fixed, for a Lister, holds the outcome of each rule's condition as
	// far as the list can know it; nil for Decide.
	fixed []outcome
	idMap map[string]any // id's identity map, built already; nil: built when read
	act   *activation    // taken from the pool on the first evaluation
}

// decide runs the rules: deny rules first, since one that applies wins,
// then allow rules in order, then the default.
func (e *evaluator) decide() Decision {
	rules := e.p.rules
	for i := range rules {
		if ru := &rules[i]; ru.deny && ru.selects(&e.r) && e.holds(i) {
			return Decision{Allow: false, Rule: i}
		}
	}
	for i := range rules {
		if ru := &rules[i]; !ru.deny && ru.selects(&e.r) && e.holds(i) {
			return Decision{Allow: true, Rule: i}
		}
	}
	return Decision{Allow: e.p.defaultAllow, Rule: -1}
}

// holds reports whether rule i's condition holds for the request.
func (e *evaluator) holds(i int) bool {
	ru := &e.p.rules[i]
	if ru.cond == nil {
		return true
	}
	if e.fixed != nil {
		switch e.fixed[i] {
		case outcomeTrue:
			return true
		case outcomeFalse:
			return false
		}
	}
	if e.act == nil {
		e.act = newActivation(&e.id, &e.r, e.idMap)
	}
	ok, err := ru.cond.eval(e.act)
	if err != nil {
		return ru.deny
	}
	return ok
}

// release returns the activation, if any, to its pool.
func (e *evaluator) release() {
	if e.act != nil {
		e.act.release()
		e.act = nil
	}
}
