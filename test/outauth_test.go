package test

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
)

// Outgoing auth of TestOutgoingAuth: the gateway's client at the provider
// and the environment variables vmcp reads its secrets from (not VMCP_*,
// which are config overrides).
const (
	gatewaySecretEnv = "OUTAUTH_E2E_GATEWAY_SECRET"
	roKeyEnv         = "OUTAUTH_E2E_RO_KEY"
	svcResource      = "https://svc.e2e.test/mcp"
	clientES256User  = clientES256 // a third user, for jira2 and the provider-down case
)

// outauthEnv is vmcp (its binary) with incoming OIDC auth in front of
// backends that verify the tokens they get, one per kind of outgoing auth.
type outauthEnv struct {
	IdP      *idp
	Hang     *hangingEndpoint
	Backends map[string]*tokenBackend
	V        *vmcpProc
	roKey    string

	mu     sync.Mutex
	tokens map[string]string // client id -> its first token for vmcp
	issued []string          // every incoming token the test made
}

// startOutauthEnv starts the provider (exchanges for audience jira only;
// vmcp-test's tokens never exchanged), the backends and vmcp:
//
//	jira   token_exchange, audience jira, discovery none
//	jira2  token_exchange, audience jira, exchanged tokens live 3s (?ttl=3)
//	wiki   token_exchange, audience wiki (the provider refuses it)
//	svc    client_credentials (vmcp-gateway), resource svcResource
//	pass   passthrough
//	ro     header_injection (X-Api-Key)
//	hang   token_exchange at an endpoint that never answers, requestTimeout 2s
func startOutauthEnv(t *testing.T) *outauthEnv {
	t.Helper()
	e := &outauthEnv{tokens: map[string]string{}, roKey: "ro-key-" + uniqueName("k")}
	e.IdP = startIdP(t, idpOpts{exchangeAudiences: "jira", exchangeDeny: clientRS256})
	e.Hang = startHangingEndpoint(t)
	e.Backends = map[string]*tokenBackend{}
	// pass's audience is vmcp's URL, known once its port is chosen: it
	// verifies tokens against a pointer filled below.
	for name, aud := range map[string]string{"jira": "jira", "jira2": "jira", "wiki": "wiki", "svc": svcResource, "hang": "jira"} {
		e.Backends[name] = startTokenBackend(t, name, e.IdP, aud, "")
	}
	e.Backends["ro"] = startTokenBackend(t, "ro", e.IdP, "ro-takes-no-token", e.roKey)
	pass := startTokenBackend(t, "pass", e.IdP, "", "")
	e.Backends["pass"] = pass
	tokenURL := e.IdP.TokenEndpoint
	e.V = startVMCPProcess(t, func(port string) string {
		aud := "http://127.0.0.1:" + port + "/mcp"
		pass.mu.Lock()
		pass.aud = aud
		pass.mu.Unlock()
		b := e.Backends
		return fmt.Sprintf(`name: e2e-outauth
server: {host: 127.0.0.1, port: %[1]s, drainGrace: 0s}
backends:
  - {name: jira, transport: streamable-http, url: %[2]q, requestTimeout: 5s}
  - {name: jira2, transport: streamable-http, url: %[3]q, requestTimeout: 5s}
  - {name: wiki, transport: streamable-http, url: %[4]q, requestTimeout: 5s}
  - {name: svc, transport: streamable-http, url: %[5]q, requestTimeout: 5s}
  - {name: pass, transport: streamable-http, url: %[6]q, requestTimeout: 5s}
  - {name: ro, transport: streamable-http, url: %[7]q, requestTimeout: 5s}
  - {name: hang, transport: streamable-http, url: %[8]q, requestTimeout: 2s}
incomingAuth:
  type: oidc
  oidc:
    issuer: %[9]q
    audience: %[10]q
    requiredScopes: [%[11]q]
outgoingAuth:
  backends:
    jira: {type: token_exchange, tokenURL: %[12]q, clientID: vmcp-gateway, clientSecretEnv: %[13]s, audience: jira, discovery: none}
    jira2: {type: token_exchange, tokenURL: %[14]q, clientID: vmcp-gateway, clientSecretEnv: %[13]s, audience: jira}
    wiki: {type: token_exchange, tokenURL: %[12]q, clientID: vmcp-gateway, clientSecretEnv: %[13]s, audience: wiki}
    svc: {type: client_credentials, tokenURL: %[12]q, clientID: vmcp-gateway, clientSecretEnv: %[13]s, resource: %[15]q}
    pass: {type: passthrough}
    ro: {type: header_injection, headerName: X-Api-Key, headerValueEnv: %[16]s}
    hang: {type: token_exchange, tokenURL: %[17]q, clientID: vmcp-gateway, clientSecretEnv: %[13]s, audience: jira}
audit: {enabled: true, output: stdout}
telemetry: {prometheus: true}
`, port, b["jira"].URL, b["jira2"].URL, b["wiki"].URL, b["svc"].URL, b["pass"].URL, b["ro"].URL, b["hang"].URL,
			e.IdP.Issuer, aud, requiredScope, tokenURL, gatewaySecretEnv, tokenURL+"?ttl=3", svcResource, roKeyEnv, e.Hang.URL)
	}, gatewaySecretEnv+"="+exchangeSecrets[clientGateway], roKeyEnv+"="+e.roKey)
	return e
}

