package test

// End-to-end tests of rate limiting: vmcp in process in front of a demo
// backend (behind a counting proxy, so a test knows which calls reached
// it), its token buckets in a real redis-server the test starts, driven by
// mcp-go's client, the TypeScript SDK's client and raw HTTP.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/server"
)

// Protocol revisions whose rate-limit error codes differ.
const (
	legacyRevision = "2025-06-18" // -32029
	modernRevision = "2026-07-28" // 429
)

// The JSON-RPC error codes of a rejection, by revision.
const (
	codeLimitedLegacy = -32029
	codeLimitedModern = 429
)

// rlEnv is one demo backend behind a counting proxy, and the vmcp instances
// in front of it.
type rlEnv struct {
	Name  string // vmcp's config name: the hash tag of every key
	Demo  *demoBackend
	Proxy *countingProxy
}

func newRLEnv(t *testing.T) *rlEnv {
	t.Helper()
	e := &rlEnv{Name: uniqueName("e2e-rl")}
	e.Demo = startDemo(t, "demo", "weather", "streamable-http", "")
	e.Proxy = startCountingProxy(t, e.Demo.URL)
	return e
}

// yaml is a vmcp config in front of e's backend (tools demo_*) with the
// rateLimiting section limits (YAML, indented by two spaces), and Redis at
// redisAddr unless it is "".
func (e *rlEnv) yaml(redisAddr, limits string) string {
	y := fmt.Sprintf(`name: %s
server: {host: 127.0.0.1, port: 0}
backends:
  - {name: demo, transport: streamable-http, url: %q, requestTimeout: 10s}
rateLimiting:
%s
`, e.Name, e.Proxy.URL, limits)
	if redisAddr != "" {
		y += fmt.Sprintf("redis: {address: %q}\n", redisAddr)
	}
	return y
}

// start starts a vmcp of e with the given Redis and limits.
func (e *rlEnv) start(t *testing.T, redisAddr, limits string) *vmcp {
	t.Helper()
	return startVMCP(t, e.yaml(redisAddr, limits), nil)
}

// toolCall is the body of a tools/call of tool with args and JSON-RPC id
// (a JSON value).
func toolCall(id, tool string, args map[string]any) string {
	b, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "id": json.RawMessage(id), "method": "tools/call",
		"params": map[string]any{"name": tool, "arguments": args},
	})
	return string(b)
}

// rlCall makes one tools/call of tool with a fresh marker on session sid
// (version as MCP-Protocol-Version) and returns the answer and the marker.
func rlCall(t *testing.T, url, token, sid, version, tool string) (httpResult, string) {
	t.Helper()
	marker := uniqueName("rl")
	var args map[string]any
	switch tool {
	case "demo_echo":
		args = map[string]any{"text": marker}
	case "demo_add":
		args = map[string]any{"a": 1, "b": 2, "note": marker}
	}
	res := mcpPost{url: url, token: token, session: sid, version: version, body: toolCall(`7`, tool, args)}.do(t)
	return res, marker
}

// expectPass fails t unless res is a successful tools/call answer.
func expectPass(t *testing.T, res httpResult, what string) {
	t.Helper()
	if res.Status != http.StatusOK {
		t.Fatalf("%s: status %d, want 200; body %s", what, res.Status, res.Body)
	}
	var m struct {
		Result *struct {
			IsError bool `json:"isError"`
		} `json:"result"`
		Error json.RawMessage `json:"error"`
	}
	msg := res.jsonrpcMessage()
	if err := json.Unmarshal(msg, &m); err != nil || m.Result == nil || m.Result.IsError {
		t.Fatalf("%s: want a successful tool result, got %s", what, msg)
	}
}

// limited is what a rejection says.
type limited struct {
	RetryAfter int    // the Retry-After header
	Scope      string // data.scope
}

