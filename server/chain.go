package server

import (
	"net/http"
)

// stage is one named middleware of the request path.
type stage struct {
	name string
	wrap func(http.Handler) http.Handler
}

// stages is the request path of DESIGN.md, in execution order. It is the
// only place the order is written.
func (s *Server) stages(d deps) []stage {
	return []stage{
		{"recover", d.recover},     // first: a panic anywhere below becomes a JSON-RPC 500, never a dropped connection
		{"telemetry", d.telemetry}, // before the rest, so spans and metrics cover every later stage, rejections included
		{"bodylimit", d.bodyLimit}, // before anything reads the body: oversized requests cost nothing
		{"auth", d.auth},           // before parse: unauthenticated bodies are never decoded
		{"parse", d.parse},         // reads the body once; every stage below reads *parse.Parsed
		{"authz", d.authz},         // after parse, needs the name; before ratelimit, so a denied call spends no token
		{"ratelimit", d.rateLimit}, // after parse, needs the tool name; before audit, so rejections never reach success audit
		{"audit", d.audit},         // after ratelimit: records what is served; earlier stages record their own rejections
		{"discovery", d.discovery}, // last before the handler: the catalogue the handler serves is current
	}
}

// deps are the built middleware of each stage.
type deps struct {
	recover, telemetry, bodyLimit, auth, parse, authz, rateLimit, audit, discovery func(http.Handler) http.Handler
}

// chain folds the stages around h, the first stage outermost.
func chain(stages []stage, h http.Handler) http.Handler {
	for i := len(stages) - 1; i >= 0; i-- {
		h = stages[i].wrap(h)
	}
	return h
}
