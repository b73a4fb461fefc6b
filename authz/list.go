package authz

import (
	"encoding/json"
	"strconv"

	"github.com/vmcp/vmcp/auth"
)

// outcome is what a list knows of one rule's condition for one caller.
type outcome uint8

const (
	outcomeEval  outcome = iota // depends on the item: evaluated per item
	outcomeTrue                 // holds for every item
	outcomeFalse                // holds for no item
)

// Lister is one caller's view for lists (tools/list, resources/list,
// templates, prompts/list, find_tool). The zero Lister, and the one a nil
// *Policy returns, shows everything. A Lister is safe for concurrent use.
type Lister struct {
	p     *Policy
	id    auth.Identity
	idMap map[string]any // id's identity map, when a per-item condition reads it
	fixed []outcome      // per rule
	key   string
}

// Lister returns id's view. It evaluates, once, each condition that
// depends on the identity alone (or on nothing).
func (p *Policy) Lister(id auth.Identity) Lister {
	if p == nil {
		return Lister{}
	}
	l := Lister{p: p, id: id, fixed: make([]outcome, len(p.rules))}
	if p.itemIdentity {
		l.idMap = identityMap(id)
	}
	var key []byte
	e := evaluator{p: p, id: id, idMap: l.idMap}
	for i := range p.rules {
		ru := &p.rules[i]
		c := ru.cond
		switch {
		case c == nil:
			l.fixed[i] = outcomeTrue
		case c.deps&readsArguments != 0:
			// Cannot be decided without the call: an allow rule may let
			// it through, a deny rule may not stop it.
			l.fixed[i] = boolOutcome(!ru.deny)
		case c.deps&readsItem != 0:
			l.fixed[i] = outcomeEval
		default:
			holds := e.holds(i)
			l.fixed[i] = boolOutcome(holds)
			if c.deps&readsIdentity != 0 {
				key = append(key, "01"[btoi(holds)])
			}
		}
	}
	e.release()
	if p.itemIdentity {
		key = append(key, '|')
		key = strconv.AppendQuote(key, id.Issuer)
		key = strconv.AppendQuote(key, id.Subject)
	}
	if p.itemClaims {
		// Sorted keys: equal claims encode equally. Verified token claims
		// always encode; should they not, the key stays per caller.
		if claims, err := json.Marshal(id.Claims); err == nil {
			key = append(key, claims...)
		}
	}
	l.key = string(key)
	return l
}

// Visible reports whether the caller may possibly use the item: decided as
// Decide would, except that a rule whose condition reads request.arguments
// cannot be decided for a list and counts as possibly allowing (an allow
// rule matches, a deny rule does not). The method the condition sees is
// the call that would use the item: "tools/call", "resources/read" or
// "prompts/get".
func (l Lister) Visible(kind Kind, name, backend string) bool {
	if l.p == nil {
		return true
	}
	e := evaluator{p: l.p, id: l.id, fixed: l.fixed, idMap: l.idMap,
		r: Request{Method: methodOf(kind), Kind: kind, Name: name, Backend: backend}}
	d := e.decide()
	e.release()
	return d.Allow
}

// Key identifies the caller's outcome set: two callers with equal keys see
// equal lists, so an encoded list can be cached per key rather than per
// caller. Keys compare only between Listers of the same Policy. The key
// holds the outcome of each condition that depends on the identity alone
// (so with such conditions only, callers share keys by outcome); when some
// condition depends on the identity and the item (request.name,
// request.method, backend) it holds the caller's issuer and subject too,
// and when such a condition reads identity.claims, the claims as well: the
// cache is then per caller (per token's claims). A nil Policy's key is "".
func (l Lister) Key() string { return l.key }

// methodOf is the call that uses an item of kind k.
func methodOf(k Kind) string {
	switch k {
	case Tool:
		return "tools/call"
	case Resource:
		return "resources/read"
	case Prompt:
		return "prompts/get"
	}
	return ""
}

func boolOutcome(b bool) outcome {
	if b {
		return outcomeTrue
	}
	return outcomeFalse
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