// freshToken fetches a new token of clientID for vmcp.
func (e *outauthEnv) freshToken(t *testing.T, clientID string) string {
	t.Helper()
	tok := e.IdP.token(t, tokenReq{client: clientID, resource: e.V.Audience, scope: requiredScope})
	e.mu.Lock()
	e.issued = append(e.issued, tok)
	e.mu.Unlock()
	return tok
}

// token returns the first token of clientID for vmcp (fetched once).
func (e *outauthEnv) token(t *testing.T, clientID string) string {
	t.Helper()
	e.mu.Lock()
	tok, ok := e.tokens[clientID]
	e.mu.Unlock()
	if ok {
		return tok
	}
	tok = e.freshToken(t, clientID)
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.tokens[clientID]; ok {
		return old
	}
	e.tokens[clientID] = tok
	return tok
}

// client connects mcp-go's client to vmcp with tok.
func (e *outauthEnv) client(t *testing.T, tok string) *client.Client {
	t.Helper()
	return newClient(t, e.V.URL, clientOpts{headers: map[string]string{"Authorization": "Bearer " + tok}})
}

// callWhoami calls NAME_whoami, which must succeed, and decodes its answer.
func callWhoami(t *testing.T, c *client.Client, backend string) tokenClaims {
	t.Helper()
	return whoamiOf(t, backend+"_whoami", callText(t, c, backend+"_whoami", nil))
}

