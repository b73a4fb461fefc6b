package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// relayFleet is vmcp in front of a demo backend over streamable HTTP
// ("remote": a backend session per client session) and one over stdio
// ("local": one process every client shares).
type relayFleet struct {
	Remote *demoBackend
	Local  string
	V      *vmcp
}

func startRelayFleet(t *testing.T, extra string) *relayFleet {
	t.Helper()
	f := &relayFleet{Remote: startDemo(t, "remote", "notes", "streamable-http", ""), Local: uniqueName("local")}
	f.V = startVMCP(t, fmt.Sprintf(`name: relay
server: {host: 127.0.0.1, port: 0%s}
backends:
  - {name: remote, transport: streamable-http, url: %q, requestTimeout: 20s}
  - {name: local, transport: stdio, command: %q, args: [--name, %q], requestTimeout: 20s}
aggregation:
  conflictResolution: prefix
`, extra, f.Remote.URL, demoBin, f.Local), nil)
	return f
}

// model is a sampling handler that answers every request with its text,
// after all the handlers of its barrier have been entered.
type model struct {
	answer  string
	barrier *sync.WaitGroup
}

func (m model) CreateMessage(_ context.Context, _ mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	if m.barrier != nil {
		m.barrier.Done()
		m.barrier.Wait()
	}
	return &mcp.CreateMessageResult{
		SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent(m.answer)},
		Model:           "test-model",
	}, nil
}

// notes collects one client's notifications.
type notes struct {
	mu   sync.Mutex
	list []mcp.JSONRPCNotification
}

func (n *notes) add(x mcp.JSONRPCNotification) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.list = append(n.list, x)
}

func (n *notes) of(method string) []mcp.JSONRPCNotification {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []mcp.JSONRPCNotification
	for _, x := range n.list {
		if x.Method == method {
			out = append(out, x)
		}
	}
	return out
}

func (n *notes) count(method string) int { return len(n.of(method)) }

// listener is a client with an open GET stream that records notifications.
func listener(t *testing.T, url string, mcpOpts ...client.ClientOption) (*client.Client, *notes) {
	n := &notes{}
	return newClient(t, url, clientOpts{listen: true, onNotification: n.add, mcp: mcpOpts}), n
}

// TestRelaySamplingPerClient: two clients call the same sampling tool at
// the same time and each gets its own model's answer.
func TestRelaySamplingPerClient(t *testing.T) {
	t.Parallel()
	f := startRelayFleet(t, "")
	var barrier sync.WaitGroup
	barrier.Add(2)
	a, _ := listener(t, f.V.URL, client.WithSamplingHandler(model{answer: "answer for A", barrier: &barrier}))
	b, _ := listener(t, f.V.URL, client.WithSamplingHandler(model{answer: "answer for B", barrier: &barrier}))

	var wg sync.WaitGroup
	for _, tc := range []struct {
		c    *client.Client
		want string
	}{{a, "answer for A"}, {b, "answer for B"}} {
		wg.Go(func() {
			if got := callText(t, tc.c, "remote_sample", map[string]any{"prompt": "who are you?"}); got != tc.want {
				t.Errorf("remote_sample = %q, want %q", got, tc.want)
			}
		})
	}
	wg.Wait()

	// The stdio backend is shared: a call is attributed to its client
	// while it is the only client with a call in flight.
	for _, tc := range []struct {
		c    *client.Client
		want string
	}{{a, "answer for A"}, {b, "answer for B"}} {
		barrier.Add(1) // the barrier passes at once
		if got := callText(t, tc.c, "local_sample", map[string]any{"prompt": "who are you?"}); got != tc.want {
			t.Errorf("local_sample = %q, want %q", got, tc.want)
		}
	}

	// A client that declares no sampling gets the backend's error.
	c := newClient(t, f.V.URL, clientOpts{listen: true})
	res, err := tryCall(t, c, "remote_sample", map[string]any{"prompt": "x"})
	if err != nil || !res.IsError || !strings.Contains(resultText(res), "sampling failed") {
		t.Errorf("remote_sample without sampling = %+v, %v; want the backend's sampling failure", res, err)
	}
}

