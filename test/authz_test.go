package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// supportTools are the tools rule 1 of authzRules gives everyone.
var supportTools = []string{"weather_echo", "weather_forecast", "weather_search"}

// TestAuthz runs vmcp with an authorization section against a real OpenID
// provider whose tokens carry groups, in front of two demo backends, and
// checks what an engineer and a support agent (mcp-go and the TypeScript
// SDK as clients) may see and use.
func TestAuthz(t *testing.T) {
	t.Parallel()
	needIdP(t)
	e := startAuthzEnv(t, "")
	weather := backendOffer(t, e.Weather.URL, "weather_")
	notes := backendOffer(t, e.Notes.URL, "notes_")
	for _, must := range []struct {
		list []string
		name string
	}{{notes.Tools, "notes_search"}, {notes.Prompts, "notes_greet"}, {weather.Prompts, "weather_greet"},
		{notes.Resources, "demo://" + e.Notes.Name + "/readme"}, {weather.Resources, "demo://" + e.Weather.Name + "/readme"}} {
		if !contains(must.list, must.name) {
			t.Fatalf("the demo backends do not offer %s (%v): the test needs it", must.name, must.list)
		}
	}

	t.Run("engineer and support see different lists", func(t *testing.T) {
		t.Parallel()
		eng, support := e.client(t, clientEng), e.client(t, clientSupport)

		// Tools: support gets rule 1's read tools (weather_echo included: rule
		// 2 depends on the arguments, so it cannot hide the tool); engineers
		// get the notes backend's tools too.
		sameSet(t, "tools/list of support", toolNames(t, support), supportTools)
		sameSet(t, "tools/list of the engineer", toolNames(t, eng), union(supportTools, notes.Tools))

		// Prompts, resources, templates: the weather backend's for everyone, the
		// notes backend's for engineers only.
		sameSet(t, "prompts/list of support", promptNames(t, support), weather.Prompts)
		sameSet(t, "prompts/list of the engineer", promptNames(t, eng), union(weather.Prompts, notes.Prompts))
		res, tpl := resourceURIs(t, support)
		sameSet(t, "resources/list of support", res, weather.Resources)
		sameSet(t, "resources/templates/list of support", tpl, weather.Templates)
		res, tpl = resourceURIs(t, eng)
		sameSet(t, "resources/list of the engineer", res, union(weather.Resources, notes.Resources))
		sameSet(t, "resources/templates/list of the engineer", tpl, union(weather.Templates, notes.Templates))

		// A token without groups is a third caller: no rule with a groups
		// condition applies to it (its condition fails to evaluate), so it gets
		// what support gets.
		other := e.client(t, clientRS256)
		sameSet(t, "tools/list of a caller without groups", toolNames(t, other), supportTools)
		sameSet(t, "prompts/list of a caller without groups", promptNames(t, other), weather.Prompts)
	})

	t.Run("a denied call looks like an unknown one and never reaches the backend", func(t *testing.T) {
		t.Parallel()
		support := e.session(t, clientSupport)
		marker := uniqueName("denied")
		args := map[string]any{"name": "", "arguments": map[string]any{"query": marker}}
		call := func(s rawSession, name string) httpResult {
			args["name"] = name
			return s.call(t, "tools/call", args)
		}
		// weather_get_station exists nowhere, and rule 1 lets anyone call it:
		// vmcp answers it as the unknown name it is.
		unknown := call(support, "weather_get_station")
		if re := decodeRPCError(t, unknown); !strings.Contains(re.Error.Message, "weather_get_station") {
			t.Fatalf("tools/call of an unknown tool: %s", unknown.Body)
		}
		// notes_search exists (engineers only); weather_add exists (nobody).
		for _, denied := range []string{"notes_search", "weather_add"} {
			sameAsUnknown(t, "tools/call by support", call(support, denied), denied, unknown, "weather_get_station")
		}
		if n := e.NotesRec.seen("tools/call", marker) + e.WeatherRec.seen("tools/call", marker); n != 0 {
			t.Errorf("denied calls reached the backends %d times", n)
		}

		// mcp-go's client gets the same error for both.
		c := e.client(t, clientSupport)
		_, errDenied := tryCall(t, c, "notes_search", map[string]any{"query": marker})
		_, errUnknown := tryCall(t, c, "weather_get_station", map[string]any{"query": marker})
		if errDenied == nil || errUnknown == nil {
			t.Fatalf("mcp-go: tools/call notes_search by support: %v; of an unknown tool: %v; want errors", errDenied, errUnknown)
		}
		if got, want := errDenied.Error(), strings.ReplaceAll(errUnknown.Error(), "weather_get_station", "notes_search"); got != want {
			t.Errorf("mcp-go: the denied call fails with %q, an unknown one with %q", got, want)
		}
		if n := e.NotesRec.seen("tools/call", marker); n != 0 {
			t.Errorf("denied calls reached the notes backend %d times", n)
		}

		// The engineer's call of the same tool goes through, once.
		eng := e.client(t, clientEng)
		mine := uniqueName("allowed")
		if got := callText(t, eng, "notes_search", map[string]any{"query": mine}); !strings.Contains(got, mine) {
			t.Errorf("notes_search by the engineer: %q, want an answer about %q", got, mine)
		}
		if n := e.NotesRec.seen("tools/call", mine); n != 1 {
			t.Errorf("the engineer's call reached the notes backend %d times, want once", n)
		}
	})

	t.Run("an argument rule denies cascade: true", func(t *testing.T) {
		t.Parallel()
		support, eng := e.client(t, clientSupport), e.client(t, clientEng)
		for _, c := range []struct {
			who  string
			c    *client.Client
			tool string
			rec  *countingProxy
		}{{"support", support, "weather_echo", e.WeatherRec}, {"engineer", eng, "notes_echo", e.NotesRec}} {
			for _, args := range []map[string]any{{}, {"cascade": false}} {
				m := uniqueName("echo")
				args["text"] = m
				if got := callText(t, c.c, c.tool, args); got != m {
					t.Errorf("%s: %s %v: %q, want the echo", c.who, c.tool, args, got)
				}
				if n := c.rec.seen("tools/call", m); n != 1 {
					t.Errorf("%s: %s %v reached the backend %d times, want once", c.who, c.tool, args, n)
				}
			}
			// With cascade: true, rule 2 denies, over the engineer's rule 0 too.
			m := uniqueName("cascade")
			_, errDenied := tryCall(t, c.c, c.tool, map[string]any{"text": m, "cascade": true})
			_, errUnknown := tryCall(t, c.c, "weather_get_echoes", map[string]any{"text": m, "cascade": true})
			if errDenied == nil {
				t.Errorf("%s: %s with cascade: true is allowed", c.who, c.tool)
			} else if want := strings.ReplaceAll(fmt.Sprint(errUnknown), "weather_get_echoes", c.tool); errDenied.Error() != want {
				t.Errorf("%s: %s with cascade: true fails with %q; an unknown tool with %q", c.who, c.tool, errDenied, want)
			}
			if n := c.rec.seen("tools/call", m); n != 0 {
				t.Errorf("%s: %s with cascade: true reached the backend %d times", c.who, c.tool, n)
			}
		}
		// Raw: the denied call and an unknown one are answered alike.
		s := e.session(t, clientSupport)
		m := uniqueName("cascade-raw")
		denied := s.call(t, "tools/call", map[string]any{"name": "weather_echo", "arguments": map[string]any{"text": m, "cascade": true}})
		unknown := s.call(t, "tools/call", map[string]any{"name": "weather_get_echoes", "arguments": map[string]any{"text": m, "cascade": true}})
		sameAsUnknown(t, "tools/call weather_echo with cascade: true", denied, "weather_echo", unknown, "weather_get_echoes")
		if n := e.WeatherRec.seen("tools/call", m); n != 0 {
			t.Errorf("the denied call reached the backend %d times", n)
		}
	})

	t.Run("resources and prompts per rule", func(t *testing.T) {
		t.Parallel()
		supportC, engC := e.client(t, clientSupport), e.client(t, clientEng)
		read := func(c *client.Client, uri string) (string, error) {
			req := mcp.ReadResourceRequest{}
			req.Params.URI = uri
			res, err := c.ReadResource(ctxT(t, 10*time.Second), req)
			if err != nil {
				return "", err
			}
			if len(res.Contents) != 1 {
				return "", fmt.Errorf("%d contents", len(res.Contents))
			}
			tc, _ := res.Contents[0].(mcp.TextResourceContents)
			return tc.Text, nil
		}
		greet := func(c *client.Client, name, who string) (string, error) {
			req := mcp.GetPromptRequest{}
			req.Params.Name = name
			req.Params.Arguments = map[string]string{"who": who}
			res, err := c.GetPrompt(ctxT(t, 10*time.Second), req)
			if err != nil {
				return "", err
			}
			if len(res.Messages) != 1 {
				return "", fmt.Errorf("%d messages", len(res.Messages))
			}
			tc, _ := res.Messages[0].Content.(mcp.TextContent)
			return tc.Text, nil
		}
		weatherItem := func(id string) string { return "demo://" + e.Weather.Name + "/items/" + id }
		notesItem := func(id string) string { return "demo://" + e.Notes.Name + "/items/" + id }

		// Allowed: everyone reads the weather backend, engineers the notes one.
		for _, c := range []struct {
			who, uri string
			c        *client.Client
			rec      *countingProxy
			from     string
		}{
			{"support", weatherItem(uniqueName("w")), supportC, e.WeatherRec, e.Weather.Name},
			{"engineer", weatherItem(uniqueName("w")), engC, e.WeatherRec, e.Weather.Name},
			{"engineer", notesItem(uniqueName("n")), engC, e.NotesRec, e.Notes.Name},
		} {
			got, err := read(c.c, c.uri)
			id := c.uri[strings.LastIndexByte(c.uri, '/')+1:]
			if want := "item " + id + " from " + c.from; err != nil || got != want {
				t.Errorf("%s: resources/read %s: %q, %v; want %q", c.who, c.uri, got, err, want)
			}
			if n := c.rec.seen("resources/read", id); n != 1 {
				t.Errorf("%s: resources/read %s reached the backend %d times, want once", c.who, c.uri, n)
			}
		}
		for _, c := range []struct {
			who, prompt string
			c           *client.Client
			rec         *countingProxy
			from        string
		}{
			{"support", "weather_greet", supportC, e.WeatherRec, e.Weather.Name},
			{"engineer", "notes_greet", engC, e.NotesRec, e.Notes.Name},
		} {
			who := uniqueName("who")
			got, err := greet(c.c, c.prompt, who)
			if want := "Hello " + who + " from " + c.from; err != nil || got != want {
				t.Errorf("%s: prompts/get %s: %q, %v; want %q", c.who, c.prompt, got, err, want)
			}
			if n := c.rec.seen("prompts/get", who); n != 1 {
				t.Errorf("%s: prompts/get %s reached the backend %d times, want once", c.who, c.prompt, n)
			}
		}

		// Denied to support: the notes backend's resources and prompts. They are
		// answered as the unknown names the engineer may ask for (rule 4
		// allows demo://NOTES/* and notes_*, so vmcp answers those as unknown).
		support, eng := e.session(t, clientSupport), e.session(t, clientEng)
		marker := uniqueName("denied")
		deniedURI, unknownURI := notesItem(marker), "demo://"+e.Notes.Name+"/nothing/"+marker
		sameAsUnknown(t, "resources/read by support",
			support.call(t, "resources/read", map[string]any{"uri": deniedURI}), deniedURI,
			eng.call(t, "resources/read", map[string]any{"uri": unknownURI}), unknownURI)
		// Support's own unknown URI is answered the same way.
		sameAsUnknown(t, "resources/read by support (unknown to support)",
			support.call(t, "resources/read", map[string]any{"uri": deniedURI}), deniedURI,
			support.call(t, "resources/read", map[string]any{"uri": unknownURI}), unknownURI)
		promptArgs := map[string]any{"who": marker}
		sameAsUnknown(t, "prompts/get by support",
			support.call(t, "prompts/get", map[string]any{"name": "notes_greet", "arguments": promptArgs}), "notes_greet",
			eng.call(t, "prompts/get", map[string]any{"name": "notes_welcome", "arguments": promptArgs}), "notes_welcome")
		if n := e.NotesRec.seen("resources/read", marker) + e.NotesRec.seen("prompts/get", marker); n != 0 {
			t.Errorf("denied reads and prompts reached the notes backend %d times", n)
		}

		// mcp-go's client: the denied read and prompt fail as unknown ones do.
		if _, err := read(supportC, deniedURI); err == nil {
			t.Errorf("support: resources/read %s is allowed", deniedURI)
		} else if _, errU := read(engC, unknownURI); errU == nil || err.Error() != strings.ReplaceAll(errU.Error(), unknownURI, deniedURI) {
			t.Errorf("support: resources/read %s fails with %q; an unknown URI with %v", deniedURI, err, errU)
		}
		if _, err := greet(supportC, "notes_greet", marker); err == nil {
			t.Errorf("support: prompts/get notes_greet is allowed")
		} else if _, errU := greet(engC, "notes_welcome", marker); errU == nil || err.Error() != strings.ReplaceAll(errU.Error(), "notes_welcome", "notes_greet") {
			t.Errorf("support: prompts/get notes_greet fails with %q; an unknown prompt with %v", err, errU)
		}
		if n := e.NotesRec.seen("resources/read", marker) + e.NotesRec.seen("prompts/get", marker); n != 0 {
			t.Errorf("denied reads and prompts reached the notes backend %d times", n)
		}
	})

	t.Run("TypeScript SDK: different tools per token, denied like unknown", func(t *testing.T) {
		t.Parallel()
		needNode(t)
		marker := uniqueName("ts")
		ops := []map[string]any{
			{"op": "listTools"},
			{"op": "callTool", "name": "notes_search", "arguments": map[string]any{"query": marker}},
			{"op": "callTool", "name": "weather_get_station", "arguments": map[string]any{"query": marker}},
		}
		lists := map[string][]string{}
		results := map[string]*nodeResult{}
		for _, who := range []string{clientEng, clientSupport} {
			res := runNode(t, e.V.URL, ops, map[string]string{"Authorization": "Bearer " + e.token(t, who)}, nil)
			var l struct {
				Tools []struct{ Name string } `json:"tools"`
			}
			if err := json.Unmarshal(res.Results[0], &l); err != nil {
				t.Fatalf("%s: listTools: %v: %s", who, err, res.Results[0])
			}
			for _, tl := range l.Tools {
				lists[who] = append(lists[who], tl.Name)
			}
			results[who] = res
		}
		sameSet(t, "TypeScript SDK: tools of support", lists[clientSupport], supportTools)
		sameSet(t, "TypeScript SDK: tools of the engineer", lists[clientEng], union(supportTools, notes.Tools))

		if err := results[clientEng].stepError(1); err != nil {
			t.Errorf("TypeScript SDK: notes_search by the engineer: %+v", *err)
		}
		denied, unknown := results[clientSupport].stepError(1), results[clientSupport].stepError(2)
		if denied == nil || unknown == nil {
			t.Fatalf("TypeScript SDK: notes_search by support: %s; an unknown tool: %s; want errors",
				results[clientSupport].Results[1], results[clientSupport].Results[2])
		}
		if denied.Code != unknown.Code || denied.HTTPStatus != unknown.HTTPStatus ||
			denied.Message != strings.ReplaceAll(unknown.Message, "weather_get_station", "notes_search") {
			t.Errorf("TypeScript SDK: the denied call fails with %+v, an unknown one with %+v", *denied, *unknown)
		}
		if n := e.NotesRec.seen("tools/call", marker); n != 1 {
			t.Errorf("the notes backend got the call %d times, want once (the engineer's)", n)
		}
	})
}

