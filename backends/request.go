package backends

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// cancelTimeout bounds sending notifications/cancelled for a call whose
// context ended.
const cancelTimeout = 2 * time.Second

// request sends one request through the transport under an id of vmcp's
// ("vmcp-N": a string, so it cannot collide with mcp-go's own numeric ids
// on the same connection) and returns the result. When ctx ends first, the
// backend is told with notifications/cancelled, over every transport (mcp-go
// sends none over HTTP). Errors are as mcp-go's client returns them: a
// *transport.Error for a failed exchange, the JSON-RPC error otherwise.
func (c *conn) request(ctx context.Context, method string, params any) (*json.RawMessage, error) {
	id := mcp.NewRequestId("vmcp-" + strconv.FormatUint(c.ids.Add(1), 10))
	if err := ctx.Err(); err != nil {
		return nil, transport.NewError(err)
	}
	t := c.client.GetTransport()
	resp, err := t.SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: mcp.JSONRPC_VERSION, ID: id, Method: method, Params: params})
	if err != nil {
		if ctx.Err() != nil {
			// Off the caller's goroutine: the call fails within its own
			// deadline, not that plus the time to tell the backend.
			c.cancelLater(func() { c.cancel(ctx, id) })
		}
		return nil, transport.NewError(err)
	}
	if resp.Error != nil {
		return nil, resp.Error.AsError()
	}
	return &resp.Result, nil
}

// cancel tells the backend to stop working on request id, best effort and
// within cancelTimeout.
func (c *conn) cancel(ctx context.Context, id mcp.RequestId) {
	reason := "cancelled"
	if err := context.Cause(ctx); err != nil {
		reason = err.Error()
	}
	ctx, stop := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	defer stop()
	n := mcp.JSONRPCNotification{JSONRPC: mcp.JSONRPC_VERSION, Notification: mcp.Notification{
		Method: string(mcp.MethodNotificationCancelled),
		Params: mcp.NotificationParams{AdditionalFields: map[string]any{"requestId": id, "reason": reason}},
	}}
	_ = c.client.GetTransport().SendNotification(ctx, n)
}
