package optimizer

import (
	"slices"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
)

// closestNames returns up to n tool names closest to name by edit distance
// (case-insensitive), nearest first, leaving out names so far away that
// they would be noise rather than a suggestion. A name containing the asked
// name, or contained in it, counts as close: "create_issue" suggests
// "github_create_issue".
func closestNames(tools []mcp.Tool, name string, n int) []string {
	type near struct {
		name string
		dist int
	}
	want := strings.ToLower(name)
	limit := max(2, len([]rune(want))/2)
	var found []near
	for i := range tools {
		cand := strings.ToLower(tools[i].Name)
		d := editDistance(want, cand, limit)
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

// editDistance is the Levenshtein distance of a and b, or limit+1 once it
// is certain to exceed limit.
func editDistance(a, b string, limit int) int {
	ra, rb := []rune(a), []rune(b)
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