// TestOutgoingAuth runs the vmcp binary with incoming OIDC auth against
// the real provider (test/js/idp.mjs, which implements RFC 8693) in front
// of backends that verify every token they get, and checks per-user token
// exchange (two users, mcp-go and the TypeScript SDK), its cache and
// renewal, refusal, a provider that is down or never answers, where tokens
// travel (only on a client's own backend session), client credentials,
// passthrough, metrics, and that no token reaches vmcp's output.
func TestOutgoingAuth(t *testing.T) {
	t.Parallel()
	needIdP(t)
	e := startOutauthEnv(t)
	jira, jira2, wiki, svc, pass, ro, hang := e.Backends["jira"], e.Backends["jira2"], e.Backends["wiki"],
		e.Backends["svc"], e.Backends["pass"], e.Backends["ro"], e.Backends["hang"]

	// Before any client connects, each backend's requests are the shared
	// connection's (discovery, health checks).
	shared := map[string]map[string]bool{}
	for name, b := range e.Backends {
		shared[name] = b.listSessions()
		if len(shared[name]) == 0 {
			t.Fatalf("backend %s: no tools/list on a session before any client connected:%s", name, b)
		}
	}
	// The user of the provider-down case: a valid token fetched now.
	es256Tok := e.token(t, clientES256User)

	t.Run("calls", func(t *testing.T) {
		t.Run("two users reach jira as themselves (mcp-go)", func(t *testing.T) {
			t.Parallel()
			for _, who := range []string{clientEng, clientSupport} {
				c := e.client(t, e.token(t, who))
				for i := 0; i < 3; i++ {
					w := callWhoami(t, c, "jira")
					if w.Sub != who || len(w.Aud) != 1 || w.Aud[0] != "jira" || w.ClientID != clientGateway {
						t.Errorf("jira_whoami by %s: %+v, want sub %s, aud [jira], client_id %s", who, w, who, clientGateway)
					}
				}
			}
		})

		t.Run("two users reach jira as themselves (TypeScript SDK)", func(t *testing.T) {
			t.Parallel()
			needNode(t)
			// ro_whoami too, so that the client's session with ro is ended
			// when the client ends its own (see "closing ... carries its
			// credential").
			ops := []map[string]any{
				{"op": "callTool", "name": "jira_whoami", "arguments": map[string]any{}},
				{"op": "callTool", "name": "jira_whoami", "arguments": map[string]any{}},
				{"op": "callTool", "name": "ro_whoami", "arguments": map[string]any{}},
			}
			for _, who := range []string{clientEng, clientSupport} {
				res := runNode(t, e.V.URL, ops, map[string]string{"Authorization": "Bearer " + e.token(t, who)}, nil)
				for i := range ops[:2] {
					var r struct {
						Content []struct{ Text string } `json:"content"`
						IsError bool                    `json:"isError"`
						Error   *nodeError              `json:"error"`
					}
					if err := json.Unmarshal(res.Results[i], &r); err != nil || r.Error != nil || r.IsError || len(r.Content) != 1 {
						t.Fatalf("TypeScript SDK: jira_whoami by %s: %s", who, res.Results[i])
					}
					w := whoamiOf(t, "TypeScript SDK jira_whoami", r.Content[0].Text)
					if w.Sub != who || len(w.Aud) != 1 || w.Aud[0] != "jira" || w.ClientID != clientGateway {
						t.Errorf("TypeScript SDK: jira_whoami by %s: %+v", who, w)
					}
				}
			}
		})

		t.Run("one exchange per user while the token is valid", func(t *testing.T) {
			t.Parallel()
			jtis := map[string]string{}
			for _, who := range []string{clientEng, clientSupport} {
				c := e.client(t, e.token(t, who))
				for i := 0; i < 4; i++ {
					w := callWhoami(t, c, "jira")
					if jtis[who] == "" {
						jtis[who] = w.JTI
					} else if w.JTI != jtis[who] {
						t.Errorf("%s: call %d reached jira with another token (jti %s, before %s)", who, i, w.JTI, jtis[who])
					}
				}
			}
			// A freshly issued incoming token of the same user, on a new
			// session: the cached exchanged token is still used.
			fresh := e.freshToken(t, clientEng)
			if fresh == e.token(t, clientEng) {
				t.Fatal("the provider issued the same token twice")
			}
			w := callWhoami(t, e.client(t, fresh), "jira")
			if w.Sub != clientEng || w.JTI != jtis[clientEng] {
				t.Errorf("a fresh incoming token of %s reached jira as %+v, want the cached token (jti %s)", clientEng, w, jtis[clientEng])
			}
			x := e.IdP.exchanges(t)
			for _, who := range []string{clientEng, clientSupport} {
				if got := x.issuedFor(clientGateway, who, "jira"); len(got) != 1 {
					t.Errorf("the provider issued %d exchanges to %s for jira, want 1: %+v", len(got), who, got)
				}
			}
		})

		t.Run("renewal of a short-lived exchanged token", func(t *testing.T) {
			t.Parallel()
			// Only this user calls jira2, whose exchanged tokens live 3s (renewed
			// when a fifth of that is left).
			c := e.client(t, e.token(t, clientES256User))
			first := callWhoami(t, c, "jira2")
			if again := callWhoami(t, c, "jira2"); again.JTI != first.JTI {
				t.Errorf("a second call at once used another token: jti %s, then %s", first.JTI, again.JTI)
			}
			if n := len(e.IdP.exchanges(t).issuedFor(clientGateway, clientES256User, "jira")); n != 1 {
				t.Errorf("%d exchanges after two calls in a row, want 1", n)
			}
			time.Sleep(3500 * time.Millisecond)
			second := callWhoami(t, c, "jira2")
			if second.Sub != clientES256User || second.JTI == first.JTI || second.Exp <= first.Exp {
				t.Errorf("after expiry jira2 got %+v; before %+v: want a new token", second, first)
			}
			if n := len(e.IdP.exchanges(t).issuedFor(clientGateway, clientES256User, "jira")); n != 2 {
				t.Errorf("%d exchanges after the renewal, want 2", n)
			}
			jtis := map[string]bool{}
			for _, r := range jira2.requests() {
				if r.Sub == clientES256User {
					jtis[r.JTI] = true
				}
			}
			if len(jtis) != 2 {
				t.Errorf("jira2 saw %d distinct tokens of %s, want 2:%s", len(jtis), clientES256User, jira2)
			}
		})

		t.Run("a refused exchange is a JSON-RPC error naming the backend", func(t *testing.T) {
			t.Parallel()
			eng := e.token(t, clientEng)
			s := rawSession{url: e.V.URL, token: eng, sid: openSession(t, e.V.URL, eng)}
			res := s.call(t, "tools/call", map[string]any{"name": "wiki_whoami", "arguments": map[string]any{}})
			if res.Status != http.StatusOK {
				t.Errorf("wiki_whoami: HTTP %d, want 200 with a JSON-RPC error: %s", res.Status, res.Body)
			}
			var re rpcError
			if err := json.Unmarshal(res.jsonrpcMessage(), &re); err != nil || re.Error == nil {
				t.Fatalf("wiki_whoami: not a JSON-RPC error: %s", res.Body)
			}
			t.Logf("wiki_whoami: HTTP %d %s", res.Status, res.jsonrpcMessage())
			if !strings.Contains(re.Error.Message, `"wiki"`) && !strings.Contains(re.Error.Message, "wiki ") {
				t.Errorf("wiki_whoami: the error does not name backend wiki: %s", res.Body)
			}
			// mcp-go sees an error too.
			c := e.client(t, e.token(t, clientSupport))
			if _, err := tryCall(t, c, "wiki_whoami", nil); err == nil || !strings.Contains(err.Error(), "wiki") {
				t.Errorf("mcp-go: wiki_whoami: %v, want an error naming wiki", err)
			}
			if n := wiki.count(func(r backendReq) bool { return r.RPCMethod == "tools/call" || r.Token != "" }); n != 0 {
				t.Errorf("wiki got %d tools/call or token-carrying requests:%s", n, wiki)
			}
			x := e.IdP.exchanges(t)
			if n := x.refusedFor(clientGateway, clientEng, "invalid_target"); n != 1 {
				t.Errorf("the provider refused %d exchanges of %s for wiki, want 1 (one per call): %+v", n, clientEng, x.Refused)
			}

			// A user whose tokens the provider never exchanges.
			denied := e.client(t, e.token(t, clientRS256))
			for i := 0; i < 2; i++ {
				if _, err := tryCall(t, denied, "jira_whoami", nil); err == nil || !strings.Contains(err.Error(), "jira") {
					t.Errorf("jira_whoami by %s: %v, want an error naming jira", clientRS256, err)
				}
			}
			if n := e.IdP.exchanges(t).refusedFor(clientGateway, clientRS256, "invalid_grant"); n != 2 {
				t.Errorf("the provider refused %d exchanges of %s, want 2 (one per call, no retries)", n, clientRS256)
			}
			if n := jira.count(func(r backendReq) bool { return r.Sub == clientRS256 || r.Sub == "invalid" }); n != 0 {
				t.Errorf("jira got %d requests for %s or with an invalid token:%s", n, clientRS256, jira)
			}
			if w := callWhoami(t, e.client(t, eng), "jira"); w.Sub != clientEng {
				t.Errorf("jira_whoami by %s after the refusals: %+v", clientEng, w)
			}
		})

		t.Run("an identity provider that never answers fails the call in time", func(t *testing.T) {
			t.Parallel()
			c := e.client(t, e.token(t, clientSupport))
			other := e.client(t, e.token(t, clientEng))
			callWhoami(t, other, "jira") // cached from now on
			done := make(chan error, 1)
			start := time.Now()
			go func() {
				_, err := tryCall(t, c, "hang_whoami", nil)
				done <- err
			}()
			// While that call waits, the others work, and fast.
			time.Sleep(300 * time.Millisecond)
			for _, b := range []string{"ro", "jira", "svc"} {
				t0 := time.Now()
				callWhoami(t, other, b)
				if d := time.Since(t0); d > 1500*time.Millisecond {
					t.Errorf("%s_whoami took %s while hang's token endpoint hung", b, d)
				}
			}
			select {
			case err := <-done:
				d := time.Since(start)
				if err == nil || !strings.Contains(err.Error(), "hang") {
					t.Errorf("hang_whoami: %v, want an error naming hang", err)
				}
				if d > 2*time.Second+3*time.Second {
					t.Errorf("hang_whoami failed after %s; requestTimeout is 2s", d)
				}
				t.Logf("hang_whoami failed after %s: %v", d, err)
			case <-time.After(15 * time.Second):
				t.Fatal("hang_whoami did not fail within 15s (requestTimeout 2s)")
			}
			if n := e.Hang.accepted.Load(); n != 1 {
				t.Errorf("the hanging token endpoint got %d connections for one call, want 1", n)
			}
			if n := hang.count(func(r backendReq) bool { return r.Token != "" || r.RPCMethod == "tools/call" }); n != 0 {
				t.Errorf("hang got %d calls or tokens:%s", n, hang)
			}
		})

		t.Run("client_credentials and passthrough", func(t *testing.T) {
			t.Parallel()
			eng := e.token(t, clientEng)
			c := e.client(t, eng)
			w := callWhoami(t, c, "svc")
			if w.Sub != clientGateway || w.ClientID != clientGateway || len(w.Aud) != 1 || w.Aud[0] != svcResource {
				t.Errorf("svc_whoami by %s: %+v, want vmcp's own token (sub %s, aud %s)", clientEng, w, clientGateway, svcResource)
			}
			w = callWhoami(t, c, "pass")
			if w.Sub != clientEng || len(w.Aud) != 1 || w.Aud[0] != e.V.Audience {
				t.Errorf("pass_whoami by %s: %+v, want the caller's own token (aud %s)", clientEng, w, e.V.Audience)
			}
			if n := pass.count(func(r backendReq) bool { return r.RPCMethod == "tools/call" && r.Token == eng }); n != 1 {
				t.Errorf("pass got the caller's token unchanged on %d tools/call, want 1:%s", n, pass)
			}
			if w := whoamiOf(t, "ro_whoami", callText(t, c, "ro_whoami", nil)); w.Sub != "" {
				t.Errorf("ro_whoami: %+v", w)
			}
		})
	})

	t.Run("a provider that is down fails the call of an uncached user only", func(t *testing.T) {
		eng := e.client(t, e.token(t, clientEng))
		callWhoami(t, eng, "jira")
		user := e.client(t, es256Tok)
		callText(t, user, "ro_whoami", nil)
		e.IdP.Stop()
		start := time.Now()
		_, err := tryCall(t, user, "jira_whoami", nil)
		if d := time.Since(start); d > 5*time.Second+3*time.Second {
			t.Errorf("jira_whoami failed after %s; requestTimeout is 5s", d)
		}
		if err == nil || !strings.Contains(err.Error(), "jira") {
			t.Errorf("jira_whoami by %s with the provider down: %v, want an error naming jira", clientES256User, err)
		}
		if w := callWhoami(t, eng, "jira"); w.Sub != clientEng {
			t.Errorf("jira_whoami by %s (cached) with the provider down: %+v", clientEng, w)
		}
		for _, b := range []string{"ro", "svc", "pass"} {
			callWhoami(t, eng, b)
		}
		callText(t, user, "ro_whoami", nil)
	})

	t.Run("per-user tokens travel only on the user's own backend session", func(t *testing.T) {
		users := map[string]bool{clientEng: true, clientSupport: true, clientES256User: true, clientRS256: true}
		for name, b := range e.Backends {
			perUser := name == "jira" || name == "jira2" || name == "wiki" || name == "pass" || name == "hang"
			sessionSub := map[string]string{}
			for _, r := range b.requests() {
				onShared := shared[name][r.Session]
				switch {
				case users[r.Sub] && (r.Session == "" || onShared):
					t.Errorf("%s: a request with %s's token on the shared connection (session %q): %s %s", name, r.Sub, r.Session, r.HTTPMethod, r.RPCMethod)
				case r.Sub == "invalid":
					t.Errorf("%s: a request with a token that does not verify (%s): %s %s", name, r.Err, r.HTTPMethod, r.RPCMethod)
				case perUser && onShared && r.Token != "":
					t.Errorf("%s: the shared connection carried an Authorization (sub %s): %s %s", name, r.Sub, r.HTTPMethod, r.RPCMethod)
				case perUser && !onShared && r.Token == "" && r.HTTPMethod != http.MethodDelete: // DELETE: the next subtest
					t.Errorf("%s: a request on a client's session (%q) without the user's token: %s %s", name, r.Session, r.HTTPMethod, r.RPCMethod)
				case name == "svc" && r.Sub != clientGateway:
					t.Errorf("svc: a request without vmcp's own token (sub %q): %s %s on session %q", r.Sub, r.HTTPMethod, r.RPCMethod, r.Session)
				case name == "ro" && r.HTTPMethod != http.MethodDelete && (r.APIKey != e.roKey || r.Token != ""):
					t.Errorf("ro: a request without its key or with a token: %s %s", r.HTTPMethod, r.RPCMethod)
				}
				if perUser && !onShared && r.Sub != "" && r.HTTPMethod != http.MethodDelete {
					if s, ok := sessionSub[r.Session]; ok && s != r.Sub {
						t.Errorf("%s: session %s carried tokens of %s and of %s", name, r.Session, s, r.Sub)
					}
					sessionSub[r.Session] = r.Sub
				}
			}
			if t.Failed() {
				t.Logf("%s received:%s", name, b)
			}
		}
		if n := jira.count(func(r backendReq) bool { return r.Sub == clientEng && r.RPCMethod == "tools/call" }); n == 0 {
			t.Errorf("jira recorded no tools/call of %s: nothing was checked", clientEng)
		}
		if n := ro.count(func(r backendReq) bool { return r.RPCMethod == "tools/call" && r.APIKey == e.roKey }); n == 0 {
			t.Errorf("ro recorded no tools/call with its key:%s", ro)
		}
		if n := svc.count(func(r backendReq) bool { return shared["svc"][r.Session] && r.RPCMethod == "tools/list" }); n == 0 {
			t.Errorf("svc recorded no discovery on its shared session:%s", svc)
		}
	})

	t.Run("closing a client's backend session carries its credential", func(t *testing.T) {
		// The TypeScript SDK client ended its session (DELETE) when it was
		// done: vmcp ends that client's sessions with jira and ro.
		needNode(t)
		closed := func(b *tokenBackend) []backendReq {
			var out []backendReq
			for _, r := range b.requests() {
				if r.HTTPMethod == http.MethodDelete && !shared[b.Name][r.Session] {
					out = append(out, r)
				}
			}
			return out
		}
		eventually(t, 10*time.Second, "jira and ro get the DELETE of a client's session", func() error {
			if len(closed(jira)) == 0 || len(closed(ro)) == 0 {
				return fmt.Errorf("%d DELETEs at jira, %d at ro", len(closed(jira)), len(closed(ro)))
			}
			return nil
		})
		for _, r := range closed(jira) {
			if r.Sub == "" {
				t.Errorf("BUG: jira (token_exchange): the DELETE that ends a client's backend session %s carries no Authorization; "+
					"a backend that requires its token on every request refuses it (401) and the session is never ended", r.Session)
			}
		}
		for _, r := range closed(ro) {
			if r.APIKey != e.roKey {
				t.Errorf("BUG: ro (header_injection): the DELETE that ends a client's backend session %s carries no X-Api-Key (the backend answered 401)", r.Session)
			}
		}
	})

	t.Run("metrics count token requests by outcome", func(t *testing.T) {
		status, body := httpGet(t, e.V.Base+"/metrics")
		if status != http.StatusOK {
			t.Fatalf("/metrics: status %d", status)
		}
		text := string(body)
		for _, want := range []string{`outcome="ok"`, `outcome="refused"`, `outcome="unavailable"`} {
			found := false
			for _, line := range strings.Split(text, "\n") {
				if strings.HasPrefix(line, "vmcp_outauth_token_requests_total{") && strings.Contains(line, want) {
					found = true
				}
			}
			if !found {
				t.Errorf("/metrics has no vmcp_outauth_token_requests_total series with %s", want)
			}
		}
		if !strings.Contains(text, "vmcp_outauth_token_request_duration_seconds") {
			t.Error("/metrics has no vmcp_outauth_token_request_duration_seconds")
		}
		if t.Failed() {
			t.Logf("/metrics:\n%s", text)
		}
	})

	t.Run("no token or secret in vmcp's output", func(t *testing.T) {
		_, metrics := httpGet(t, e.V.Base+"/metrics")
		out := map[string]string{"stdout (audit)": e.V.Stdout.String(), "stderr (log)": e.V.Stderr.String(), "/metrics": string(metrics)}
		secrets := map[string]string{
			"the gateway's client secret":     exchangeSecrets[clientGateway],
			"the gateway's Basic credentials": base64.StdEncoding.EncodeToString([]byte(clientGateway + ":" + exchangeSecrets[clientGateway])),
			"ro's header_injection value":     e.roKey,
		}
		e.mu.Lock()
		incoming := append([]string(nil), e.issued...)
		e.mu.Unlock()
		var received []string
		for _, b := range e.Backends {
			for _, r := range b.requests() {
				if r.Token != "" {
					received = append(received, r.Token)
				}
			}
		}
		if len(incoming) < 4 || len(received) < 4 {
			t.Fatalf("too few tokens to look for: %d incoming, %d received by backends", len(incoming), len(received))
		}
		check := func(what, needle string) {
			for where, text := range out {
				if strings.Contains(text, needle) {
					t.Errorf("%s appears in vmcp's %s", what, where)
				}
			}
		}
		for what, s := range secrets {
			check(what, s)
		}
		for _, list := range []struct {
			what string
			toks []string
		}{{"an incoming token", incoming}, {"a token a backend received", received}} {
			for _, tok := range list.toks {
				check(list.what, tok)
				// Its signature alone, should a log cut the token.
				if i := strings.LastIndexByte(tok, '.'); i > 0 && len(tok)-i > 20 {
					check(list.what+" (its signature)", tok[i+1:])
				}
			}
		}
		// The audit trail is there, and has the calls.
		events := e.V.auditLines(t)
		calls := 0
		for _, ev := range events {
			if ev["name"] == "jira_whoami" {
				calls++
			}
		}
		if calls == 0 {
			t.Errorf("the audit trail (stdout) has no jira_whoami event; %d events", len(events))
		}
		// The startup warning of passthrough names the backend.
		warned := false
		for _, line := range strings.Split(e.V.Stderr.String(), "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, "passthrough") && strings.Contains(line, "backend=pass") {
				warned = true
			}
		}
		if !warned {
			t.Error("vmcp's log has no warning about passthrough naming backend pass")
		}
	})
}