// unknownToolText is the form of call_tool's answer to a tool the caller
// may not use or that does not exist.
var unknownToolText = regexp.MustCompile(`^call_tool: unknown tool "([^"]*)"(?:; did you mean ([^?]*)\?)? Use find_tool to search for tools\.$`)

// TestAuthzOptimizer: with the optimizer on, find_tool finds only the
// caller's tools and call_tool of a tool the caller may not use answers as
// for an unknown tool, never reaching the backend.
func TestAuthzOptimizer(t *testing.T) {
	t.Parallel()
	needIdP(t)
	e := startAuthzEnv(t, "optimizer: {enabled: true, maxToolsToReturn: 30}\n")
	notes := backendOffer(t, e.Notes.URL, "notes_")
	allowed := map[string][]string{clientSupport: supportTools, clientEng: union(supportTools, notes.Tools)}

	t.Run("find_tool", func(t *testing.T) {
		t.Parallel()
		for _, who := range []string{clientSupport, clientEng} {
			c := e.client(t, who)
			if got := toolNames(t, c); !slices.Equal(got, []string{"call_tool", "find_tool"}) {
				t.Errorf("%s: tools/list = %v, want call_tool and find_tool", who, got)
			}
			var found []string
			for _, q := range []struct{ desc, keywords string }{
				{"search the notes for a text", "notes search"},
				{"create a note with a title and a body", "note create"},
				{"echo a text back", "echo"},
				{"weather forecast for a city", "forecast weather"},
			} {
				names := findTool(t, c, q.desc, q.keywords).names()
				for _, n := range names {
					if !contains(allowed[who], n) {
						t.Errorf("%s: find_tool(%q) returns %s, which the caller may not use: %v", who, q.desc, n, names)
					}
				}
				found = append(found, names...)
			}
			for _, want := range []string{"weather_forecast", "weather_echo"} {
				if !contains(found, want) {
					t.Errorf("%s: find_tool never found %s: %v", who, want, found)
				}
			}
			if who == clientEng && !contains(found, "notes_search") {
				t.Errorf("engineer: find_tool never found notes_search: %v", found)
			}
		}
	})

	t.Run("call_tool", func(t *testing.T) {
		t.Parallel()
		c := e.client(t, clientSupport)
		m := uniqueName("opt")
		if got := callText(t, c, "call_tool", map[string]any{"tool_name": "weather_echo", "parameters": map[string]any{"text": m}}); got != m {
			t.Errorf("call_tool weather_echo: %q, want the echo", got)
		}
		if n := e.WeatherRec.seen("tools/call", m); n != 1 {
			t.Errorf("call_tool weather_echo reached the backend %d times, want once", n)
		}

		// Raw answers: call_tool of a denied tool (the engineers' notes_search, and
		// weather_echo with cascade: true) against call_tool of an unknown one.
		s := e.session(t, clientSupport)
		denyMarker := uniqueName("opt-denied")
		callTool := func(name string, params map[string]any) httpResult {
			return s.call(t, "tools/call", map[string]any{"name": "call_tool",
				"arguments": map[string]any{"tool_name": name, "parameters": params}})
		}
		for _, d := range []struct {
			denied, unknown string
			params          map[string]any
		}{
			{"notes_create_note", "weather_get_note_titles", map[string]any{"title": denyMarker, "body": "b"}},
			{"notes_search", "weather_get_search", map[string]any{"query": denyMarker}},
			{"weather_echo", "weather_get_echoes", map[string]any{"text": denyMarker, "cascade": true}},
		} {
			denied, unknown := callTool(d.denied, d.params), callTool(d.unknown, d.params)
			suggested := map[string]string{}
			for name, res := range map[string]httpResult{d.denied: denied, d.unknown: unknown} {
				var msg struct {
					Result *mcp.CallToolResult `json:"result"`
				}
				raw := res.jsonrpcMessage()
				if err := json.Unmarshal(raw, &msg); err != nil || msg.Result == nil || !msg.Result.IsError {
					t.Fatalf("call_tool %s: want an isError result, got %d %s", name, res.Status, raw)
				}
				text := resultText(msg.Result)
				sub := unknownToolText.FindStringSubmatch(text)
				if sub == nil || sub[1] != name {
					t.Fatalf("call_tool %s: %q is not the unknown-tool answer", name, text)
				}
				// The suggestions name only tools the caller may use.
				if sub[2] != "" {
					for _, s := range strings.Split(sub[2], ", ") {
						if !contains(supportTools, s) {
							t.Errorf("call_tool %s suggests %s, which support may not use: %q", name, s, text)
						}
					}
				}
				suggested[name] = sub[2]
			}
			// The suggestions depend on the name asked for; with the same ones,
			// the answers are the same byte for byte.
			if suggested[d.denied] == suggested[d.unknown] {
				sameAsUnknown(t, "call_tool "+d.denied, denied, d.denied, unknown, d.unknown)
			} else {
				t.Logf("call_tool %s suggests %q, %s suggests %q: compared by form only", d.denied, suggested[d.denied], d.unknown, suggested[d.unknown])
			}
		}
		if n := e.NotesRec.seen("tools/call", denyMarker) + e.WeatherRec.seen("tools/call", denyMarker); n != 0 {
			t.Errorf("call_tool of denied tools reached the backends %d times", n)
		}

		// The engineer may call notes_search through call_tool.
		eng := e.client(t, clientEng)
		mine := uniqueName("opt-eng")
		if got := callText(t, eng, "call_tool", map[string]any{"tool_name": "notes_search", "parameters": map[string]any{"query": mine}}); !strings.Contains(got, mine) {
			t.Errorf("engineer: call_tool notes_search: %q", got)
		}
		if n := e.NotesRec.seen("tools/call", mine); n != 1 {
			t.Errorf("engineer: call_tool notes_search reached the backend %d times, want once", n)
		}
	})
}

