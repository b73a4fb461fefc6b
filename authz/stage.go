package authz

import (
	"context"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/vmcp/vmcp/audit"
	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/parse"
)

// StageOptions are what the authz stage needs besides the policy.
type StageOptions struct {
	// Backend returns the backend that serves name (a tool or prompt name,
	// a resource URI) for method (completion/complete: of ref type
	// refType), "" when it is in no backend's catalogue.
	Backend func(method, refType, name string) string
	// Recorder receives an audit event for every denial, with the rule
	// that decided. nil: audit.Discard.
	Recorder audit.Recorder
	// Decided counts decisions by effect ("allow", "deny"). nil: none.
	Decided func(ctx context.Context, effect string)
}

// Stage returns the authz stage: between parse and rate limit, it decides
// every tools/call (the tool behind call_tool too), resources/read,
// resources/(un)subscribe, prompts/get and completion/complete by p. A
// denied request is recorded and marked (parse.Parsed.Denied): it spends
// no rate-limit token, and the endpoint answers it, after the checks every
// request passes, exactly as a request naming something that does not
// exist, so a caller cannot probe for what it may not use. A nil policy is
// no stage at all.
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
			req.Backend = o.Backend(pr.Method, pr.RefType, req.Name)
			id, _ := auth.IdentityFrom(r.Context())
			d := p.Decide(id, req)
			if req.Kind == Resource && d.Allow {
				// A URI that names the same thing another way (dot
				// segments, escapes) must be allowed under both spellings.
				if alt, ok := canonicalURI(req.Name); ok {
					req.Name = alt
					d = p.Decide(id, req)
					req.Name = pr.ResourceID
				}
			}
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
				Time: time.Now(), RequestID: string(pr.ID), SessionID: r.Header.Get("Mcp-Session-Id"), Issuer: id.Issuer,
				Subject: id.Subject, ClientAddr: r.RemoteAddr, Method: pr.Method, Name: parse.TruncateName(req.Name),
				Via: pr.Optimizer, Backend: req.Backend, Outcome: audit.OutcomeForbidden, Reason: "denied by " + reason,
			})
			pr.Denied = true
			next.ServeHTTP(w, r)
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
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
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

// canonicalURI returns uri with dot segments removed and percent escapes
// of its path decoded, when that differs from uri: the spelling a backend
// that resolves paths would read.
func canonicalURI(uri string) (string, bool) {
	if !strings.Contains(uri, "%") && !strings.Contains(uri, "/.") && !strings.Contains(uri, "\\") {
		return "", false
	}
	u, err := url.Parse(uri)
	if err != nil {
		return "", false
	}
	p := strings.ReplaceAll(u.Path, "\\", "/")
	if p != "" {
		cleaned := path.Clean(p)
		if strings.HasSuffix(p, "/") && cleaned != "/" {
			cleaned += "/"
		}
		u.Path, u.RawPath = cleaned, ""
	}
	c := u.String()
	if dec, err := url.PathUnescape(c); err == nil {
		c = dec
	}
	return c, c != uri
}
