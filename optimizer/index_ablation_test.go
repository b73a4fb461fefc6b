package optimizer

import (
	"math"
	"os"
	"slices"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/internal/bfcl"
)

// The ablation reads the BFCL tool-retrieval set that lives outside the
// module; it runs only when asked: VMCP_ABLATION=1 go test -run Ablation -v.
const ablationData = "../" + bfcl.Path

func loadAblationData(t *testing.T) ([]mcp.Tool, []*Server, []bfcl.Query) {
	t.Helper()
	tools, servers, queries := tryLoadAblationData()
	if tools == nil {
		t.Skip("no data set at", ablationData, "or $VMCP_RETRIEVAL_DATA")
	}
	return tools, servers, queries
}

// tryLoadAblationData returns the data set's tools, their servers (by
// name only: the data set has nothing else) and its queries, or nils when
// the file is not there.
func tryLoadAblationData() ([]mcp.Tool, []*Server, []bfcl.Query) {
	path := ablationData
	if p := os.Getenv("VMCP_RETRIEVAL_DATA"); p != "" {
		path = p
	}
	set, err := bfcl.Load(path)
	if err != nil {
		return nil, nil, nil
	}
	return set.Tools, ServersByName(set.Servers), set.Queries
}

// evalSummary is recall@5 and MRR overall, and recall@5 of the categories
// where lexical matching is hardest.
type evalSummary struct {
	r5, mrr, live, multiTurn float64
}

func evaluateIndex(ix *Index, queries []bfcl.Query) evalSummary {
	var s evalSummary
	var nLive, nMT float64
	for _, q := range queries {
		ranked := ix.Search(q.Query, "", 10)
		var r5, rr float64
		for _, want := range q.Expected {
			rank := slices.IndexFunc(ranked, func(m Match) bool { return m.Tool.Name == want }) + 1
			if rank == 0 {
				continue
			}
			if rank <= 5 {
				r5 += 1 / float64(len(q.Expected))
			}
			rr = max(rr, 1/float64(rank))
		}
		s.r5 += r5
		s.mrr += rr
		switch q.Category {
		case "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple":
			s.live += r5
			nLive++
		case "multi_turn_base":
			s.multiTurn += r5
			nMT++
		}
	}
	n := float64(len(queries))
	s.r5 /= n
	s.mrr /= n
	s.live /= max(nLive, 1)
	s.multiTurn /= max(nMT, 1)
	return s
}

// TestAblation reports what each ranking choice buys, by switching it off
// (or to the alternative) one at a time. It fails when switching a
// component off beats the default on recall@5 or MRR by more than
// ablationTolerance (the component would not earn its place), and when a
// different constant (k1, b, field weights) moves either figure by more
// than sensitivityBound (the ranking would hang on a tuned constant).
func TestAblation(t *testing.T) {
	if os.Getenv("VMCP_ABLATION") == "" {
		t.Skip("set VMCP_ABLATION=1 to run")
	}
	tools, servers, queries := loadAblationData(t)
	variants := []struct {
		name     string
		constant bool // a different constant, not a component switched off
		edit     func(*params)
	}{
		{"default", false, func(*params) {}},
		{"no stemming", false, func(p *params) { p.stemming = false }},
		{"no stop words", false, func(p *params) { p.stopWords = false }},
		{"no schema field", false, func(p *params) { p.schema = false }},
		{"no server field", false, func(p *params) { p.server = false }},
		{"no sub-word expansion", false, func(p *params) { p.subword = false }},
		{"query term frequency counted", false, func(p *params) { p.queryTF = true }},
		{"equal field weights 1/1/1", true, func(p *params) { p.weight = [numFields]float64{1, 1, 1, 1, 1} }},
		{"field weights 2/1/0.5", true, func(p *params) { p.weight = [numFields]float64{2, 1, 1, 0.5, 1} }},
		{"field weights 3/1/1", true, func(p *params) { p.weight = [numFields]float64{3, 1, 1, 1, 1} }},
		{"server field ×0.5", true, func(p *params) { p.weight[fieldServer] = 0.5 }},
		{"server field ×2", true, func(p *params) { p.weight[fieldServer] = 2 }},
		{"one parameter field ×0.5", true, func(p *params) { p.weight[fieldParamNames] = 0.5 }},
		{"name b 0.3", true, func(p *params) { p.b[fieldName] = 0.3 }},
		{"k1 2.0", true, func(p *params) { p.k1 = 2 }},
		{"b 0.5", true, func(p *params) { p.b = [numFields]float64{0.5, 0.5, 0.5, 0.5, 0.5} }},
	}
	t.Logf("%-28s %6s %6s %6s %6s", "variant", "R@5", "MRR", "live", "multi")
	var def evalSummary
	for i, v := range variants {
		p := defaultParams
		v.edit(&p)
		s := evaluateIndex(newIndex(tools, servers, p), queries)
		t.Logf("%-28s %.4f  %.4f  %.4f  %.4f", v.name, s.r5, s.mrr, s.live, s.multiTurn)
		if i == 0 {
			def = s
			continue
		}
		switch {
		case v.constant && (math.Abs(s.r5-def.r5) > sensitivityBound || math.Abs(s.mrr-def.mrr) > sensitivityBound):
			t.Errorf("%s moves the ranking too far: R@5 %.3f, MRR %.3f against %.3f, %.3f", v.name, s.r5, s.mrr, def.r5, def.mrr)
		case !v.constant && (s.r5 > def.r5+ablationTolerance || s.mrr > def.mrr+ablationTolerance):
			t.Errorf("%s beats the default: R@5 %.3f, MRR %.3f against %.3f, %.3f", v.name, s.r5, s.mrr, def.r5, def.mrr)
		}
	}
}

// ablationTolerance is how much better than the default a variant may
// score (recall@5, MRR) before TestAblation fails: differences that small
// are noise of one data set.
const ablationTolerance = 0.005

// sensitivityBound is how far another reasonable constant may move
// recall@5 or MRR: about one point, as the README says.
const sensitivityBound = 0.015
