package test

// End-to-end tests of vmcp as several replicas behind a load balancer with
// no session affinity (issue 12: sessions: {store: redis}): three `vmcp
// serve` processes sharing one Redis, HAProxy balancing every request
// round robin (replicas_helpers_test.go), driven by mcp-go's client and the
// TypeScript SDK's. Each test runs a fleet of its own.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// TestReplicasServeOneSession: one client session whose requests HAProxy
// spreads over all three replicas works as with one vmcp: every call
// succeeds (and the audit shows each replica served some), a backend's
// sampling and elicitation requests during a call are answered by POSTs
// that land on other replicas than the call, a resource subscription made
// through one replica is honoured when another replica triggers the update
// and the notification reaches the client's GET stream, held by a third,
// and the backend sees one backend session for the client, whichever
// replica relays.
func TestReplicasServeOneSession(t *testing.T) {
	t.Parallel()
	f := startReplicaFleet(t)
	var elicited atomic.Int64
	n := &notes{}
	c := newClient(t, f.URL, clientOpts{listen: true, onNotification: n.add, mcp: []client.ClientOption{
		client.WithSamplingHandler(model{answer: "sampled answer"}),
		client.WithElicitationHandler(elicitor(func(mcp.ElicitationRequest) { elicited.Add(1) })),
	}})
	sid := sessionOf(t, c)

	const echoes, asks = 12, 3
	for i := range echoes {
		marker := uniqueName(fmt.Sprintf("spread%d", i))
		if got := callText(t, c, "demo_echo", echoArgs(marker)); got != marker {
			t.Fatalf("call %d: demo_echo = %q, want %q", i, got, marker)
		}
	}
	for i := range asks {
		if got := callText(t, c, "demo_sample", map[string]any{"prompt": "who are you?"}); got != "sampled answer" {
			t.Errorf("sampling call %d = %q, want the client's model's answer", i, got)
		}
		got := callText(t, c, "demo_elicit", map[string]any{"message": "Your name?"})
		if !strings.Contains(got, `"action":"accept"`) || !strings.Contains(got, `"name":"Ada"`) {
			t.Errorf("elicitation call %d = %q, want the accepted answer", i, got)
		}
	}
	if got := elicited.Load(); got != asks {
		t.Errorf("the client was asked %d times, want %d", got, asks)
	}
	eventually(t, 5*time.Second, "every call of the session audited as a success, on every replica", func() error {
		counts := f.callsPerReplica(sid, "success")
		sum := 0
		for i, n := range counts {
			if n == 0 {
				return fmt.Errorf("replica %s served none of the session's calls (per replica: %v)", f.Replicas[i].Name, counts)
			}
			sum += n
		}
		if sum != echoes+2*asks {
			return fmt.Errorf("%d successful calls audited (per replica: %v), want %d", sum, counts, echoes+2*asks)
		}
		return nil
	})
	// The client's answers to sampling and elicitation are POSTs of their
	// own; round robin sends each to another replica than its call.
	crossed := 0
	var callOn string
	for _, e := range f.LB.entries() {
		switch {
		case e.Session != sid || e.Method != http.MethodPost:
		case strings.Contains(e.Body, "demo_sample") || strings.Contains(e.Body, "demo_elicit"):
			callOn = e.Server
		case strings.Contains(e.Body, "result") && callOn != "":
			if e.Server != callOn {
				crossed++
			}
			callOn = ""
		}
	}
	if crossed == 0 {
		t.Errorf("no answer to a sampling or elicitation request went to another replica than its call: the test did not test that (HAProxy log below)")
	}

	// The resource subscription, with the subscribe, the update and the GET
	// stream each on a different replica. Round robin decides where each
	// request goes; if the subscribe or the touch shares the GET stream's
	// replica, the test unsubscribes, shifts the rotation with a ping and
	// tries again.
	uri := "demo://" + f.Demo.Name + "/counter"
	const updated = mcp.MethodNotificationResourceUpdated
	placed := false
	for attempt := 0; attempt < 6 && !placed; attempt++ {
		sub := mcp.SubscribeRequest{}
		sub.Params.URI = uri
		if err := c.Subscribe(ctxT(t, 10*time.Second), sub); err != nil {
			t.Fatalf("resources/subscribe: %v", err)
		}
		before := n.count(updated)
		res := callTool(t, c, "demo_touch", nil)
		if res.IsError || !strings.Contains(resultText(res), "notified 1 subscribers") {
			t.Fatalf("demo_touch = %q, want one subscriber notified", resultText(res))
		}
		eventually(t, 10*time.Second, "notifications/resources/updated on the client's GET stream", func() error {
			if n.count(updated) == before {
				return errors.New("none yet")
			}
			return nil
		})
		if got := n.of(updated)[before].Params.AdditionalFields["uri"]; got != uri {
			t.Errorf("resources/updated uri = %v, want %s", got, uri)
		}
		var getOn, subOn, touchOn string
		eventually(t, 5*time.Second, "HAProxy logged the GET stream, the subscribe and the touch", func() error {
			getOn, subOn, touchOn = "", "", ""
			for _, e := range f.LB.entries() {
				switch {
				case e.Session != sid:
				case e.Method == http.MethodGet && e.Status == "200":
					getOn = e.Server // the last one: the stream open now
				case e.Method == http.MethodPost && strings.Contains(e.Body, "resources/subscribe"):
					subOn = e.Server // the last one: this attempt's
				case e.Method == http.MethodPost && strings.Contains(e.Body, "demo_touch"):
					touchOn = e.Server // the last one: this attempt's
				}
			}
			if getOn == "" || subOn == "" || touchOn == "" {
				return fmt.Errorf("GET on %q, subscribe on %q, touch on %q", getOn, subOn, touchOn)
			}
			return nil
		})
		placed = getOn != subOn && getOn != touchOn
		t.Logf("attempt %d: GET stream on %s, subscribe on %s, touch on %s", attempt, getOn, subOn, touchOn)
		if !placed {
			unsub := mcp.UnsubscribeRequest{}
			unsub.Params.URI = uri
			if err := c.Unsubscribe(ctxT(t, 10*time.Second), unsub); err != nil {
				t.Fatalf("resources/unsubscribe: %v", err)
			}
			if err := c.Ping(ctxT(t, 10*time.Second)); err != nil {
				t.Fatalf("ping: %v", err)
			}
		}
	}
	if !placed {
		t.Errorf("the subscribe or the touch always shared the GET stream's replica: the test did not test what it says")
	}

	// One backend session for the client, whichever replica relays; each
	// replica also has its own shared connection (discovery, health).
	if s := statsOf(t, c, "demo"); s.Sessions != int(replicaCount)+1 || s.Subscribers[uri] != 1 {
		t.Errorf("backend sessions %d (want %d: one per replica's shared connection and one for the client), subscribers of the counter %d (want 1)",
			s.Sessions, replicaCount+1, s.Subscribers[uri])
	}
}

