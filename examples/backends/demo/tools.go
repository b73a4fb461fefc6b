package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// maxSleepMs bounds the sleep tool.
const maxSleepMs = 10 * 60 * 1000

// toolNamePattern is what add_tool accepts: the MCP tool name syntax.
var toolNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// addResult is the structured result of the add tool.
type addResult struct {
	Sum float64 `json:"sum" jsonschema:"a + b"`
}

// whoamiResult is the structured result of the whoami tool.
type whoamiResult struct {
	Name          string `json:"name" jsonschema:"the --name of this backend"`
	DemoToken     string `json:"demoToken" jsonschema:"the X-Demo-Token HTTP header this call arrived with, or empty"`
	Authorization string `json:"authorization" jsonschema:"the Authorization HTTP header this call arrived with, or empty"`
}

// readOnly marks a tool as a read-only, idempotent, closed-world one.
func readOnly() mcp.ToolOption {
	return mcp.WithToolAnnotation(mcp.ToolAnnotation{
		ReadOnlyHint:    mcp.ToBoolPtr(true),
		DestructiveHint: mcp.ToBoolPtr(false),
		IdempotentHint:  mcp.ToBoolPtr(true),
		OpenWorldHint:   mcp.ToBoolPtr(false),
	})
}

// mutating marks a tool as one that changes the backend's state.
func mutating(destructive bool) mcp.ToolOption {
	return mcp.WithToolAnnotation(mcp.ToolAnnotation{
		ReadOnlyHint:    mcp.ToBoolPtr(false),
		DestructiveHint: mcp.ToBoolPtr(destructive),
		IdempotentHint:  mcp.ToBoolPtr(false),
		OpenWorldHint:   mcp.ToBoolPtr(false),
	})
}

// formatNumber prints a float the way JSON would, without a trailing ".0".
func formatNumber(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// commonTools returns the tools every flavor has.
func (b *backend) commonTools() []server.ServerTool {
	return []server.ServerTool{
		{
			Tool: mcp.NewTool("echo",
				mcp.WithDescription("Returns the given text unchanged."),
				mcp.WithString("text", mcp.Required(), mcp.Description("Text to send back.")),
				readOnly(),
			),
			Handler: b.echo,
		},
		{
			Tool: mcp.NewTool("add",
				mcp.WithDescription("Adds two numbers and returns the sum, as text and as structured content {\"sum\": N}."),
				mcp.WithNumber("a", mcp.Required(), mcp.Description("First addend.")),
				mcp.WithNumber("b", mcp.Required(), mcp.Description("Second addend.")),
				mcp.WithOutputSchema[addResult](),
				readOnly(),
			),
			Handler: b.add,
		},
		{
			Tool: mcp.NewTool("fail",
				mcp.WithDescription("Always fails: returns a tool result with isError set, to exercise error paths."),
				readOnly(),
			),
			Handler: b.fail,
		},
		{
			Tool: mcp.NewTool("sleep",
				mcp.WithDescription("Waits for the given number of milliseconds, then returns; stops early when the call is cancelled."),
				mcp.WithNumber("ms", mcp.Required(), mcp.Min(0), mcp.Max(maxSleepMs), mcp.Description("How long to wait, in milliseconds.")),
				readOnly(),
			),
			Handler: b.sleep,
		},
		{
			Tool: mcp.NewTool("whoami",
				mcp.WithDescription("Reports this backend's name and the X-Demo-Token and Authorization HTTP headers the call arrived with (empty over stdio)."),
				mcp.WithOutputSchema[whoamiResult](),
				readOnly(),
			),
			Handler: b.whoami,
		},
		{
			Tool: mcp.NewTool("add_tool",
				mcp.WithDescription("Registers a new tool with the given name that echoes its text argument; clients get notifications/tools/list_changed."),
				mcp.WithString("name", mcp.Required(), mcp.Pattern(toolNamePattern.String()), mcp.Description("Name of the tool to add.")),
				mutating(false),
			),
			Handler: b.addTool,
		},
		{
			Tool: mcp.NewTool("remove_tool",
				mcp.WithDescription("Removes the tool with the given name; clients get notifications/tools/list_changed."),
				mcp.WithString("name", mcp.Required(), mcp.Description("Name of the tool to remove.")),
				mutating(true),
			),
			Handler: b.removeTool,
		},
	}
}

// echo returns its text argument.
func (b *backend) echo(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	text, err := req.RequireString("text")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	return mcp.NewToolResultText(text), nil
}

// add returns a + b.
func (b *backend) add(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	x, err := req.RequireFloat("a")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	y, err := req.RequireFloat("b")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	sum := x + y
	return mcp.NewToolResultStructured(addResult{Sum: sum}, formatNumber(sum)), nil
}

// fail always returns an error result.
func (b *backend) fail(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	return mcp.NewToolResultError("demo failure from " + b.name), nil
}

// sleep waits ms milliseconds or until ctx is done.
func (b *backend) sleep(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	ms, err := req.RequireFloat("ms")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	if math.IsNaN(ms) || ms < 0 || ms > maxSleepMs {
		return mcp.NewToolResultError(fmt.Sprintf("ms must be between 0 and %d", maxSleepMs)), nil
	}
	t := time.NewTimer(time.Duration(ms * float64(time.Millisecond)))
	defer t.Stop()
	select {
	case <-t.C:
		return mcp.NewToolResultText(fmt.Sprintf("slept %s ms on %s", formatNumber(ms), b.name)), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// whoami reports the backend name and the credentials headers it saw.
func (b *backend) whoami(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	res := whoamiResult{
		Name:          b.name,
		DemoToken:     requestHeader(ctx, "X-Demo-Token"),
		Authorization: requestHeader(ctx, "Authorization"),
	}
	text, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	return mcp.NewToolResultStructured(res, string(text)), nil
}

// addTool registers a runtime echo tool.
func (b *backend) addTool(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	name, err := req.RequireString("name")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	if !toolNamePattern.MatchString(name) {
		return mcp.NewToolResultError(fmt.Sprintf("invalid tool name %q: want %s", name, toolNamePattern)), nil
	}

	b.toolsMu.Lock()
	defer b.toolsMu.Unlock()
	if b.srv.GetTool(name) != nil {
		return mcp.NewToolResultError(fmt.Sprintf("tool %q already exists on %s", name, b.name)), nil
	}
	tool := mcp.NewTool(name,
		mcp.WithDescription(fmt.Sprintf("Added at runtime to %s: returns its text argument.", b.name)),
		mcp.WithString("text", mcp.Description("Text to send back.")),
		readOnly(),
	)
	b.srv.AddTool(tool, func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText(req.GetString("text", "")), nil
	})
	return mcp.NewToolResultText(fmt.Sprintf("added tool %s to %s", name, b.name)), nil
}

// removeTool deletes a tool.
func (b *backend) removeTool(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	name, err := req.RequireString("name")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}

	b.toolsMu.Lock()
	defer b.toolsMu.Unlock()
	if b.srv.GetTool(name) == nil {
		return mcp.NewToolResultError(fmt.Sprintf("no tool %q on %s", name, b.name)), nil
	}
	b.srv.DeleteTools(name)
	return mcp.NewToolResultText(fmt.Sprintf("removed tool %s from %s", name, b.name)), nil
}
