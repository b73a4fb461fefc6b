package optimizer

import (
	"bytes"
	"encoding/gob"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/vmcp/vmcp/internal/bfcl"
)

// TestHybridAblation compares fusion choices on the BFCL set with vectors
// written by `go run ./bench/retrieval -use-lite -vectors FILE`; it runs
// only when asked: VMCP_VECTORS=FILE go test -run HybridAblation -v.
func TestHybridAblation(t *testing.T) {
	path := os.Getenv("VMCP_VECTORS")
	if path == "" {
		t.Skip("set VMCP_VECTORS to a file of bench/retrieval -vectors")
	}
	tools, servers, queries := loadAblationData(t)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vf struct {
		Model          string
		Tools, Queries [][]float32
	}
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&vf); err != nil {
		t.Fatal(err)
	}
	ix := NewIndex(tools, servers)
	vs, _ := NewVectors(vf.Tools)
	cats := []string{"simple_python", "multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple", "multi_turn_base"}
	eval := func(rank func(i int, q bfcl.Query) []Match) (float64, map[string]float64) {
		per := map[string]float64{}
		n := map[string]float64{}
		var all float64
		for i, q := range queries {
			ranked := rank(i, q)
			var r5 float64
			for _, want := range q.Expected {
				rk := slices.IndexFunc(ranked, func(m Match) bool { return m.Tool.Name == want }) + 1
				if rk > 0 && rk <= 5 {
					r5 += 1 / float64(len(q.Expected))
				}
			}
			all += r5
			per[q.Category] += r5
			n[q.Category]++
		}
		for c := range per {
			per[c] /= n[c]
		}
		return all / float64(len(queries)), per
	}
	lexAll, lexPer := eval(func(_ int, q bfcl.Query) []Match { return ix.Search(q.Query, "", 10) })
	t.Logf("%-30s %.4f", "lexical", lexAll)
	for _, v := range fusionVariants {
		all, per := eval(func(i int, q bfcl.Query) []Match {
			return ix.fuseVariant(q.Query, vs.cosines(vf.Queries[i]), v, 10)
		})
		worst, worstCat := math.Inf(1), ""
		for _, c := range cats {
			if d := per[c] - lexPer[c]; d < worst {
				worst, worstCat = d, c
			}
		}
		t.Logf("%-30s %.4f  %+.4f  worst %+.4f %s", v.name, all, all-lexAll, worst, worstCat)
	}
}
