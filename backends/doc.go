// Package backends connects vmcp to its backend MCP servers over
// streamable HTTP, SSE and stdio, injects outgoing credentials, watches each
// connection and reconnects it with capped backoff, and closes everything on
// shutdown.
//
// A Manager owns one supervised connection per configured backend, used for
// discovery and health checks. Callers ask it for "the session of client C
// to backend B" with Session: a client with an MCP session gets its own
// session to each HTTP backend (bounded, closed by CloseClient), while a
// stdio backend, and a client without a session, share the supervised
// connection. What a backend sends for a client reaches it through a
// Relay. The package knows nothing about aggregation names: it speaks each
// backend's original names.
package backends
