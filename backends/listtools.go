package backends

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// maxListPages bounds cursor following against a backend that never stops.
const maxListPages = 10000

// listID numbers tools/list requests. Over stdio and SSE responses are
// matched to requests by id alone, so ids must be unique among concurrent
// requests on one connection.
var listID atomic.Uint64

// listTools lists every tool of a backend, following cursors, and keeps each
// tool's input and output schema exactly as the backend sent them (mcp-go's
// structured schema type drops keywords such as oneOf or $schema).
func listTools(ctx context.Context, t transport.Interface) ([]mcp.Tool, error) {
	var (
		tools  []mcp.Tool
		cursor mcp.Cursor
		seen   = map[mcp.Cursor]bool{}
	)
	for page := 0; ; page++ {
		if page == maxListPages {
			return nil, errors.New("too many pages")
		}
		var params any
		if cursor != "" {
			params = map[string]any{"cursor": cursor}
		}
		resp, err := t.SendRequest(ctx, transport.JSONRPCRequest{
			JSONRPC: mcp.JSONRPC_VERSION,
			ID:      mcp.NewRequestId(fmt.Sprintf("vmcp-tools-%d", listID.Add(1))),
			Method:  string(mcp.MethodToolsList),
			Params:  params,
		})
		if err != nil {
			return nil, transport.NewError(err)
		}
		if resp.Error != nil {
			return nil, resp.Error.AsError()
		}
		got, next, err := decodeTools(resp.Result)
		if err != nil {
			return nil, err
		}
		tools = append(tools, got...)
		if next == "" {
			return tools, nil
		}
		if seen[next] {
			return nil, fmt.Errorf("cursor %q repeated", next)
		}
		seen[next] = true
		cursor = next
	}
}

func decodeTools(result json.RawMessage) ([]mcp.Tool, mcp.Cursor, error) {
	var typed struct {
		Tools      []mcp.Tool `json:"tools"`
		NextCursor mcp.Cursor `json:"nextCursor"`
	}
	if err := json.Unmarshal(result, &typed); err != nil {
		return nil, "", fmt.Errorf("decode tools: %w", err)
	}
	var raw struct {
		Tools []struct {
			InputSchema  json.RawMessage `json:"inputSchema"`
			OutputSchema json.RawMessage `json:"outputSchema"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(result, &raw); err != nil {
		return nil, "", fmt.Errorf("decode tool schemas: %w", err)
	}
	for i := range typed.Tools {
		t := &typed.Tools[i]
		if s := raw.Tools[i].InputSchema; len(s) > 0 && string(s) != "null" {
			t.InputSchema = mcp.ToolInputSchema{}
			t.RawInputSchema = s
		}
		if s := raw.Tools[i].OutputSchema; len(s) > 0 && string(s) != "null" {
			t.OutputSchema = mcp.ToolOutputSchema{}
			t.RawOutputSchema = s
		}
	}
	return typed.Tools, typed.NextCursor, nil
}
