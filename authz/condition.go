package authz

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/vmcp/vmcp/auth"
)

// The variables a condition may read.
const (
	varIdentity = "identity" // map: issuer, subject, claims
	varRequest  = "request"  // map: method, name, arguments
	varBackend  = "backend"  // string
)

// deps says what a condition reads, which decides when a list can
// evaluate it: once per caller, once per item, or not at all.
type deps uint8

const (
	readsIdentity  deps = 1 << iota
	readsClaims         // identity other than .issuer and .subject
	readsItem           // request.name, request.method or backend
	readsArguments      // request.arguments, or request other than .name and .method
)

// condition is one compiled `when`.
type condition struct {
	prg  cel.Program
	deps deps
}

// celEnv is the environment every condition compiles in; it is built once.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable(varIdentity, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(varRequest, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(varBackend, cel.StringType),
	)
})

// compileCondition parses and type-checks src, which must be a bool (or
// dyn, checked when evaluated) expression.
func compileCondition(src string) (*condition, error) {
	env, err := celEnv()
	if err != nil {
		return nil, err
	}
	a, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, celIssues(iss)
	}
	if t := a.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("must be a bool condition, got %s", t)
	}
	if err := unknownFields(a.NativeRep().Expr()); err != nil {
		return nil, err
	}
	prg, err := env.Program(a, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return &condition{prg: prg, deps: dependencies(a.NativeRep().Expr())}, nil
}

// celIssues turns CEL's issues into one error per issue, each one line:
// "ERROR: <input>:1:1: undeclared reference to 'requst'".
func celIssues(iss *cel.Issues) error {
	var errs []error
	for _, e := range iss.Errors() {
		msg := strings.TrimSuffix(e.Message, " (in container '')")
		errs = append(errs, fmt.Errorf("ERROR: <input>:%d:%d: %s", e.Location.Line(), e.Location.Column()+1, msg))
	}
	if len(errs) == 0 {
		return iss.Err()
	}
	return errors.Join(errs...)
}

// fieldsOf are the fields of the map variables: CEL types them as maps, so
// it would take identity.claim (for claims) at its word and fail every
// evaluation; compileCondition refuses it instead.
var fieldsOf = map[string][]string{
	varIdentity: {"issuer", "subject", "claims"},
	varRequest:  {"method", "name", "arguments"},
}

// unknownFields reports the first field of identity or request that e
// selects and that does not exist.
func unknownFields(e celast.Expr) error {
	var err error
	celast.PreOrderVisit(e, celast.NewExprVisitor(func(x celast.Expr) {
		if err != nil || x.Kind() != celast.SelectKind {
			return
		}
		s := x.AsSelect()
		op := s.Operand()
		if op.Kind() != celast.IdentKind {
			return
		}
		fields, ok := fieldsOf[op.AsIdent()]
		if ok && !slices.Contains(fields, s.FieldName()) {
			err = fmt.Errorf("%s has no field %q (it has %s)", op.AsIdent(), s.FieldName(), strings.Join(fields, ", "))
		}
	}))
	return err
}

// dependencies finds which variables e reads. request.name and
// request.method read the item; any other use of request counts as
// reading the arguments. Any use of identity other than identity.issuer
// and identity.subject counts as reading the claims.
func dependencies(e celast.Expr) deps {
	var d deps
	plain := map[int64]bool{} // idents read only as one of the fields below
	plainFields := map[string][2]string{
		varRequest:  {"name", "method"},
		varIdentity: {"issuer", "subject"},
	}
	celast.PreOrderVisit(e, celast.NewExprVisitor(func(x celast.Expr) {
		switch x.Kind() {
		case celast.SelectKind:
			s := x.AsSelect()
			if op := s.Operand(); op.Kind() == celast.IdentKind {
				if f, ok := plainFields[op.AsIdent()]; ok && (s.FieldName() == f[0] || s.FieldName() == f[1]) {
					plain[op.ID()] = true
				}
			}
		case celast.IdentKind:
			switch x.AsIdent() {
			case varIdentity:
				d |= readsIdentity
				if !plain[x.ID()] {
					d |= readsClaims
				}
			case varBackend:
				d |= readsItem
			case varRequest:
				d |= readsItem
				if !plain[x.ID()] {
					d |= readsArguments
				}
			}
		}
	}))
	return d
}

