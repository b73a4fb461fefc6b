package optimizer

import (
	"slices"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
)

// maxSuggestedName bounds the length of a name closestNames looks for
// neighbours of: tool names are short, and the edit distance of a
// megabyte-long name against every tool would cost the server far more than
// the caller's request.
const maxSuggestedName = 256

// closestNames returns up to n tool names closest to name by edit distance
// (case-insensitive), nearest first, leaving out names so far away that
// they would be noise rather than a suggestion. A name containing the asked
// name, or contained in it, counts as close: "create_issue" suggests
// "github_create_issue". A name longer than maxSuggestedName gets none.
func closestNames(tools []mcp.Tool, name string, n int, keep func(name string) bool) []string {
	type near struct {
		name string
		dist int
	}
	if len(name) > maxSuggestedName {
		return nil
	}
	want := strings.ToLower(name)
	wantRunes := []rune(want)
	limit := max(2, len(wantRunes)/2)
	var found []near
	for i := range tools {
		if keep != nil && !keep(tools[i].Name) {
			continue
		}
		cand := strings.ToLower(tools[i].Name)
		d := editDistance(wantRunes, []rune(cand), limit)
		if strings.Contains(cand, want) || strings.Contains(want, cand) {
			d = min(d, 1)
		}
		if d <= limit {
			found = append(found, near{tools[i].Name, d})
		}
	}
	slices.SortStableFunc(found, func(a, b near) int {
		if a.dist != b.dist {
			return a.dist - b.dist
		}
		return strings.Compare(a.name, b.name)
	})
	out := make([]string, 0, min(n, len(found)))
	for _, f := range found[:min(n, len(found))] {
		out = append(out, f.name)
	}
	return out
}

// editDistance is the Levenshtein distance of ra and rb, or limit+1 once
// it is certain to exceed limit.
func editDistance(ra, rb []rune, limit int) int {
	if d := len(ra) - len(rb); d > limit || -d > limit {
		return limit + 1
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin > limit {
			return limit + 1
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