// TestAuthzValidate: `vmcp validate` reports a rule whose condition does not
// compile with its key path and CEL's message, and exits non-zero.
func TestAuthzValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, rules string) string {
		path := filepath.Join(dir, name)
		cfg := `name: authz-validate
server: {host: 127.0.0.1, port: 0}
backends:
  - {name: weather, transport: streamable-http, url: "http://127.0.0.1:1/mcp"}
authorization:
  default: deny
  rules:
` + rules
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	validate := func(path string) (string, int) {
		cmd := exec.CommandContext(ctxT(t, 30*time.Second), vmcpBin, "validate", "--config", path)
		out, err := cmd.CombinedOutput()
		code := 0
		if err != nil {
			ee, ok := err.(*exec.ExitError)
			if !ok {
				t.Fatalf("vmcp validate: %v\n%s", err, out)
			}
			code = ee.ExitCode()
		}
		return string(out), code
	}

	good := write("good.yaml", `    - {effect: allow, tools: ["weather_*"], when: '"eng" in identity.claims.groups'}
    - {effect: deny, tools: ["*_echo"], when: 'has(request.arguments.cascade) && request.arguments.cascade == true'}
`)
	if out, code := validate(good); code != 0 || !strings.Contains(out, ": ok") {
		t.Errorf("vmcp validate of a good config: exit %d\n%s", code, out)
	}

	bad := write("bad.yaml", `    - {effect: allow, tools: ["weather_*"], when: 'requst.name == "x"'}
    - {effect: allow, tools: ["weather_echo"]}
    - {effect: deny, prompts: ["*"], when: 'identity.subject +'}
`)
	out, code := validate(bad)
	if code == 0 {
		t.Errorf("vmcp validate of a config with a bad condition exits 0:\n%s", out)
	}
	for _, want := range []string{"authorization.rules[0].when:", "undeclared reference to 'requst'", "authorization.rules[2].when:"} {
		if !strings.Contains(out, want) {
			t.Errorf("vmcp validate does not print %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "authorization.rules[1]") {
		t.Errorf("vmcp validate reports the good rule 1:\n%s", out)
	}
	// The key path and CEL's message are on one line.
	if !regexp.MustCompile(`authorization\.rules\[0\]\.when: .*undeclared reference to 'requst'`).MatchString(out) {
		t.Errorf("vmcp validate does not put rule 0's key path and CEL's message on one line:\n%s", out)
	}
}
