package optimizer

import (
	"math"
	"slices"
)

// candidatePool is how many of each ranking's best tools the hybrid
// ranking considers: the fusion reorders the head of both lists; a tool
// neither ranks in its first 100 is not going to reach the first 8.
const candidatePool = 100

// SearchHybrid is Search ranked by the hybrid of the lexical score and the
// cosine of q (a unit vector of the search) with each tool's vector in vs
// (of this index's catalogue), with weight w for the vector score.
func (ix *Index) SearchHybrid(description, keywords string, q []float32, vs *Vectors, w float64, k int) []Match {
	if len(q) != vs.dims || len(vs.data) != len(ix.tools)*vs.dims {
		return ix.Search(description, keywords, k)
	}
	return ix.hybrid(description, keywords, vs.cosines(q), w, k, nil)
}

// hybrid ranks the tools by a convex combination of their lexical and
// vector scores, w·vector + (1−w)·lexical, each normalised by theoretical
// min-max (Bruch et al., "An Analysis of Fusion Functions for Hybrid
// Retrieval", 2023): a score's range runs from the least it can be (0 for
// BM25, −1 for a cosine) to the best candidate's. Unlike min-max over the
// candidates, this does not stretch a narrow spread of cosines into the
// whole range, so a weak vector signal cannot outvote a clear lexical one;
// on BFCL with USE-lite it lost no category (min-max lost 2.6 points on
// parallel_multiple; reciprocal-rank fusion 5 points overall). Candidates
// are the best candidatePool of each ranking among the tools keep allows
// (nil: all). It returns at most k matches, best first; ties keep
// catalogue order.
func (ix *Index) hybrid(description, keywords string, cos []float32, w float64, k int, keep func(doc int) bool) []Match {
	if k <= 0 || len(ix.tools) == 0 {
		return nil
	}
	lexScore := make(map[uint32]float32, candidatePool)
	var maxLex float32
	var cands []uint32
	for _, m := range ix.Search(description, keywords, len(ix.tools)) {
		if keep != nil && !keep(int(m.doc)) {
			continue
		}
		if len(lexScore) < candidatePool {
			cands = append(cands, m.doc)
		}
		lexScore[m.doc] = float32(m.Score)
		maxLex = max(maxLex, float32(m.Score))
	}
	// The vector ranking's head: cosines shifted into (0, 2] for topK,
	// which keeps positive scores only.
	docs := make([]uint32, 0, len(cos))
	shifted := make([]float32, len(cos))
	for d, c := range cos {
		if keep != nil && !keep(d) {
			continue
		}
		shifted[d] = c + 1 + 1e-6
		docs = append(docs, uint32(d))
	}
	for _, s := range topK(shifted, docs, candidatePool) {
		if _, ok := lexScore[s.doc]; !ok || !slices.Contains(cands, s.doc) {
			cands = append(cands, s.doc)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	maxCos := float32(math.Inf(-1))
	for _, d := range cands {
		maxCos = max(maxCos, cos[d])
	}
	fused := make([]scored, 0, len(cands))
	seen := make(map[uint32]bool, len(cands))
	for _, d := range cands {
		if seen[d] {
			continue
		}
		seen[d] = true
		var v, l float64
		if maxCos > -1 {
			v = (float64(cos[d]) + 1) / (float64(maxCos) + 1)
		}
		if maxLex > 0 {
			l = float64(lexScore[d]) / float64(maxLex)
		}
		fused = append(fused, scored{doc: d, score: float32(w*v + (1-w)*l)})
	}
	slices.SortFunc(fused, func(a, b scored) int {
		if better(a, b) {
			return -1
		}
		return 1
	})
	fused = fused[:min(k, len(fused))]
	out := make([]Match, len(fused))
	for i, s := range fused {
		out[i] = Match{Tool: &ix.tools[s.doc], Score: float64(s.score), doc: s.doc}
	}
	return out
}
