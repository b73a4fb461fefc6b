package backends

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// pagedTransport answers tools/list from pages, keyed by the cursor asked
// for ("" for the first page).
type pagedTransport struct {
	pages   map[string]string // cursor → result JSON
	rpcErr  *mcp.JSONRPCErrorDetails
	sendErr error
	asked   []string
}

func (p *pagedTransport) SendRequest(_ context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	if p.sendErr != nil {
		return nil, p.sendErr
	}
	cursor := ""
	if m, ok := req.Params.(map[string]any); ok {
		cursor = fmt.Sprint(m["cursor"])
	}
	p.asked = append(p.asked, cursor)
	if p.rpcErr != nil {
		return &transport.JSONRPCResponse{JSONRPC: "2.0", ID: req.ID, Error: p.rpcErr}, nil
	}
	return &transport.JSONRPCResponse{JSONRPC: "2.0", ID: req.ID, Result: json.RawMessage(p.pages[cursor])}, nil
}

func (*pagedTransport) Start(context.Context) error { return nil }
func (*pagedTransport) SendNotification(context.Context, mcp.JSONRPCNotification) error {
	return nil
}
func (*pagedTransport) SetNotificationHandler(func(mcp.JSONRPCNotification)) {}
func (*pagedTransport) Close() error                                         { return nil }
func (*pagedTransport) GetSessionId() string                                 { return "" }

var _ transport.Interface = (*pagedTransport)(nil)

func TestListTools(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		tr        *pagedTransport
		wantNames string
		wantAsked string
		wantErr   string
	}{
		{
			name: "follows cursors",
			tr: &pagedTransport{pages: map[string]string{
				"":   `{"tools":[{"name":"a","inputSchema":{"type":"object"}}],"nextCursor":"p2"}`,
				"p2": `{"tools":[{"name":"b","inputSchema":{"type":"object"}}],"nextCursor":"p3"}`,
				"p3": `{"tools":[{"name":"c","inputSchema":{"type":"object"}}]}`,
			}},
			wantNames: "a,b,c",
			wantAsked: ",p2,p3",
		},
		{
			name: "repeated cursor stops",
			tr: &pagedTransport{pages: map[string]string{
				"":   `{"tools":[{"name":"a"}],"nextCursor":"p2"}`,
				"p2": `{"tools":[{"name":"b"}],"nextCursor":"p2"}`,
			}},
			wantErr: `cursor "p2" repeated`,
		},
		{
			name:    "error response",
			tr:      &pagedTransport{rpcErr: &mcp.JSONRPCErrorDetails{Code: mcp.METHOD_NOT_FOUND, Message: "no tools here"}},
			wantErr: "no tools here",
		},
		{
			name:    "undecodable result",
			tr:      &pagedTransport{pages: map[string]string{"": `{"tools":"nope"}`}},
			wantErr: "decode tools",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tools, err := listTools(context.Background(), tt.tr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tool := range tools {
				names = append(names, tool.Name)
			}
			if got := strings.Join(names, ","); got != tt.wantNames {
				t.Errorf("tools = %s, want %s", got, tt.wantNames)
			}
			if got := strings.Join(tt.tr.asked, ","); got != tt.wantAsked {
				t.Errorf("asked for cursors %q, want %q", got, tt.wantAsked)
			}
		})
	}
}

func TestListToolsSendFailureIsATransportFailure(t *testing.T) {
	t.Parallel()
	_, err := listTools(context.Background(), &pagedTransport{sendErr: io.ErrUnexpectedEOF})
	if !errors.Is(err, io.ErrUnexpectedEOF) || !isTransportFailure(context.Background(), err) {
		t.Errorf("error = %v, want a transport failure wrapping the send error", err)
	}
}

func TestDecodeToolsKeepsSchemasRaw(t *testing.T) {
	t.Parallel()
	const in = `{"type":"object","oneOf":[{"required":["x"]}],"$schema":"https://json-schema.org/draft/2020-12/schema"}`
	result := `{"tools":[` +
		`{"name":"raw","inputSchema":` + in + `},` +
		`{"name":"none"},` +
		`{"name":"null","inputSchema":null,"outputSchema":null}]}`
	tools, _, err := decodeTools(json.RawMessage(result))
	if err != nil {
		t.Fatal(err)
	}
	if string(tools[0].RawInputSchema) != in || tools[0].InputSchema.Type != "" {
		t.Errorf("raw tool: RawInputSchema %s, InputSchema %+v; want only the raw bytes", tools[0].RawInputSchema, tools[0].InputSchema)
	}
	for _, tool := range tools[1:] {
		if tool.RawInputSchema != nil || tool.RawOutputSchema != nil {
			t.Errorf("%s: raw schemas %s / %s, want none", tool.Name, tool.RawInputSchema, tool.RawOutputSchema)
		}
	}
	// Re-encoding for vmcp's own clients must not fail on a tool with a
	// raw schema (mcp-go refuses both forms at once).
	if _, err := json.Marshal(tools[0]); err != nil {
		t.Errorf("re-encode: %v", err)
	}
}

func TestTailWriterKeepsTheEnd(t *testing.T) {
	t.Parallel()
	w := &tailWriter{max: 8, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, s := range []string{"hello ", "wide ", "world\n"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := w.String(); got != "e world" {
		t.Errorf("tail = %q, want the last 8 bytes trimmed", got)
	}
}
