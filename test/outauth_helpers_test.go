package test

// Helpers of the outgoing auth end-to-end tests (outauth_test.go): backend
// MCP servers (mcp-go over streamable HTTP) that verify the bearer token of
// every request against the provider's keys and record what they got, a
// token endpoint that accepts connections and never answers, and vmcp run
// as its binary with its standard output and error captured.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// backendReq is one HTTP request a tokenBackend received.
type backendReq struct {
	HTTPMethod string
	RPCMethod  string // the JSON-RPC method of a POST ("" for a response or none)
	Tool       string // params.name of a tools/call
	// Session is the request's Mcp-Session-Id; for an initialize, the one
	// the answer gave.
	Session string
	// Sub and Aud are the verified token's ("" without Authorization,
	// "invalid" when it does not verify); Aud is comma-joined.
	Sub, Aud string
	JTI      string
	Token    string // the raw bearer token, "" when none
	APIKey   string // the X-Api-Key header
	Err      string // why the token did not verify
}

// tokenClaims are the claims a backend's whoami reports.
type tokenClaims struct {
	Sub      string   `json:"sub"`
	Aud      []string `json:"aud"`
	ClientID string   `json:"client_id"`
	Act      string   `json:"act"` // act.sub, "" without one
	JTI      string   `json:"jti"`
	Exp      int64    `json:"exp"`
}

// tokenBackend is an MCP server that verifies the bearer token of every
// request (signature by the provider's keys, issuer, expiry, audience):
// a request with a token that does not verify gets 401, one without a
// token is served (discovery) unless apiKey requires a header. Its tool
// whoami answers the verified token's claims as JSON, or an error result
// when the request had none.
type tokenBackend struct {
	Name   string
	URL    string
	aud    string // the audience a token must have
	apiKey string // when set, X-Api-Key must carry it
	issuer string
	keys   jose.JSONWebKeySet

	mu   sync.Mutex
	reqs []*backendReq
}

type claimsKey struct{}

// startTokenBackend serves a tokenBackend named name that accepts tokens
// of p for aud until t ends. It reads p's keys once, so it keeps verifying
// when p is stopped.
func startTokenBackend(t *testing.T, name string, p *idp, aud, apiKey string) *tokenBackend {
	t.Helper()
	b := &tokenBackend{Name: name, aud: aud, apiKey: apiKey, issuer: p.Issuer}
	getJSON(t, p.JWKSURI, &b.keys)
	s := mcpserver.NewMCPServer(name, "1", mcpserver.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool("whoami", mcp.WithDescription("the verified token's claims")),
		func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			c, ok := ctx.Value(claimsKey{}).(tokenClaims)
			if !ok {
				if b.apiKey != "" {
					return mcp.NewToolResultText(`{"sub":""}`), nil
				}
				return mcp.NewToolResultError("whoami: no verified token"), nil
			}
			j, _ := json.Marshal(c)
			return mcp.NewToolResultText(string(j)), nil
		})
	inner := mcpserver.NewStreamableHTTPServer(s, mcpserver.WithHTTPContextFunc(func(ctx context.Context, r *http.Request) context.Context {
		if raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			if c, err := b.verify(raw); err == nil {
				return context.WithValue(ctx, claimsKey{}, c)
			}
		}
		return ctx
	}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := &backendReq{HTTPMethod: r.Method, Session: r.Header.Get("Mcp-Session-Id"), APIKey: r.Header.Get("X-Api-Key")}
		rec.RPCMethod, rec.Tool = rpcMethod(body)
		ok := true
		if h := r.Header.Get("Authorization"); h != "" {
			raw, _ := strings.CutPrefix(h, "Bearer ")
			rec.Token = raw
			if c, err := b.verify(raw); err != nil {
				rec.Sub, rec.Aud, rec.Err, ok = "invalid", "invalid", err.Error(), false
			} else {
				rec.Sub, rec.Aud, rec.JTI = c.Sub, strings.Join(c.Aud, ","), c.JTI
			}
		}
		if b.apiKey != "" && rec.APIKey != b.apiKey {
			ok = false
		}
		b.mu.Lock()
		b.reqs = append(b.reqs, rec)
		b.mu.Unlock()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, "invalid credentials", http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		inner.ServeHTTP(w, r)
		if rec.Session == "" {
			b.mu.Lock()
			rec.Session = w.Header().Get("Mcp-Session-Id")
			b.mu.Unlock()
		}
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	b.URL = srv.URL + "/mcp"
	return b
}

