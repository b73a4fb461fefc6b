package authz

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/parse"
)

// StageOptions are what the authz stage needs besides the policy.
type StageOptions struct {
	// Backend returns the backend that serves name (a tool or prompt name,
	// a resource URI) for method, "" when it is in no backend's catalogue.
	Backend func(method, name string) string
	// Deny answers a denied request exactly as a request naming something
	// that does not exist is answered (same status, code and message
	// form), so a caller cannot probe for what it may not use.
	Deny func(w http.ResponseWriter, r *http.Request, p *parse.Parsed)
	// Recorder receives an audit event for every denial, with the rule
	// that decided. nil: audit.Discard.
	Recorder audit.Recorder
	// Decided counts decisions by effect ("allow", "deny"). nil: none.
	Decided func(ctx context.Context, effect string)
}

// Stage returns the authz stage: between parse and rate limit, it decides
// every tools/call (the tool behind call_tool too), resources/read,
// resources/subscribe, prompts/get and completion/complete by p; a denied
// request is answered by o.Deny and spends no rate-limit token. A nil
// policy is no stage at all.
func Stage(p *Policy, o StageOptions) func(http.Handler) http.Handler {
	if p == nil {
		return func(next http.Handler) http.Handler { return next }
	}
	if o.Recorder == nil {
		o.Recorder = audit.Discard
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			pr, ok := parse.FromContext(r.Context())
			if !ok || pr.Batch {
				next.ServeHTTP(w, r)
				return
			}
			req, covered := request(pr)
			if !covered {
				next.ServeHTTP(w, r)
				return
			}
			req.Backend = o.Backend(pr.Method, req.Name)
			id, _ := auth.IdentityFrom(r.Context())
			d := p.Decide(id, req)
			effect := "allow"
			if !d.Allow {
				effect = "deny"
			}
			if o.Decided != nil {
				o.Decided(r.Context(), effect)
			}
			if d.Allow {
				next.ServeHTTP(w, r)
				return
			}
			reason := "authorization.default"
			if d.Rule >= 0 {
				reason = "authorization.rules[" + strconv.Itoa(d.Rule) + "]"
			}
			o.Recorder.Record(r.Context(), audit.Event{
				Time: time.Now(), RequestID: string(pr.ID), Issuer: id.Issuer, Subject: id.Subject,
				ClientAddr: r.RemoteAddr, Method: pr.Method, Name: parse.TruncateName(req.Name), Via: pr.Optimizer,
				Backend: req.Backend, Outcome: audit.OutcomeForbidden, Reason: "denied by " + reason,
			})
			o.Deny(w, r, pr)
		})
	}
}

// request is what the policy decides for p, and whether p is a request
// the stage covers.
func request(p *parse.Parsed) (Request, bool) {
	r := Request{Method: p.Method, Name: p.ResourceID}
	switch p.Method {
	case "tools/call":
		if p.Optimizer == parse.FindToolName || p.ResourceID == "" {
			return r, false // a search, or a call_tool naming nothing: its handler answers
		}
		r.Kind, r.Arguments = Tool, p.Arguments
	case "prompts/get":
		r.Kind, r.Arguments = Prompt, p.Arguments
	case "resources/read", "resources/subscribe":
		r.Kind = Resource
	case "completion/complete":
		switch p.RefType {
		case "ref/prompt":
			r.Kind = Prompt
		case "ref/resource":
			r.Kind = Resource
		default:
			return r, false
		}
	default:
		return r, false
	}
	return r, r.Name != ""
}