// TestOutgoingAuthPrivateKeyJWT: vmcp authenticates to the token endpoint
// with an RFC 7523 client assertion (privateKeyFile) instead of a secret,
// and the exchange works.
func TestOutgoingAuthPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	needIdP(t)
	gk, jwksFile := newGatewayKey(t)
	p := startIdP(t, idpOpts{exchangeAudiences: "jira", gatewayJWKS: jwksFile})
	der, err := x509.MarshalPKCS8PrivateKey(gk.key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "gateway.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(keyFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	jira := startTokenBackend(t, "jira", p, "jira", "")
	v := startVMCPProcess(t, func(port string) string {
		return fmt.Sprintf(`name: e2e-outauth-jwt
server: {host: 127.0.0.1, port: %s, drainGrace: 0s}
backends:
  - {name: jira, transport: streamable-http, url: %q, requestTimeout: 5s}
incomingAuth:
  type: oidc
  oidc: {issuer: %q, audience: "http://127.0.0.1:%s/mcp", requiredScopes: [%q]}
outgoingAuth:
  backends:
    jira: {type: token_exchange, tokenURL: %q, clientID: %s, privateKeyFile: %q, privateKeyID: %q, audience: jira}
`, port, jira.URL, p.Issuer, port, requiredScope, p.TokenEndpoint, clientGatewayJWT, keyFile, gk.kid)
	})
	tok := p.token(t, tokenReq{client: clientEng, resource: v.Audience, scope: requiredScope})
	c := newClient(t, v.URL, clientOpts{headers: map[string]string{"Authorization": "Bearer " + tok}})
	w := callWhoami(t, c, "jira")
	if w.Sub != clientEng || w.ClientID != clientGatewayJWT || len(w.Aud) != 1 || w.Aud[0] != "jira" {
		t.Errorf("jira_whoami: %+v, want sub %s, client_id %s, aud jira", w, clientEng, clientGatewayJWT)
	}
	if got := p.exchanges(t).issuedFor(clientGatewayJWT, clientEng, "jira"); len(got) != 1 {
		t.Errorf("the provider issued %d exchanges to %s, want 1", len(got), clientGatewayJWT)
	}
	keyBody := strings.Join(strings.Split(string(pemBytes), "\n")[1:3], "")
	for where, text := range map[string]string{"stderr": v.Stderr.String(), "stdout": v.Stdout.String()} {
		if strings.Contains(text, tok) || strings.Contains(text, keyBody) {
			t.Errorf("vmcp's %s holds the incoming token or the private key", where)
		}
	}
}
