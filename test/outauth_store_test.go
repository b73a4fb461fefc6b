package test

// Per-user outgoing auth (token exchange) with client sessions kept in
// Redis (sessions: {store: redis}): two vmcp processes share one Redis and
// serve the same client session, whose backend session is data in the
// store, opened by hand by the first replica that needs it.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// fleetAudience is the audience of the incoming tokens of both replicas:
// the URL clients know the fleet by (here no load balancer stands behind
// it; the test sends each request to a replica of its choice).
const fleetAudience = "http://vmcp-fleet.e2e.test/mcp"

// storeWhoami calls jira_whoami on session s with raw JSON-RPC and decodes
// the verified claims the backend answered.
func storeWhoami(t *testing.T, s rawSession) tokenClaims {
	t.Helper()
	res := s.call(t, "tools/call", map[string]any{"name": "jira_whoami", "arguments": map[string]any{}})
	if res.Status != http.StatusOK {
		t.Fatalf("jira_whoami on %s: HTTP %d: %s", s.url, res.Status, res.Body)
	}
	var m struct {
		Result *struct {
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
			IsError bool `json:"isError"`
		} `json:"result"`
		Error json.RawMessage `json:"error"`
	}
	msg := res.jsonrpcMessage()
	if err := json.Unmarshal(msg, &m); err != nil || m.Result == nil || m.Result.IsError || len(m.Result.Content) != 1 {
		t.Fatalf("jira_whoami on %s: not a successful result: %s", s.url, msg)
	}
	return whoamiOf(t, "jira_whoami on "+s.url, m.Result.Content[0].Text)
}

