package main

import (
	"context"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// syntheticSystems are the made-up systems synthetic tools act on, with the
// kind of record each holds.
var syntheticSystems = []struct{ system, record string }{
	{"billing", "invoice"},
	{"inventory", "stock item"},
	{"CRM", "customer account"},
	{"support desk", "ticket"},
	{"analytics", "dashboard"},
	{"HR", "employee profile"},
	{"logistics", "shipment"},
	{"marketing", "campaign"},
	{"security", "audit event"},
	{"object storage", "bucket"},
	{"CI", "pipeline run"},
	{"calendar", "meeting"},
}

// syntheticActions describe what a synthetic tool does; %[1]s is the
// region, %[2]s the system and %[3]s the record kind.
var syntheticActions = []string{
	"Looks up one %[3]s in the %[1]s %[2]s system by its identifier and returns its current fields.",
	"Lists %[3]ss in the %[1]s %[2]s system whose identifier starts with the given prefix, newest first, at most limit of them.",
	"Summarises recent changes to a %[3]s in the %[1]s %[2]s system: who changed what, and when.",
	"Checks whether a %[3]s in the %[1]s %[2]s system is healthy and explains any problem it finds.",
	"Exports a %[3]s from the %[1]s %[2]s system as a compact JSON document for sharing.",
	"Counts the %[3]ss in the %[1]s %[2]s system that reference the given identifier, grouped by status.",
}

// syntheticRegions multiply the combinations so that big catalogues keep
// mostly distinct descriptions.
var syntheticRegions = []string{"EU", "US", "APAC", "LATAM", "staging", "legacy", "shared", "internal"}

// syntheticTools returns n cheap tools named tool_0000, tool_0001, ... with
// realistic descriptions and a small input schema, used to build large
// catalogues for benchmarks.
func syntheticTools(backendName string, n int) []server.ServerTool {
	tools := make([]server.ServerTool, 0, n)
	for i := range n {
		sys := syntheticSystems[i%len(syntheticSystems)]
		action := syntheticActions[(i/len(syntheticSystems))%len(syntheticActions)]
		region := syntheticRegions[(i/(len(syntheticSystems)*len(syntheticActions)))%len(syntheticRegions)]
		name := fmt.Sprintf("tool_%04d", i)
		tool := mcp.NewTool(name,
			mcp.WithDescription(fmt.Sprintf(action, region, sys.system, sys.record)),
			mcp.WithString("id", mcp.Required(), mcp.Description(fmt.Sprintf("Identifier (or prefix) of the %s.", sys.record))),
			mcp.WithInteger("limit", mcp.Min(1), mcp.Max(100), mcp.DefaultNumber(10), mcp.Description("Maximum number of entries to return.")),
			readOnly(),
		)
		record := sys.record
		tools = append(tools, server.ServerTool{
			Tool: tool,
			Handler: func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				id, err := req.RequireString("id")
				if err != nil {
					return mcp.NewToolResultError(err.Error()), nil
				}
				return mcp.NewToolResultText(fmt.Sprintf("%s on %s: %s %s (limit %d)",
					name, backendName, record, id, req.GetInt("limit", 10))), nil
			},
		})
	}
	return tools
}
