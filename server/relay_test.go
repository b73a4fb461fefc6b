package server

import (
	"context"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
	"go.uber.org/goleak"
)

// fakeSession is a client session whose notifications the test reads (or
// leaves unread) from ch.
type fakeSession struct {
	id string
	ch chan mcp.JSONRPCNotification
}

func (f *fakeSession) Initialize()                                         {}
func (f *fakeSession) Initialized() bool                                   { return true }
func (f *fakeSession) NotificationChannel() chan<- mcp.JSONRPCNotification { return f.ch }
func (f *fakeSession) SessionID() string                                   { return f.id }

// testRelay returns a relay with one live client session, and stops it
// (checking that no writer is left) when the test ends.
func testRelay(t *testing.T, queue int) (*clientRelay, *fakeSession) {
	t.Helper()
	r := newClientRelay(mcpserver.NewMCPServer("test", "1"), quietLogger())
	s := &fakeSession{id: "client-1", ch: make(chan mcp.JSONRPCNotification, queue)}
	r.sessions.Store(s.id, s)
	t.Cleanup(func() {
		if err := r.out.close(); err != nil {
			t.Error(err)
		}
		goleak.VerifyNone(t)
	})
	return r, s
}

func progress(i int) mcp.JSONRPCNotification {
	n := mcp.JSONRPCNotification{}
	n.Method = string(mcp.MethodNotificationProgress)
	n.Params.AdditionalFields = map[string]any{"progressToken": "t", "progress": i}
	return n
}

// TestNotifyDoesNotBlock: a burst of notifications to a client whose
// stream takes none returns at once; the waits that keep them in order
// are the writer's.
func TestNotifyDoesNotBlock(t *testing.T) {
	r, s := testRelay(t, 100)
	start := time.Now()
	for i := range 20 {
		r.Notify(context.Background(), s.id, progress(i))
	}
	// Waiting in Notify would take 19 × flushWait (380 ms).
	if d := time.Since(start); d > 5*flushWait {
		t.Errorf("20 notifications took %v to relay", d)
	}
}

// TestNotifyKeepsOrder: notifications reach the client in the order they
// were relayed, from whichever goroutine.
func TestNotifyKeepsOrder(t *testing.T) {
	r, s := testRelay(t, 100)
	const n = 200
	got := make(chan []int)
	go func() {
		var seen []int
		for len(seen) < n {
			m := <-s.ch
			seen = append(seen, m.Params.AdditionalFields["progress"].(int))
		}
		got <- seen
	}()
	for i := range n {
		r.Notify(context.Background(), s.id, progress(i))
	}
	select {
	case seen := <-got:
		for i, p := range seen {
			if p != i {
				t.Fatalf("notification %d is progress %d: %v", i, p, seen)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the notifications were not written")
	}
}

// TestNotifyDropsOnAFullQueue: beyond the queue's bound notifications are
// dropped and counted, without blocking.
func TestNotifyDropsOnAFullQueue(t *testing.T) {
	r, s := testRelay(t, 1)
	start := time.Now()
	for i := range outboxLen + 50 {
		r.Notify(context.Background(), s.id, progress(i))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("relaying onto a full queue took %v", d)
	}
	if r.out.dropped.Load() < 40 {
		t.Errorf("dropped %d notifications, want about 50", r.out.dropped.Load())
	}
}

// TestFlushedWaitsForTheCallsNotifications: a call that relayed
// notifications answers once they are written and taken off the session's
// queue; the session's end discards its queue.
func TestFlushedWaitsForTheCallsNotifications(t *testing.T) {
	r, s := testRelay(t, 100)
	taken := make(chan struct{})
	go func() {
		defer close(taken)
		for range 5 {
			<-s.ch
		}
	}()
	ctx := r.mcp.WithContext(context.Background(), s)
	call := r.flushed(func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		for i := range 5 {
			r.Notify(ctx, "", progress(i))
		}
		return mcp.NewToolResultText("done"), nil
	})
	if _, err := call(ctx, mcp.CallToolRequest{}); err != nil {
		t.Fatal(err)
	}
	o := r.out.get(s.id, false)
	if o == nil {
		t.Fatal("no queue for the session")
	}
	if n := o.written.Load(); n != 5 {
		// Printing o itself would race with its writer.
		t.Fatalf("the call answered after %d of its 5 notifications were written", n)
	}
	select {
	case <-taken:
	case <-time.After(5 * time.Second):
		t.Fatal("the notifications were not taken")
	}

	// Ended: the queue goes, and what is relayed for the session after is
	// not queued.
	r.sessions.Delete(s.id)
	r.out.ended(s.id)
	if r.out.get(s.id, false) == o {
		t.Error("the ended session's queue is still there")
	}
}
