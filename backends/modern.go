package backends

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/config"
)

// ErrNotModern is returned by Modern.Post for a backend that cannot take a
// request of the stateless protocol revision as it is: it is not reached
// over streamable HTTP, or its server/discover does not list the revision.
// The caller then sends the request through the backend's session instead.
var ErrNotModern = errors.New("backend does not serve the requested protocol revision over streamable HTTP")

// Modern sends requests of the stateless protocol revision (2026-07-28 and
// later) to HTTP backends as raw HTTP POSTs of their own, one per request,
// so that everything the revision carries per request (client
// capabilities, log level, input responses, request state, progress token)
// reaches the backend, and the backend's answer (an input_required result,
// a JSON-RPC error with its HTTP status, notifications streamed before the
// result) reaches the client unchanged. Requests go out with the backend's
// outgoing auth headers and through the Manager's HTTP client, so they
// carry the trace context like every other backend request.
//
// Whether a backend serves a revision is learnt with server/discover, once
// per backend and again after modernProbeTTL.
type Modern struct {
	m *Manager

	mu     sync.Mutex
	probes map[string]*modernProbe
}

// NewModern returns the stateless-revision sender of m's backends.
func NewModern(m *Manager) *Modern {
	return &Modern{m: m, probes: make(map[string]*modernProbe)}
}

// modernProbeTTL is how long the answer of one server/discover probe is
// trusted; modernRetryTTL is how long a probe that got no answer at all
// (transport failure, timeout) keeps the backend on its session.
const (
	modernProbeTTL   = time.Minute
	modernRetryTTL   = 5 * time.Second
	modernProbeLimit = 5 * time.Second
)

// modernProbe is one server/discover probe of a backend; done is closed when
// versions and expires are set.
type modernProbe struct {
	done     chan struct{}
	versions []string // the revisions the backend lists; nil: none
	expires  time.Time
}

// Supports reports whether backend takes requests of protocol revision
// version as raw HTTP POSTs (see Modern). It probes the backend with
// server/discover when it has no recent answer; concurrent callers share
// one probe. A backend that cannot be probed is reported as not
// supporting it, for modernRetryTTL.
func (x *Modern) Supports(ctx context.Context, backend, version string) bool {
	b, ok := x.m.backends[backend]
	if !ok || b.cfg.Transport != config.TransportStreamableHTTP || !mcp.IsModernProtocol(version) {
		return false
	}
	x.mu.Lock()
	p := x.probes[backend]
	if p != nil {
		select {
		case <-p.done:
			if time.Now().After(p.expires) {
				p = nil
			}
		default: // being probed
		}
	}
	if p == nil {
		p = &modernProbe{done: make(chan struct{})}
		x.probes[backend] = p
		x.mu.Unlock()
		// Not the caller's ctx: the answer serves every caller waiting on it.
		p.versions, p.expires = x.probe(b)
		close(p.done)
	} else {
		x.mu.Unlock()
	}
	select {
	case <-p.done:
		return slices.Contains(p.versions, version)
	case <-ctx.Done():
		return false
	}
}

// probe asks b for its protocol revisions with server/discover at the
// newest revision vmcp knows. A backend that answers with an
// UnsupportedProtocolVersionError lists its revisions in it.
func (x *Modern) probe(b *backend) (versions []string, expires time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), modernProbeLimit)
	defer cancel()
	body, err := json.Marshal(map[string]any{
		"jsonrpc": mcp.JSONRPC_VERSION,
		"id":      "vmcp-discover",
		"method":  string(mcp.MethodServerDiscover),
		"params": map[string]any{"_meta": map[string]any{
			mcp.MetaKeyProtocolVersion:    mcp.LATEST_PROTOCOL_VERSION,
			mcp.MetaKeyClientCapabilities: map[string]any{},
			mcp.MetaKeyClientInfo:         map[string]any{"name": "vmcp", "version": "1"},
		}},
	})
	if err != nil {
		return nil, time.Now().Add(modernRetryTTL)
	}
	h := http.Header{}
	h.Set(mcp.HeaderProtocolVersion, mcp.LATEST_PROTOCOL_VERSION)
	h.Set(mcp.HeaderMethod, string(mcp.MethodServerDiscover))
	// A discovery of the backend, not a client's request: it carries the
	// shared connection's credential.
	h, err = b.serviceHeader(ctx, b.statelessHeader(h, b.cred.discoveryStatic))
	if err != nil {
		b.log.Debug("server/discover probe: no credential; using the backend's session", "error", err)
		return nil, time.Now().Add(modernRetryTTL)
	}
	resp, err := x.m.post(asService(ctx), b, h, body)
	if err != nil {
		b.log.Debug("server/discover probe failed; using the backend's session", "error", err)
		return nil, time.Now().Add(modernRetryTTL)
	}
	defer func() { _ = resp.Body.Close() }()
	var msg struct {
		Result *struct {
			SupportedVersions []string `json:"supportedVersions"`
		} `json:"result"`
		Error *struct {
			Data struct {
				Supported []string `json:"supported"`
			} `json:"data"`
		} `json:"error"`
	}
	raw, err := firstMessage(resp)
	if err == nil {
		err = json.Unmarshal(raw, &msg)
	}
	switch {
	case err != nil:
		b.log.Debug("server/discover probe: no JSON-RPC answer; using the backend's session", "status", resp.StatusCode, "error", err)
	case msg.Result != nil:
		versions = msg.Result.SupportedVersions
	case msg.Error != nil:
		versions = msg.Error.Data.Supported
	}
	versions = slices.DeleteFunc(versions, func(v string) bool { return !mcp.IsModernProtocol(v) })
	b.log.Debug("server/discover probe", "stateless_versions", versions)
	return versions, time.Now().Add(modernProbeTTL)
}

