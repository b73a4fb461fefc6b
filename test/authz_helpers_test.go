package test

// Helpers of the authorization end-to-end tests (authz_test.go): vmcp with
// incomingAuth oidc against the real provider (test/js/idp.mjs, whose
// vmcp-eng and vmcp-support tokens carry a groups claim) and an
// authorization section, in front of two demo backends, each behind a
// proxy that records every request reaching it.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// The idp.mjs clients whose tokens carry a groups claim.
const (
	clientEng     = "vmcp-eng"     // "groups": ["eng"]
	clientSupport = "vmcp-support" // "groups": ["support"]
)

func init() {
	idpSecrets[clientEng] = "vmcp-eng-secret"
	idpSecrets[clientSupport] = "vmcp-support-secret"
}

// authzRules is the authorization section of the tests, shaped like the
// example of the issue: %[1]s is the notes backend's demo name (in its
// resource URIs).
//
//	0: engineers use the notes backend's tools (a groups condition);
//	1: everyone uses some of the weather backend's tools, and whatever
//	   weather_get_* names (none exists: such a name is unknown, not denied);
//	2: nobody calls an echo tool with cascade: true (an argument rule; deny wins);
//	3: everyone reads the weather backend's resources and prompts;
//	4: engineers read the notes backend's resources and prompts too.
const authzRules = `authorization:
  default: deny
  rules:
    - {effect: allow, tools: ["notes_*"], when: '"eng" in identity.claims.groups'}
    - {effect: allow, tools: [weather_search, weather_forecast, weather_echo, "weather_get_*"]}
    - {effect: deny, tools: ["*_echo"], when: 'has(request.arguments.cascade) && request.arguments.cascade == true'}
    - {effect: allow, resources: ["demo://*"], prompts: ["*"], backends: [weather]}
    - {effect: allow, resources: ["demo://%[1]s/*"], prompts: ["notes_*"], when: '"eng" in identity.claims.groups'}
`

// authzEnv is vmcp with oidc and authzRules in front of two demo backends
// named weather and notes (in vmcp's config).
type authzEnv struct {
	IdP            *idp
	Weather, Notes *demoBackend
	WeatherRec     *countingProxy
	NotesRec       *countingProxy
	V              *vmcp
	// Audience is vmcp's MCP endpoint URL: the tokens' audience.
	Audience string
	tokens   sync.Map // client id -> token
}

// startAuthzEnv starts a provider, the two backends with their proxies and
// vmcp, whose config gets extra (YAML, e.g. an optimizer section) too.
func startAuthzEnv(t *testing.T, extra string) *authzEnv {
	t.Helper()
	e := &authzEnv{IdP: startIdP(t, idpOpts{})}
	e.Weather = startDemo(t, "weather", "weather", "streamable-http", "")
	e.Notes = startDemo(t, "notes", "notes", "streamable-http", "")
	e.WeatherRec = startCountingProxy(t, e.Weather.URL)
	e.NotesRec = startCountingProxy(t, e.Notes.URL)
	e.V, e.Audience = startVMCPAt(t, func(port, audience string) string {
		return fmt.Sprintf(`name: e2e-authz
server: {host: 127.0.0.1, port: %s}
backends:
  - {name: weather, transport: streamable-http, url: %q, requestTimeout: 10s}
  - {name: notes, transport: streamable-http, url: %q, requestTimeout: 10s}
incomingAuth:
  type: oidc
  oidc:
    issuer: %q
    audience: %q
    requiredScopes: [%q]
`, port, e.WeatherRec.URL, e.NotesRec.URL, e.IdP.Issuer, audience, requiredScope) +
			extra + fmt.Sprintf(authzRules, e.Notes.Name)
	})
	return e
}

// token returns a token of client for vmcp (fetched once per client).
func (e *authzEnv) token(t *testing.T, clientID string) string {
	t.Helper()
	if v, ok := e.tokens.Load(clientID); ok {
		return v.(string)
	}
	tok := e.IdP.token(t, tokenReq{client: clientID, resource: e.Audience, scope: requiredScope})
	if _, claims := jwtParts(t, tok); clientID == clientEng || clientID == clientSupport {
		if g, _ := claims["groups"].([]any); len(g) != 1 {
			t.Fatalf("the provider's token for %s carries groups %v, want one group", clientID, claims["groups"])
		}
	}
	v, _ := e.tokens.LoadOrStore(clientID, tok)
	return v.(string)
}

