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
// no method) stay empty.
type Event struct {
	Time       time.Time
	Issuer     string
	Subject    string
	ClientAddr string
	Method     string
	// Name is the post-aggregation tool or prompt name, or resource URI.
	// For a call through the optimizer it is the tool call_tool called.
	Name string
	// Via names the optimizer tool a call came through (call_tool), if
	// any.
	Via     string
	Outcome Outcome
	// Reason says why a request was refused, in a few words; never a
	// credential.
	Reason   string
	Duration time.Duration
}

// Recorder receives audit events. Record must not block the request path.
type Recorder interface {
	Record(ctx context.Context, e Event)
}

// Discard is a Recorder that drops every event.
var Discard Recorder = discard{}

type discard struct{}

func (discard) Record(context.Context, Event) {}