// firstMessage returns the first JSON-RPC message of a response, which is
// either a JSON body or an SSE stream.
func firstMessage(resp *http.Response) ([]byte, error) {
	body := io.LimitReader(resp.Body, 1<<20)
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch mt {
	case "application/json":
		return io.ReadAll(body)
	case "text/event-stream":
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 0, 4096), 1<<20)
		var data []byte
		for sc.Scan() {
			line := sc.Bytes()
			if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
				data = append(data, bytes.TrimPrefix(d, []byte(" "))...)
				continue
			}
			if len(line) == 0 && len(data) > 0 {
				return data, nil
			}
		}
		if len(data) > 0 {
			return data, nil
		}
		return nil, errors.New("empty event stream")
	}
	return nil, fmt.Errorf("HTTP %d, content type %q", resp.StatusCode, mt)
}

// Post sends body, one JSON-RPC request of protocol revision version, to
// backend as an HTTP POST of its own, with header (the request's MCP
// headers: Mcp-Protocol-Version, Mcp-Method, Mcp-Name, Mcp-Param-*) and the
// backend's outgoing auth. It returns the backend's response as it
// arrives, whatever its status, for the caller to relay and close; the
// request is bounded by the backend's request timeout and aborted when ctx
// ends, also while the body is being read.
//
// Whether the backend serves version is the caller's to ask (Supports):
// Post does not probe again, so a probe that expires between the two
// cannot turn a request the caller chose to relay into an error. It returns
// ErrNotModern (and sends nothing) only for what cannot change: a backend
// not reached over streamable HTTP, or a version of a session-based
// revision. It returns the circuit breaker's error when the
// backend's circuit is open, and ErrUnavailable naming the backend when
// the request got no answer (the cause is logged, not returned: it may
// hold an internal URL). For the backend's health and circuit breaker a response
// counts as a success, a 5xx response or none at all as a failure.
func (x *Modern) Post(ctx context.Context, backend, version string, body []byte, header http.Header) (*http.Response, error) {
	b, ok := x.m.backends[backend]
	if !ok || b.cfg.Transport != config.TransportStreamableHTTP || !mcp.IsModernProtocol(version) {
		return nil, ErrNotModern
	}
	callCtx, cancel := context.WithTimeout(ctx, requestTimeout(b.cfg))
	resp, err := x.m.exchange(ctx, callCtx, b, b.statelessHeader(header, b.cred.callsStatic), body)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// statelessHeader returns the headers of a stateless request to b: the
// client's MCP headers (header), content negotiation and the static
// credential static; nothing else of a client's request.
func (b *backend) statelessHeader(header http.Header, static map[string]string) http.Header {
	h := make(http.Header, len(header)+3+len(static))
	for k, vs := range header {
		if isMCPHeader(k) {
			h[http.CanonicalHeaderKey(k)] = slices.Clone(vs)
		}
	}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	for k, v := range static {
		h.Set(k, v)
	}
	return h
}

// isMCPHeader reports whether a client's header is one of the MCP request
// headers a stateless request carries to the server.
func isMCPHeader(k string) bool {
	k = http.CanonicalHeaderKey(k)
	switch k {
	case http.CanonicalHeaderKey(mcp.HeaderProtocolVersion), http.CanonicalHeaderKey(mcp.HeaderMethod), http.CanonicalHeaderKey(mcp.HeaderName):
		return true
	}
	return strings.HasPrefix(k, mcp.HeaderParamPrefix)
}

// cancelOnClose ends a request's context when its response body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
