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
func (ix *Index) hybrid(description, keywords string, cos []float32, w float64, k int, keep []bool) []Match {
	if k <= 0 || len(ix.tools) == 0 {
		return nil
	}
	allowed := func(d uint32) bool { return keep == nil || keep[d] }
	cands := make([]uint32, 0, 2*candidatePool)
	var lexScores []float32 // by document; nil: no lexical match
	var maxLex float32
	if s := ix.score(description, keywords); s != nil {
		defer ix.release(s)
		touched := s.touched
		if keep != nil {
			touched = slices.DeleteFunc(slices.Clone(touched), func(d uint32) bool { return !keep[d] })
		}
		for _, c := range topK(s.scores, touched, candidatePool) {
			cands = append(cands, c.doc)
			maxLex = max(maxLex, c.score)
		}
		lexScores = s.scores
	}
	nLex := len(cands)
	vec := newTopHeap(candidatePool)
	for d, c := range cos {
		if allowed(uint32(d)) {
			vec.offer(scored{uint32(d), c})
		}
	}
	for _, c := range vec.sorted() {
		if !slices.Contains(cands[:nLex], c.doc) {
			cands = append(cands, c.doc)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	maxCos := float32(math.Inf(-1))
	for _, d := range cands {
		maxCos = max(maxCos, cos[d])
	}
	fused := make([]scored, len(cands))
	for i, d := range cands {
		var v, l float64
		if maxCos > -1 {
			v = (float64(cos[d]) + 1) / (float64(maxCos) + 1)
		}
		if maxLex > 0 {
			l = float64(lexScores[d]) / float64(maxLex)
		}
		fused[i] = scored{doc: d, score: float32(w*v + (1-w)*l)}
	}
	slices.SortFunc(fused, byBetter)
	fused = fused[:min(k, len(fused))]
	out := make([]Match, len(fused))
	for i, s := range fused {
		out[i] = Match{Tool: &ix.tools[s.doc], Score: float64(s.score), doc: s.doc}
	}
	return out
}
