package server

import (
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestStagesFollowArchitecture checks the chain against the data-flow line
// of the project's docs/architecture.md ("One request"), so the order
// cannot drift from what the project documents unnoticed.
func TestStagesFollowArchitecture(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`client ─HTTP─▶ (.*) ─▶ endpoint ─▶`).FindSubmatch(doc)
	if line == nil {
		t.Fatal("data-flow line not found in docs/architecture.md")
	}
	want := strings.Split(string(line[1]), " ─▶ ")
	var got []string
	for _, st := range (&Server{}).stages(deps{}) {
		got = append(got, st.name)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("stages = %v, docs/architecture.md says %v", got, want)
	}
}

// TestChainRunsStagesInOrder checks that the first stage is outermost.
func TestChainRunsStagesInOrder(t *testing.T) {
	t.Parallel()
	var trace []string
	mark := func(name string) func(http.Handler) http.Handler {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				trace = append(trace, name)
				next.ServeHTTP(w, r)
			})
		}
	}
	stages := []stage{{"a", mark("a")}, {"b", mark("b")}, {"c", mark("c")}}
	h := chain(stages, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { trace = append(trace, "handler") }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/mcp", nil))
	if want := []string{"a", "b", "c", "handler"}; !slices.Equal(trace, want) {
		t.Fatalf("trace = %v, want %v", trace, want)
	}
}
