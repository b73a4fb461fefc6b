package audit

import (
	"context"
	"time"
)

// Outcome is how a request ended, from the audit trail's point of view.
type Outcome string

// The outcomes an audit event can record.
const (
	OutcomeSuccess         Outcome = "success"
	OutcomeToolError       Outcome = "tool_error"
	OutcomeBackendError    Outcome = "backend_error"
	OutcomeUnauthenticated Outcome = "unauthenticated"
	OutcomeForbidden       Outcome = "forbidden"
	OutcomeRateLimited     Outcome = "rate_limited"
	OutcomeBadRequest      Outcome = "bad_request"
)

// Event is one decision or request in the audit trail. Fields that a stage
// does not know (the auth stage runs before the body is parsed, so it has
// no method) stay empty. Events are comparable with ==.
type Event struct {
	Time time.Time
	// RequestID is the JSON-RPC id of the request as sent: the JSON text
	// of a number or string. Empty for notifications and refusals before
	// parse.
	RequestID string
	// SessionID is the MCP session (Mcp-Session-Id) the request belongs
	// to, if any.
	SessionID  string
	Issuer     string
	Subject    string
	ClientAddr string
	Method     string
	// Name is the post-aggregation tool or prompt name, or resource URI.
	// For a call through the optimizer it is the tool call_tool called.
	Name string
	// Via names the optimizer tool a tools/call went to, if any:
	// call_tool (Name is then the tool it called) or find_tool (a search,
	// not a call of a catalogue tool; never in the trail).
	Via string
	// Backend and OriginalName say who served Name, under which name,
	// when Name is in the catalogue.
	Backend      string
	OriginalName string
	// Arguments are the raw JSON arguments of a tools/call or prompts/get,
	// only when audit.includeArguments is on. When ArgumentsTruncated is
	// set they are the first audit.maxArgumentBytes bytes and no longer
	// valid JSON.
	Arguments          string
	ArgumentsTruncated bool
	Outcome            Outcome
	// Reason says why a request was refused or failed, in a few words;
	// never a credential.
	Reason   string
	Duration time.Duration
	// ResponseBytes is the size of the response body sent to the client.
	ResponseBytes int64
}

// Recorder receives audit events. Record must not block the request path.
type Recorder interface {
	Record(ctx context.Context, e Event)
}

// Discard is a Recorder that drops every event.
var Discard Recorder = discard{}

type discard struct{}

func (discard) Record(context.Context, Event) {}

// Tee returns a Recorder that hands every event to each of recorders in
// turn. nil and Discard members are left out; with none left Tee returns
// Discard, with one it returns that one.
func Tee(recorders ...Recorder) Recorder {
	var live tee
	for _, r := range recorders {
		if r == nil || r == Discard {
			continue
		}
		if t, ok := r.(tee); ok {
			live = append(live, t...)
			continue
		}
		live = append(live, r)
	}
	switch len(live) {
	case 0:
		return Discard
	case 1:
		return live[0]
	}
	return live
}

type tee []Recorder

func (t tee) Record(ctx context.Context, e Event) {
	for _, r := range t {
		r.Record(ctx, e)
	}
}
