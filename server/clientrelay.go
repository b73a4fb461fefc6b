package server

import (
	"log/slog"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// clientRelay carries what backends send for a client to that client
// through mcp-go's server (it is the backends' Relay): requests outside a
// relayed call (sampling, elicitation, roots on a backend's GET stream or
// from a shared stdio process) and notifications outside one (progress of
// calls served through mcp-go, log messages, resource updates).
type clientRelay struct {
	mcp *mcpserver.MCPServer
	log *slog.Logger
	// sessions holds the live client sessions mcp-go registered, by id
	// (relay's hooks keep it): a backend's request that arrives outside its
	// call is sent to the client session it belongs to.
	sessions sync.Map
	// known returns the capabilities a client session declared, when the
	// server's session table has them: a session another replica opened
	// has no mcp-go session here with them. nil: mcp-go's only.
	known func(id string) (mcp.ClientCapabilities, bool)
	// out queues the notifications relayed to each client session; its
	// close is the clientRelay's.
	out outboxes
}

// newClientRelay returns the relay to the clients of mcp.
func newClientRelay(mcp *mcpserver.MCPServer, log *slog.Logger) *clientRelay {
	r := &clientRelay{mcp: mcp, log: log}
	r.out.live = func(id string) bool {
		_, ok := r.sessions.Load(id)
		return ok
	}
	r.out.onErr = func(method string, err error) {
		r.log.Debug("relay notification", "method", method, "error", err)
	}
	r.out.onDrop = func(id string, n int, first bool) {
		if first {
			r.log.Warn("client session's notification queue is full; dropping notifications until it drains",
				"client_session_prefix", prefix(id), "queue", outboxLen)
			return
		}
		r.log.Warn("notifications dropped on a full queue", "client_session_prefix", prefix(id), "dropped", n)
	}
	return r
}
