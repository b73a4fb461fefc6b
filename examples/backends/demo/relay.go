package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// maxProgressSteps bounds the progress tool.
const maxProgressSteps = 10000

// notifyGrace is how long a tool that sent notifications waits before it
// answers: mcp-go's Streamable HTTP server may drop a notification queued
// just before the response, and the tests count them.
const notifyGrace = 20 * time.Millisecond

// sessionStats is what the stats tool reports: the live MCP sessions of
// this backend, the progress calls that were cancelled, and the resource
// subscriptions by URI.
type sessionStats struct {
	live      atomic.Int64
	cancelled atomic.Int64

	mu   sync.Mutex
	subs map[string]map[string]struct{} // URI → session ids
}

// statsResult is the structured result of the stats tool.
type statsResult struct {
	Sessions  int64 `json:"sessions" jsonschema:"live MCP sessions of this backend"`
	Cancelled int64 `json:"cancelled" jsonschema:"progress calls cancelled by their client so far"`
}

// hooks counts sessions and records resource subscriptions.
func (st *sessionStats) hooks() *server.Hooks {
	h := &server.Hooks{}
	h.AddOnRegisterSession(func(context.Context, server.ClientSession) { st.live.Add(1) })
	h.AddOnUnregisterSession(func(_ context.Context, s server.ClientSession) {
		st.live.Add(-1)
		st.mu.Lock()
		defer st.mu.Unlock()
		for _, set := range st.subs {
			delete(set, s.SessionID())
		}
	})
	h.AddAfterSubscribe(func(ctx context.Context, _ any, req *mcp.SubscribeRequest, _ *mcp.EmptyResult) {
		if s := server.ClientSessionFromContext(ctx); s != nil {
			st.mu.Lock()
			defer st.mu.Unlock()
			if st.subs[req.Params.URI] == nil {
				st.subs[req.Params.URI] = map[string]struct{}{}
			}
			st.subs[req.Params.URI][s.SessionID()] = struct{}{}
		}
	})
	h.AddAfterUnsubscribe(func(ctx context.Context, _ any, req *mcp.UnsubscribeRequest, _ *mcp.EmptyResult) {
		if s := server.ClientSessionFromContext(ctx); s != nil {
			st.mu.Lock()
			defer st.mu.Unlock()
			delete(st.subs[req.Params.URI], s.SessionID())
		}
	})
	return h
}

// subscribers returns the sessions subscribed to uri.
func (st *sessionStats) subscribers(uri string) []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]string, 0, len(st.subs[uri]))
	for id := range st.subs[uri] {
		out = append(out, id)
	}
	return out
}

// counterURI is the resource the touch tool updates.
func (b *backend) counterURI() string { return "demo://" + b.name + "/counter" }

// relayTools are the tools that talk back to the client: sampling,
// elicitation, progress, logging, resource updates, and stats.
func (b *backend) relayTools() []server.ServerTool {
	return []server.ServerTool{
		{
			Tool: mcp.NewTool("sample",
				mcp.WithDescription("Asks the client's model to answer the prompt (sampling/createMessage) and returns the answer."),
				mcp.WithString("prompt", mcp.Required(), mcp.Description("What to ask the model.")),
			),
			Handler: b.sample,
		},
		{
			Tool: mcp.NewTool("elicit",
				mcp.WithDescription("Asks the user for their name (elicitation/create) and returns the action and content as JSON."),
				mcp.WithString("message", mcp.Description("The question to show the user.")),
			),
			Handler: b.elicit,
		},
		{
			Tool: mcp.NewTool("progress",
				mcp.WithDescription("Sends `steps` progress notifications for the call's progress token, `intervalMs` apart; stops when the call is cancelled."),
				mcp.WithNumber("steps", mcp.Required(), mcp.Min(1), mcp.Max(maxProgressSteps)),
				mcp.WithNumber("intervalMs", mcp.Min(0), mcp.Max(60000), mcp.Description("Pause between notifications. Default 0.")),
			),
			Handler: b.progress,
		},
		{
			Tool: mcp.NewTool("log",
				mcp.WithDescription("Sends the text as a log message (notifications/message) at each of the levels debug, info, warning and error; the client's logging/setLevel filters them."),
				mcp.WithString("text", mcp.Required()),
			),
			Handler: b.logLevels,
		},
		{
			Tool: mcp.NewTool("touch",
				mcp.WithDescription("Increments the counter resource and sends notifications/resources/updated to the sessions subscribed to it."),
				mutating(false),
			),
			Handler: b.touch,
		},
		{
			Tool: mcp.NewTool("stats",
				mcp.WithDescription("Reports this backend's live MCP sessions and how many progress calls were cancelled."),
				mcp.WithOutputSchema[statsResult](),
				readOnly(),
			),
			Handler: b.statsTool,
		},
	}
}