// verify checks raw against the provider's keys, issuer, expiry (no
// leeway) and b's audience.
func (b *tokenBackend) verify(raw string) (tokenClaims, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return tokenClaims{}, err
	}
	if len(tok.Headers) != 1 {
		return tokenClaims{}, errors.New("not one signature")
	}
	keys := b.keys.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		return tokenClaims{}, fmt.Errorf("unknown kid %q", tok.Headers[0].KeyID)
	}
	var std jwt.Claims
	var extra struct {
		ClientID string `json:"client_id"`
		Act      *struct {
			Sub string `json:"sub"`
		} `json:"act"`
	}
	if err := tok.Claims(keys[0].Public().Key, &std, &extra); err != nil {
		return tokenClaims{}, err
	}
	b.mu.Lock()
	aud := b.aud
	b.mu.Unlock()
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: b.issuer, AnyAudience: jwt.Audience{aud}, Time: time.Now()}, 0); err != nil {
		return tokenClaims{}, fmt.Errorf("aud %v: %w", std.Audience, err)
	}
	c := tokenClaims{Sub: std.Subject, Aud: std.Audience, ClientID: extra.ClientID, JTI: std.ID}
	if std.Expiry != nil {
		c.Exp = std.Expiry.Time().Unix()
	}
	if extra.Act != nil {
		c.Act = extra.Act.Sub
	}
	return c, nil
}

// requests returns a copy of what b received so far.
func (b *tokenBackend) requests() []backendReq {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]backendReq, len(b.reqs))
	for i, r := range b.reqs {
		out[i] = *r
	}
	return out
}

// listSessions returns the sessions that carried a tools/list so far.
func (b *tokenBackend) listSessions() map[string]bool {
	out := map[string]bool{}
	for _, r := range b.requests() {
		if r.RPCMethod == "tools/list" && r.Session != "" {
			out[r.Session] = true
		}
	}
	return out
}

// count counts the requests that match f.
func (b *tokenBackend) count(f func(backendReq) bool) int {
	n := 0
	for _, r := range b.requests() {
		if f(r) {
			n++
		}
	}
	return n
}

// String renders the recorded requests, for messages (no tokens).
func (b *tokenBackend) String() string {
	var sb strings.Builder
	for _, r := range b.requests() {
		fmt.Fprintf(&sb, "\n  %s %s %s session=%s sub=%s aud=%s jti=%s token=%t %s", r.HTTPMethod, r.RPCMethod, r.Tool, r.Session, r.Sub, r.Aud, r.JTI, r.Token != "", r.Err)
	}
	return sb.String()
}

// rpcMethod returns the method and, for a tools/call, the tool name of a
// JSON-RPC message (or the first of a batch).
func rpcMethod(body []byte) (method, tool string) {
	var m struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var batch []json.RawMessage
		if json.Unmarshal(body, &batch) != nil || len(batch) == 0 {
			return "", ""
		}
		body = batch[0]
	}
	if json.Unmarshal(body, &m) != nil {
		return "", ""
	}
	if m.Method == "tools/call" {
		tool = m.Params.Name
	}
	return m.Method, tool
}

// hangingEndpoint accepts connections and never answers: a token endpoint
// that is down in the worst way.
type hangingEndpoint struct {
	URL      string
	accepted atomic.Int32
	ln       net.Listener
	mu       sync.Mutex
	conns    []net.Conn
}

func startHangingEndpoint(t *testing.T) *hangingEndpoint {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hangingEndpoint{URL: "http://" + ln.Addr().String() + "/token", ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.accepted.Add(1)
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.conns {
			_ = c.Close()
		}
	})
	return h
}

// vmcpProc is the vmcp binary (`vmcp serve --log-level debug`) run by a
// test, with its standard output and error kept apart.
type vmcpProc struct {
	Base, URL string
	// Audience is vmcp's MCP URL: the audience and resource of its tokens.
	Audience       string
	Stdout, Stderr *syncBuffer
	cmd            *exec.Cmd
	exited         chan struct{}
	waitErr        error
	stopOnce       sync.Once
}