// TestRelayElicitation: a backend's elicitation reaches the client and its
// answer goes back.
func TestRelayElicitation(t *testing.T) {
	t.Parallel()
	f := startRelayFleet(t, "")
	var asked string
	c, _ := listener(t, f.V.URL, client.WithElicitationHandler(elicitor(func(req mcp.ElicitationRequest) {
		asked = req.Params.Message
	})))
	got := callText(t, c, "remote_elicit", map[string]any{"message": "Your name?"})
	if asked != "Your name?" || !strings.Contains(got, `"action":"accept"`) || !strings.Contains(got, `"name":"Ada"`) {
		t.Errorf("remote_elicit = %q (asked %q), want the accepted answer", got, asked)
	}
}

type elicitor func(mcp.ElicitationRequest)

func (e elicitor) Elicit(_ context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	e(req)
	return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{Action: mcp.ElicitationResponseActionAccept, Content: map[string]any{"name": "Ada"}}}, nil
}

// TestRelayProgressAndCancel: a long call streams progress to its client
// only, under the client's token, and notifications/cancelled from the
// client stops it at the backend.
func TestRelayProgressAndCancel(t *testing.T) {
	t.Parallel()
	f := startRelayFleet(t, "")
	a, aNotes := listener(t, f.V.URL)
	b, bNotes := listener(t, f.V.URL)
	const progress = string(mcp.MethodNotificationProgress)

	// A raw request, so the test knows its id and can cancel it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		params := map[string]any{"name": "remote_progress", "arguments": map[string]any{"steps": 1000, "intervalMs": 20},
			"_meta": map[string]any{"progressToken": "token-A"}}
		_, err := a.GetTransport().SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: mcp.JSONRPC_VERSION, ID: mcp.NewRequestId("call-A"), Method: "tools/call", Params: params})
		done <- err
	}()
	eventually(t, 10*time.Second, "three progress notifications at A", func() error {
		if n := aNotes.count(progress); n < 3 {
			return fmt.Errorf("%d so far", n)
		}
		return nil
	})
	for _, n := range aNotes.of(progress) {
		if tok := n.Params.AdditionalFields["progressToken"]; tok != "token-A" {
			t.Fatalf("progress token at A = %#v, want token-A", tok)
		}
	}
	err := a.GetTransport().SendNotification(ctx, mcp.JSONRPCNotification{JSONRPC: mcp.JSONRPC_VERSION, Notification: mcp.Notification{
		Method: string(mcp.MethodNotificationCancelled),
		Params: mcp.NotificationParams{AdditionalFields: map[string]any{"requestId": "call-A", "reason": "test"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the backend reporting the cancellation", func() error {
		if s := remoteStats(t, b); s.Cancelled != 1 {
			return fmt.Errorf("cancelled = %d", s.Cancelled)
		}
		return nil
	})
	n := aNotes.count(progress)
	time.Sleep(200 * time.Millisecond)
	if m := aNotes.count(progress); m > n+1 {
		t.Errorf("progress kept coming after the cancellation: %d, then %d", n, m)
	}
	if n := bNotes.count(progress); n != 0 {
		t.Errorf("B got %d progress notifications of A's call", n)
	}
	cancel()
	<-done

	// Over the shared stdio backend both clients use the same token at
	// once; each gets its own progress back under it.
	var wg sync.WaitGroup
	for _, c := range []*client.Client{a, b} {
		wg.Go(func() {
			req := mcp.CallToolRequest{}
			req.Params.Name = "local_progress"
			req.Params.Arguments = map[string]any{"steps": 5, "intervalMs": 10}
			req.Params.Meta = &mcp.Meta{ProgressToken: "same"}
			if _, err := c.CallTool(ctxT(t, 20*time.Second), req); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	before := bNotes.count(progress)
	eventually(t, 10*time.Second, "five progress notifications each from the stdio backend", func() error {
		if a, b := aNotes.count(progress)-n, bNotes.count(progress); a < 5 || b < 5 {
			return fmt.Errorf("A %d, B %d", a, b)
		}
		return nil
	})
	if got := bNotes.count(progress); got != 5 || before > 5 {
		t.Errorf("B got %d progress notifications from its stdio call, want 5", got)
	}
}

func remoteStats(t *testing.T, c *client.Client) demoStats { return statsOf(t, c, "remote") }

// demoStats is what a demo backend's stats tool reports.
type demoStats struct {
	Sessions, Cancelled, CancelNotices, RootsChanged int
	Roots                                            []string
	Subscribers                                      map[string]int
}

// statsOf calls the stats tool of the demo backend vmcp names backend.
func statsOf(t *testing.T, c *client.Client, backend string) (s demoStats) {
	t.Helper()
	if err := json.Unmarshal([]byte(callText(t, c, backend+"_stats", nil)), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRelayResourceUpdated: a resource update reaches only the clients
// subscribed to it, for a per-client and a shared backend.
func TestRelayResourceUpdated(t *testing.T) {
	t.Parallel()
	f := startRelayFleet(t, "")
	a, aNotes := listener(t, f.V.URL)
	b, bNotes := listener(t, f.V.URL)
	const updated = mcp.MethodNotificationResourceUpdated
	for _, tc := range []struct{ backend, name string }{{"remote", f.Remote.Name}, {"local", f.Local}} {
		uri := "demo://" + tc.name + "/counter"
		sub := mcp.SubscribeRequest{}
		sub.Params.URI = uri
		if err := a.Subscribe(ctxT(t, 10*time.Second), sub); err != nil {
			t.Fatal(err)
		}
		a0, b0 := aNotes.count(updated), bNotes.count(updated)
		callText(t, b, tc.backend+"_touch", nil)
		eventually(t, 10*time.Second, tc.backend+": resources/updated at the subscriber", func() error {
			if aNotes.count(updated) == a0 {
				return errors.New("none yet")
			}
			return nil
		})
		if got := aNotes.of(updated)[a0].Params.AdditionalFields["uri"]; got != uri {
			t.Errorf("%s: updated uri = %v, want %s", tc.backend, got, uri)
		}
		time.Sleep(200 * time.Millisecond)
		if bNotes.count(updated) != b0 {
			t.Errorf("%s: the client that did not subscribe got resources/updated", tc.backend)
		}

		// After unsubscribing, nobody hears of the next update.
		unsub := mcp.UnsubscribeRequest{}
		unsub.Params.URI = uri
		if err := a.Unsubscribe(ctxT(t, 10*time.Second), unsub); err != nil {
			t.Fatal(err)
		}
		a1 := aNotes.count(updated)
		callText(t, b, tc.backend+"_touch", nil)
		time.Sleep(300 * time.Millisecond)
		if aNotes.count(updated) != a1 {
			t.Errorf("%s: resources/updated after unsubscribe", tc.backend)
		}
	}
}

// TestRelayLogging: logging/setLevel reaches the client's own backend
// session, and log messages reach the client whose call sent them.
func TestRelayLogging(t *testing.T) {
	t.Parallel()
	f := startRelayFleet(t, "")
	a, aNotes := listener(t, f.V.URL)
	b, bNotes := listener(t, f.V.URL)
	level := mcp.SetLevelRequest{}
	level.Params.Level = mcp.LoggingLevelDebug
	if err := a.SetLevel(ctxT(t, 10*time.Second), level); err != nil {
		t.Fatal(err)
	}
	const message = string(mcp.MethodNotificationMessage)
	callText(t, a, "remote_log", map[string]any{"text": "from A"})
	callText(t, b, "remote_log", map[string]any{"text": "from B"})
	eventually(t, 10*time.Second, "log messages", func() error {
		if a, b := aNotes.count(message), bNotes.count(message); a < 4 || b < 1 {
			return fmt.Errorf("A has %d of 4, B %d of 1", a, b)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
	check := func(who string, n *notes, want int, text string) {
		got := n.of(message)
		if len(got) != want {
			t.Errorf("%s got %d log messages, want %d", who, len(got), want)
		}
		for _, m := range got {
			if data, _ := m.Params.AdditionalFields["data"].(string); !strings.HasPrefix(data, text) {
				t.Errorf("%s got a log message of another client: %v", who, m.Params.AdditionalFields)
			}
		}
	}
	check("A (debug)", aNotes, 4, "from A")
	check("B (the backend's default, error)", bNotes, 1, "from B")
}

// TestRelayBackendSessions: a client's backend sessions end with its
// session, and their number is bounded by server.maxBackendSessions.
func TestRelayBackendSessions(t *testing.T) {
	t.Parallel()
	f := startRelayFleet(t, ", maxBackendSessions: 2")
	a := newClient(t, f.V.URL, clientOpts{})
	b := newClient(t, f.V.URL, clientOpts{})
	// The backend's own count includes vmcp's shared connection.
	if s := remoteStats(t, a); s.Sessions != 2 {
		t.Errorf("backend sessions with one client = %d, want 2", s.Sessions)
	}
	if s := remoteStats(t, b); s.Sessions != 3 {
		t.Errorf("backend sessions with two clients = %d, want 3", s.Sessions)
	}
	c := newClient(t, f.V.URL, clientOpts{})
	if s := remoteStats(t, c); s.Sessions != 3 {
		t.Errorf("backend sessions with three clients and a bound of 2 = %d, want 3", s.Sessions)
	}
	if err := b.Close(); err != nil { // DELETE
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the backend session of the deleted client closed", func() error {
		if s := remoteStats(t, c); s.Sessions != 2 {
			return fmt.Errorf("%d backend sessions", s.Sessions)
		}
		return nil
	})
	// The evicted client gets a new backend session on its next call.
	if s := remoteStats(t, a); s.Sessions != 3 {
		t.Errorf("backend sessions after the evicted client came back = %d, want 3", s.Sessions)
	}
}

// roots is a roots handler that answers with one root.
type roots string

func (r roots) ListRoots(context.Context, mcp.ListRootsRequest) (*mcp.ListRootsResult, error) {
	return &mcp.ListRootsResult{Roots: []mcp.Root{{URI: string(r), Name: "test"}}}, nil
}

// TestRelayRootsListChanged: a client's notifications/roots/list_changed
// reaches its own backend session, whose backend then asks that client for
// its roots again, and the shared stdio backend.
func TestRelayRootsListChanged(t *testing.T) {
	t.Parallel()
	f := startRelayFleet(t, "")
	a, _ := listener(t, f.V.URL, client.WithRootsHandler(roots("file:///home/a")))
	b, _ := listener(t, f.V.URL, client.WithRootsHandler(roots("file:///home/b")))
	for _, c := range []*client.Client{a, b} {
		statsOf(t, c, "remote") // opens the client's backend session
	}
	if err := a.RootListChanges(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the remote backend asking A for its roots again", func() error {
		if s := statsOf(t, a, "remote"); s.RootsChanged != 1 || len(s.Roots) != 1 || s.Roots[0] != "file:///home/a" {
			return fmt.Errorf("roots/list_changed %d, roots %v", s.RootsChanged, s.Roots)
		}
		return nil
	})
	eventually(t, 10*time.Second, "the stdio backend told", func() error {
		if s := statsOf(t, a, "local"); s.RootsChanged != 1 {
			return fmt.Errorf("roots/list_changed %d", s.RootsChanged)
		}
		return nil
	})
}

// subscribe subscribes c to uri through vmcp.
func subscribe(t *testing.T, c *client.Client, uri string) {
	t.Helper()
	req := mcp.SubscribeRequest{}
	req.Params.URI = uri
	if err := c.Subscribe(ctxT(t, 10*time.Second), req); err != nil {
		t.Fatalf("subscribe %s: %v", uri, err)
	}
}

// expectUpdate touches the counter of backend through toucher and waits
// until n has one more resources/updated for it.
func expectUpdate(t *testing.T, toucher *client.Client, backend string, n *notes, what string) {
	t.Helper()
	const updated = mcp.MethodNotificationResourceUpdated
	before := n.count(updated)
	callText(t, toucher, backend+"_touch", nil)
	eventually(t, 10*time.Second, what, func() error {
		if n.count(updated) == before {
			return errors.New("no resources/updated yet")
		}
		return nil
	})
}

// TestRelayResubscribeEvicted: a client whose backend session was evicted
// is subscribed again on the session that replaces it.
func TestRelayResubscribeEvicted(t *testing.T) {
	t.Parallel()
	f := startRelayFleet(t, ", maxBackendSessions: 2")
	uri := "demo://" + f.Remote.Name + "/counter"
	a, aNotes := listener(t, f.V.URL)
	subscribe(t, a, uri)
	b := newClient(t, f.V.URL, clientOpts{})
	c := newClient(t, f.V.URL, clientOpts{})
	statsOf(t, b, "remote")
	statsOf(t, c, "remote") // evicts A's backend session
	if s := statsOf(t, c, "remote"); s.Subscribers[uri] != 0 {
		t.Fatalf("subscribers after A's session was evicted = %d, want 0", s.Subscribers[uri])
	}
	// A's next call opens a new session (evicting B's): subscribed again.
	if s := statsOf(t, a, "remote"); s.Subscribers[uri] != 1 {
		t.Errorf("subscribers after A's session was reopened = %d, want 1", s.Subscribers[uri])
	}
	expectUpdate(t, c, "remote", aNotes, "resources/updated at A after its session was reopened")
}

// TestRelayResubscribeRestarted: the shared connection's subscriptions are
// made again after the stdio backend restarted.
func TestRelayResubscribeRestarted(t *testing.T) {
	t.Parallel()
	f := startRelayFleet(t, "")
	uri := "demo://" + f.Local + "/counter"
	a, aNotes := listener(t, f.V.URL)
	b := newClient(t, f.V.URL, clientOpts{})
	subscribe(t, a, uri)
	pids := processesWith(f.Local)
	if len(pids) != 1 {
		t.Fatalf("want 1 process of the stdio backend, found %d", len(pids))
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the stdio backend restarted with A subscribed", func() error {
		res, err := tryCall(t, b, "local_stats", nil)
		if err != nil || res.IsError {
			return fmt.Errorf("local_stats: %v %v", err, res)
		}
		var s demoStats
		if err := json.Unmarshal([]byte(resultText(res)), &s); err != nil {
			return err
		}
		if s.Subscribers[uri] != 1 {
			return fmt.Errorf("subscribers %v", s.Subscribers)
		}
		return nil
	})
	expectUpdate(t, b, "local", aNotes, "resources/updated at A after the restart")
}

// TestRelayUnsubscribeLast: the shared backend is unsubscribed when the
// last client subscribed to a URI ends, not before.
func TestRelayUnsubscribeLast(t *testing.T) {
	t.Parallel()
	f := startRelayFleet(t, "")
	uri := "demo://" + f.Local + "/counter"
	a := newClient(t, f.V.URL, clientOpts{})
	b := newClient(t, f.V.URL, clientOpts{})
	c := newClient(t, f.V.URL, clientOpts{})
	subscribe(t, a, uri)
	subscribe(t, b, uri)
	if s := statsOf(t, c, "local"); s.Subscribers[uri] != 1 {
		t.Fatalf("backend subscriptions with two subscribers = %d, want 1", s.Subscribers[uri])
	}
	if err := a.Close(); err != nil { // DELETE
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if s := statsOf(t, c, "local"); s.Subscribers[uri] != 1 {
		t.Errorf("backend subscriptions after one of two subscribers ended = %d, want 1", s.Subscribers[uri])
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the backend unsubscribed after the last subscriber ended", func() error {
		if s := statsOf(t, c, "local"); s.Subscribers[uri] != 0 {
			return fmt.Errorf("%d subscriptions", s.Subscribers[uri])
		}
		return nil
	})
}

// TestRelayCancelReadAndPrompt: a client's notifications/cancelled for a
// resources/read or prompts/get reaches the HTTP backend.
func TestRelayCancelReadAndPrompt(t *testing.T) {
	t.Parallel()
	f := startRelayFleet(t, "")
	a := newClient(t, f.V.URL, clientOpts{})
	b := newClient(t, f.V.URL, clientOpts{})
	for i, tc := range []struct {
		method string
		params map[string]any
	}{
		{"resources/read", map[string]any{"uri": "demo://" + f.Remote.Name + "/items/slow-20000"}},
		{"prompts/get", map[string]any{"name": "remote_greet", "arguments": map[string]any{"who": "slow-20000"}}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		id := fmt.Sprintf("slow-%d", i)
		done := make(chan error, 1)
		go func() {
			_, err := a.GetTransport().SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: mcp.JSONRPC_VERSION, ID: mcp.NewRequestId(id), Method: tc.method, Params: tc.params})
			done <- err
		}()
		time.Sleep(500 * time.Millisecond)
		err := a.GetTransport().SendNotification(ctx, mcp.JSONRPCNotification{JSONRPC: mcp.JSONRPC_VERSION, Notification: mcp.Notification{
			Method: string(mcp.MethodNotificationCancelled),
			Params: mcp.NotificationParams{AdditionalFields: map[string]any{"requestId": id, "reason": "test"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, tc.method+" cancelled at the backend with notifications/cancelled", func() error {
			if s := remoteStats(t, b); s.Cancelled != i+1 || s.CancelNotices != i+1 {
				return fmt.Errorf("cancelled = %d, notifications/cancelled = %d", s.Cancelled, s.CancelNotices)
			}
			return nil
		})
		cancel()
		<-done
	}
	// Results are unchanged.
	req := mcp.ReadResourceRequest{}
	req.Params.URI = "demo://" + f.Remote.Name + "/items/7"
	res, err := a.ReadResource(ctxT(t, 10*time.Second), req)
	if err != nil || len(res.Contents) != 1 {
		t.Fatalf("read: %+v, %v", res, err)
	}
	if text, ok := res.Contents[0].(mcp.TextResourceContents); !ok || text.Text != "item 7 from "+f.Remote.Name {
		t.Errorf("read item 7 = %#v", res.Contents[0])
	}
	preq := mcp.GetPromptRequest{}
	preq.Params.Name = "local_greet"
	preq.Params.Arguments = map[string]string{"who": "ada"}
	pres, err := a.GetPrompt(ctxT(t, 10*time.Second), preq)
	if err != nil || len(pres.Messages) != 1 {
		t.Fatalf("prompt: %+v, %v", pres, err)
	}
	if text, ok := pres.Messages[0].Content.(mcp.TextContent); !ok || text.Text != "Hello ada from "+f.Local {
		t.Errorf("local_greet = %#v", pres.Messages[0].Content)
	}
}

// TestRelaySubscribeError: a backend's error for resources/subscribe
// reaches the client, which is then not subscribed.
func TestRelaySubscribeError(t *testing.T) {
	t.Parallel()
	f := startRelayFleet(t, "")
	a := newClient(t, f.V.URL, clientOpts{})
	for _, name := range []string{f.Remote.Name, f.Local} {
		req := mcp.SubscribeRequest{}
		req.Params.URI = "demo://" + name + "/items/refused-1"
		err := a.Subscribe(ctxT(t, 10*time.Second), req)
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("subscribe to a refused item of %s: %v, want the backend's error", name, err)
		}
	}
	// The refused subscription was not recorded: a later one is made.
	uri := "demo://" + f.Local + "/counter"
	subscribe(t, a, uri)
	if s := statsOf(t, a, "local"); s.Subscribers[uri] != 1 {
		t.Errorf("subscribers = %d, want 1", s.Subscribers[uri])
	}
}

// TestRelayElicitationBeyondMCPGoBound: a user who takes longer over an
// elicitation than mcp-go's client gives a backend's request (30 s,
// hard-coded in its streamable-HTTP transport, so this test cannot shrink
// it and waits 31 s) still gets the answer to the backend. The client is a
// raw HTTP one: mcp-go's own client would put the same bound on its answer.
func TestRelayElicitationBeyondMCPGoBound(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits 31 s")
	}
	const delay = 31 * time.Second // just beyond mcp-go's 30 s
	remote := startDemo(t, "remote", "notes", "streamable-http", "")
	v := startVMCP(t, fmt.Sprintf(`name: relay
server: {host: 127.0.0.1, port: 0}
backends:
  - {name: remote, transport: streamable-http, url: %q, requestTimeout: 2m}
`, remote.URL), nil)

	ctx := ctxT(t, time.Minute)
	c := &rawClient{t: t, url: v.URL, hc: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}}
	t.Cleanup(c.hc.CloseIdleConnections)
	c.call(ctx, 1, "initialize", map[string]any{
		"protocolVersion": "2025-11-25",
		"capabilities":    map[string]any{"elicitation": map[string]any{}},
		"clientInfo":      map[string]any{"name": "raw", "version": "1"},
	}, nil)
	c.notify(ctx, "notifications/initialized")

	var asked []time.Time
	res := c.call(ctx, 2, "tools/call", map[string]any{"name": "remote_elicit", "arguments": map[string]any{"message": "Your name?"}},
		func(id json.RawMessage, method string) any {
			if method != "elicitation/create" {
				return nil
			}
			asked = append(asked, time.Now())
			time.Sleep(delay)
			return map[string]any{"action": "accept", "content": map[string]any{"name": "Ada"}}
		})
	got := string(res)
	if len(asked) != 1 || !strings.Contains(got, `\"action\":\"accept\"`) || !strings.Contains(got, `\"name\":\"Ada\"`) {
		t.Errorf("remote_elicit answered after %s = %s (asked %d times), want the accepted answer", delay, got, len(asked))
	}
}

// rawClient is a minimal streamable-HTTP MCP client with one session.
type rawClient struct {
	t       *testing.T
	url     string
	hc      *http.Client
	session string
}

func (c *rawClient) post(ctx context.Context, msg map[string]any) *http.Response {
	c.t.Helper()
	msg["jsonrpc"] = "2.0"
	body, err := json.Marshal(msg)
	if err != nil {
		c.t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.session != "" {
		req.Header.Set("Mcp-Session-Id", c.session)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	what := fmt.Sprint(msg["method"])
	if msg["method"] == nil {
		what = fmt.Sprintf("the answer to request %s", msg["id"])
	}
	res, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("POST %s: %v", what, err)
	}
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		c.t.Fatalf("POST %s: %s %s", what, res.Status, b)
	}
	return res
}

func (c *rawClient) notify(ctx context.Context, method string) {
	c.post(ctx, map[string]any{"method": method}).Body.Close()
}

// call sends a request and returns its result. answer answers the
// server's requests that come on the call's stream (id, method); its
// result is POSTed back (nil: no answer).
func (c *rawClient) call(ctx context.Context, id int, method string, params any, answer func(id json.RawMessage, method string) any) json.RawMessage {
	c.t.Helper()
	res := c.post(ctx, map[string]any{"id": id, "method": method, "params": params})
	defer res.Body.Close()
	if s := res.Header.Get("Mcp-Session-Id"); s != "" {
		c.session = s
	}
	type message struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	handle := func(data []byte) (json.RawMessage, bool) {
		var m message
		if err := json.Unmarshal(data, &m); err != nil {
			c.t.Fatalf("%s: bad message %s: %v", method, data, err)
		}
		switch {
		case m.Method != "" && len(m.ID) > 0 && answer != nil:
			if r := answer(m.ID, m.Method); r != nil {
				c.post(ctx, map[string]any{"id": m.ID, "result": r}).Body.Close()
			}
		case m.Method == "" && string(m.ID) == strconv.Itoa(id):
			if m.Error != nil {
				c.t.Fatalf("%s: error %s", method, m.Error)
			}
			return m.Result, true
		}
		return nil, false
	}
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		b, err := io.ReadAll(res.Body)
		if err != nil {
			c.t.Fatal(err)
		}
		if r, ok := handle(b); ok {
			return r
		}
		c.t.Fatalf("%s: no result in %s", method, b)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		if d, ok := strings.CutPrefix(line, "data:"); ok {
			data = append(data, strings.TrimPrefix(d, " ")...)
			continue
		}
		if line == "" && len(data) > 0 {
			if r, ok := handle(data); ok {
				return r
			}
			data = nil
		}
	}
	c.t.Fatalf("%s: stream ended without the result: %v", method, sc.Err())
	return nil
}
