package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/vmcp/vmcp/auth"
	"github.com/vmcp/vmcp/config"
)

// TestBucketsOfACall pins the keys, their order and the scope names: one
// hash tag per server, hashed users, per-tool keys only for configured
// tools that are in the catalogue.
func TestBucketsOfACall(t *testing.T) {
	t.Parallel()
	const (
		aliceHash = "7e3a0d4e64d053aa0d8042c500292f07" // sha256("https://idp.example\x00alice")[:32]
		bobHash   = "26675c0869b075116647163070bc0738"
	)
	sharedB := Bucket{Key: "vmcp:{gw}:shared", Max: 100, Refill: time.Minute}
	user := func(h string) Bucket { return Bucket{Key: "vmcp:{gw}:user:" + h, Max: 20, Refill: time.Minute} }
	prShared := Bucket{Key: "vmcp:{gw}:tool:github_create_pr:shared", Max: 10, Refill: time.Hour}
	prUser := func(h string) Bucket {
		return Bucket{Key: "vmcp:{gw}:tool:github_create_pr:user:" + h, Max: 2, Refill: time.Hour}
	}
	catalogue := map[string]bool{"github_create_pr": true, "unlimited_tool": true}

	for _, tc := range []struct {
		name       string
		cfg        config.RateLimiting
		known      func(string) bool
		tool       string
		who        auth.Identity
		want       []Bucket
		wantScopes []string
	}{
		{"every bucket", fullConfig(), inCatalogue(catalogue), "github_create_pr", alice,
			[]Bucket{sharedB, user(aliceHash), prShared, prUser(aliceHash)},
			[]string{"shared", "perUser", "shared tool github_create_pr", "perUser tool github_create_pr"}},
		{"another user", fullConfig(), inCatalogue(catalogue), "github_create_pr", bob,
			[]Bucket{sharedB, user(bobHash), prShared, prUser(bobHash)},
			[]string{"shared", "perUser", "shared tool github_create_pr", "perUser tool github_create_pr"}},
		{"configured tool not in catalogue", fullConfig(), inCatalogue(catalogue), "search", alice,
			[]Bucket{sharedB, user(aliceHash)}, []string{"shared", "perUser"}},
		{"catalogue tool without tools entry", fullConfig(), inCatalogue(catalogue), "unlimited_tool", alice,
			[]Bucket{sharedB, user(aliceHash)}, []string{"shared", "perUser"}},
		{"unknown name", fullConfig(), inCatalogue(catalogue), "no_such_tool_12345", alice,
			[]Bucket{sharedB, user(aliceHash)}, []string{"shared", "perUser"}},
		{"nil KnownTool knows every name", fullConfig(), nil, "search", alice,
			[]Bucket{sharedB, user(aliceHash), {Key: "vmcp:{gw}:tool:search:shared", Max: 50, Refill: time.Second}},
			[]string{"shared", "perUser", "shared tool search"}},
		{"tool buckets only", config.RateLimiting{Tools: fullConfig().Tools}, inCatalogue(catalogue), "github_create_pr", alice,
			[]Bucket{prShared, prUser(aliceHash)},
			[]string{"shared tool github_create_pr", "perUser tool github_create_pr"}},
		{"no bucket applies", config.RateLimiting{Tools: fullConfig().Tools}, inCatalogue(catalogue), "other", alice,
			nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := &stageStore{}
			l, err := newLimiter(tc.cfg, Options{ServerName: "gw", Store: st, KnownTool: tc.known}, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			next := &recordingNext{}
			w := httptest.NewRecorder()
			l.wrap(next).ServeHTTP(w, toolCall(tc.tool, "1", "", tc.who))
			if w.Code != http.StatusOK || next.calls() != 1 {
				t.Fatalf("status %d, next calls %d", w.Code, next.calls())
			}
			calls := st.calls()
			if len(tc.want) == 0 {
				if len(calls) != 0 {
					t.Fatalf("store asked with %+v; with no applicable bucket it must not be asked", calls)
				}
				return
			}
			if len(calls) != 1 {
				t.Fatalf("store asked %d times, want 1", len(calls))
			}
			if got := calls[0]; !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("buckets\n got %+v\nwant %+v", got, tc.want)
			}
			pl := l.keys.plan(tc.tool, tc.who)
			if got := pl.scopes[:pl.n]; !reflect.DeepEqual(got, tc.wantScopes) {
				t.Fatalf("scopes %q, want %q", got, tc.wantScopes)
			}
		})
	}
}

func TestUserHash(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id   auth.Identity
		want string
	}{
		{alice, "7e3a0d4e64d053aa0d8042c500292f07"},
		{auth.Identity{Issuer: auth.AnonymousIssuer, Subject: auth.AnonymousSubject}, "8efbae2bb1c80d783306600d65f97d3c"},
	} {
		if got := userHash(tc.id); got != tc.want {
			t.Errorf("userHash(%+v) = %s, want %s", tc.id, got, tc.want)
		}
	}
	// The separator keeps issuer and subject apart.
	if userHash(auth.Identity{Issuer: "ab", Subject: "c"}) == userHash(auth.Identity{Issuer: "a", Subject: "bc"}) {
		t.Fatal("issuer|subject boundaries collide")
	}
}

func TestRejectedScope(t *testing.T) {
	t.Parallel()
	scopes := []string{"shared", "perUser", "shared tool x"}
	for _, tc := range []struct {
		rejected []int
		want     string
	}{
		{[]int{1}, "perUser"},
		{[]int{0, 2}, "shared, shared tool x"},
		{nil, "all"},
		{[]int{7, -1}, "all"},
	} {
		if got := rejectedScope(tc.rejected, scopes); got != tc.want {
			t.Errorf("rejectedScope(%v) = %q, want %q", tc.rejected, got, tc.want)
		}
	}
}

func inCatalogue(tools map[string]bool) func(string) bool {
	return func(name string) bool { return tools[name] }
}
