package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
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
	live         atomic.Int64
	cancelled    atomic.Int64
	rootsChanged atomic.Int64

	mu    sync.Mutex
	subs  map[string]map[string]struct{} // URI → session ids
	roots []string                       // the last roots/list answer, or its error
}

// cancelNotices counts the notifications/cancelled this process received
// over streamable HTTP. mcp-go's server also cancels a request whose HTTP
// request goes away, so the count tells whether a client sent the
// notification itself.
var cancelNotices atomic.Int64

// countCancelNotices counts the notifications/cancelled POSTed to next.
func countCancelNotices(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err != nil {
				http.Error(w, "read body", http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			var msg struct {
				Method string `json:"method"`
			}
			if bytes.Contains(body, []byte(mcp.MethodNotificationCancelled)) && json.Unmarshal(body, &msg) == nil && msg.Method == string(mcp.MethodNotificationCancelled) {
				cancelNotices.Add(1)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// statsResult is the structured result of the stats tool.
type statsResult struct {
	Sessions      int64          `json:"sessions" jsonschema:"live MCP sessions of this backend"`
	Cancelled     int64          `json:"cancelled" jsonschema:"progress calls and slow item and greet requests cancelled by their client so far"`
	CancelNotices int64          `json:"cancelNotices" jsonschema:"notifications/cancelled received over streamable HTTP so far"`
	RootsChanged  int64          `json:"rootsChanged" jsonschema:"notifications/roots/list_changed received so far"`
	Roots         []string       `json:"roots,omitempty" jsonschema:"the root URIs of the last roots/list this backend asked after a roots/list_changed, or the error it got"`
	Subscribers   map[string]int `json:"subscribers,omitempty" jsonschema:"sessions subscribed to each resource URI"`
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
	h.AddOnRequestInitialization(refuseSubscription)
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

// snapshot fills in the counts of a stats result.
func (st *sessionStats) snapshot() statsResult {
	res := statsResult{Sessions: st.live.Load(), Cancelled: st.cancelled.Load(), CancelNotices: cancelNotices.Load(), RootsChanged: st.rootsChanged.Load()}
	st.mu.Lock()
	defer st.mu.Unlock()
	res.Roots = append([]string(nil), st.roots...)
	for uri, set := range st.subs {
		if len(set) > 0 {
			if res.Subscribers == nil {
				res.Subscribers = make(map[string]int)
			}
			res.Subscribers[uri] = len(set)
		}
	}
	return res
}

// rootsChanged counts a client's notifications/roots/list_changed and asks
// that client for its roots again, as a server that works in them would.
func (b *backend) rootsChanged(ctx context.Context, _ mcp.JSONRPCNotification) {
	b.stats.rootsChanged.Add(1)
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		res, err := b.srv.RequestRoots(ctx, mcp.ListRootsRequest{})
		var roots []string
		if err != nil {
			roots = []string{"error: " + err.Error()}
		} else {
			for _, r := range res.Roots {
				roots = append(roots, r.URI)
			}
		}
		b.stats.mu.Lock()
		b.stats.roots = roots
		b.stats.mu.Unlock()
	}()
}

// refusedItem marks the items whose subscription the demo refuses with an
// error, for tests of the error path.
const refusedItem = "/items/refused"

// refuseSubscription answers resources/subscribe to an item whose id starts
// with "refused" with an error.
func refuseSubscription(_ context.Context, _ any, message any) error {
	raw, ok := message.(json.RawMessage)
	if !ok {
		return nil
	}
	var req struct {
		Method string `json:"method"`
		Params struct {
			URI string `json:"uri"`
		} `json:"params"`
	}
	if json.Unmarshal(raw, &req) != nil || req.Method != string(mcp.MethodResourcesSubscribe) {
		return nil
	}
	if strings.Contains(req.Params.URI, refusedItem) {
		return fmt.Errorf("subscriptions to %s are refused", req.Params.URI)
	}
	return nil
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
				mcp.WithDescription("Reports this backend's live MCP sessions, how many requests were cancelled, the roots/list_changed notifications it got and the subscribers of each resource."),
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
	res := b.stats.snapshot()
	raw, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	return mcp.NewToolResultStructured(res, string(raw)), nil
}

// slowPrefix makes an item id or a greet argument slow: "slow-<ms>" waits
// that long (at most maxSleepMs) before answering, or until the request is
// cancelled, which the stats count.
const slowPrefix = "slow-"

// slow waits as s ("slow-<ms>") asks; it returns ctx's error when the
// request was cancelled first.
func (b *backend) slow(ctx context.Context, s string) error {
	ms, err := strconv.Atoi(strings.TrimPrefix(s, slowPrefix))
	if !strings.HasPrefix(s, slowPrefix) || err != nil || ms <= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(min(ms, maxSleepMs)) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		b.stats.cancelled.Add(1)
		slog.Info("slow request cancelled", "arg", s)
		return ctx.Err()
	}
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
