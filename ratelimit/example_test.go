package ratelimit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/vmcp/vmcp/config"
	"github.com/vmcp/vmcp/parse"
	"github.com/vmcp/vmcp/ratelimit"
)

// budgetStore is a toy Store: each bucket grants Max tokens and never
// refills. It checks every bucket before taking from any.
type budgetStore struct {
	mu   sync.Mutex
	used map[string]int64
}

func (s *budgetStore) Take(_ context.Context, buckets []ratelimit.Bucket) (ratelimit.Decision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rejected []int
	for i, b := range buckets {
		if s.used[b.Key] >= b.Max {
			rejected = append(rejected, i)
		}
	}
	if len(rejected) > 0 {
		return ratelimit.Decision{RetryAfter: 1500 * time.Millisecond, Rejected: rejected}, nil
	}
	for _, b := range buckets {
		s.used[b.Key]++
	}
	return ratelimit.Decision{Allowed: true}, nil
}

// The stage after parse: two calls of search fit its tool bucket, the
// third is answered 429 without reaching the MCP handler. Other methods
// are not limited.
func ExampleNew() {
	cfg := config.RateLimiting{
		Shared: &config.Bucket{MaxTokens: 100, RefillPeriod: config.Duration(time.Minute)},
		Tools: []config.ToolLimit{
			{Name: "search", Shared: &config.Bucket{MaxTokens: 2, RefillPeriod: config.Duration(time.Minute)}},
		},
	}
	rl, err := ratelimit.New(cfg, ratelimit.Options{
		ServerName: "gw",
		Store:      &budgetStore{used: map[string]int64{}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mcp := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "handled")
	})
	h := parse.New(parse.Options{})(rl(mcp))

	post := func(body string) {
		r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
		r.Header.Set("MCP-Protocol-Version", "2025-06-18")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	for id := 1; id <= 3; id++ {
		post(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"search"}}`, id))
	}
	post(`{"jsonrpc":"2.0","id":4,"method":"tools/list"}`)
	// Output:
	// 200  handled
	// 200  handled
	// 429 2 {"jsonrpc":"2.0","id":3,"error":{"code":-32029,"message":"Rate limit exceeded","data":{"retryAfterSeconds":2,"scope":"shared tool search"}}}
	// 200  handled
}