// client connects mcp-go's client to vmcp with a token of clientID.
func (e *authzEnv) client(t *testing.T, clientID string) *client.Client {
	t.Helper()
	return newClient(t, e.V.URL, clientOpts{headers: map[string]string{"Authorization": "Bearer " + e.token(t, clientID)}})
}

// session opens a raw MCP session with a token of clientID.
func (e *authzEnv) session(t *testing.T, clientID string) rawSession {
	t.Helper()
	tok := e.token(t, clientID)
	return rawSession{url: e.V.URL, token: tok, sid: openSession(t, e.V.URL, tok)}
}

// rawSession sends raw JSON-RPC requests on one session.
type rawSession struct {
	url, token, sid string
}

// call sends a request of method with params (id 7) and returns the answer.
func (s rawSession) call(t *testing.T, method string, params any) httpResult {
	t.Helper()
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
	if err != nil {
		t.Fatal(err)
	}
	return rawReq{url: s.url, token: s.token, session: s.sid, body: string(b)}.do(t)
}

// sameAsUnknown fails t unless the answer to a denied name is the answer
// to an unknown name, with the unknown name replaced by the denied one:
// same HTTP status, same Content-Type, same JSON-RPC message byte for byte.
func sameAsUnknown(t *testing.T, what string, denied httpResult, deniedName string, unknown httpResult, unknownName string) {
	t.Helper()
	d := denied.jsonrpcMessage()
	u := bytes.ReplaceAll(unknown.jsonrpcMessage(), []byte(unknownName), []byte(deniedName))
	if denied.Status != unknown.Status || !bytes.Equal(d, u) {
		t.Errorf("%s: the denied %q is answered\n  %d %q\nan unknown name (%q, put back as %q) is answered\n  %d %q",
			what, deniedName, denied.Status, d, unknownName, deniedName, unknown.Status, u)
	}
	if dc, uc := denied.Header.Get("Content-Type"), unknown.Header.Get("Content-Type"); dc != uc {
		t.Errorf("%s: Content-Type %q for the denied %q, %q for an unknown name", what, dc, deniedName, uc)
	}
	if !bytes.Contains(d, []byte(deniedName)) {
		t.Errorf("%s: the answer does not name %q as an unknown one would: %s", what, deniedName, d)
	}
}

// offer is what a backend offers, read from it directly, with vmcp's names
// (tools and prompts prefixed with the backend's name in vmcp's config).
type offer struct {
	Tools, Prompts, Resources, Templates []string
}

// backendOffer lists what the backend at url offers, as vmcp names it
// under prefix.
func backendOffer(t *testing.T, url, prefix string) offer {
	t.Helper()
	c := newClient(t, url, clientOpts{})
	var o offer
	for _, n := range toolNames(t, c) {
		o.Tools = append(o.Tools, prefix+n)
	}
	o.Prompts = promptNames(t, c)
	for i := range o.Prompts {
		o.Prompts[i] = prefix + o.Prompts[i]
	}
	o.Resources, o.Templates = resourceURIs(t, c)
	return o
}

// promptNames lists the prompts the client sees.
func promptNames(t *testing.T, c *client.Client) []string {
	t.Helper()
	res, err := c.ListPrompts(ctxT(t, 10*time.Second), mcp.ListPromptsRequest{})
	if err != nil {
		t.Fatalf("prompts/list: %v", err)
	}
	var names []string
	for _, p := range res.Prompts {
		names = append(names, p.Name)
	}
	return names
}

// resourceURIs lists the resources and resource templates the client sees.
func resourceURIs(t *testing.T, c *client.Client) (resources, templates []string) {
	t.Helper()
	rs, err := c.ListResources(ctxT(t, 10*time.Second), mcp.ListResourcesRequest{})
	if err != nil {
		t.Fatalf("resources/list: %v", err)
	}
	for _, r := range rs.Resources {
		resources = append(resources, r.URI)
	}
	ts, err := c.ListResourceTemplates(ctxT(t, 10*time.Second), mcp.ListResourceTemplatesRequest{})
	if err != nil {
		t.Fatalf("resources/templates/list: %v", err)
	}
	for _, tm := range ts.ResourceTemplates {
		templates = append(templates, tm.URITemplate.Raw())
	}
	return resources, templates
}

// sameSet fails t unless got and want hold the same names.
func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("%s:\n  got  %v\n  want %v", what, g, w)
	}
}

// union is the names of the lists, in order.
func union(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
