package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/server"
)

// Example embeds vmcp in front of one backend MCP server and calls a tool
// through it under its post-aggregation name.
func Example() {
	// A backend MCP server with one tool.
	backend := mcpserver.NewMCPServer("clock", "1")
	backend.AddTool(mcp.NewTool("now"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("it is noon"), nil
	})
	bs := httptest.NewServer(mcpserver.NewStreamableHTTPServer(backend))
	defer bs.Close()

	cfg, err := config.Parse([]byte(`
name: example
server: {port: 0, drainGrace: 0s} # no load balancer to wait for
backends:
  - {name: clock, transport: streamable-http, url: `+bs.URL+`/mcp}
`), nil)
	if err != nil {
		panic(err)
	}
	srv, err := server.New(*cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := srv.Start(ctx); err != nil {
		panic(err)
	}
	defer srv.Shutdown(ctx)

	c, _ := client.NewStreamableHttpClient("http://" + srv.Addr().String() + "/mcp")
	defer c.Close()
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		panic(err)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = "clock_now"
	res, err := c.CallTool(ctx, req)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Content[0].(mcp.TextContent).Text)
	// Output: it is noon
}