// expectLimited fails t unless res is the 429 contract: status 429, a
// Retry-After of positive whole seconds, and a JSON-RPC error echoing id
// (JSON) with code, message "Rate limit exceeded" and data
// {retryAfterSeconds (= Retry-After), scope}.
func expectLimited(t *testing.T, res httpResult, id string, code int, what string) limited {
	t.Helper()
	if res.Status != http.StatusTooManyRequests {
		t.Fatalf("%s: status %d, want 429; body %s", what, res.Status, res.Body)
	}
	ra := res.Header.Values("Retry-After")
	if len(ra) != 1 {
		t.Fatalf("%s: want one Retry-After header, got %q", what, ra)
	}
	secs, err := strconv.Atoi(ra[0])
	if err != nil || secs < 1 || strconv.Itoa(secs) != ra[0] {
		t.Fatalf("%s: Retry-After %q, want a positive whole number of seconds", what, ra[0])
	}
	e := decodeRPCError(t, res)
	if string(e.ID) != id {
		t.Errorf("%s: id %s, want the request's %s", what, e.ID, id)
	}
	if e.Error.Code != code {
		t.Errorf("%s: code %d, want %d", what, e.Error.Code, code)
	}
	if e.Error.Message != "Rate limit exceeded" {
		t.Errorf("%s: message %q, want %q", what, e.Error.Message, "Rate limit exceeded")
	}
	var data struct {
		RetryAfterSeconds *int   `json:"retryAfterSeconds"`
		Scope             string `json:"scope"`
	}
	if err := json.Unmarshal(e.Error.Data, &data); err != nil || data.RetryAfterSeconds == nil || data.Scope == "" {
		t.Fatalf("%s: data %s, want {retryAfterSeconds, scope}", what, e.Error.Data)
	}
	if *data.RetryAfterSeconds != secs {
		t.Errorf("%s: data.retryAfterSeconds %d, Retry-After %d: want them equal", what, *data.RetryAfterSeconds, secs)
	}
	return limited{RetryAfter: secs, Scope: data.Scope}
}