// eval evaluates c; a result that is not a bool is an error.
func (c *condition) eval(a *activation) (bool, error) {
	a.wantArgs = c.deps&readsArguments != 0
	v, _, err := c.prg.Eval(a)
	if err != nil {
		return false, err
	}
	b, ok := v.(types.Bool)
	if !ok {
		return false, fmt.Errorf("condition is a %s, not a bool", v.Type().TypeName())
	}
	return bool(b), nil
}

// emptyMap stands for no claims and no arguments; never written.
var emptyMap = map[string]any{}

// identityMap is the value of the identity variable for id.
func identityMap(id auth.Identity) map[string]any {
	m := make(map[string]any, 3)
	fillIdentity(m, id)
	return m
}

func fillIdentity(m map[string]any, id auth.Identity) {
	claims := id.Claims
	if claims == nil {
		claims = emptyMap
	}
	m["issuer"], m["subject"], m["claims"] = id.Issuer, id.Subject, claims
}

// activation supplies the variables of one evaluation, building the
// identity and request maps on first use. It comes from a pool, with its
// maps, so that a decision allocates little.
type activation struct {
	id       auth.Identity
	r        Request
	identity map[string]any // nil until built; ownID or a Lister's
	ownID    map[string]any
	request  map[string]any
	reqBuilt bool
	wantArgs bool // the condition being evaluated reads request.arguments
	argsDone bool
}

var _ interpreter.Activation = (*activation)(nil)

var activations = sync.Pool{New: func() any {
	return &activation{ownID: make(map[string]any, 3), request: make(map[string]any, 3)}
}}

// newActivation returns a pooled activation for id and r; identity, if not
// nil, is id's identity map, built already.
func newActivation(id *auth.Identity, r *Request, identity map[string]any) *activation {
	a := activations.Get().(*activation)
	a.id, a.r, a.identity = *id, *r, identity
	return a
}

// release clears a and puts it back in the pool.
func (a *activation) release() {
	clear(a.ownID)
	clear(a.request)
	*a = activation{ownID: a.ownID, request: a.request}
	activations.Put(a)
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case varIdentity:
		if a.identity == nil {
			fillIdentity(a.ownID, a.id)
			a.identity = a.ownID
		}
		return a.identity, true
	case varRequest:
		if !a.reqBuilt {
			a.request["method"], a.request["name"] = a.r.Method, a.r.Name
			a.reqBuilt = true
		}
		if a.wantArgs && !a.argsDone {
			if args, ok := decodeArguments(a.r.Arguments); ok {
				a.request["arguments"] = args
			}
			a.argsDone = true
		}
		return a.request, true
	case varBackend:
		return a.r.Backend, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// decodeArguments decodes a call's raw JSON arguments: none (or null) is
// an empty map; anything but an object is not ok, which leaves
// request.arguments unset, so a condition that reads it fails.
func decodeArguments(raw []byte) (map[string]any, bool) {
	if len(raw) == 0 {
		return emptyMap, true
	}
	v, ok := decodeJSON(raw)
	if !ok {
		return nil, false
	}
	if v == nil {
		return emptyMap, true
	}
	m, ok := v.(map[string]any)
	if !ok || foldedTwice(m) {
		return nil, false
	}
	return m, true
}

// foldedTwice reports whether two keys of m differ only in case: a backend
// that matches keys ignoring case (as encoding/json does) may read the one
// a condition did not, so such arguments leave request.arguments unset
// (a deny rule that reads them denies, an allow rule does not allow).
func foldedTwice(m map[string]any) bool {
	if len(m) < 2 {
		return false
	}
	seen := make(map[string]struct{}, len(m))
	for k := range m {
		l := strings.ToLower(k)
		if _, dup := seen[l]; dup {
			return true
		}
		seen[l] = struct{}{}
	}
	return false
}