// TestReplicasTypeScriptClient: the TypeScript SDK's client, whose
// requests HAProxy spreads over the three replicas, lists the tools and
// makes twelve calls, which all succeed and are audited on every replica;
// its DELETE at the end is answered.
func TestReplicasTypeScriptClient(t *testing.T) {
	t.Parallel()
	needNode(t)
	f := startReplicaFleet(t)
	const n = 12
	var ops []map[string]any
	var markers []string
	ops = append(ops, map[string]any{"op": "listTools"})
	for i := range n {
		m := uniqueName(fmt.Sprintf("ts%d", i))
		markers = append(markers, m)
		ops = append(ops, map[string]any{"op": "callTool", "name": "demo_echo", "arguments": echoArgs(m)})
	}
	res := runNode(t, f.URL, ops, nil, nil)
	if e := res.stepError(0); e != nil {
		t.Errorf("TypeScript SDK: tools/list: %+v", *e)
	}
	for i, m := range markers {
		if e := res.stepError(i + 1); e != nil {
			t.Errorf("TypeScript SDK: call %d: %+v", i, *e)
			continue
		}
		var r struct {
			Content []struct{ Text string } `json:"content"`
			IsError bool                    `json:"isError"`
		}
		if err := json.Unmarshal(res.Results[i+1], &r); err != nil || r.IsError || len(r.Content) != 1 || r.Content[0].Text != m {
			t.Errorf("TypeScript SDK: call %d = %s, want %q", i, res.Results[i+1], m)
		}
	}
	if res.Session.ID == "" {
		t.Fatal("TypeScript SDK: no session id")
	}
	eventually(t, 5*time.Second, "the TypeScript client's calls audited on every replica", func() error {
		counts := f.callsPerReplica(res.Session.ID, "success")
		for i, n := range counts {
			if n == 0 {
				return fmt.Errorf("replica %s served none (per replica: %v)", f.Replicas[i].Name, counts)
			}
		}
		return nil
	})
}