// TestRateLimitExactAcrossInstances runs two vmcp instances of one name on
// one Redis with a shared limit of 20 and lets 8 concurrent mcp-go clients,
// spread over both, make 60 calls: exactly 20 are served, 40 are refused
// with the 429 contract, and only the 20 reach the backend.
func TestRateLimitExactAcrossInstances(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	e := newRLEnv(t)
	limits := "  shared: {maxTokens: 20, refillPeriod: 1h}"
	vs := []*vmcp{e.start(t, r.Addr, limits), e.start(t, r.Addr, limits)}

	const clients, calls = 8, 60
	var next, passed, refused atomic.Int64
	perInstance := make([]atomic.Int64, len(vs))
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range clients {
		c := newClient(t, vs[i%len(vs)].URL, clientOpts{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= calls {
				perInstance[i%len(vs)].Add(1)
				marker := uniqueName("exact")
				res, err := tryCallNoFatal(c, "demo_echo", map[string]any{"text": marker})
				switch {
				case err == nil && !res.IsError && resultText(res) == marker:
					passed.Add(1)
				case err != nil && err.Error() == "Rate limit exceeded":
					// mcp-go surfaces a JSON-RPC error body of a non-2xx
					// answer as an error with its message only; the status,
					// header and code are checked with raw HTTP below.
					refused.Add(1)
				case err != nil:
					errs <- fmt.Errorf("client %d: %v", i, err)
				default:
					errs <- fmt.Errorf("client %d: unexpected result %s", i, resultText(res))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if passed.Load() != 20 || refused.Load() != 40 {
		t.Errorf("%d calls served and %d refused, want exactly 20 and 40", passed.Load(), refused.Load())
	}
	if n := e.Proxy.total(); n != 20 {
		t.Errorf("the backend got %d calls, want 20", n)
	}
	for i := range vs {
		if perInstance[i].Load() == 0 {
			t.Errorf("instance %d got no calls", i)
		}
	}
	// Once the bucket is empty, both instances refuse, in the contract's shape.
	for i, v := range vs {
		sid := openSessionVersion(t, v.URL, "", legacyRevision)
		res, _ := rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
		if l := expectLimited(t, res, `7`, codeLimitedLegacy, fmt.Sprintf("instance %d", i)); l.Scope != "shared" {
			t.Errorf("instance %d: scope %q, want shared", i, l.Scope)
		}
	}
}

// tryCallNoFatal is tryCall for a goroutine other than the test's.
func tryCallNoFatal(c *client.Client, name string, args map[string]any) (*mcp.CallToolResult, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return c.CallTool(ctx, req)
}

// TestRateLimitContract checks what real clients get once the bucket is
// empty: raw HTTP for both protocol generations and the TypeScript SDK's
// client.
func TestRateLimitContract(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	e := newRLEnv(t)
	v := e.start(t, r.Addr, "  shared: {maxTokens: 2, refillPeriod: 1h}")
	sid := openSessionVersion(t, v.URL, "", legacyRevision)
	for i := range 2 {
		res, _ := rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
		expectPass(t, res, fmt.Sprintf("call %d of 2", i+1))
	}
	before := e.Proxy.total()

	t.Run("raw HTTP, revision 2025-06-18: -32029", func(t *testing.T) {
		for _, id := range []string{`77`, `"req-abc"`} {
			res := mcpPost{url: v.URL, session: sid, version: legacyRevision,
				body: toolCall(id, "demo_echo", map[string]any{"text": "x"})}.do(t)
			l := expectLimited(t, res, id, codeLimitedLegacy, "id "+id)
			if l.Scope != "shared" {
				t.Errorf("scope %q, want shared", l.Scope)
			}
			// 2 tokens per hour, both taken: the next one is ~30 minutes away.
			if l.RetryAfter < 1700 || l.RetryAfter > 1800 {
				t.Errorf("Retry-After %d, want about 1800 (half of 1h)", l.RetryAfter)
			}
		}
	})

	t.Run("raw HTTP, revision 2026-07-28: 429", func(t *testing.T) {
		// The limiter answers before mcp-go sees the request, so the
		// revision of the header decides the code, on the legacy session as
		// well as sessionless (the 2026-07-28 way).
		for what, s := range map[string]string{"on the session": sid, "sessionless": ""} {
			res := mcpPost{url: v.URL, session: s, version: modernRevision,
				body: toolCall(`9`, "demo_echo", map[string]any{"text": "x"})}.do(t)
			expectLimited(t, res, `9`, codeLimitedModern, what)
		}
	})

	t.Run("mcp-go client", func(t *testing.T) {
		c := newClient(t, v.URL, clientOpts{})
		_, err := tryCall(t, c, "demo_echo", map[string]any{"text": "x"})
		// mcp-go keeps only the message of the JSON-RPC error body.
		if err == nil || !strings.Contains(err.Error(), "Rate limit exceeded") {
			t.Errorf("mcp-go: error %v, want Rate limit exceeded", err)
		}
	})

	t.Run("TypeScript client", func(t *testing.T) {
		needNode(t)
		res := runNode(t, v.URL, []map[string]any{
			{"op": "callTool", "name": "demo_echo", "arguments": map[string]any{"text": "x"}},
		}, nil, nil)
		var step struct {
			Error *struct {
				Code       int               `json:"code"`
				Message    string            `json:"message"`
				HTTPStatus int               `json:"httpStatus"`
				Headers    map[string]string `json:"headers"`
				Data       struct {
					RetryAfterSeconds int    `json:"retryAfterSeconds"`
					Scope             string `json:"scope"`
				} `json:"data"`
			} `json:"error"`
		}
		if err := json.Unmarshal(res.Results[0], &step); err != nil || step.Error == nil {
			t.Fatalf("TypeScript client: want an error, got %s", res.Results[0])
		}
		se := step.Error
		if se.HTTPStatus != http.StatusTooManyRequests {
			t.Errorf("TypeScript client: httpStatus %d, want 429: %s", se.HTTPStatus, res.Results[0])
		}
		ra, err := strconv.Atoi(se.Headers["retry-after"])
		if err != nil || ra < 1 {
			t.Errorf("TypeScript client: retry-after %q, want a positive integer: %s", se.Headers["retry-after"], res.Results[0])
		}
		want := codeLimitedLegacy
		if res.Session.ProtocolVersion >= modernRevision {
			want = codeLimitedModern
		}
		if se.Code != want || se.Message != "Rate limit exceeded" || se.Data.RetryAfterSeconds != ra || se.Data.Scope != "shared" {
			t.Errorf("TypeScript client (revision %s): error %s, want code %d, Rate limit exceeded, data {retryAfterSeconds %d, scope shared}",
				res.Session.ProtocolVersion, res.Results[0], want, ra)
		}
	})

	if n := e.Proxy.total(); n != before {
		t.Errorf("%d refused calls reached the backend", n-before)
	}
}

// TestRateLimitRefill: 2 tokens per 2s is one per second; the third call at
// once is refused with Retry-After 1, and a call a second later passes.
func TestRateLimitRefill(t *testing.T) {
	t.Parallel()
	e := newRLEnv(t)
	for _, store := range []string{"redis", "memory"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			addr := ""
			if store == "redis" {
				addr = startRedis(t).Addr
			}
			v := e.start(t, addr, "  shared: {maxTokens: 2, refillPeriod: 2s}")
			sid := openSessionVersion(t, v.URL, "", legacyRevision)
			for i := range 2 {
				res, _ := rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
				expectPass(t, res, fmt.Sprintf("call %d of 2", i+1))
			}
			res, _ := rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
			refused := time.Now()
			if l := expectLimited(t, res, `7`, codeLimitedLegacy, "third call"); l.RetryAfter != 1 {
				t.Errorf("Retry-After %d, want 1", l.RetryAfter)
			}
			time.Sleep(400 * time.Millisecond)
			res, _ = rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
			expectLimited(t, res, `7`, codeLimitedLegacy, "0.4s later")
			time.Sleep(time.Until(refused.Add(1050 * time.Millisecond)))
			res, _ = rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
			expectPass(t, res, "a second later")
			res, _ = rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
			expectLimited(t, res, `7`, codeLimitedLegacy, "right after the refilled token")
		})
	}
}

// TestRateLimitPerUser gives two real OIDC identities (clients vmcp-test
// and vmcp-test-es256 of the provider) 2 calls each: the first one's
// exhaustion does not touch the second's.
func TestRateLimitPerUser(t *testing.T) {
	t.Parallel()
	needIdP(t)
	r := startRedis(t)
	p := startIdP(t, idpOpts{})
	e := newRLEnv(t)
	v, audience := startVMCPAt(t, func(port, audience string) string {
		return fmt.Sprintf(`name: %s
server: {host: 127.0.0.1, port: %s}
backends:
  - {name: demo, transport: streamable-http, url: %q, requestTimeout: 10s}
incomingAuth:
  type: oidc
  oidc:
    issuer: %q
    audience: %q
    requiredScopes: [%q]
rateLimiting:
  perUser: {maxTokens: 2, refillPeriod: 1h}
redis: {address: %q}
`, e.Name, port, e.Proxy.URL, p.Issuer, audience, requiredScope, r.Addr)
	})
	tokA := p.token(t, tokenReq{client: clientRS256, resource: audience, scope: requiredScope})
	tokB := p.token(t, tokenReq{client: clientES256, resource: audience, scope: requiredScope})
	sidA := openSessionVersion(t, v.URL, tokA, legacyRevision)
	sidB := openSessionVersion(t, v.URL, tokB, legacyRevision)

	for i := range 2 {
		res, _ := rlCall(t, v.URL, tokA, sidA, legacyRevision, "demo_echo")
		expectPass(t, res, fmt.Sprintf("A: call %d of 2", i+1))
	}
	res, marker := rlCall(t, v.URL, tokA, sidA, legacyRevision, "demo_echo")
	if l := expectLimited(t, res, `7`, codeLimitedLegacy, "A: third call"); l.Scope != "perUser" {
		t.Errorf("A: scope %q, want perUser", l.Scope)
	}
	if n := e.Proxy.callsWith(marker); n != 0 {
		t.Errorf("A's refused call reached the backend %d times", n)
	}
	for i := range 2 {
		res, _ := rlCall(t, v.URL, tokB, sidB, legacyRevision, "demo_echo")
		expectPass(t, res, fmt.Sprintf("B: call %d of 2 after A is exhausted", i+1))
	}
	res, _ = rlCall(t, v.URL, tokB, sidB, legacyRevision, "demo_echo")
	expectLimited(t, res, `7`, codeLimitedLegacy, "B: third call")
	res, _ = rlCall(t, v.URL, tokA, sidA, legacyRevision, "demo_echo")
	expectLimited(t, res, `7`, codeLimitedLegacy, "A: still refused")

	// Two users, two keys, neither naming its user.
	keys, err := r.Client.Keys(ctxT(t, 5*time.Second), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Errorf("keys %q, want one per user", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "vmcp:{"+e.Name+"}:user:") || strings.Contains(k, clientRS256) {
			t.Errorf("key %q: want vmcp:{%s}:user:<hash>", k, e.Name)
		}
	}
}

// TestRateLimitToolBucket: a tool bucket that refuses leaves the shared
// bucket as it was. Shared 5, demo_echo 1: echo passes once; the refused
// echoes take nothing from shared, so 4 demo_add pass and the fifth is
// refused by shared.
func TestRateLimitToolBucket(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	e := newRLEnv(t)
	v := e.start(t, r.Addr, `  shared: {maxTokens: 5, refillPeriod: 1h}
  tools:
    - {name: demo_echo, shared: {maxTokens: 1, refillPeriod: 1h}}`)
	sid := openSessionVersion(t, v.URL, "", legacyRevision)
	res, _ := rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
	expectPass(t, res, "echo 1")
	for i := range 3 {
		res, _ := rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
		l := expectLimited(t, res, `7`, codeLimitedLegacy, fmt.Sprintf("echo %d", i+2))
		if l.Scope != "shared tool demo_echo" {
			t.Errorf("echo %d: scope %q, want %q", i+2, l.Scope, "shared tool demo_echo")
		}
	}
	for i := range 4 {
		res, _ := rlCall(t, v.URL, "", sid, legacyRevision, "demo_add")
		expectPass(t, res, fmt.Sprintf("add %d of 4", i+1))
	}
	res, _ = rlCall(t, v.URL, "", sid, legacyRevision, "demo_add")
	if l := expectLimited(t, res, `7`, codeLimitedLegacy, "add 5"); l.Scope != "shared" {
		t.Errorf("add 5: scope %q, want shared", l.Scope)
	}
	if n := e.Proxy.total(); n != 5 {
		t.Errorf("the backend got %d calls, want 5", n)
	}
}

// TestRateLimitScriptFlush: SCRIPT FLUSH between calls changes nothing; the
// limits keep counting exactly. Every key sits under the server's hash tag
// with a TTL no longer than a full refill.
func TestRateLimitScriptFlush(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	e := newRLEnv(t)
	v := e.start(t, r.Addr, "  shared: {maxTokens: 6, refillPeriod: 1h}")
	sid := openSessionVersion(t, v.URL, "", legacyRevision)
	for i := range 6 {
		if i%2 == 0 {
			if err := r.Client.ScriptFlush(ctxT(t, 5*time.Second)).Err(); err != nil {
				t.Fatalf("SCRIPT FLUSH: %v", err)
			}
		}
		res, _ := rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
		expectPass(t, res, fmt.Sprintf("call %d of 6", i+1))
	}
	if err := r.Client.ScriptFlush(ctxT(t, 5*time.Second)).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	res, _ := rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
	expectLimited(t, res, `7`, codeLimitedLegacy, "call 7")
	if n := e.Proxy.total(); n != 6 {
		t.Errorf("the backend got %d calls, want 6", n)
	}
	ctx := ctxT(t, 5*time.Second)
	keys, err := r.Client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := "vmcp:{" + e.Name + "}:shared"
	if len(keys) != 1 || keys[0] != want {
		t.Fatalf("keys %q, want [%s]", keys, want)
	}
	if ttl := r.Client.PTTL(ctx, want).Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("TTL of %s is %v, want in (0, 1h]", want, ttl)
	}
}

// TestRateLimitRedisOutage: with Redis gone, the bucket is enforced in
// vmcp's memory (rateLimiting.onStoreFailure: local, the default) from
// where Redis left it, each call well within a second, and the outage is
// logged; once Redis is back
// on the same port (empty, so its bucket is full), it decides again.
func TestRateLimitRedisOutage(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	e := newRLEnv(t)
	v := e.start(t, r.Addr, "  shared: {maxTokens: 5, refillPeriod: 1h}")
	sid := openSessionVersion(t, v.URL, "", legacyRevision)
	for i := range 3 {
		res, _ := rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
		expectPass(t, res, fmt.Sprintf("call %d of 5", i+1))
	}

	r.Stop()
	for i := range 10 {
		start := time.Now()
		res, _ := rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
		took := time.Since(start)
		// The buckets in memory followed what Redis let through: two of
		// the five tokens are left, and the limit holds across the outage.
		step := fmt.Sprintf("call %d with Redis down", i+1)
		if i < 2 {
			expectPass(t, res, step)
		} else {
			expectLimited(t, res, `7`, codeLimitedLegacy, step)
		}
		if took > 500*time.Millisecond {
			t.Errorf("call %d with Redis down took %v, want well under a second", i+1, took)
		}
	}
	if n := strings.Count(v.Logs.String(), "rate limit store is failing"); n != 1 {
		t.Errorf("%d outage warnings in the log, want 1", n)
	}

	r.Restart(t)
	// The bucket in memory is empty: the first call that passes was
	// decided by the restarted Redis, whose bucket of 5 is enforced.
	eventually(t, 15*time.Second, "a call served by the restarted Redis", func() error {
		res, _ := rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
		if res.Status == http.StatusTooManyRequests {
			return fmt.Errorf("still refused")
		}
		expectPass(t, res, "call after the restart")
		return nil
	})
	if !strings.Contains(v.Logs.String(), "answers again") {
		t.Errorf("no recovery message in the log")
	}
	for i := range 4 {
		res, _ := rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
		expectPass(t, res, fmt.Sprintf("call %d of 5 after the restart", i+2))
	}
	res, _ := rlCall(t, v.URL, "", sid, legacyRevision, "demo_echo")
	if l := expectLimited(t, res, `7`, codeLimitedLegacy, "refusal after the restart"); l.Scope != "shared" {
		t.Errorf("scope %q, want shared", l.Scope)
	}
	n, err := r.Client.Exists(ctxT(t, 5*time.Second), "vmcp:{"+e.Name+"}:shared").Result()
	if err != nil || n != 1 {
		t.Errorf("the shared bucket is not in the restarted Redis (exists=%d, %v)", n, err)
	}
}

// TestRateLimitRedisUnreachableAtStart: Start fails, naming the address.
func TestRateLimitRedisUnreachableAtStart(t *testing.T) {
	t.Parallel()
	e := newRLEnv(t)
	addr := freeAddr(t) // no one listens there
	cfg, err := config.Parse([]byte(e.yaml(addr, "  shared: {maxTokens: 5, refillPeriod: 1m}")), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	dumpOnFailure(t, "vmcp log", logs)
	srv, err := server.New(*cfg, server.Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Version: "e2e"})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	start := time.Now()
	err = srv.Start(ctxT(t, 30*time.Second))
	took := time.Since(start)
	if shErr := srv.Shutdown(ctxT(t, 10*time.Second)); shErr != nil {
		t.Errorf("Shutdown after a failed Start: %v", shErr)
	}
	if err == nil {
		t.Fatal("Start succeeded with Redis unreachable")
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("Start error %q does not name the address %s", err, addr)
	}
	if took > 10*time.Second {
		t.Errorf("Start took %v to give up", took)
	}
}
