// Package backends connects vmcp to its backend MCP servers over
// streamable HTTP, SSE and stdio, injects outgoing credentials, watches each
// connection and reconnects it with capped backoff, and closes everything on
// shutdown.
//
// A Manager owns one supervised connection per configured backend. Callers
// ask it for "the session of client C to backend B" with Session; today every
// client shares the backend's one connection, and the signature lets that
// change without touching callers. The package knows nothing about
// aggregation names: it speaks each backend's original names.
package backends