func (b *backend) sample(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	prompt, err := req.RequireString("prompt")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	sreq := mcp.CreateMessageRequest{}
	sreq.Messages = []mcp.SamplingMessage{{Role: mcp.RoleUser, Content: mcp.NewTextContent(prompt)}}
	sreq.MaxTokens = 100
	res, err := b.srv.RequestSampling(ctx, sreq)
	if err != nil {
		return mcp.NewToolResultError("sampling failed: " + err.Error()), nil
	}
	if text, ok := res.Content.(mcp.TextContent); ok {
		return mcp.NewToolResultText(text.Text), nil
	}
	raw, _ := json.Marshal(res.Content)
	return mcp.NewToolResultText(string(raw)), nil
}

func (b *backend) elicit(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	ereq := mcp.ElicitationRequest{}
	ereq.Params.Message = req.GetString("message", "What is your name?")
	ereq.Params.RequestedSchema = map[string]any{
		"type":       "object",
		"properties": map[string]any{"name": map[string]any{"type": "string"}},
		"required":   []string{"name"},
	}
	res, err := b.srv.RequestElicitation(ctx, ereq)
	if err != nil {
		return mcp.NewToolResultError("elicitation failed: " + err.Error()), nil
	}
	raw, err := json.Marshal(map[string]any{"action": res.Action, "content": res.Content})
	if err != nil {
		return nil, err
	}
	return mcp.NewToolResultText(string(raw)), nil
}

func (b *backend) progress(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	steps := req.GetInt("steps", 1)
	if steps < 1 || steps > maxProgressSteps {
		return mcp.NewToolResultError(fmt.Sprintf("steps must be between 1 and %d", maxProgressSteps)), nil
	}
	interval := time.Duration(req.GetInt("intervalMs", 0)) * time.Millisecond
	var token mcp.ProgressToken
	if req.Params.Meta != nil {
		token = req.Params.Meta.ProgressToken
	}
	for i := 1; i <= steps; i++ {
		if token != nil {
			_ = b.srv.SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress), map[string]any{
				"progressToken": token, "progress": i, "total": steps, "message": fmt.Sprintf("step %d of %d", i, steps),
			})
		}
		if i == steps {
			break
		}
		select {
		case <-time.After(interval):
		case <-ctx.Done():
			b.stats.cancelled.Add(1)
			slog.Info("progress call cancelled", "step", i, "steps", steps)
			return nil, ctx.Err()
		}
	}
	time.Sleep(notifyGrace)
	return mcp.NewToolResultText(fmt.Sprintf("%d steps done on %s", steps, b.name)), nil
}

func (b *backend) logLevels(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	text, err := req.RequireString("text")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	for _, level := range []mcp.LoggingLevel{mcp.LoggingLevelDebug, mcp.LoggingLevelInfo, mcp.LoggingLevelWarning, mcp.LoggingLevelError} {
		_ = b.srv.SendLogMessageToClient(ctx, mcp.NewLoggingMessageNotification(level, b.name, text+" at "+string(level)))
	}
	time.Sleep(notifyGrace)
	return mcp.NewToolResultText("logged " + text), nil
}

func (b *backend) touch(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	n := b.counter.Add(1)
	uri := b.counterURI()
	subs := b.stats.subscribers(uri)
	for _, id := range subs {
		_ = b.srv.SendNotificationToSpecificClient(id, mcp.MethodNotificationResourceUpdated, map[string]any{"uri": uri})
	}
	return mcp.NewToolResultText(fmt.Sprintf("counter is %d; notified %d subscribers", n, len(subs))), nil
}

func (b *backend) statsTool(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	res := statsResult{Sessions: b.stats.live.Load(), Cancelled: b.stats.cancelled.Load()}
	raw, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	return mcp.NewToolResultStructured(res, string(raw)), nil
}

// addCounter registers the counter resource.
func (b *backend) addCounter() {
	b.srv.AddResource(mcp.NewResource(b.counterURI(), "counter",
		mcp.WithResourceDescription("A number the touch tool increments; subscribe to be told."),
		mcp.WithMIMEType("text/plain"),
	), func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		return []mcp.ResourceContents{mcp.TextResourceContents{URI: b.counterURI(), MIMEType: "text/plain", Text: fmt.Sprint(b.counter.Load())}}, nil
	})
}