// TestReplicaKilledUnderLoad: six clients call in a loop through HAProxy
// while one replica is killed (SIGKILL). Only calls in flight on it at that
// moment may fail, no call that began after the kill fails, and every
// client goes on with its session without re-initialising.
func TestReplicaKilledUnderLoad(t *testing.T) {
	t.Parallel()
	f := startReplicaFleet(t)
	const clients = 6
	l := startCallLoad(t, f.URL, clients)
	l.waitCalls(t, 60)
	victim := replicaCount / 2
	if served := f.callsPerReplica("", "success")[victim]; served == 0 {
		t.Fatalf("replica %s served no call before the kill", f.Replicas[victim].Name)
	}
	killed := time.Now()
	f.KillReplica(t, victim)
	l.waitCalls(t, 120)
	l.Stop()

	failed, total := l.failures()
	t.Logf("%d calls, %d failed", total, len(failed))
	if len(failed) > clients {
		t.Errorf("%d calls failed, more than the %d that can have been in flight on the killed replica:%s", len(failed), clients, describeCalls(failed, killed))
	}
	var late []loadCall
	for _, c := range failed {
		if c.Start.After(killed) {
			late = append(late, c)
		}
	}
	if len(late) > 0 {
		t.Errorf("%d calls that began after the kill failed (HAProxy retries refused connections on another replica):%s", len(late), describeCalls(late, killed))
	}
	l.checkSessionsContinue(t)
}

// TestReplicasRollingRestart: six clients call in a loop through HAProxy
// while each replica in turn gets SIGTERM, exits, and starts again on its
// port (a rolling update). No call fails, every replica serves again after
// its restart, and every client keeps its session.
func TestReplicasRollingRestart(t *testing.T) {
	t.Parallel()
	f := startReplicaFleet(t)
	const clients = 6
	l := startCallLoad(t, f.URL, clients)
	l.waitCalls(t, 30)
	began := time.Now()
	for i, r := range f.Replicas {
		f.RestartReplica(t, i)
		before := f.callsPerReplica("", "success")[i]
		l.waitCalls(t, 30)
		eventually(t, 10*time.Second, "replica "+r.Name+" serving calls again after its restart", func() error {
			if n := f.callsPerReplica("", "success")[i]; n == before {
				return errors.New("no call yet")
			}
			return nil
		})
	}
	l.Stop()
	failed, total := l.failures()
	t.Logf("%d calls during the rolling restart, %d failed", total, len(failed))
	if len(failed) > 0 {
		t.Errorf("%d calls failed during the rolling restart, want none:%s", len(failed), describeCalls(failed, began))
	}
	l.checkSessionsContinue(t)
}