// TestOutgoingAuthSessionStore: a user's session made on replica A and
// used on replica B reaches the token-exchange backend jira on one backend
// session, opened with the user's exchanged token, every request of which
// carries it; each replica exchanges at most once for the user; ending the
// client session on B ends the backend session with a DELETE carrying the
// user's token; a second user never travels on the first's backend
// session; no token reaches either replica's output.
func TestOutgoingAuthSessionStore(t *testing.T) {
	t.Parallel()
	needIdP(t)
	start := time.Now()
	rds := startRedis(t)
	p := startIdP(t, idpOpts{exchangeAudiences: "jira"})
	jira := startTokenBackend(t, "jira", p, "jira", "")
	name := uniqueName("e2e-outauth-store")
	config := func(port string) string {
		return fmt.Sprintf(`name: %s
server: {host: 127.0.0.1, port: %s, drainGrace: 0s}
backends:
  - {name: jira, transport: streamable-http, url: %q, requestTimeout: 5s}
redis: {address: %q}
sessions: {store: redis, ttl: 30m}
incomingAuth:
  type: oidc
  oidc: {issuer: %q, audience: %q, requiredScopes: [%q]}
outgoingAuth:
  backends:
    jira: {type: token_exchange, tokenURL: %q, clientID: %s, clientSecretEnv: %s, audience: jira, discovery: none}
audit: {enabled: true, output: stdout}
`, name, port, jira.URL, rds.Addr, p.Issuer, fleetAudience, requiredScope, p.TokenEndpoint, clientGateway, gatewaySecretEnv)
	}
	env := gatewaySecretEnv + "=" + exchangeSecrets[clientGateway]
	replicas := map[string]*vmcpProc{"A": startVMCPProcess(t, config, env), "B": startVMCPProcess(t, config, env)}
	a, b := replicas["A"], replicas["B"]
	t.Logf("redis, provider, backend and two replicas (A %s, B %s) up in %s", a.URL, b.URL, time.Since(start).Round(time.Millisecond))

	// The shared connections' sessions are those with a tools/list
	// (discovery; vmcp answers a client's tools/list itself); each
	// replica has one before any client connects, and may open another.
	if len(jira.listSessions()) == 0 {
		t.Fatalf("jira: no tools/list before any client connected:%s", jira)
	}
	onClientSession := func(r backendReq) bool { return r.Session != "" && !jira.listSessions()[r.Session] }

	engTok := p.token(t, tokenReq{client: clientEng, resource: fleetAudience, scope: requiredScope})
	supTok := p.token(t, tokenReq{client: clientSupport, resource: fleetAudience, scope: requiredScope})
	engA := rawSession{url: a.URL, token: engTok, sid: openSession(t, a.URL, engTok)}
	engB := rawSession{url: b.URL, token: engTok, sid: engA.sid}

	// engSession is the backend session of eng's client session, found by
	// the first subtest.
	var engSession string

	t.Run("one backend session, opened and used with the user's exchanged token on both replicas", func(t *testing.T) {
		for _, s := range []struct {
			replica string
			sess    rawSession
		}{{"A", engA}, {"B", engB}, {"A", engA}} {
			w := storeWhoami(t, s.sess)
			if w.Sub != clientEng || len(w.Aud) != 1 || w.Aud[0] != "jira" || w.ClientID != clientGateway {
				t.Errorf("jira_whoami on replica %s: %+v, want sub %s, aud [jira], client_id %s", s.replica, w, clientEng, clientGateway)
			}
		}
		sessions := map[string]bool{}
		for _, r := range jira.requests() {
			if r.RPCMethod == "tools/call" && onClientSession(r) {
				sessions[r.Session] = true
			}
		}
		if len(sessions) != 1 {
			t.Fatalf("jira: the client session's calls came on %d backend sessions, want 1:%s", len(sessions), jira)
		}
		for s := range sessions {
			engSession = s
		}
		inits := 0
		for _, r := range jira.requests() {
			if r.RPCMethod == "initialize" && r.Session == engSession {
				inits++
				if r.Sub != clientEng || r.Aud != "jira" {
					t.Errorf("jira: the initialize that opened backend session %s carried sub %q aud %q, want %s's exchanged token (aud jira)",
						engSession, r.Sub, r.Aud, clientEng)
				}
			}
		}
		if inits != 1 {
			t.Errorf("jira: %d initializes opened backend session %s, want 1:%s", inits, engSession, jira)
		}
		for _, r := range jira.requests() {
			if r.Session == engSession && (r.Sub != clientEng || r.Aud != "jira") {
				t.Errorf("jira: %s %s on %s's backend session carried sub %q aud %q, want %s's exchanged token",
					r.HTTPMethod, r.RPCMethod, clientEng, r.Sub, r.Aud, clientEng)
			}
		}
		// Other client-session initializes: none, so one backend session
		// was opened for the one client session.
		if n := jira.count(func(r backendReq) bool { return r.RPCMethod == "initialize" && onClientSession(r) }); n != 1 {
			t.Errorf("jira: %d initializes of client backend sessions, want 1:%s", n, jira)
		}
		t.Logf("jira received:%s", jira)
	})

	t.Run("each replica exchanges at most once for the user", func(t *testing.T) {
		got := p.exchanges(t).issuedFor(clientGateway, clientEng, "jira")
		t.Logf("the provider issued %d exchanges of %s for jira", len(got), clientEng)
		if len(got) < 1 || len(got) > 2 {
			t.Errorf("the provider issued %d exchanges of %s for jira to the two replicas, want 1 or 2 (at most one each)", len(got), clientEng)
		}
	})

	t.Run("ending the client session on B ends the backend session with the user's token", func(t *testing.T) {
		if engSession == "" {
			t.Fatal("no backend session of the client session was found (first subtest)")
		}
		res := rawReq{method: http.MethodDelete, url: b.URL, token: engTok, session: engA.sid}.do(t)
		if res.Status != http.StatusOK && res.Status != http.StatusNoContent && res.Status != http.StatusAccepted {
			t.Fatalf("DELETE on B: HTTP %d: %s", res.Status, res.Body)
		}
		deletes := func() []backendReq {
			var out []backendReq
			for _, r := range jira.requests() {
				if r.HTTPMethod == http.MethodDelete && r.Session == engSession {
					out = append(out, r)
				}
			}
			return out
		}
		sent := time.Now()
		deadline := sent.Add(5 * time.Second)
		for len(deletes()) == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		d := deletes()
		t.Logf("jira got %d DELETEs of backend session %s within %s", len(d), engSession, time.Since(sent).Round(time.Millisecond))
		if len(d) == 0 {
			t.Fatalf("jira got no DELETE of backend session %s within 5s of the client's DELETE on B:%s", engSession, jira)
		}
		for _, r := range d {
			if r.Sub != clientEng || r.Aud != "jira" {
				t.Errorf("jira: the DELETE of backend session %s carried sub %q aud %q (%s), want %s's exchanged token",
					engSession, r.Sub, r.Aud, r.Err, clientEng)
			}
		}
		if len(d) != 1 {
			t.Errorf("jira got %d DELETEs of backend session %s, want 1", len(d), engSession)
		}
		// The session is gone on A too.
		if res := engA.call(t, "tools/list", map[string]any{}); res.Status != http.StatusNotFound {
			t.Errorf("tools/list on A after the DELETE on B: HTTP %d, want 404: %s", res.Status, res.Body)
		}
	})

	t.Run("a second user reaches jira as itself, never on the first's backend session", func(t *testing.T) {
		supB := rawSession{url: b.URL, token: supTok, sid: openSession(t, b.URL, supTok)}
		supA := rawSession{url: a.URL, token: supTok, sid: supB.sid}
		for _, s := range []struct {
			replica string
			sess    rawSession
		}{{"B", supB}, {"A", supA}} {
			w := storeWhoami(t, s.sess)
			if w.Sub != clientSupport || len(w.Aud) != 1 || w.Aud[0] != "jira" {
				t.Errorf("jira_whoami by %s on replica %s: %+v, want sub %s, aud [jira]", clientSupport, s.replica, w, clientSupport)
			}
		}
		// eng's token cannot use support's session on either replica.
		for _, v := range []*vmcpProc{a, b} {
			other := rawSession{url: v.URL, token: engTok, sid: supB.sid}
			res := other.call(t, "tools/call", map[string]any{"name": "jira_whoami", "arguments": map[string]any{}})
			if res.Status == http.StatusOK && strings.Contains(string(res.jsonrpcMessage()), `"result"`) {
				t.Errorf("%s's token used %s's session on %s: %s", clientEng, clientSupport, v.URL, res.Body)
			}
		}
		supSessions := map[string]bool{}
		for _, r := range jira.requests() {
			if !onClientSession(r) {
				if r.Sub != "" {
					t.Errorf("jira: a request with %s's token on the shared connection (session %q): %s %s", r.Sub, r.Session, r.HTTPMethod, r.RPCMethod)
				}
				continue
			}
			if r.Sub == clientSupport {
				supSessions[r.Session] = true
				if r.Session == engSession {
					t.Errorf("jira: %s %s with %s's token on %s's backend session %s", r.HTTPMethod, r.RPCMethod, clientSupport, clientEng, engSession)
				}
			}
			if r.Sub != clientEng && r.Sub != clientSupport {
				t.Errorf("jira: %s %s on client session %s with sub %q (%s)", r.HTTPMethod, r.RPCMethod, r.Session, r.Sub, r.Err)
			}
		}
		if len(supSessions) != 1 {
			t.Errorf("jira: %s's requests came on %d backend sessions, want 1", clientSupport, len(supSessions))
		}
		for s := range supSessions {
			for _, r := range jira.requests() {
				if r.Session == s && r.Sub != clientSupport {
					t.Errorf("jira: %s %s on %s's backend session %s carried sub %q", r.HTTPMethod, r.RPCMethod, clientSupport, s, r.Sub)
				}
			}
		}
		if got := p.exchanges(t).issuedFor(clientGateway, clientSupport, "jira"); len(got) < 1 || len(got) > 2 {
			t.Errorf("the provider issued %d exchanges of %s for jira, want 1 or 2", len(got), clientSupport)
		}
		if got := p.exchanges(t).issuedFor(clientGateway, clientEng, "jira"); len(got) > 2 {
			t.Errorf("the provider issued %d exchanges of %s for jira by the end, want at most 2", len(got), clientEng)
		}
		if t.Failed() {
			t.Logf("jira received:%s", jira)
		}
	})

	// A third user, whose session B never relayed to jira: B has no token
	// of the user cached when the client's DELETE lands on it, as happens
	// to every other DELETE behind a load balancer without affinity.
	thirdTok := p.token(t, tokenReq{client: clientES256User, resource: fleetAudience, scope: requiredScope})
	t.Run("ending the client session on a replica that never relayed it ends the backend session with the user's token", func(t *testing.T) {
		s := rawSession{url: a.URL, token: thirdTok, sid: openSession(t, a.URL, thirdTok)}
		if w := storeWhoami(t, s); w.Sub != clientES256User {
			t.Fatalf("jira_whoami by %s on A: %+v", clientES256User, w)
		}
		var backendSession string
		for _, r := range jira.requests() {
			if r.RPCMethod == "tools/call" && r.Sub == clientES256User && onClientSession(r) {
				backendSession = r.Session
			}
		}
		if backendSession == "" {
			t.Fatalf("jira got no call of %s on a client backend session:%s", clientES256User, jira)
		}
		res := rawReq{method: http.MethodDelete, url: b.URL, token: thirdTok, session: s.sid}.do(t)
		if res.Status != http.StatusOK && res.Status != http.StatusNoContent && res.Status != http.StatusAccepted {
			t.Fatalf("DELETE on B: HTTP %d: %s", res.Status, res.Body)
		}
		var d []backendReq
		for deadline := time.Now().Add(5 * time.Second); len(d) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			d = nil
			for _, r := range jira.requests() {
				if r.HTTPMethod == http.MethodDelete && r.Session == backendSession {
					d = append(d, r)
				}
			}
		}
		if len(d) == 0 {
			t.Fatalf("BUG: jira got no DELETE of %s's backend session %s within 5s of the client's DELETE (with its valid token) on replica B, "+
				"which had never relayed that session to jira and so had no exchanged token of the user cached: the backend session is never ended "+
				"(server/store.go deleteStored -> backends/stored.go Manager.EndClient -> endStored with outauth.OnBehalf, CachedOnly; "+
				"B logs \"end a backend session\" ... \"no valid token of the caller's is cached\"); want a DELETE carrying %s's exchanged token:%s",
				clientES256User, backendSession, clientES256User, jira)
		}
		for _, r := range d {
			if r.Sub != clientES256User || r.Aud != "jira" {
				t.Errorf("BUG: the DELETE of %s's backend session %s, ended by the client's DELETE (with its valid token) on replica B, "+
					"which had never relayed that session to jira, carried sub %q aud %q, want %s's exchanged token: "+
					"a backend that requires its token on every request refuses it (401) and its session is never ended",
					clientES256User, backendSession, r.Sub, r.Aud, clientES256User)
			}
		}
	})

	t.Run("no token or secret in either replica's output", func(t *testing.T) {
		secrets := map[string]string{
			"the gateway's client secret":     exchangeSecrets[clientGateway],
			"the gateway's Basic credentials": base64.StdEncoding.EncodeToString([]byte(clientGateway + ":" + exchangeSecrets[clientGateway])),
			"vmcp-eng's incoming token":       engTok,
			"vmcp-support's incoming token":   supTok,
			"the third user's incoming token": thirdTok,
		}
		n := 0
		for _, r := range jira.requests() {
			if r.Token != "" {
				n++
				secrets[fmt.Sprintf("the exchanged token of %s (jti %s)", r.Sub, r.JTI)] = r.Token
			}
		}
		if n < 3 {
			t.Fatalf("jira received %d tokens: too few to look for", n)
		}
		for what, s := range secrets {
			needles := []string{s}
			if i := strings.LastIndexByte(s, '.'); i > 0 && len(s)-i > 20 {
				needles = append(needles, s[i+1:]) // its signature alone
			}
			for rn, v := range replicas {
				for where, text := range map[string]string{"stdout (audit)": v.Stdout.String(), "stderr (log)": v.Stderr.String()} {
					for _, needle := range needles {
						if strings.Contains(text, needle) {
							t.Errorf("%s appears in replica %s's %s", what, rn, where)
						}
					}
				}
			}
		}
		audited := 0
		for _, v := range replicas {
			for _, ev := range v.auditLines(t) {
				if ev["name"] == "jira_whoami" {
					audited++
				}
			}
		}
		if audited == 0 {
			t.Error("neither replica audited a jira_whoami call: the output looked at is not the one expected")
		}
	})
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}