var servingLine = regexp.MustCompile(`msg="vmcp serving" url=(http://\S+)`)

// startVMCPProcess runs vmcp with the config config(port) returns (port
// is known beforehand, so the config can name vmcp's own URL) and env
// added to the test's environment, and waits until every backend has
// tools in /readyz. A taken port is retried.
func startVMCPProcess(t *testing.T, config func(port string) string, env ...string) *vmcpProc {
	t.Helper()
	dir := t.TempDir()
	for attempt := 0; ; attempt++ {
		port := freeAddr(t)[len("127.0.0.1:"):]
		cfgPath := filepath.Join(dir, fmt.Sprintf("vmcp-%d.yaml", attempt))
		text := config(port)
		if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		v := &vmcpProc{Stdout: &syncBuffer{}, Stderr: &syncBuffer{}, exited: make(chan struct{}),
			Audience: "http://127.0.0.1:" + port + "/mcp"}
		v.cmd = exec.Command(vmcpBin, "serve", "--config", cfgPath, "--log-level", "debug")
		v.cmd.Env = append(os.Environ(), env...)
		v.cmd.Stdout, v.cmd.Stderr = v.Stdout, v.Stderr
		if err := v.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			v.waitErr = v.cmd.Wait()
			close(v.exited)
		}()
		if err := v.waitServing(30 * time.Second); err != nil {
			v.Stop()
			if strings.Contains(v.Stderr.String(), "address already in use") && attempt < 5 {
				continue
			}
			t.Fatalf("vmcp: %v\nconfig:\n%s\nstderr:\n%s", err, text, v.Stderr.String())
		}
		dumpOnFailure(t, "vmcp stderr", v.Stderr)
		t.Cleanup(v.Stop)
		eventually(t, 20*time.Second, "every backend has tools in /readyz", func() error {
			_, r := getReadyz(t, v.Base)
			if len(r.Backends) == 0 {
				return errors.New("no backends")
			}
			for _, b := range r.Backends {
				if b.Tools == 0 {
					return fmt.Errorf("backend %s: state %s, %d tools, last error %q", b.Name, b.State, b.Tools, b.LastError)
				}
			}
			return nil
		})
		return v
	}
}

// waitServing waits for the log line that gives vmcp's URL.
func (v *vmcpProc) waitServing(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if m := servingLine.FindStringSubmatch(v.Stderr.String()); m != nil {
			v.URL = m[1]
			v.Base = strings.TrimSuffix(m[1], "/mcp")
			return nil
		}
		select {
		case <-v.exited:
			return fmt.Errorf("exited early: %v", v.waitErr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("did not log that it serves within %s", d)
		}
	}
}

// Stop ends vmcp with SIGTERM (SIGKILL after 10s).
func (v *vmcpProc) Stop() {
	v.stopOnce.Do(func() {
		_ = v.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-v.exited:
		case <-time.After(10 * time.Second):
			_ = v.cmd.Process.Kill()
			<-v.exited
		}
	})
}

// auditLines returns the JSON objects vmcp wrote to its standard output
// (the audit trail with audit.output stdout).
func (v *vmcpProc) auditLines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(v.Stdout.String(), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("vmcp stdout line is not an audit event: %q", line)
			continue
		}
		out = append(out, m)
	}
	return out
}

// whoamiOf decodes whoami's answer.
func whoamiOf(t *testing.T, what, text string) tokenClaims {
	t.Helper()
	var c tokenClaims
	if err := json.Unmarshal([]byte(text), &c); err != nil {
		t.Fatalf("%s: whoami answered %q: %v", what, text, err)
	}
	return c
}

// issuedFor counts the exchanges the provider issued to client for sub
// with audience aud.
func (x idpExchanges) issuedFor(client, sub, aud string) []idpExchange {
	var out []idpExchange
	for _, e := range x.Issued {
		if e.Client == client && e.Sub == sub && contains(e.Aud, aud) {
			out = append(out, e)
		}
	}
	return out
}

// refusedFor counts the exchanges the provider refused to client for sub
// with error code.
func (x idpExchanges) refusedFor(client, sub, code string) int {
	n := 0
	for _, r := range x.Refused {
		if r.Client == client && r.Sub == sub && r.Error == code {
			n++
		}
	}
	return n
}