// TestReplicasRateLimitExact: demo_add's shared bucket holds 6 tokens
// (refilled over an hour), kept in Redis for all replicas. Twelve calls
// from three clients, spread over the three replicas by HAProxy: exactly 6
// succeed and 6 are refused, and every replica took part.
func TestReplicasRateLimitExact(t *testing.T) {
	t.Parallel()
	f := startReplicaFleet(t)
	const clients, perClient = 3, 4
	cs := make([]*client.Client, clients)
	for i := range cs {
		cs[i] = newClient(t, f.URL, clientOpts{})
	}
	var passed, refused atomic.Int64
	var mu sync.Mutex
	var other []string
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			for j := range perClient {
				res, err := tryCallNoFatal(c, "demo_add", map[string]any{"a": i, "b": j})
				switch {
				case err == nil && !res.IsError && resultText(res) == fmt.Sprint(i+j):
					passed.Add(1)
				case err != nil && err.Error() == "Rate limit exceeded":
					refused.Add(1)
				default:
					mu.Lock()
					other = append(other, fmt.Sprintf("client %d call %d: %v %v", i, j, err, res))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for _, o := range other {
		t.Errorf("neither a result nor a rate-limit refusal: %s", o)
	}
	if passed.Load() != fleetRateLimit || refused.Load() != clients*perClient-fleetRateLimit {
		t.Errorf("%d calls served and %d refused, want exactly %d and %d", passed.Load(), refused.Load(), fleetRateLimit, clients*perClient-fleetRateLimit)
	}
	eventually(t, 5*time.Second, "the audit of every replica", func() error {
		ok, limited := f.callsPerReplica("", "success"), f.callsPerReplica("", "rate_limited")
		sumOK, sumLimited := 0, 0
		for i := range f.Replicas {
			if ok[i]+limited[i] == 0 {
				return fmt.Errorf("replica %s got none of the calls (served %v, refused %v)", f.Replicas[i].Name, ok, limited)
			}
			sumOK += ok[i]
			sumLimited += limited[i]
		}
		if sumOK != fleetRateLimit || sumLimited != clients*perClient-fleetRateLimit {
			return fmt.Errorf("audited %d served %v and %d refused %v", sumOK, ok, sumLimited, limited)
		}
		return nil
	})
}

// TestReplicasRedisDown: with Redis gone, a session the replicas already
// hold keeps working, and a new session is refused at once with HTTP 503
// and a JSON-RPC error. Once Redis is back, empty, the old session's next
// request gets 404 (the client must re-initialise) and a new session works
// on every replica.
func TestReplicasRedisDown(t *testing.T) {
	t.Parallel()
	f := startReplicaFleet(t)
	c := newClient(t, f.URL, clientOpts{})
	sid := sessionOf(t, c)
	for i := range 2 * replicaCount { // the session is used on every replica
		marker := uniqueName(fmt.Sprintf("before%d", i))
		if got := callText(t, c, "demo_echo", echoArgs(marker)); got != marker {
			t.Fatalf("demo_echo = %q, want %q", got, marker)
		}
	}

	f.KillRedis()
	for i := range 2 * replicaCount {
		marker := uniqueName(fmt.Sprintf("down%d", i))
		if msg := callOnce(c, "demo_echo", echoArgs(marker), marker); msg != "" {
			t.Errorf("call %d of the existing session with Redis down: %s", i, msg)
		}
	}
	for i := range replicaCount { // one initialize per replica (round robin)
		const deadline = 3 * time.Second
		res, err := rawMCP{url: f.URL, body: initializeBody, timeout: deadline}.do()
		if err != nil {
			t.Errorf("initialize %d with Redis down: no answer within %s: %v", i, deadline, err)
			continue
		}
		if res.Status != http.StatusServiceUnavailable {
			t.Errorf("initialize %d with Redis down: status %d, want 503; body %s", i, res.Status, res.Body)
			continue
		}
		var e rpcError
		if err := json.Unmarshal(res.Body, &e); err != nil || e.JSONRPC != "2.0" || e.Error == nil || e.Error.Code == 0 || e.Error.Message == "" {
			t.Errorf("initialize %d with Redis down: body %s, want a JSON-RPC error with a code and a message", i, res.Body)
			continue
		}
		if sidNew := res.Header.Get("Mcp-Session-Id"); sidNew != "" {
			t.Errorf("initialize %d with Redis down: refused but issued session %s", i, sidNew)
		}
		t.Logf("initialize %d with Redis down: %d %s", i, res.Status, res.Body)
	}

	f.RestartRedis(t)
	_, err := tryCall(t, c, "demo_echo", echoArgs("after restart"))
	if !isSessionGone(err) {
		t.Errorf("the old session's next call after Redis restarted empty: %v, want 404 (mcp-go: session terminated)", err)
	}
	for i := range replicaCount { // every replica forgot it
		res, err := rawMCP{url: f.URL, session: sid, version: protocolVersion, body: toolCall(`7`, "demo_echo", echoArgs("old"))}.do()
		if err != nil || res.Status != http.StatusNotFound {
			t.Errorf("request %d of the old session after Redis restarted empty: %d %s %v, want 404", i, res.Status, res.Body, err)
		}
	}
	fresh := newClient(t, f.URL, clientOpts{})
	for i := range 2 * replicaCount {
		marker := uniqueName(fmt.Sprintf("fresh%d", i))
		if msg := callOnce(fresh, "demo_echo", echoArgs(marker), marker); msg != "" {
			t.Errorf("call %d of a new session after Redis came back: %s", i, msg)
		}
	}
}

// TestReplicasDeleteEndsSessionEverywhere: a DELETE of a session that all
// three replicas have served, sent through HAProxy to one of them, ends it
// on all: the next requests, which land on the other replicas, get 404,
// and the client's backend session is closed.
func TestReplicasDeleteEndsSessionEverywhere(t *testing.T) {
	t.Parallel()
	f := startReplicaFleet(t)
	watcher := newClient(t, f.URL, clientOpts{})
	c := newClient(t, f.URL, clientOpts{})
	sid := sessionOf(t, c)
	for i := range replicaCount {
		marker := uniqueName(fmt.Sprintf("before%d", i))
		if got := callText(t, c, "demo_echo", echoArgs(marker)); got != marker {
			t.Fatalf("demo_echo = %q, want %q", got, marker)
		}
	}
	if s := statsOf(t, watcher, "demo"); s.Sessions != replicaCount+2 {
		t.Errorf("backend sessions %d, want %d (one per replica's shared connection, one per client)", s.Sessions, replicaCount+2)
	}

	res, err := rawMCP{method: http.MethodDelete, url: f.URL, session: sid, version: protocolVersion}.do()
	if err != nil || res.Status/100 != 2 {
		t.Fatalf("DELETE: %d %s %v, want 2xx", res.Status, res.Body, err)
	}
	// Replicas learn of the DELETE from Redis's channel; the replica that
	// answered it waited until the message came back to it, so the others
	// have it too: the very next requests, on every replica, get 404.
	var markers []string
	for i := range replicaCount {
		m := uniqueName(fmt.Sprintf("deleted%d", i))
		markers = append(markers, m)
		res, err := rawMCP{url: f.URL, session: sid, version: protocolVersion, body: toolCall(`7`, "demo_echo", echoArgs(m))}.do()
		if err != nil || res.Status != http.StatusNotFound {
			t.Errorf("request %d of the deleted session: %d %s %v, want 404", i, res.Status, res.Body, err)
		}
	}
	var deletedOn string
	var after []string
	eventually(t, 5*time.Second, "HAProxy logged the DELETE and the requests after it", func() error {
		deletedOn, after = "", nil
		for _, e := range f.LB.entries() {
			if e.Session != sid {
				continue
			}
			if e.Method == http.MethodDelete {
				deletedOn = e.Server
			}
			for _, m := range markers {
				if strings.Contains(e.Body, m) && !contains(after, e.Server) {
					after = append(after, e.Server)
				}
			}
		}
		if deletedOn == "" || len(after) < replicaCount {
			return fmt.Errorf("DELETE on %q, later requests on %v", deletedOn, after)
		}
		return nil
	})
	t.Logf("DELETE on %s; the later requests on %v", deletedOn, after)
	if _, err := tryCall(t, c, "demo_echo", echoArgs("after delete")); !isSessionGone(err) {
		t.Errorf("mcp-go client's call after the DELETE: %v, want 404 (session terminated)", err)
	}
	eventually(t, 10*time.Second, "the deleted session's backend session closed", func() error {
		if s := statsOf(t, watcher, "demo"); s.Sessions != replicaCount+1 {
			return fmt.Errorf("%d backend sessions, want %d", s.Sessions, replicaCount+1)
		}
		return nil
	})
}
