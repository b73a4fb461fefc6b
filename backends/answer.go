package backends

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// answerPostTimeout bounds vmcp's POST of an answer to a backend's request.
const answerPostTimeout = 30 * time.Second

// answeringHTTP is mcp-go's streamable-HTTP client transport with its own
// answers to a backend's requests (sampling, elicitation, roots, ping).
//
// mcp-go (v1.2.1, StreamableHTTP.handleIncomingRequest) runs the request
// handler under context.WithTimeout(stream, 30*time.Second) and POSTs the
// answer under that same context, so an answer that takes longer (a user
// over an elicitation) is lost and the backend gets nothing. Here the
// handler mcp-go is given starts the real one on a context of its own and
// returns nil, nil at once (mcp-go then sends nothing); the answer is
// POSTed by answer. That context is the one the request's stream was
// opened with: the backend call's for a request on that call's response
// stream (its requestTimeout, its cancellation), the connection's for one
// on the GET stream, which is then bounded by the backend's requestTimeout.
// Both end when the transport closes.
//
// The POST carries what mcp-go's would with the options dial gives the
// transport: the session id (not for protocol 2026-07-28), the negotiated
// protocol version and, through the same HTTP client, the connection's
// credential.
type answeringHTTP struct {
	*transport.StreamableHTTP
	url string
	hc  *http.Client
	log *slog.Logger
	// timeout bounds a request that did not come on a call's stream.
	timeout time.Duration
	version atomic.Pointer[string]
	// life ends when the transport closes.
	life    context.Context
	endLife context.CancelFunc
}

func newAnsweringHTTP(t *transport.StreamableHTTP, url string, hc *http.Client, timeout time.Duration, log *slog.Logger) *answeringHTTP {
	if hc == nil {
		hc = http.DefaultClient
	}
	life, end := context.WithCancel(context.Background())
	return &answeringHTTP{StreamableHTTP: t, url: url, hc: hc, log: log, timeout: timeout, life: life, endLife: end}
}

// streamKey marks the context a stream is opened with (the value is that
// context): mcp-go derives the handler's context from it.
type streamKey struct{}

func markStream(ctx context.Context) context.Context {
	return context.WithValue(ctx, streamKey{}, ctx)
}

// Start opens the GET stream (on mcp-go's initialized) with ctx marked.
func (t *answeringHTTP) Start(ctx context.Context) error {
	return t.StreamableHTTP.Start(markStream(ctx))
}

// SendRequest sends a request whose response stream may carry the
// backend's requests; they are answered under ctx.
func (t *answeringHTTP) SendRequest(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	return t.StreamableHTTP.SendRequest(markStream(ctx), req)
}

// SetProtocolVersion records the negotiated version for answer's POSTs.
func (t *answeringHTTP) SetProtocolVersion(v string) {
	t.version.Store(&v)
	t.StreamableHTTP.SetProtocolVersion(v)
}

// SetRequestHandler gives mcp-go a handler that leaves the answer to t.
func (t *answeringHTTP) SetRequestHandler(h transport.RequestHandler) {
	t.StreamableHTTP.SetRequestHandler(func(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
		go t.answer(ctx, h, req)
		return nil, nil
	})
}

// Close ends the requests being answered, then closes the transport.
func (t *answeringHTTP) Close() error {
	t.endLife()
	return t.StreamableHTTP.Close()
}

// answer runs h for req on the context of the stream it came on (see
// answeringHTTP) and POSTs the answer.
func (t *answeringHTTP) answer(mcpCtx context.Context, h transport.RequestHandler, req transport.JSONRPCRequest) {
	stream, ok := mcpCtx.Value(streamKey{}).(context.Context)
	if !ok {
		stream = context.WithoutCancel(mcpCtx)
	}
	ctx, cancel := context.WithTimeout(stream, t.timeout)
	defer cancel()
	stop := context.AfterFunc(t.life, cancel)
	defer stop()

	resp, err := t.handle(ctx, h, req)
	if err != nil {
		t.log.Info("backend request failed", "method", req.Method, "error", err)
		resp = errorAnswer(req, err)
	}
	if resp == nil {
		return
	}
	pctx, pcancel := context.WithTimeout(t.life, answerPostTimeout)
	defer pcancel()
	if err := t.post(pctx, resp); err != nil {
		t.log.Warn("send the answer to a backend's request", "method", req.Method, "error", err)
	}
}

func (t *answeringHTTP) handle(ctx context.Context, h transport.RequestHandler, req transport.JSONRPCRequest) (resp *transport.JSONRPCResponse, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, fmt.Errorf("internal error: panic in request handler: %v", r)
		}
	}()
	return h(ctx, req)
}

// errorAnswer is the error response mcp-go sends for a handler's error.
func errorAnswer(req transport.JSONRPCRequest, err error) *transport.JSONRPCResponse {
	code, msg := mcp.INTERNAL_ERROR, err.Error()
	switch {
	case errors.Is(err, context.Canceled):
		code, msg = mcp.REQUEST_INTERRUPTED, "request was cancelled"
	case errors.Is(err, context.DeadlineExceeded):
		code, msg = mcp.REQUEST_INTERRUPTED, "request timed out"
	case req.Method == string(mcp.MethodSamplingCreateMessage):
		msg = "sampling request failed: " + msg
	}
	return transport.NewJSONRPCErrorResponse(req.ID, code, msg, nil)
}

// post sends resp to the backend as mcp-go's sendResponseToServer does.
func (t *answeringHTTP) post(ctx context.Context, resp *transport.JSONRPCResponse) error {
	body, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	version := ""
	if v := t.version.Load(); v != nil {
		version = *v
	}
	if sid := t.GetSessionId(); sid != "" && !mcp.IsModernProtocol(version) {
		req.Header.Set(transport.HeaderKeySessionID, sid)
	}
	if version != "" {
		req.Header.Set(transport.HeaderKeyProtocolVersion, version)
	}
	res, err := t.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusAccepted {
		return fmt.Errorf("backend answered %s", res.Status)
	}
	return nil
}
